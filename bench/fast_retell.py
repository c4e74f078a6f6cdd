"""A fast fake Retell for the benchmarks only: an aiohttp.web server (uvloop) answering the
three calls the worker makes, in Retell's shapes, and counting what it received.

    .venv/bin/python -m bench.fast_retell [--port 0] [--api-key bench-key]

prints `READY <url>` once it listens and serves until SIGTERM.

- POST /create-sms-chat -> 200, the chat as Retell returns it (`chat_id`, `agent_id`,
  `chat_status: ongoing`, `chat_type: sms_chat`, `metadata`, `retell_llm_dynamic_variables`,
  `start_timestamp`, `transcript`, `message_with_tool_calls`); 401 on a wrong key, 400 on a
  body without E.164 `from_number`/`to_number`.
- PATCH /end-chat/{chat_id} -> 204 (404 for an unknown chat).
- GET /get-chat/{chat_id} -> 200 the chat (404 for an unknown chat).

For the benchmark itself (no key needed):
- GET /_bench/stats -> {creates, distinct_messages, duplicates: {message_id: n > 1},
  without_message_id, end_chats, get_chats}: every create-sms-chat counted by its
  `metadata.pgflow_message_id`, so a message sent twice shows up.
- GET /_bench/sample -> the body of the first create-sms-chat received since the reset
  (null before one): the request a bare sender replays (bench/worker.py).
- GET /_bench/received -> {to_number: time.monotonic() of its first create-sms-chat}
  (CLOCK_MONOTONIC is system-wide on Linux: comparable with the benchmark's own clock).
- POST /_bench/reset -> forget everything.

The tests' fake (pgflow.sandbox, a stdlib ThreadingHTTPServer) also plays the lead, sends
webhooks and takes scripted faults; this one only answers, as fast as it can, so that the
worker benchmark measures the worker and not the fake (bench/fake_retell_speed.py)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time
from typing import Any

import httpx
import uvloop
from aiohttp import web

from pgflow.sandbox.chats import DEFAULT_AGENT_ID, E164
from pgflow.sandbox.http import error_body

JSON = "application/json"


def _error(status: int, message: str | None = None) -> web.Response:
    """Retell's error body, as the sandbox answers it."""
    return web.Response(
        status=status, body=json.dumps(error_body(status, message)).encode(), content_type=JSON
    )


class FastRetell:
    """The server's memory: chats by id, create-sms-chat counts by message id."""

    def __init__(self, api_key: str) -> None:
        self.auth = f"Bearer {api_key}"
        self.reset()

    def reset(self) -> None:
        self.chats: dict[str, dict[str, Any]] = {}
        self.by_message: dict[str, int] = {}
        self.first_received: dict[str, float] = {}
        self.creates = 0
        self.without_message_id = 0
        self.end_chats = 0
        self.get_chats = 0
        self.sample: dict[str, Any] | None = None  # the first create-sms-chat body
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/create-sms-chat", self.create_sms_chat)
        app.router.add_patch("/end-chat/{chat_id}", self.end_chat)
        app.router.add_get("/get-chat/{chat_id}", self.get_chat)
        app.router.add_get("/_bench/stats", self.stats)
        app.router.add_get("/_bench/received", self.received)
        app.router.add_get("/_bench/sample", self.sample_route)
        app.router.add_post("/_bench/reset", self.reset_route)
        return app

    async def create_sms_chat(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        if request.headers.get("Authorization") != self.auth:
            return _error(401)
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return _error(400, "Invalid JSON body")
        if not isinstance(payload, dict):
            return _error(400, "Request body must be a JSON object")
        lead, line = payload.get("to_number"), payload.get("from_number")
        if not (isinstance(lead, str) and E164.match(lead)):
            return _error(400, "to_number must be an E.164 phone number")
        if not (isinstance(line, str) and E164.match(line)):
            return _error(400, "from_number must be an E.164 phone number")
        metadata = payload.get("metadata") or {}
        variables = payload.get("retell_llm_dynamic_variables") or {}
        if not isinstance(metadata, dict) or not isinstance(variables, dict):
            return _error(400, "metadata and retell_llm_dynamic_variables must be objects")

        self.creates += 1
        if self.sample is None:
            self.sample = payload
        message_id = metadata.get("pgflow_message_id")
        if isinstance(message_id, str):
            self.by_message[message_id] = self.by_message.get(message_id, 0) + 1
        else:
            self.without_message_id += 1
        self.first_received.setdefault(lead, received)

        n = next(self._ids)
        now_ms = int(time.time() * 1000)
        text = str(variables.get("sms_body", "{{sms_body}}"))
        chat = {
            "chat_id": f"chat_{n}",
            "agent_id": str(payload.get("override_agent_id") or DEFAULT_AGENT_ID),
            "chat_status": "ongoing",
            "chat_type": "sms_chat",
            "metadata": metadata,
            "retell_llm_dynamic_variables": variables,
            "start_timestamp": now_ms,
            "transcript": f"Agent: {text}\n",
            "message_with_tool_calls": [
                {
                    "message_id": f"msg_{n}",
                    "role": "agent",
                    "content": text,
                    "created_timestamp": now_ms,
                }
            ],
        }
        self.chats[f"chat_{n}"] = chat
        return web.Response(body=json.dumps(chat).encode(), content_type=JSON)

    async def end_chat(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.auth:
            return _error(401)
        self.end_chats += 1
        chat = self.chats.get(request.match_info["chat_id"])
        if chat is None:
            return _error(404, "Chat not found")
        if chat["chat_status"] == "ongoing":
            chat["chat_status"] = "ended"
            chat["end_timestamp"] = int(time.time() * 1000)
        return web.Response(status=204)

    async def get_chat(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.auth:
            return _error(401)
        self.get_chats += 1
        chat = self.chats.get(request.match_info["chat_id"])
        if chat is None:
            return _error(404, "Chat not found")
        return web.Response(body=json.dumps(chat).encode(), content_type=JSON)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "creates": self.creates,
                "distinct_messages": len(self.by_message),
                "duplicates": {k: n for k, n in self.by_message.items() if n > 1},
                "without_message_id": self.without_message_id,
                "end_chats": self.end_chats,
                "get_chats": self.get_chats,
            }
        )

    async def received(self, request: web.Request) -> web.Response:
        return web.json_response(self.first_received)

    async def sample_route(self, request: web.Request) -> web.Response:
        return web.json_response(self.sample)

    async def reset_route(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)


async def serve(host: str, port: int, api_key: str) -> None:
    runner = web.AppRunner(FastRetell(api_key).app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]  # the real port when port was 0
    print(f"READY http://{host}:{bound}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await runner.cleanup()


def fake_get(url: str, path: str) -> Any:
    """GET one of the /_bench/ endpoints of a running fast fake (its JSON)."""
    response = httpx.get(url + path, timeout=10)
    response.raise_for_status()
    return response.json()


def fake_reset(url: str) -> None:
    httpx.post(url + "/_bench/reset", timeout=10).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fast_retell", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="bench-key")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port, args.api_key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

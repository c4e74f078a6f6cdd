"""A fake Retell AI: a real HTTP server on 127.0.0.1 in a background thread (stdlib only).

In a test:

    with FakeRetell() as fake:
        fake.script(500, Step(delay=1.0), Step(drop=True))   # then it succeeds
        ... point RETELL_BASE_URL at fake.url, RETELL_API_KEY at fake.api_key ...
        [req] = fake.wait_for_requests(1)

As a process (for tests that run the worker or the web server as a subprocess):

    python -m tests.fake_retell --port 0 --api-key K --log requests.jsonl [--script 500,drop]

prints `READY <url>` once it listens and serves until SIGTERM; every request it sees is
appended to the log file as one JSON line.

Endpoints: `POST /create-sms-chat` (status 200, as Retell documents), `PATCH /end-chat/{id}`
(204), `GET /get-chat/{id}`; anything else is 404. Errors use Retell's body
`{"status": "error", "message": ...}`. A created chat imitates an agent whose
`begin_message` is `{{sms_body}}`: its first agent message is the `sms_body` variable.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import itertools
import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import httpx

from pgflow.transport.retell import sign

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
DEFAULT_AGENT_ID = "agent_default"
CREATE_PATH = "/create-sms-chat"

ERROR_MESSAGES: dict[int, str] = {
    400: "Bad request: invalid request body",
    401: "Unauthorized",
    402: "Payment required: trial limit reached",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    422: "Unprocessable entity: unknown from_number or agent",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


@dataclasses.dataclass(frozen=True)
class Step:
    """How the fake answers one create-sms-chat request.

    status: an error status (>= 300) answers with Retell's error body (429 adds
        `Retry-After: 1`); a 2xx or None serves the request normally with that status.
    delay: seconds to wait before answering (to trigger client timeouts).
    drop: close the connection without any response (after `delay`).
    body: a replacement response body (dict/list → JSON, str/bytes sent as is).
    headers: extra response headers (they win over the defaults).
    """

    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes
    received_at: float  # time.monotonic()

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "json": self.json,
            "body": self.body.decode("utf-8", "replace"),
            "received_at": self.received_at,
        }


def as_step(step: int | Step) -> Step:
    return step if isinstance(step, Step) else Step(status=step)


def error_body(status: int, message: str | None = None) -> dict[str, str]:
    return {"status": "error", "message": message or ERROR_MESSAGES.get(status, f"HTTP {status}")}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeRetell

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client gave up (a scripted delay or drop): expected
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeRetell/1.0"
    timeout = 30  # an idle keep-alive connection never pins a thread for long
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    do_POST = do_GET
    do_PATCH = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET

    def read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def respond(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        if body is None or status == 204:
            raw = b""
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        self.send_response(status)
        sent = {k.lower() for k in (headers or {})}
        if raw and "content-type" not in sent:
            self.send_header("Content-Type", "application/json")
        if status != 204:
            self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if raw:
            self.wfile.write(raw)

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class FakeRetell:
    """A scriptable Retell on an ephemeral 127.0.0.1 port; see the module docstring."""

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | str | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.log_path = Path(log_path) if log_path is not None else None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._script: collections.deque[Step] = collections.deque()
        self._default: Step | None = None
        self._chats: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FakeRetell already started")
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections end now
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeRetell is not running")
        return f"http://{self.host}:{self.port}"

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *steps: int | Step) -> None:
        """Queue answers for the next create-sms-chat requests, consumed in order."""
        with self._lock:
            self._script.extend(as_step(s) for s in steps)

    def set_default(self, step: int | Step | None) -> None:
        """How create-sms-chat answers once the script is exhausted (None: normally)."""
        with self._lock:
            self._default = None if step is None else as_step(step)

    def reset(self) -> None:
        """Forget requests, chats, the script and the default."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._default = None
            self._chats.clear()

    # -- inspection ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def sms_requests(self) -> list[RecordedRequest]:
        """Every `POST /create-sms-chat` received, whatever the answer was."""
        with self._lock:
            return [r for r in self._requests if _is_create(r.method, r.path)]

    @property
    def chats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._chats)

    def wait_for_requests(
        self, n: int, timeout: float = 5.0, *, path: str | None = None
    ) -> list[RecordedRequest]:
        """Block until at least `n` requests (to `path`, if given) arrived; return them."""

        def matching() -> list[RecordedRequest]:
            return [r for r in self._requests if path is None or _route(r.path) == path]

        with self._cond:
            if self._cond.wait_for(lambda: len(matching()) >= n, timeout=timeout):
                return matching()
            got = len(matching())
            seen = [f"{r.method} {r.path}" for r in self._requests]
        where = f" to {path}" if path else ""
        raise AssertionError(
            f"FakeRetell at {self.host}:{self.port}: expected {n} request(s){where} "
            f"within {timeout}s, got {got}; all requests seen: {seen or 'none'}"
        )

    # -- webhooks (Retell → us) ----------------------------------------------------------------

    def signed_webhook(
        self,
        payload: dict[str, Any],
        *,
        timestamp_ms: int | None = None,
        api_key: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers of a webhook as Retell would sign it."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        signature = sign(body, self.api_key if api_key is None else api_key, stamp)
        return body, {"content-type": "application/json", "x-retell-signature": signature}

    def post_webhook(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        timestamp_ms: int | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        """POST a signed webhook (sync); `headers` override the signed ones."""
        body, signed = self.signed_webhook(payload, timestamp_ms=timestamp_ms, api_key=api_key)
        signed.update(headers or {})
        with httpx.Client(timeout=timeout) as client:
            return client.post(url, content=body, headers=signed)

    # -- serving (handler threads) ---------------------------------------------------------------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(request.as_json()) + "\n")
            self._cond.notify_all()

    def _handle(self, handler: _Handler) -> None:
        raw = handler.read_body()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        request = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            json=parsed,
            body=raw,
            received_at=time.monotonic(),
        )
        self._record(request)

        route = _route(request.path)
        if _is_create(request.method, request.path):
            with self._lock:
                step = self._script.popleft() if self._script else self._default
            self._create(handler, request, step or Step())
            return
        if not self._authorized(request):
            handler.respond(401, error_body(401))
        elif request.method == "GET" and route.startswith("/get-chat/"):
            chat = self._chat(route.removeprefix("/get-chat/"))
            if chat is None:
                handler.respond(404, error_body(404, "Chat not found"))
            else:
                handler.respond(200, chat)
        elif request.method == "PATCH" and route.startswith("/end-chat/"):
            chat_id = route.removeprefix("/end-chat/")
            with self._lock:
                chat = self._chats.get(chat_id)
                if chat is not None and chat["chat_status"] == "ongoing":
                    chat["chat_status"] = "ended"
                    chat["end_timestamp"] = int(time.time() * 1000)
            if chat is None:
                handler.respond(404, error_body(404, "Chat not found"))
            else:
                handler.respond(204)
        else:
            handler.respond(404, error_body(404, f"No route for {request.method} {route}"))

    def _create(self, handler: _Handler, request: RecordedRequest, step: Step) -> None:
        if step.delay > 0 and self._stopping.wait(step.delay):
            handler.drop()  # stopping: don't hold the thread
            return
        if step.drop:
            handler.drop()
            return
        if step.status is not None and step.status >= 300:
            headers = {"Retry-After": "1"} if step.status == 429 else {}
            headers.update(step.headers)
            body = error_body(step.status) if step.body is None else step.body
            handler.respond(step.status, body, headers)
            return
        if not self._authorized(request):
            handler.respond(401, error_body(401))
            return
        problem = _validate_create(request)
        if problem is not None:
            handler.respond(400, error_body(400, problem))
            return
        payload: dict[str, Any] = request.json
        variables: dict[str, str] = payload.get("retell_llm_dynamic_variables") or {}
        now = int(time.time() * 1000)
        with self._lock:
            chat_id = f"chat_{next(self._ids)}"
            first = variables.get("sms_body", "{{sms_body}}")
            chat: dict[str, Any] = {
                "chat_id": chat_id,
                "agent_id": payload.get("override_agent_id") or DEFAULT_AGENT_ID,
                "chat_status": "ongoing",
                "chat_type": "sms_chat",
                "metadata": payload.get("metadata") or {},
                "retell_llm_dynamic_variables": variables,
                "start_timestamp": now,
                "transcript": f"Agent: {first}\n",
                "messages": [
                    {
                        "message_id": f"msg_{chat_id}_1",
                        "role": "agent",
                        "content": first,
                        "created_timestamp": now,
                    }
                ],
            }
            self._chats[chat_id] = chat
            answer = copy.deepcopy(chat)
        status = step.status if step.status is not None else 200
        handler.respond(status, answer if step.body is None else step.body, step.headers)

    def _authorized(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _chat(self, chat_id: str) -> dict[str, Any] | None:
        with self._lock:
            chat = self._chats.get(chat_id)
            return None if chat is None else copy.deepcopy(chat)


def _route(path: str) -> str:
    return unquote(urlsplit(path).path)


def _is_create(method: str, path: str) -> bool:
    return method == "POST" and _route(path) == CREATE_PATH


def _validate_create(request: RecordedRequest) -> str | None:
    """Why a create-sms-chat body is invalid, or None."""
    payload = request.json
    if request.json is None and request.body:
        return "Invalid JSON body"
    if not isinstance(payload, dict):
        return "Request body must be a JSON object"
    for field in ("from_number", "to_number"):
        value = payload.get(field)
        if not isinstance(value, str) or not E164.match(value):
            return f"{field} must be an E.164 phone number"
    agent = payload.get("override_agent_id")
    if agent is not None and not isinstance(agent, str):
        return "override_agent_id must be a string"
    metadata = payload.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return "metadata must be an object"
    variables = payload.get("retell_llm_dynamic_variables")
    if variables is not None and not (
        isinstance(variables, dict) and all(isinstance(v, str) for v in variables.values())
    ):
        return "retell_llm_dynamic_variables must map strings to strings"
    return None


def parse_script(text: str) -> list[Step]:
    """`500,429,drop,delay=2.5` → steps (for the process mode's --script/--default)."""
    steps: list[Step] = []
    for token in filter(None, (t.strip() for t in text.split(","))):
        if token == "drop":
            steps.append(Step(drop=True))
        elif token.startswith("delay="):
            steps.append(Step(delay=float(token.removeprefix("delay="))))
        else:
            steps.append(Step(status=int(token)))
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_retell", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--log", type=Path, help="append every request here as a JSON line")
    parser.add_argument("--script", default="", help="e.g. 500,429,drop,delay=2.5")
    parser.add_argument("--default", default="", help="one step for every later request")
    args = parser.parse_args(argv)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake = FakeRetell(args.api_key, host=args.host, port=args.port, log_path=args.log)
    fake.script(*parse_script(args.script))
    default = parse_script(args.default)
    if default:
        fake.set_default(default[0])
    with fake:
        print(f"READY {fake.url}", flush=True)
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

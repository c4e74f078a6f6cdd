"""The sandbox: a real HTTP server on 127.0.0.1 that speaks Retell's API, so the real client,
webhooks and signatures run without Retell. `pgflow demo` and `pgflow sandbox serve` run it
with PGFLOW_SMS_TRANSPORT=sandbox; the tests' fake Retell is this server.

Retell's endpoints: create-sms-chat, get-chat, end-chat, v3/list-chats, and what
`pgflow retell setup` uses (Retell LLMs, chat agents, phone numbers). Where Retell's own
LLM would answer the lead, the sandbox takes our text instead (`POST
/sandbox/chats/{id}/messages`), and plays the lead (`POST /sandbox/say`, what `pgflow
sandbox say` calls). Chat events go to `webhook_url` signed with the API key, like Retell.

Faults for tests and the demo: `script(500, Step(delay=2), Step(drop=True))` answers the next
create-sms-chat requests that way (also `POST /sandbox/script {"steps": "500,drop"}`)."""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pgflow.sandbox.chats import DEFAULT_AGENT_ID, Chat, ChatBook, PhoneText, now_ms
from pgflow.sandbox.webhooks import Delivery, WebhookSender

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
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

# How Retell's own agent would answer a lead (tests); None: nobody answers but us.
Responder = Callable[[dict[str, Any]], str | None]


@dataclasses.dataclass(frozen=True)
class Step:
    """How the sandbox answers one create-sms-chat request.

    status: an error status (>= 300) answers with Retell's error body (429 adds
        `Retry-After: 1`); a 2xx or None serves the request normally with that status.
    delay: seconds to wait before answering (to trigger client timeouts).
    drop: close the connection without any response (after `delay`).
    lost_answer: take the request (the chat starts, the lead gets the text), then close the
        connection without answering: Retell's answer lost on the way back.
    answer_delay: take the request, then wait this many seconds before answering (a worker
        killed meanwhile never learns that Retell took it).
    body: a replacement response body (dict/list -> JSON, str/bytes sent as is).
    headers: extra response headers (they win over the defaults).
    """

    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    lost_answer: bool = False
    answer_delay: float = 0.0
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request as the sandbox received it; header names are lower-case."""

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


def parse_script(text: str) -> list[Step]:
    """`500,429,drop,delay=2.5` -> steps."""
    steps: list[Step] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        if item == "drop":
            steps.append(Step(drop=True))
        elif item.startswith("delay="):
            steps.append(Step(delay=float(item.removeprefix("delay="))))
        else:
            steps.append(Step(status=int(item)))
    return steps


class _Refusal(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    sandbox: Sandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client gave up (a scripted delay or drop): expected
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pgflow-sandbox/1.0"
    timeout = 30  # an idle keep-alive connection never pins a thread for long
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.sandbox._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.sandbox._handle(self)

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


class Sandbox:
    """A Retell look-alike on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        api_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        log_path: Path | str | None = None,
        webhook_attempts: int = 3,
        webhook_retry_delay: float = 1.0,
        numbers: list[str] | None = None,
        responder: Responder | None = None,
        unique_ids: bool = True,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.log_path = Path(log_path) if log_path is not None else None
        self.book = ChatBook(secrets.token_hex(4) if unique_ids else "")
        self.webhooks = WebhookSender(
            webhook_url, api_key, attempts=webhook_attempts, retry_delay=webhook_retry_delay
        )
        self.responder = responder
        for number in numbers or []:
            self.book.add_number(number)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._script: collections.deque[Step] = collections.deque()
        self._default: Step | None = None
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the sandbox is already started")
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.sandbox = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        self.webhooks.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        self.webhooks.stop()
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
            raise RuntimeError("the sandbox is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str | None:
        return self.webhooks.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.webhooks.url = url

    # --- scripting ------------------------------------------------------------------------

    def script(self, *steps: int | Step) -> None:
        """Queue answers for the next create-sms-chat requests, consumed in order."""
        with self._lock:
            self._script.extend(as_step(s) for s in steps)

    def set_default(self, step: int | Step | None) -> None:
        """How create-sms-chat answers once the script is exhausted (None: normally)."""
        with self._lock:
            self._default = None if step is None else as_step(step)

    def reset(self) -> None:
        """Forget requests, chats, phones, the script and the default."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._default = None
        self.book.clear()

    # --- inspection -----------------------------------------------------------------------

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
        with self.book.lock:
            return {chat_id: chat.public() for chat_id, chat in self.book.chats.items()}

    def phone(self, number: str) -> list[dict[str, Any]]:
        """What a lead's phone received and sent, in order."""
        return self.book.phone(number)

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
            f"sandbox at {self.host}:{self.port}: expected {n} request(s){where} "
            f"within {timeout}s, got {got}; all requests seen: {seen or 'none'}"
        )

    # --- webhooks (Retell -> us) -----------------------------------------------------------------

    def signed_webhook(
        self,
        payload: dict[str, Any],
        *,
        timestamp_ms: int | None = None,
        api_key: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers of a webhook as Retell would sign it."""
        body = self.webhooks.body(payload)
        if api_key is None:
            return body, self.webhooks.headers(body, timestamp_ms)
        other = WebhookSender(None, api_key)
        return body, other.headers(body, timestamp_ms)

    def post_webhook(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        timestamp_ms: int | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """POST a signed webhook now (sync); `headers` override the signed ones."""
        import httpx

        body, signed = self.signed_webhook(payload, timestamp_ms=timestamp_ms, api_key=api_key)
        signed.update(headers or {})
        with httpx.Client(timeout=timeout) as client:
            return client.post(url, content=body, headers=signed)

    def deliveries(self, event: str | None = None) -> list[Delivery]:
        return [d for d in self.webhooks.deliveries if event is None or d.event == event]

    # --- the lead's side and the chats ----------------------------------------------------

    def say(self, lead: str, line: str, text: str) -> dict[str, Any]:
        """The lead texts one of our numbers: into the ongoing chat, or, like Retell, a
        chat_inbound webhook first (a reject drops the text) and then a new chat."""
        if not E164.match(lead) or not E164.match(line):
            raise _Refusal(400, "from_number and to_number must be E.164 phone numbers")
        chat = self.book.open_chat(lead, line)
        if chat is None:
            answer = self.webhooks.call(
                {
                    "event": "chat_inbound",
                    "chat_inbound": {
                        "from_number": lead,
                        "to_number": line,
                        "agent_id": self._line_agent(line),
                    },
                }
            )
            inbound = answer.get("chat_inbound") if isinstance(answer, dict) else None
            inbound = inbound if isinstance(inbound, dict) else {}
            if inbound.get("reject") is True:
                self.book.to_phone(
                    PhoneText("from_lead", text, line, None, now_ms(), "rejected"), lead
                )
                return {"result": "rejected", "chat_id": None}
            variables = inbound.get("dynamic_variables")
            metadata = inbound.get("metadata")
            chat = self._new_chat(
                lead,
                line,
                agent_id=str(inbound.get("override_agent_id") or self._line_agent(line)),
                metadata=metadata if isinstance(metadata, dict) else {},
                variables=variables if isinstance(variables, dict) else {},
            )
            self._emit("chat_started", chat)
        with self.book.lock:
            chat.add("user", text, self.book.next_id("msg"))
        self.book.to_phone(PhoneText("from_lead", text, line, chat.chat_id, now_ms()), lead)
        self._emit("transcript_updated", chat)
        if self.responder is not None:
            reply = self.responder(chat.public())
            if reply:
                self._agent_text(chat, reply, self.book.next_id("msg"))
        return {"result": "delivered", "chat_id": chat.chat_id}

    def post_agent_message(self, chat_id: str, content: str, message_id: str | None) -> str:
        """Our agent's text into a live chat (what Retell does not allow, the sandbox does)."""
        with self.book.lock:
            chat = self.book.chats.get(chat_id)
            if chat is None:
                raise _Refusal(404, "Chat not found")
            if chat.status != "ongoing":
                raise _Refusal(409, "Chat has ended")
            if message_id and any(i["message_id"] == message_id for i in chat.items):
                return message_id  # a retried post: once only
        return self._agent_text(chat, content, message_id or self.book.next_id("msg"))

    def end_chat(self, chat_id: str) -> bool:
        with self.book.lock:
            chat = self.book.chats.get(chat_id)
            if chat is None:
                return False
            if chat.status != "ongoing":
                return True
            chat.status = "ended"
            chat.end_ms = now_ms()
        self._emit("chat_ended", chat)
        self._emit("chat_analyzed", chat)
        return True

    def _agent_text(self, chat: Chat, content: str, message_id: str) -> str:
        with self.book.lock:
            chat.add("agent", content, message_id)
        self.book.to_phone(
            PhoneText("to_lead", content, chat.line, chat.chat_id, now_ms()), chat.lead
        )
        self._emit("transcript_updated", chat)
        return message_id

    def _new_chat(
        self,
        lead: str,
        line: str,
        *,
        agent_id: str,
        metadata: dict[str, Any],
        variables: dict[str, Any],
    ) -> Chat:
        with self.book.lock:
            chat = Chat(
                chat_id=self.book.next_id("chat"),
                agent_id=agent_id,
                lead=lead,
                line=line,
                metadata=copy.deepcopy(metadata),
                variables={str(k): str(v) for k, v in variables.items()},
            )
            self.book.chats[chat.chat_id] = chat
        return chat

    def _line_agent(self, line: str) -> str:
        with self.book.lock:
            number = self.book.numbers.get(line) or {}
            agents = number.get("inbound_sms_agents") or []
        return str(agents[0]["agent_id"]) if agents else DEFAULT_AGENT_ID

    def _emit(self, event: str, chat: Chat) -> None:
        with self.book.lock:
            payload = {"event": event, "chat": chat.public()}
        self.webhooks.send(payload)

    # --- serving (handler threads) --------------------------------------------------------

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
        if _is_create(request.method, request.path):
            with self._lock:
                step = self._script.popleft() if self._script else self._default
            self._create(handler, request, step or Step())
            return
        if not self._authorized(request):
            handler.respond(401, error_body(401))
            return
        try:
            status, body = self._route(request)
        except _Refusal as refusal:
            handler.respond(refusal.status, error_body(refusal.status, refusal.message))
            return
        handler.respond(status, body)

    def _route(self, request: RecordedRequest) -> tuple[int, Any]:
        method, route = request.method, _route(request.path)
        body = request.json if isinstance(request.json, dict) else {}
        book = self.book
        if method == "GET" and route.startswith("/get-chat/"):
            with book.lock:
                chat = book.chats.get(route.removeprefix("/get-chat/"))
                if chat is None:
                    raise _Refusal(404, "Chat not found")
                return 200, chat.public()
        if method == "PATCH" and route.startswith("/end-chat/"):
            if not self.end_chat(route.removeprefix("/end-chat/")):
                raise _Refusal(404, "Chat not found")
            return 204, None
        if method == "POST" and route == "/v3/list-chats":
            return 200, self._list_chats(body)
        if method == "POST" and route.startswith("/sandbox/chats/") and route.endswith("/messages"):
            chat_id = route.removeprefix("/sandbox/chats/").removesuffix("/messages")
            content = body.get("content")
            if not isinstance(content, str) or not content.strip():
                raise _Refusal(400, "content must be a non-empty string")
            message_id = body.get("message_id")
            posted = self.post_agent_message(
                chat_id, content, message_id if isinstance(message_id, str) else None
            )
            return 200, {"chat_id": chat_id, "message_id": posted}
        if method == "POST" and route == "/sandbox/say":
            lead, line, text = body.get("from_number"), body.get("to_number"), body.get("text")
            if not all(isinstance(v, str) for v in (lead, line, text)):
                raise _Refusal(400, "from_number, to_number and text are required strings")
            return 200, self.say(str(lead), str(line), str(text))
        if method == "GET" and route.startswith("/sandbox/phones/"):
            number = route.removeprefix("/sandbox/phones/")
            return 200, {"number": number, "texts": self.phone(number)}
        if method == "POST" and route == "/sandbox/script":
            steps = parse_script(str(body.get("steps", "")))
            self.script(*steps)
            return 200, {"queued": len(steps)}
        return self._setup_route(method, route, body, request.path)

    def _setup_route(
        self, method: str, route: str, body: dict[str, Any], path: str
    ) -> tuple[int, Any]:
        """The Retell objects `pgflow retell setup` reads and writes."""
        book = self.book
        with book.lock:
            if method == "POST" and route == "/create-retell-llm":
                llm_id = book.next_id("llm")
                book.llms[llm_id] = {
                    "llm_id": llm_id,
                    "version": 0,
                    **body,
                    "last_modification_timestamp": now_ms(),
                }
                return 201, copy.deepcopy(book.llms[llm_id])
            if route.startswith(("/get-retell-llm/", "/update-retell-llm/")):
                llm_id = route.rsplit("/", 1)[1]
                if llm_id not in book.llms:
                    raise _Refusal(404, "LLM not found")
                if method == "PATCH":
                    book.llms[llm_id].update(body, last_modification_timestamp=now_ms())
                return 200, copy.deepcopy(book.llms[llm_id])
            if method == "GET" and route == "/v2/list-retell-llms":
                return 200, {"items": copy.deepcopy(list(book.llms.values())), "has_more": False}
            if method == "POST" and route == "/create-chat-agent":
                if not isinstance(body.get("response_engine"), dict):
                    raise _Refusal(400, "response_engine is required")
                agent_id = book.next_id("agent")
                book.agents[agent_id] = {
                    "agent_id": agent_id,
                    "channel": "chat",
                    "version": 0,
                    **body,
                    "last_modification_timestamp": now_ms(),
                }
                return 201, copy.deepcopy(book.agents[agent_id])
            if route.startswith(("/get-chat-agent/", "/update-chat-agent/")):
                agent_id = route.rsplit("/", 1)[1]
                if agent_id not in book.agents:
                    raise _Refusal(404, "Agent not found")
                if method == "PATCH":
                    book.agents[agent_id].update(body, last_modification_timestamp=now_ms())
                return 200, copy.deepcopy(book.agents[agent_id])
            if method == "POST" and route == "/v2/list-agents":
                return 200, {"items": copy.deepcopy(list(book.agents.values())), "has_more": False}
            if method == "GET" and route == "/v2/list-phone-numbers":
                return 200, {"items": copy.deepcopy(list(book.numbers.values())), "has_more": False}
            if route.startswith(("/get-phone-number/", "/update-phone-number/")):
                number = unquote(route.rsplit("/", 1)[1])
                if number not in book.numbers:
                    raise _Refusal(404, "Phone number not found")
                if method == "PATCH":
                    return 200, book.add_number(
                        number, **body, last_modification_timestamp=now_ms()
                    )
                return 200, copy.deepcopy(book.numbers[number])
        raise _Refusal(404, f"No route for {method} {path}")

    def _list_chats(self, body: dict[str, Any]) -> dict[str, Any]:
        criteria = (
            body.get("filter_criteria") if isinstance(body.get("filter_criteria"), dict) else {}
        )
        assert isinstance(criteria, dict)

        def wanted(chat: Chat) -> bool:
            for key, attr in (("user_number", chat.lead), ("agent_number", chat.line)):
                rule = criteria.get(key)
                if isinstance(rule, dict) and rule.get("value") != attr:
                    return False
            return True

        with self.book.lock:
            found = sorted(
                (c for c in self.book.chats.values() if wanted(c)),
                key=lambda c: c.start_ms,
                reverse=True,
            )
            items = []
            for chat in found:
                item = chat.public()
                for omitted in ("transcript", "message_with_tool_calls"):
                    item.pop(omitted, None)
                items.append(item)
        return {"items": items, "has_more": False}

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
        lead, line = str(payload["to_number"]), str(payload["from_number"])
        if line not in self.book.numbers:
            self.book.add_number(line)
        chat = self._new_chat(
            lead,
            line,
            agent_id=str(payload.get("override_agent_id") or DEFAULT_AGENT_ID),
            metadata=payload.get("metadata") or {},
            variables=variables,
        )
        # The agent's begin_message is {{sms_body}}: the first text is ours, word for word.
        first = variables.get("sms_body", "{{sms_body}}")
        with self.book.lock:
            chat.add("agent", first, self.book.next_id("msg"))
            answer = chat.public()
        self.book.to_phone(PhoneText("to_lead", first, line, chat.chat_id, now_ms()), lead)
        self._emit("chat_started", chat)  # queued before the answer: events keep their order
        if step.answer_delay > 0 and self._stopping.wait(step.answer_delay):
            handler.drop()
            return
        if step.lost_answer:
            handler.drop()
            return
        status = step.status if step.status is not None else 200
        handler.respond(status, answer if step.body is None else step.body, step.headers)

    def _authorized(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"


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


def serve_forever(sandbox: Sandbox, *, announce: Callable[[str], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT (the main thread's signals), announcing the URL first."""
    import signal

    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with sandbox:
            (announce or (lambda url: print(f"READY {url}", flush=True)))(sandbox.url)
            while not done.wait(1.0):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

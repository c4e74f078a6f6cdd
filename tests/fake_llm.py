"""A fake OpenAI-compatible LLM: a real HTTP server on 127.0.0.1 in a background thread
(stdlib only), so LLM calls in tests never leave the machine.

In a test:

    with FakeLLM() as llm:
        llm.script("Hi Ann!", {"intent": "stop"}, Reply(status=429), Reply(delay=2.0))
        llm.set_default("ok")                          # once the script is used up
        llm.responder = lambda req: req["messages"][-1]["content"].upper()
        litellm.completion(model="openai/fake-model", api_base=llm.api_base,
                           api_key="sk-test", messages=[...])
        [body] = llm.completions()                     # the JSON bodies the fake saw

An answer is a `str` (the assistant's content), a `dict` (sent as its JSON text: handy for
JSON-mode replies), an `int` (shorthand for `Reply(status=...)`) or a `Reply` (errors,
delays, dropped connections, raw bodies). A chat completion takes the next scripted answer;
with the script empty it asks `responder(request_json)` (which may return None to pass),
then uses the default, then answers "ok". `response_format` is only recorded: the content
is whatever was scripted.

As a process (for tests that run the worker or the web server as a subprocess):

    python -m tests.fake_llm --port 0 [--default TEXT] [--script ANSWER ...] [--log F]

prints `READY <url>` once it listens and serves until SIGTERM; every request it sees is
appended to the log file as one JSON line. `--script` tokens: an integer is a status,
`drop` drops the connection, `delay=SECONDS` delays an "ok", anything else is content.

Endpoints: `POST /v1/chat/completions` (an OpenAI `chat.completion`; `stream: true` is
refused with a 400) and `GET /v1/models`; anything else is 404. Errors use OpenAI's body
`{"error": {"message", "type", "param", "code"}}`; 429 adds `Retry-After: 1`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import itertools
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeAlias
from urllib.parse import unquote, urlsplit

COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
DEFAULT_CONTENT = "ok"
STREAM_REFUSED = "streaming is not supported by FakeLLM"

# status -> (message, type, code), as OpenAI words them
ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request", "invalid_request_error", None),
    401: ("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource", "invalid_request_error", None),
    404: ("Not found", "invalid_request_error", None),
    408: ("Request timed out", "timeout", None),
    409: ("Conflict", "invalid_request_error", None),
    422: ("Unprocessable entity", "invalid_request_error", None),
    429: ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway", "server_error", None),
    503: ("The engine is currently overloaded, please try again later", "server_error", None),
    504: ("Gateway timeout", "server_error", None),
}


@dataclasses.dataclass(frozen=True)
class Reply:
    """How the fake answers one chat completion.

    status: an error status (>= 300) answers with OpenAI's error body (429 adds
        `Retry-After: 1`); 200 serves a chat.completion with that status.
    content: the assistant's content (a dict is sent as its JSON text); None: "ok".
    delay: seconds to wait before answering (to trigger client timeouts); the wait ends
        early, dropping the connection, when the server stops.
    drop: close the connection without any response (after `delay`).
    body: a replacement response body (dict/list -> JSON, str/bytes sent as is).
    headers: extra response headers (they win over the defaults).
    finish_reason: the choice's finish_reason (e.g. "length").
    """

    status: int = 200
    content: str | dict[str, Any] | None = None
    delay: float = 0.0
    drop: bool = False
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    finish_reason: str = "stop"


Answer: TypeAlias = str | int | dict[str, Any] | Reply
Responder: TypeAlias = Callable[[dict[str, Any]], Answer | None]


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


def as_reply(answer: Answer) -> Reply:
    """Any answer as a Reply; a TypeError names what is not an answer."""
    if isinstance(answer, Reply):
        return answer
    if isinstance(answer, bool):  # an int, but surely a mistake
        raise TypeError(f"not a FakeLLM answer: {answer!r}")
    if isinstance(answer, int):
        return Reply(status=answer)
    if isinstance(answer, str | dict):
        return Reply(content=answer)
    raise TypeError(f"not a FakeLLM answer: {answer!r} (expected str, dict, int status or Reply)")


def error_body(
    status: int, message: str | None = None, *, code: str | None = None
) -> dict[str, Any]:
    default_message, kind, default_code = ERRORS.get(
        status,
        (f"HTTP {status}", "server_error" if status >= 500 else "invalid_request_error", None),
    )
    return {
        "error": {
            "message": message or default_message,
            "type": kind,
            "param": None,
            "code": code or default_code,
        }
    }


def _text_of(content: Any) -> str:
    """The text of a message's content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeLLM

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client gave up (a scripted delay or drop): expected
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
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


class FakeLLM:
    """A scriptable OpenAI-compatible chat API on an ephemeral 127.0.0.1 port; see the
    module docstring. `api_key`: when given, requests without `Bearer <api_key>` get a 401."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = ("fake-model",),
        log_path: Path | str | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.models = list(models)
        self.log_path = Path(log_path) if log_path is not None else None
        self.responder: Responder | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._errors: list[BaseException] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._default: Reply | None = None
        self._ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FakeLLM already started")
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
            raise RuntimeError("FakeLLM is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What litellm's `api_base` takes for `model="openai/<name>"`."""
        return self.url + "/v1"

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *answers: Answer) -> None:
        """Queue answers for the next chat completions, consumed in order."""
        replies = [as_reply(a) for a in answers]
        with self._lock:
            self._script.extend(replies)

    def set_default(self, answer: Answer | None) -> None:
        """The answer once the script is used up and the responder passes (None: "ok")."""
        reply = None if answer is None else as_reply(answer)
        with self._lock:
            self._default = reply

    def reset(self) -> None:
        """Forget requests, responder errors, the script, the default and the responder."""
        with self._lock:
            self._requests.clear()
            self._errors.clear()
            self._script.clear()
            self._default = None
            self.responder = None

    # -- inspection ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def completions(self) -> list[Any]:
        """The JSON bodies of every `POST /v1/chat/completions`, whatever the answer was."""
        with self._lock:
            return [r.json for r in self._requests if _is_completion(r.method, r.path)]

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions the responder raised (each was answered with a 500)."""
        with self._lock:
            return list(self._errors)

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
            f"FakeLLM at {self.host}:{self.port}: expected {n} request(s){where} "
            f"within {timeout}s, got {got}; all requests seen: {seen or 'none'}"
        )

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
        if self.api_key is not None and not self._authorized(request):
            handler.respond(401, error_body(401))
        elif _is_completion(request.method, request.path):
            self._complete(handler, request)
        elif request.method == "GET" and route == MODELS_PATH:
            handler.respond(200, self._model_list())
        else:
            message = f"Invalid URL ({request.method} {route})"
            if route.endswith("/chat/completions"):
                message += f": the fake serves {COMPLETIONS_PATH} (api_base is url + '/v1')"
            handler.respond(404, error_body(404, message))

    def _complete(self, handler: _Handler, request: RecordedRequest) -> None:
        problem = _validate_completion(request)
        if problem is not None:  # refused before the script is touched
            handler.respond(400, error_body(400, problem))
            return
        payload: dict[str, Any] = request.json
        reply = self._next_reply(payload)
        if reply.delay > 0 and self._stopping.wait(reply.delay):
            handler.drop()  # stopping: don't hold the thread
            return
        if reply.drop:
            handler.drop()
            return
        if reply.status >= 300:
            headers = {"Retry-After": "1"} if reply.status == 429 else {}
            headers.update(reply.headers)
            body = error_body(reply.status) if reply.body is None else reply.body
            handler.respond(reply.status, body, headers)
            return
        if reply.body is not None:
            handler.respond(reply.status, reply.body, reply.headers)
            return
        content = DEFAULT_CONTENT if reply.content is None else reply.content
        text = content if isinstance(content, str) else json.dumps(content)
        handler.respond(reply.status, self._completion(payload, text, reply), reply.headers)

    def _next_reply(self, payload: dict[str, Any]) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
            responder, default = self.responder, self._default
        if responder is not None:
            try:
                answer = responder(copy.deepcopy(payload))  # the record stays as received
                if answer is not None:
                    return as_reply(answer)
            except Exception as exc:  # the test's bug: a 500 the test can see, and kept
                with self._lock:
                    self._errors.append(exc)
                return Reply(
                    status=500,
                    body=error_body(500, f"FakeLLM responder raised {exc!r}"),
                )
        return default or Reply()

    def _completion(self, payload: dict[str, Any], text: str, reply: Reply) -> dict[str, Any]:
        messages = payload.get("messages") or []
        prompt = sum(
            count_tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict)
        )
        completion = count_tokens(text)
        with self._lock:
            number = next(self._ids)
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model"),
            "system_fingerprint": "fp_fake_llm",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    def _model_list(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "fake-llm"}
                for name in self.models
            ],
        }

    def _authorized(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"


def _route(path: str) -> str:
    return unquote(urlsplit(path).path)


def _is_completion(method: str, path: str) -> bool:
    return method == "POST" and _route(path) == COMPLETIONS_PATH


def _validate_completion(request: RecordedRequest) -> str | None:
    """Why a chat completion body is refused, or None."""
    payload = request.json
    if payload is None and request.body:
        return "We could not parse the JSON body of your request."
    if not isinstance(payload, dict):
        return "The request body must be a JSON object."
    if payload.get("stream"):
        return STREAM_REFUSED
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return "you must provide a model parameter"
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    if not all(isinstance(m, dict) and "role" in m for m in messages):
        return "every message must be an object with a 'role'"
    return None


def parse_answer(token: str) -> Answer:
    """`500`, `drop`, `delay=2.5` or content (for the process mode's --script/--default)."""
    if token == "drop":
        return Reply(drop=True)
    if token.startswith("delay="):
        return Reply(delay=float(token.removeprefix("delay=")))
    if token.isdigit():
        return int(token)
    return token


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_llm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", help="refuse requests without this bearer key")
    parser.add_argument("--log", type=Path, help="append every request here as a JSON line")
    parser.add_argument(
        "--script",
        action="append",
        default=[],
        metavar="ANSWER",
        help="one answer (repeat the option): a status, drop, delay=SECONDS, or content",
    )
    parser.add_argument("--default", help="the answer once the script is used up")
    args = parser.parse_args(argv)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake = FakeLLM(api_key=args.api_key, host=args.host, port=args.port, log_path=args.log)
    fake.script(*(parse_answer(token) for token in args.script))
    if args.default is not None:
        fake.set_default(parse_answer(args.default))
    with fake:
        print(f"READY {fake.url}", flush=True)
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

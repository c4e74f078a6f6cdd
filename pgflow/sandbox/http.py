"""The sandbox's HTTP plumbing, on the standard library's `http.server` (a thread a
connection): the server and its handler, every request recorded as it arrived, Retell's
error body, and the three answers a handler gives (a response, no body, or a dropped
connection). What a request means is `api`'s."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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


def error_body(status: int, message: str | None = None) -> dict[str, str]:
    return {"status": "error", "message": message or ERROR_MESSAGES.get(status, f"HTTP {status}")}


class Refusal(Exception):
    """A request refused with Retell's error body (`message` None: the status's usual one)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def route_of(path: str) -> str:
    """The request path without its query, percent-decoded."""
    return unquote(urlsplit(path).path)


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


class Recorder:
    """Every request received, in order; each also appended to `log_path` as a JSON line."""

    def __init__(self, log_path: Path | None) -> None:
        self.log_path = log_path
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def clear(self) -> None:
        with self._cond:
            self._requests.clear()

    def record(self, handler: Handler) -> RecordedRequest:
        """Read the handler's request (its body too) and keep it."""
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
        with self._cond:
            self._requests.append(request)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(request.as_json()) + "\n")
            self._cond.notify_all()
        return request

    def wait_for(
        self, n: int, timeout: float, path: str | None, name: str
    ) -> list[RecordedRequest]:
        """Block until at least `n` requests (to `path`, if given) arrived; return them.
        `name` says whose requests in the AssertionError raised after `timeout` seconds."""

        def matching() -> list[RecordedRequest]:
            return [r for r in self._requests if path is None or route_of(r.path) == path]

        with self._cond:
            if self._cond.wait_for(lambda: len(matching()) >= n, timeout=timeout):
                return matching()
            got = len(matching())
            seen = [f"{r.method} {r.path}" for r in self._requests]
        where = f" to {path}" if path else ""
        raise AssertionError(
            f"{name}: expected {n} request(s){where} "
            f"within {timeout}s, got {got}; all requests seen: {seen or 'none'}"
        )


class Server(ThreadingHTTPServer):
    """Serves in a thread of its own; `app` answers every request. Open connections are
    tracked so that `stop()` ends idle keep-alive ones at once."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Callable[[Handler], None]) -> None:
        super().__init__(address, Handler)
        self.app = app
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections end now
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client gave up (a scripted delay or drop): expected
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pgflow-sandbox/1.0"
    timeout = 30  # an idle keep-alive connection never pins a thread for long
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.app(self)

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

    def refuse(self, status: int, message: str | None = None) -> None:
        """Answer with Retell's error body."""
        self.respond(status, error_body(status, message))

    def drop(self) -> None:
        """Close the connection without an answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

"""Real processes and servers for tests: the worker daemon, started as an operator would
start it, and the web app under a real uvicorn."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

import httpx
import uvicorn

from pgflow.config import Settings
from pgflow.web.app import create_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll an effect of another process until it holds (not a stand-in for time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without our settings (the test gives its own), plus
    `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PGFLOW_", "RETELL_", "DATABASE_URL"))
    }
    return {**env, **extra}


class PgflowProcess:
    """A `pgflow` command in a subprocess; its log lines are collected as they arrive."""

    started_event = '"event": "worker.started"'

    def __init__(
        self,
        database_url: str,
        *args: str,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        cwd: str | os.PathLike[str] = ROOT,
    ) -> None:
        """`command`: how to run pgflow (default: this interpreter on the checkout's code);
        `cwd`: the folder it runs in."""
        full_env = clean_env(DATABASE_URL=database_url, PYTHONUNBUFFERED="1", **(env or {}))
        self.command = args[0] if args else "pgflow"
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "pgflow.cli.main"]), *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, needle: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"pgflow {self.command} never logged {needle!r}; output:\n"
                        + "\n".join(self.lines[-40:])
                    )
                self._cond.wait(min(left, 0.5))

    def started(self) -> Self:
        # A readiness wait that returns as soon as the line comes: a loaded 2-core machine
        # has taken over 15 s to import and start a worker (litellm alone is heavy).
        self.wait_for_line(self.started_event, timeout=60.0)
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


class WorkerProcess(PgflowProcess):
    """`pgflow worker` pointed at a (fake) Retell."""

    def __init__(
        self,
        database_url: str,
        retell_url: str,
        api_key: str,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        retell = {"RETELL_BASE_URL": retell_url, "RETELL_API_KEY": api_key}
        super().__init__(database_url, "worker", *args, env={**retell, **(env or {})})


class ServeProcess(PgflowProcess):
    """`pgflow serve` on a free port of 127.0.0.1; `url` once `started()`."""

    started_event = '"event": "web.started"'

    def __init__(
        self,
        database_url: str,
        *args: str,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        cwd: str | os.PathLike[str] = ROOT,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        port = ["--port", str(self.port)]
        super().__init__(database_url, "serve", *port, *args, env=env, command=command, cwd=cwd)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(
    settings: Settings, clock: dt.datetime | None = None, port: int = 0
) -> Iterator[httpx.Client]:
    """`pgflow serve`'s app under uvicorn on `port` (0: an ephemeral one) in a thread; a
    client for it.

    `clock` fixes the time ingest_lead sees (None: the database's now())."""
    app = create_app(settings, clock=None if clock is None else (lambda: clock))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:  # a readiness condition, not a stand-in for time
            assert thread.is_alive(), "uvicorn died during startup"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.005)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class CaptureServer:
    """A real HTTP server on 127.0.0.1 that records POSTed JSON and answers 204 (or, for
    the first requests, the given `statuses`)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        import http.server
        import json

        received: list[Any] = []
        answers = list(statuses or [])
        cond = threading.Condition()
        self.received = received
        self._cond = cond

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"null")
                with cond:
                    received.append(payload)
                    status = answers.pop(0) if answers else 204
                    cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= n, timeout):
                raise AssertionError(f"expected {n} POSTs, got {len(self.received)}")
            return list(self.received)

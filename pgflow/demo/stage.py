"""The servers the story plays on: the sandbox (Retell's and Twilio's APIs on 127.0.0.1, real
signed webhooks) in this process, `pgflow serve` and `pgflow worker` as child processes on free
ports, their logs in the run's folder. Everything started here dies with the demo."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from pgflow.config import SANDBOX_API_KEY
from pgflow.demo.local import DemoError
from pgflow.sandbox import Sandbox

LEAD_TOKEN = "demo-lead-token"  # noqa: S105 - the local demo's own servers only
EVENTS_TOKEN = "demo-events-token"  # noqa: S105
START_WAIT = 30.0  # seconds the web server and the worker may take to be ready


class Child:
    """A `pgflow` command in a child process, its output in a log file; it dies with us."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pgflow.cli.main", *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the demo dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Stage:
    """The sandbox, the web server and the worker; `http` is the story's client."""

    def __init__(self, port: int = 0) -> None:
        self.port = port  # the web server's; 0: a free one
        self.children: list[Child] = []
        self.sandbox: Sandbox | None = None
        self.web_url = ""
        self.database_url = ""
        self.http = httpx.Client(timeout=15)
        # signs the console's cookies for this run only (a new one each demo)
        self.console_secret = secrets.token_urlsafe(32)

    def start(self, url: str, run_dir: Path, twilio_numbers: list[str] | None = None) -> None:
        """Everything up and ready against the database at `url`; `twilio_numbers` are the
        lines the sandbox plays Twilio on (their texts and receipts reach /webhooks/twilio/*)."""
        web_port = self.port or free_port()
        self.web_url = f"http://127.0.0.1:{web_port}"
        self.database_url = url
        self.sandbox = Sandbox(
            SANDBOX_API_KEY,
            webhook_url=f"{self.web_url}/webhooks/retell",
            webhook_retry_delay=0.5,
            public_url=self.web_url,
            twilio_numbers=twilio_numbers,
        ).start()
        self.sandbox.script(500)  # Retell's first answer fails: one send is retried
        env = self.child_env(url)
        self.children.append(
            Child("serve", ["serve", "--port", str(web_port)], env, run_dir / "serve.log")
        )
        self.children.append(
            Child(
                "worker",
                ["worker", "--poll", "0.5", "--retry-base", "1", "--concurrency", "10"],
                env,
                run_dir / "worker.log",
            )
        )
        self.wait_ready(run_dir)

    def run_cli(self, args: list[str], user: str) -> str:
        """A `pgflow` command as the OS user `user` would run it (the CLI's actor is
        cli:<user>), against the demo's database; its output on one line. Raises when it
        fails."""
        env = {**self.child_env(self.database_url), "LOGNAME": user, "USER": user}
        run = subprocess.run(
            [sys.executable, "-m", "pgflow.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_WAIT,
            check=False,
        )
        said = " ".join(run.stdout.split())
        if run.returncode != 0:
            raise DemoError(f"pgflow {args[0]} {args[1]} failed: {said} {run.stderr[-500:]}")
        return said

    @property
    def sandbox_url(self) -> str:
        return self.sandbox.url if self.sandbox is not None else ""

    def child_env(self, url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGFLOW_", "RETELL_"))}
        env.update(
            DATABASE_URL=url,
            PGFLOW_SMS_TRANSPORT="sandbox",
            RETELL_BASE_URL=self.sandbox_url,
            RETELL_API_KEY=SANDBOX_API_KEY,
            PGFLOW_LEAD_TOKEN=LEAD_TOKEN,
            PGFLOW_EVENTS_TOKEN=EVENTS_TOKEN,
            PGFLOW_CONSOLE_SECRET=self.console_secret,
            # where Twilio (the sandbox) calls us: its signatures are over this URL
            PGFLOW_PUBLIC_URL=self.web_url,
            PGFLOW_LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        for name in ("PGFLOW_LLM_MODEL", "PGFLOW_LLM_API_BASE"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        return env

    def wait_ready(self, run_dir: Path) -> None:
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            dead = self.dead()
            if dead is not None:
                tail = dead.log.read_text()[-800:]
                raise DemoError(f"pgflow {dead.name} exited; its log ends:\n{tail}")
            worker_up = "worker.started" in (run_dir / "worker.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if worker_up and self.http.get(f"{self.web_url}/readyz").status_code == 200:
                    return
            time.sleep(0.1)
        raise DemoError(f"the web server or the worker did not start within {START_WAIT:.0f} s")

    def dead(self) -> Child | None:
        """A child that exited, if any."""
        return next((child for child in self.children if not child.alive()), None)

    def check(self) -> None:
        """Raises if a child exited while the story runs."""
        dead = self.dead()
        if dead is not None:
            raise DemoError(f"pgflow {dead.name} exited during the demo ({dead.log})")

    def hold(self) -> None:
        """Until SIGINT or SIGTERM, everything stays up (raises if a child exits)."""
        done = threading.Event()
        previous = {
            s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            while not done.wait(0.5):
                dead = self.dead()
                if dead is not None:
                    raise DemoError(f"pgflow {dead.name} exited ({dead.log})")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Everything started here stopped (again: nothing happens)."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        self.http.close()

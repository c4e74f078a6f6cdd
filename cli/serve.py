"""`pgflow serve`: the HTTP endpoints (webhooks, health probes, metrics) and the console."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import typer
import uvicorn

from pgflow.web.app import create_app

from .common import configure_logging, fail, settings


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, min=0, max=65535, help="TCP port (0: any free port)."),
    console_host: str = typer.Option(
        "127.0.0.1", help="Interface of the console's own listener (with --console-port)."
    ),
    console_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        help="Serve /console on this port of --console-host instead of beside the webhooks.",
    ),
    no_console: bool = typer.Option(False, "--no-console", help="Serve no /console at all."),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Serve the webhooks, /healthz, /readyz, /metrics and the console until SIGTERM.

    The console (/console) is served beside the webhooks by default.

    --console-port gives it a listener of its own, e.g. on an internal interface.

    --no-console serves no console at all.

    SIGTERM/SIGINT stop accepting connections and let requests in flight finish."""
    if no_console and console_port is not None:
        fail("--no-console and --console-port contradict each other: choose one")
    config = settings()
    configure_logging(log_level, config)
    split = console_port is not None
    servers = [
        _server(create_app(config, console=not (no_console or split)), host, port, log_level)
    ]
    if split:
        assert console_port is not None
        console = create_app(config, webhooks=False, console=True)
        servers.append(_server(console, console_host, console_port, log_level))
    if len(servers) == 1:
        _DrainingServer(servers[0]).run()
        return
    asyncio.run(_serve_all([_QuietServer(s) for s in servers]))


def _server(app: object, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,  # keep the CLI's logging set-up (JSON lines on stderr)
        log_level=log_level.lower(),
        access_log=False,  # the app logs its own events; access lines would repeat them
        lifespan="on",  # a failing start-up stops the server instead of serving without a pool
        server_header=False,
    )


async def _serve_all(servers: list[_QuietServer]) -> None:
    """Two listeners in one process: SIGTERM/SIGINT drain both."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve() for server in servers))


class _QuietServer(uvicorn.Server):
    """A server that leaves the signals to `_serve_all`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _DrainingServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process dies by
    the signal; after a clean drain `pgflow serve` exits 0, like `pgflow worker`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()

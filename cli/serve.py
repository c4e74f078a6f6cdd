"""`pgflow serve`: the HTTP endpoints (lead webhook, health probes, metrics)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
import uvicorn

from pgflow.web.app import create_app

from .common import configure_logging, settings


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, min=0, max=65535, help="TCP port (0: any free port)."),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Serve POST /webhooks/leads, /healthz, /readyz and /metrics until SIGTERM.

    SIGTERM/SIGINT stop accepting connections and let requests in flight finish."""
    config = settings()
    configure_logging(log_level, config)
    app = create_app(config)
    server = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the CLI's logging set-up (JSON lines on stderr)
        log_level=log_level.lower(),
        access_log=False,  # the app logs its own events; access lines would repeat them
        lifespan="on",  # a failing start-up stops the server instead of serving without a pool
        server_header=False,
    )
    _DrainingServer(server).run()


class _DrainingServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process dies by
    the signal; after a clean drain `pgflow serve` exits 0, like `pgflow worker`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()

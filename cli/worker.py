"""`pgflow worker`: the queue daemon."""

from __future__ import annotations

import typer
import uvloop

from pgflow import worker as worker_runtime
from pgflow.errors import PgflowError

from .common import configure_logging, fail, settings


def worker(
    concurrency: int = typer.Option(20, min=1, help="Jobs in flight at once."),
    poll: float = typer.Option(5.0, min=0.1, help="Seconds between polls (NOTIFY wakes sooner)."),
    heartbeat_timeout: float = typer.Option(
        30.0, min=1.0, help="Seconds before a dead worker's job is picked up again."
    ),
    retry_base: float = typer.Option(30.0, min=0.01, help="First retry delay in seconds."),
    send_timeout: float = typer.Option(15.0, min=0.1, help="Seconds to wait for Retell."),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Run the queue worker (send_sms, deliver_alert) until SIGTERM."""
    config = settings()
    configure_logging(log_level, config)
    options = worker_runtime.WorkerOptions(
        concurrency=concurrency,
        poll_seconds=poll,
        heartbeat_timeout_seconds=heartbeat_timeout,
        retry_base_seconds=retry_base,
        send_timeout_seconds=send_timeout,
    )
    try:
        uvloop.run(worker_runtime.run(config, options))
    except PgflowError as exc:
        fail(str(exc))

"""The worker daemon: a pgqueuer consumer running the jobs (send_sms, deliver_alert,
end_chat, agent_reply, judge_opt_out, classify_outcome).

Refuses to start on unapplied migrations or missing configuration. SIGTERM/SIGINT stop
claiming; in-flight jobs finish; then it exits. A heartbeat row in pgflow.workers shows it
is alive."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import socket
import uuid
from typing import Any

import httpx
import psycopg
from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
from pgqueuer.adapters.persistence.qb import (
    QueryBuilderEnvironment,
    QueryQueueBuilder,
    QuerySchedulerBuilder,
)
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.core.qm import QueueManager
from pgqueuer.domain.models import Job
from pgqueuer.domain.settings import DBSettings
from psycopg import AsyncRawCursor
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgflow import __version__, agent, db, logs, migrations, transport
from pgflow.config import Settings
from pgflow.errors import ConfigError, SchemaNotCurrent
from pgflow.jobs.agent_reply import agent_reply
from pgflow.jobs.classify_outcome import classify_outcome
from pgflow.jobs.context import JobContext
from pgflow.jobs.deliver_alert import deliver_alert
from pgflow.jobs.end_chat import end_chat
from pgflow.jobs.judge_opt_out import judge_opt_out
from pgflow.jobs.send_sms import send_sms

log = logging.getLogger("pgflow.worker")


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 20
    batch_size: int = 10
    poll_seconds: float = 5.0
    heartbeat_timeout_seconds: float = 30.0
    retry_base_seconds: float = 30.0
    send_timeout_seconds: float = 15.0


class _QueueDriver(PsycopgDriver):
    """pgqueuer's psycopg driver with its queries on pooled connections.

    The stock driver runs queries and LISTEN on one connection, and psycopg's notifies()
    holds that connection for up to a second, so a dequeue right after a NOTIFY waits for
    it. Here the dedicated connection only LISTENs; queries take a pooled connection."""

    def __init__(self, listen: psycopg.AsyncConnection[Any], pool: AsyncConnectionPool[Any]):
        super().__init__(listen)
        self._pool = pool

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        async with self._pool.connection() as conn:
            cursor = AsyncRawCursor(conn, row_factory=dict_row)
            await cursor.execute(query, args or None)
            return await cursor.fetchall()

    async def execute(self, query: str, *args: object) -> str:
        async with self._pool.connection() as conn:
            cursor = AsyncRawCursor(conn)
            await cursor.execute(query, args or None)
            return cursor.statusmessage or ""


def queue_settings() -> DBSettings:
    """pgqueuer's tables live in schema pgflow."""
    return DBSettings(db_schema="pgflow")


def job_id(job: Job) -> int:
    payload = json.loads(job.payload or b"{}")
    return int(payload["id"])


def check_startable(settings: Settings) -> None:
    if not settings.retell_api_key:
        raise ConfigError("RETELL_API_KEY is not set; the worker cannot send SMS without it")
    status = migrations.status(settings.database_url)
    if not status.current:
        raise SchemaNotCurrent(
            f"{len(status.pending)} migration(s) not applied ({', '.join(status.pending)}); "
            "run `pgflow db migrate` first"
        )


async def run(settings: Settings, options: WorkerOptions) -> None:
    check_startable(settings)
    assert settings.retell_api_key is not None
    worker_id = uuid.uuid4()
    pool = db.async_pool(
        settings.database_url,
        application="worker",
        max_size=max(4, min(options.concurrency, 20) + 3),
    )
    await pool.open(wait=True, timeout=30)
    timeout = httpx.Timeout(options.send_timeout_seconds, connect=5.0)
    connections = max(options.concurrency, 1)
    sms = transport.create(
        settings,
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
    queue_conn = await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, application_name="pgflow-worker-queue"
    )
    qs = queue_settings()
    queries = Queries(
        _QueueDriver(queue_conn, pool),
        qbe=QueryBuilderEnvironment(qs),
        qbq=QueryQueueBuilder(qs),
        qbs=QuerySchedulerBuilder(qs),
    )
    qm = QueueManager(queries)
    ctx = JobContext(pool, sms, worker_id, options.retry_base_seconds, agent=agent.create(settings))

    @qm.entrypoint("send_sms", on_failure="hold")
    async def _send_sms(job: Job) -> None:
        await send_sms(ctx, job_id(job))

    @qm.entrypoint("deliver_alert", on_failure="hold")
    async def _deliver_alert(job: Job) -> None:
        await deliver_alert(pool, http, settings.alert_webhook_url, job_id(job))

    @qm.entrypoint("end_chat", on_failure="hold")
    async def _end_chat(job: Job) -> None:
        await end_chat(ctx, job_id(job), job.attempts)

    @qm.entrypoint("agent_reply", on_failure="hold")
    async def _agent_reply(job: Job) -> None:
        await agent_reply(ctx, job_id(job), job.attempts)

    @qm.entrypoint("judge_opt_out", on_failure="hold")
    async def _judge_opt_out(job: Job) -> None:
        await judge_opt_out(ctx, job_id(job), job.attempts)

    @qm.entrypoint("classify_outcome", on_failure="hold")
    async def _classify_outcome(job: Job) -> None:
        await classify_outcome(ctx, job_id(job), job.attempts)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop, qm)
    host = socket.gethostname()

    async def heartbeat(stopping: bool = False) -> None:
        beat = db.worker_heartbeat(worker_id, host, os.getpid(), __version__, stopping)
        await beat.arun_in(pool)

    async def heartbeats() -> None:
        while True:
            await asyncio.sleep(10)
            try:
                await heartbeat()
            except psycopg.Error as exc:
                logs.event(log, "worker.heartbeat_failed", logging.WARNING, error=str(exc))

    await heartbeat()
    beat = asyncio.create_task(heartbeats())
    logs.event(
        log,
        "worker.started",
        worker_id=worker_id,
        pid=os.getpid(),
        concurrency=options.concurrency,
        poll_s=options.poll_seconds,
        transport=sms.name,
        agent=ctx.agent.name,
    )
    try:
        await qm.run(
            dequeue_timeout=dt.timedelta(seconds=options.poll_seconds),
            batch_size=options.batch_size,
            max_concurrent_tasks=max(options.concurrency, 2 * options.batch_size),
            heartbeat_timeout=dt.timedelta(seconds=options.heartbeat_timeout_seconds),
        )
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        with contextlib.suppress(psycopg.Error):
            await heartbeat(stopping=True)
        await sms.aclose()
        await ctx.agent.aclose()
        await http.aclose()
        await pool.close()
        await queue_conn.close()
        logs.event(log, "worker.stopped", worker_id=worker_id)


def _stop(qm: QueueManager) -> None:
    if not qm.shutdown.is_set():
        logs.event(log, "worker.stopping", reason="signal")
        qm.shutdown.set()

"""The worker daemon: a pgqueuer consumer running the jobs (send_sms, deliver_alert,
end_chat, agent_reply, judge_opt_out, classify_outcome, check_receipt).

Refuses to start on unapplied migrations or missing configuration. SIGTERM/SIGINT stop
claiming; in-flight jobs finish; then it exits. A heartbeat row in pgflow.workers shows it
is alive."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
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
from pgqueuer.domain.errors import FailingListenerError
from pgqueuer.domain.settings import DBSettings
from psycopg import AsyncRawCursor
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgflow import __version__, agent, db, logs, migrations, transport
from pgflow.config import Settings
from pgflow.errors import ConfigError, SchemaNotCurrent, first_line
from pgflow.jobs.context import JobContext, backoff
from pgflow.jobs.entrypoints import register

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
    it. Here the dedicated connection only LISTENs; queries take a pooled connection.

    The stock watcher dies quietly with its connection (queries on the pool still work, so
    the worker would go on by polling alone until pgqueuer's probe fails, up to 20 s
    later); here a lost LISTEN connection is kept in `lost` and `on_lost` is called at once,
    so that the consumer's life ends and a new one listens again."""

    def __init__(
        self,
        listen: psycopg.AsyncConnection[Any],
        pool: AsyncConnectionPool[Any],
        on_lost: Callable[[], None],
    ):
        super().__init__(listen)
        self._pool = pool
        self._on_lost = on_lost
        self.lost: psycopg.Error | OSError | None = None

    async def watch_notifies(self) -> None:
        try:
            await super().watch_notifies()
        except (psycopg.Error, OSError) as exc:
            self.lost = exc
            self._on_lost()

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


def worker_pool(url: str, options: WorkerOptions) -> AsyncConnectionPool[Any]:
    """The worker's connection pool (not opened): the jobs in flight, the queue's own
    queries and the heartbeat share it."""
    return db.async_pool(
        url, application="worker", max_size=max(4, min(options.concurrency, 20) + 3)
    )


def http_settings(options: WorkerOptions) -> tuple[httpx.Timeout, httpx.Limits]:
    """The SMS transport's timeout and connection limits (one keep-alive connection per
    concurrent job)."""
    connections = max(options.concurrency, 1)
    return (
        httpx.Timeout(options.send_timeout_seconds, connect=5.0),
        httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def queue_batch(options: WorkerOptions) -> tuple[int, int]:
    """pgqueuer's batch size and jobs in flight (max_concurrent_tasks) for these options.
    pgqueuer wants at least two batches of room: a small --concurrency takes smaller
    batches rather than more jobs in flight than it asked for (1 gives 2)."""
    batch = max(1, min(options.batch_size, options.concurrency // 2))
    return batch, max(options.concurrency, 2 * batch)


def check_startable(settings: Settings) -> None:
    """Refuse to start without a key or on a schema with pending migrations."""
    if not settings.retell_api_key:
        raise ConfigError("RETELL_API_KEY is not set; the worker cannot send SMS without it")
    status = migrations.status(settings.database_url)
    if not status.current:
        raise SchemaNotCurrent(
            f"{len(status.pending)} migration(s) not applied ({', '.join(status.pending)}); "
            "run `pgflow db migrate` first"
        )


async def wait_until_startable(settings: Settings, stopping: asyncio.Event) -> None:
    """check_startable(), waiting (with backoff) while the database cannot be reached: a
    daemon started before its database comes up waits for it."""
    failures = 0
    while True:
        try:
            await asyncio.to_thread(check_startable, settings)
            return
        except db.UNAVAILABLE as exc:
            failures += 1
            delay = backoff(failures)
            logs.event(
                log,
                "worker.waiting_for_database",
                logging.WARNING,
                error=first_line(exc),
                retry_in_s=round(delay, 1),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            if stopping.is_set():
                raise ConfigError("stopped while waiting for the database") from exc


async def run(settings: Settings, options: WorkerOptions) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    worker = Worker(settings, options, stopping)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await wait_until_startable(settings, stopping)
    await worker.serve()


class Worker:
    """The daemon: a heartbeat, and the queue consumer supervised so that a lost database
    (a restart, a failover, a network cut) is waited out and reconnected, never an exit.
    A job cut off mid-way is picked up again after the heartbeat timeout: a send left
    `sending` is recorded as interrupted and sent again by the normal claim."""

    def __init__(self, settings: Settings, options: WorkerOptions, stopping: asyncio.Event):
        self.settings = settings
        self.options = options
        self.stopping = stopping
        self.worker_id = uuid.uuid4()
        self.host = socket.gethostname()
        self.qm: QueueManager | None = None

    def stop(self) -> None:
        if not self.stopping.is_set():
            logs.event(log, "worker.stopping", reason="signal")
            self.stopping.set()
        if self.qm is not None and not self.qm.shutdown.is_set():
            self.qm.shutdown.set()

    async def serve(self) -> None:
        settings, options = self.settings, self.options
        pool = worker_pool(settings.database_url, options)
        await pool.open(wait=False)  # it reconnects by itself; the queue loop waits for it
        timeout, limits = http_settings(options)
        sms = transport.create(settings, timeout=timeout, limits=limits)
        twilio = transport.create_twilio(settings, timeout=timeout)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        ctx = JobContext(
            pool,
            sms,
            self.worker_id,
            options.retry_base_seconds,
            agent=agent.create(settings),
            twilio=twilio,
            stopping=self.stopping,
        )
        beat = asyncio.create_task(self._heartbeats(pool))
        logs.event(
            log,
            "worker.started",
            worker_id=self.worker_id,
            pid=os.getpid(),
            concurrency=options.concurrency,
            poll_s=options.poll_seconds,
            transport=sms.name,
            twilio=twilio is not None,
            agent=ctx.agent.name,
        )
        failures = 0
        try:
            while not self.stopping.is_set():
                began = time.monotonic()
                try:
                    await self._consume(pool, ctx, http)
                    if self.stopping.is_set():
                        break
                    logs.event(log, "worker.listener_lost", logging.WARNING)
                except (psycopg.Error, OSError) as exc:
                    logs.event(
                        log,
                        "worker.database_lost",
                        logging.ERROR,
                        error=f"{type(exc).__name__}: {first_line(exc)}",
                    )
                except FailingListenerError:
                    # pgqueuer's LISTEN probe went unanswered (a saturated or restarting
                    # database): a new listener, not an exit
                    logs.event(log, "worker.listener_unanswered", logging.WARNING)
                except Exception as exc:  # the daemon outlives a bug in one consumer life
                    log.exception("event=worker.consumer_failed error=%s", type(exc).__name__)
                if self.stopping.is_set():
                    break
                failures = 1 if time.monotonic() - began > 60 else failures + 1
                delay = backoff(failures)
                logs.event(
                    log, "worker.reconnecting", retry_in_s=round(delay, 2), failures=failures
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            with contextlib.suppress(psycopg.Error, OSError):
                await self._heartbeat(pool, stopping=True)
            await sms.aclose()
            if twilio is not None:
                await twilio.aclose()
            await ctx.agent.aclose()
            await http.aclose()
            await pool.close()
            logs.event(log, "worker.stopped", worker_id=self.worker_id)

    async def _consume(
        self, pool: AsyncConnectionPool[Any], ctx: JobContext, http: httpx.AsyncClient
    ) -> None:
        """One life of the queue consumer: its LISTEN connection and QueueManager, until it
        stops (a signal) or its database goes away (an exception)."""
        settings, options = self.settings, self.options
        await pool.wait(timeout=30)
        queue_conn = await psycopg.AsyncConnection.connect(
            settings.database_url,
            autocommit=True,
            application_name="pgflow-worker-queue",
            connect_timeout=10,
        )
        try:
            qs = queue_settings()
            driver = _QueueDriver(queue_conn, pool, on_lost=lambda: qm.shutdown.set())
            queries = Queries(
                driver,
                qbe=QueryBuilderEnvironment(qs),
                qbq=QueryQueueBuilder(qs),
                qbs=QuerySchedulerBuilder(qs),
            )
            qm = QueueManager(queries)
            register(qm, ctx, pool, http, settings.alert_webhook_url)
            self.qm = qm
            if self.stopping.is_set():
                return
            logs.event(log, "worker.consuming", worker_id=self.worker_id)
            batch, in_flight = queue_batch(options)
            await qm.run(
                dequeue_timeout=dt.timedelta(seconds=options.poll_seconds),
                batch_size=batch,
                max_concurrent_tasks=in_flight,
                heartbeat_timeout=dt.timedelta(seconds=options.heartbeat_timeout_seconds),
                shutdown_on_listener_failure=True,
            )
            if driver.lost is not None:
                raise driver.lost
        finally:
            self.qm = None
            with contextlib.suppress(psycopg.Error, OSError):
                await queue_conn.close()

    async def _heartbeat(self, pool: AsyncConnectionPool[Any], stopping: bool = False) -> None:
        beat = db.worker_heartbeat(self.worker_id, self.host, os.getpid(), __version__, stopping)
        await beat.arun_in(pool)

    async def _heartbeats(self, pool: AsyncConnectionPool[Any]) -> None:
        """Every 10 s: the worker's heartbeat, and a look at what should raise an alert (the
        worker watches pg_cron's tick, as the tick watches the workers)."""
        while True:
            try:
                await self._heartbeat(pool)
                await db.watch("worker").arun_in(pool)
            except (psycopg.Error, OSError) as exc:
                logs.event(log, "worker.heartbeat_failed", logging.WARNING, error=first_line(exc))
            await asyncio.sleep(HEARTBEAT_SECONDS)


HEARTBEAT_SECONDS = 10.0

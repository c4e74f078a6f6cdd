"""The worker's express lane: its dequeue takes only the texts someone is waiting for (a
new lead's first step, a conversation's replies), never the drip backlog; the main lane takes
them first too, then the rest."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import psycopg
from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
from pgqueuer.adapters.persistence.qb import (
    QueryBuilderEnvironment,
    QueryQueueBuilder,
    QuerySchedulerBuilder,
)
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.domain.types import QueueEntrypoint, QueueManagerId
from pgqueuer.ports.repository import EntrypointExecutionParameter

from pgflow import worker

Conn = psycopg.Connection[Any]
SEND = {QueueEntrypoint("send_sms"): EntrypointExecutionParameter(concurrency_limit=0)}


def queue(db: Conn, entrypoint: str, message_id: int, priority: int) -> None:
    db.execute(
        "select pgflow._enqueue(%s, array[%s]::bigint[], %s)", [entrypoint, message_id, priority]
    )


def dequeue(db_url: str, builder: QueryQueueBuilder, batch: int = 10) -> list[tuple[str, int]]:
    """One dequeue as a lane of a worker runs it: (entrypoint, priority) of what it took."""

    async def run() -> list[tuple[str, int]]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            settings = worker.queue_settings()
            queries = Queries(
                PsycopgDriver(conn),
                qbe=QueryBuilderEnvironment(settings),
                qbq=builder,
                qbs=QuerySchedulerBuilder(settings),
            )
            jobs = await queries.dequeue(
                batch_size=batch,
                entrypoints=SEND,
                queue_manager_id=QueueManagerId(uuid.uuid4()),
                global_concurrency_limit=2 * batch,
                heartbeat_timeout=dt.timedelta(seconds=30),
            )
            return [(job.entrypoint, job.priority) for job in jobs]

    return asyncio.run(run())


def test_the_express_lane_takes_only_texts_someone_waits_for(db: Conn, db_url: str) -> None:
    settings = worker.queue_settings()
    for i in range(3):
        queue(db, "send_sms", 100 + i, 0)  # the drip backlog
    queue(db, "send_sms", 200, 5)  # a retry
    queue(db, "send_sms", 300, worker.EXPRESS_PRIORITY)  # a new lead's first step
    queue(db, "send_sms", 400, 20)  # a system reply
    queue(db, "classify_outcome", 500, 30)  # not a text: never this lane's

    express = worker._ExpressQueueBuilder(settings)
    assert dequeue(db_url, express) == [("send_sms", 20), ("send_sms", worker.EXPRESS_PRIORITY)]
    assert dequeue(db_url, express) == []  # the backlog and the retry wait for the main lane
    # the main lane takes the rest, highest priority first
    main = QueryQueueBuilder(settings)
    assert dequeue(db_url, main, batch=2) == [("send_sms", 5), ("send_sms", 0)]


def test_the_main_lane_takes_waiting_texts_before_the_backlog(db: Conn, db_url: str) -> None:
    for i in range(3):
        queue(db, "send_sms", 100 + i, 0)
    queue(db, "send_sms", 300, worker.EXPRESS_PRIORITY)
    taken = dequeue(db_url, QueryQueueBuilder(worker.queue_settings()), batch=1)
    assert taken == [("send_sms", worker.EXPRESS_PRIORITY)]

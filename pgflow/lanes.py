"""The worker's two queue lanes: the main lane (every entrypoint, highest priority first)
and the express lane, narrowed to the texts someone is waiting for.

A worker busy with a backlog has every slot of its main lane taken, and pgqueuer sees a
slot free only when it writes finished jobs back (every batch or 0.1 s): a lead's first
text, though first in line, waited for that. The express lane's slots are never taken by
the backlog, so such a text is picked as soon as its NOTIFY arrives. Both lanes share the
LISTEN connection, the pool and the shutdown event."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Sequence
from typing import Any

from pgqueuer.adapters.persistence.composer import ComposedQuery
from pgqueuer.adapters.persistence.qb import QueryQueueBuilder
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.core.qm import QueueManager

# The express lane takes send_sms jobs of this priority and above: a new lead's first step
# (10, pgflow.ingest_lead) and the texts of a live conversation (15-20); the drip backlog
# (0) and retries (5) go through the main lane only.
EXPRESS_PRIORITY = 10
EXPRESS_ENTRYPOINTS = ("send_sms",)


class ExpressQueueBuilder(QueryQueueBuilder):
    """pgqueuer's dequeue, narrowed to jobs of priority EXPRESS_PRIORITY and above (fresh
    ones, and those a dead worker left)."""

    FILTERS = (
        ("candidate.status = 'queued'", "AND candidate.priority >= {}"),
        ("stale.status = 'picked'", "AND stale.priority >= {}"),
    )

    def build_dequeue_query(self, **kwargs: Any) -> ComposedQuery:
        query = super().build_dequeue_query(**kwargs)
        sql = query.sql
        for anchor, condition in self.FILTERS:
            if sql.count(anchor) != 1:  # pgqueuer's query changed: refuse, never take all
                raise RuntimeError(f"pgqueuer's dequeue query has no single {anchor!r}")
            sql = sql.replace(anchor, f"{anchor} {condition.format(EXPRESS_PRIORITY)}")
        return dataclasses.replace(query, sql=sql)


def express_manager(queries: Queries, main: QueueManager) -> QueueManager:
    """The express lane's manager: the main lane's queries (driver, LISTEN connection, pool)
    with the narrowed dequeue; it stops when the main lane does (one shutdown event)."""
    express = QueueManager(
        dataclasses.replace(queries, qbq=ExpressQueueBuilder(queries.qbq.settings))
    )
    express.shutdown = main.shutdown
    return express


async def run_express(
    express: QueueManager, slots: int, poll: dt.timedelta, heartbeat_timeout: dt.timedelta
) -> None:
    """One job per dequeue, so that each finished job frees its slot at once; no log
    aggregation of its own (the main lane does it)."""
    await express.run(
        dequeue_timeout=poll,
        batch_size=1,
        max_concurrent_tasks=max(slots, 2),
        heartbeat_timeout=heartbeat_timeout,
        shutdown_on_listener_failure=True,
        log_aggregation_interval=dt.timedelta(0),
    )


async def run_lanes(shutdown: asyncio.Event, lanes: Sequence[Awaitable[None]]) -> None:
    """The lanes' runs until all end; the first to fail stops the others (their shared
    shutdown) and its error is raised once they have."""
    tasks = [asyncio.ensure_future(lane) for lane in lanes]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        shutdown.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc

"""The dispatch_steps job: a lane of a backlog of due drip steps (the tick found its batch
full and queued one job per lane). It dispatches batch after batch, each in a transaction of
its own (pgflow.dispatch_due), while they come back full, so a backlog goes out as fast as
the database dispatches it. It ends when the lane is drained, when the worker is stopping, or
after `budget_seconds` (the next tick queues it again if steps are still due)."""

from __future__ import annotations

import logging
import time

from pgflow import db, logs
from pgflow.jobs.context import JobContext

log = logging.getLogger("pgflow.jobs.dispatch")

BATCH = 1000
BUDGET_SECONDS = 50.0


async def dispatch_steps(
    ctx: JobContext, lane: int, batch: int = BATCH, budget_seconds: float = BUDGET_SECONDS
) -> int:
    """Dispatch lane `lane` until it is drained (or the worker stops); how many were sent."""
    started = time.monotonic()
    sent = batches = 0
    more = True
    while more and not ctx.stopping.is_set():
        result = await db.dispatch_due(lane, batch, ctx.clock()).arun_in(ctx.pool)
        sent += int(result.get("sent", 0))
        batches += 1
        more = bool(result.get("more"))
        if time.monotonic() - started > budget_seconds:
            break
    logs.event(
        log,
        "dispatch.lane_done",
        lane=lane,
        batches=batches,
        sent=sent,
        drained=not more,
        seconds=round(time.monotonic() - started, 2),
    )
    return sent

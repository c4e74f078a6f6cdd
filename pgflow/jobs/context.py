"""What every job shares: the pool, the SMS transports, the agent, who we are, the clock."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import uuid
from collections.abc import Callable
from typing import Any

from pgqueuer.domain.errors import RetryRequested
from psycopg_pool import AsyncConnectionPool

from pgflow import db, logs
from pgflow.agent import Agent, OfflineAgent
from pgflow.jobs.batch import Attempt, Coalescer, batched
from pgflow.transport import SmsTransport
from pgflow.transport.twilio import TwilioClient

Clock = Callable[[], dt.datetime | None]


@dataclasses.dataclass
class JobContext:
    pool: AsyncConnectionPool[Any]
    transport: SmsTransport
    worker_id: uuid.UUID
    retry_base_seconds: float = 30.0
    agent: Agent = dataclasses.field(default_factory=OfflineAgent)
    # the campaigns on `transport: twilio` send through it (None: no Twilio account set)
    twilio: TwilioClient | None = None
    clock: Clock = lambda: None  # None: the database's now()
    max_job_attempts: int = 5  # agent and chat jobs give up after this many tries
    # set when the worker drains: a long job (a dispatch lane) ends between its batches
    stopping: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    # the send jobs that start together claim in one call; results close together are
    # recorded in one (a window of a few ms gathers them)
    record_window_seconds: float = 0.002
    claims: Coalescer[int, dict[str, Any]] = dataclasses.field(init=False)
    records: Coalescer[Attempt, dict[str, Any]] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.claims = Coalescer(batched(self._claim_many, self._claim_one))
        self.records = Coalescer(
            batched(self._record_many, self._record_one), window=self.record_window_seconds
        )

    async def _claim_many(self, ids: list[int]) -> list[dict[str, Any]]:
        return await db.claim_messages(ids, self.worker_id, self.clock()).arun_in(self.pool)

    async def _claim_one(self, message_id: int) -> dict[str, Any]:
        call = db.claim_message(message_id, self.worker_id, None, self.clock())
        return await call.arun_in(self.pool)

    async def _record_many(self, attempts: list[Attempt]) -> list[dict[str, Any]]:
        # not dataclasses.asdict: it deep-copies every result
        items = [
            {"message_id": a.message_id, "attempt": a.attempt, "result": a.result} for a in attempts
        ]
        call = db.record_sends(items, self.retry_base_seconds, self.clock())
        return await call.arun_in(self.pool)

    async def _record_one(self, a: Attempt) -> dict[str, Any]:
        call = db.record_send(
            a.message_id, a.attempt, a.result, self.retry_base_seconds, self.clock()
        )
        return await call.arun_in(self.pool)

    @property
    def job_retry_base(self) -> float:
        """The first backoff of the other jobs: a tenth of the send's (3 s by default)."""
        return self.retry_base_seconds / 10

    def retry_or_give_up(
        self,
        log: logging.Logger,
        event: str,
        attempts: int,
        reason: str,
        *,
        cause: Exception | None = None,
        retryable: bool = True,
        error: str | None = None,
        **fields: Any,
    ) -> None:
        """A job's call failed: log `event` (`fields`, the attempt, the error), then raise
        the backoff's retry while attempts are left. When this returns, the job gives up."""
        logs.event(log, event, logging.WARNING, **fields, attempt=attempts + 1, error=error)
        if retryable and attempts + 1 < self.max_job_attempts:
            raise retry_later(attempts, self.job_retry_base, reason) from cause


def retry_later(attempts: int, base: float, reason: str) -> RetryRequested:
    """Exponential backoff for a job that failed for a passing reason."""
    delay = min(3600.0, base * 2 ** max(0, attempts))
    return RetryRequested(delay=dt.timedelta(seconds=delay), reason=reason)


def backoff(failures: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter: workers that lost the same database do not all
    come back in the same instant."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2.0 ** min(failures, 10))

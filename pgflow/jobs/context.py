"""What every job shares: the pool, the SMS transport, the agent, who we are, the clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from pgqueuer.domain.errors import RetryRequested
from psycopg_pool import AsyncConnectionPool

from pgflow.agent import Agent, OfflineAgent
from pgflow.transport import SmsTransport

Clock = Callable[[], dt.datetime | None]


@dataclasses.dataclass
class JobContext:
    pool: AsyncConnectionPool[Any]
    transport: SmsTransport
    worker_id: uuid.UUID
    retry_base_seconds: float = 30.0
    agent: Agent = dataclasses.field(default_factory=OfflineAgent)
    clock: Clock = lambda: None  # None: the database's now()
    max_job_attempts: int = 5  # agent and chat jobs give up after this many tries

    @property
    def job_retry_base(self) -> float:
        """The first backoff of the other jobs: a tenth of the send's (3 s by default)."""
        return self.retry_base_seconds / 10


def retry_later(attempts: int, base: float, reason: str) -> RetryRequested:
    """Exponential backoff for a job that failed for a passing reason."""
    delay = min(3600.0, base * 2 ** max(0, attempts))
    return RetryRequested(delay=dt.timedelta(seconds=delay), reason=reason)

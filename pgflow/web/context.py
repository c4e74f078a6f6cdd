"""What every handler shares: settings, the connection pool, the clock, the metrics."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from pgflow.config import Settings
from pgflow.web.instruments import Metrics

Clock = Callable[[], dt.datetime]

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CONNECTION_TIMEOUT = 10.0  # seconds a webhook waits for a pooled connection
PROBE_TIMEOUT = 2.0  # seconds /readyz and /metrics wait for one


@dataclasses.dataclass
class Web:
    settings: Settings
    metrics: Metrics
    clock: Clock | None = None
    pool_: AsyncConnectionPool[Any] | None = None

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self.pool_ is None:
            raise RuntimeError("the app's lifespan has not started (no connection pool)")
        return self.pool_

    def now(self) -> dt.datetime | None:
        """The injected time (tests), or None: the database's now()."""
        return None if self.clock is None else self.clock()

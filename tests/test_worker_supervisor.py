"""The worker's supervisor: whatever ends one life of the queue consumer (a lost database,
pgqueuer's unanswered LISTEN probe, a bug), the daemon logs it, waits and starts another,
until it is told to stop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pgqueuer.domain.errors import FailingListenerError

from pgflow import worker
from pgflow.config import Settings


def test_the_consumer_is_restarted_whatever_ended_it(
    db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ends: list[BaseException] = [
        FailingListenerError(),
        OSError("connection reset"),
        RuntimeError("a bug"),
    ]
    lives = 0

    async def consume(self: worker.Worker, *args: Any) -> None:
        nonlocal lives
        lives += 1
        if ends:
            raise ends.pop(0)
        self.stop()

    monkeypatch.setattr(worker.Worker, "_consume", consume)
    monkeypatch.setattr(worker, "backoff", lambda failures, **kw: 0.01)
    settings = Settings.from_env(
        {"DATABASE_URL": db_url, "RETELL_API_KEY": "k", "RETELL_BASE_URL": "http://127.0.0.1:9"},
        dotenv=None,
    )
    daemon = worker.Worker(settings, worker.WorkerOptions(), asyncio.Event())
    with caplog.at_level(logging.INFO, logger="pgflow.worker"):
        asyncio.run(asyncio.wait_for(daemon.serve(), 30))
    assert lives == 4
    messages = [r.getMessage() for r in caplog.records]
    for needle in (
        "worker.listener_unanswered",
        "worker.database_lost",
        "event=worker.consumer_failed error=RuntimeError",
        "worker.stopped",
    ):
        assert any(needle in m for m in messages), (needle, messages)
    assert sum("worker.reconnecting" in m for m in messages) == 3

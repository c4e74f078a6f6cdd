"""Scale out: two worker processes drain one queue (drips and the first texts of new leads
arriving meanwhile) with no message sent twice and every message sent."""

from __future__ import annotations

import collections
import datetime as dt
from typing import Any

import psycopg
import pytest

from tests.factories import apply_campaign, ingest
from tests.fake_retell import FakeRetell
from tests.helpers import rows, scalar
from tests.processes import WorkerProcess, wait_until

Conn = psycopg.Connection[Any]
pytestmark = [pytest.mark.slow, pytest.mark.real_clock]
QUEUED = 300  # drip messages waiting when the workers start
LEADS = 40  # new leads arriving while they drain


def test_two_workers_drain_one_queue_without_sending_twice(db_url: str, db: Conn) -> None:
    apply_campaign(db, window_start="00:00", window_end="24:00", daily_cap=50)
    db.execute(
        "insert into pgflow.contacts (phone, first_name, timezone)"
        " select '+1212' || lpad(g::text, 7, '0'), 'Lead' || g, 'America/New_York'"
        " from generate_series(1, %s) g",
        [QUEUED],
    )
    db.execute(
        "insert into pgflow.enrollments (contact_id, campaign_id, next_step, next_message_at)"
        " select id, (select id from pgflow.campaigns), 1, now() from pgflow.contacts"
    )
    assert scalar(db, "select (pgflow.tick(now()) ->> 'sent')::int") == QUEUED
    with FakeRetell(api_key="k") as fake:
        args = ("--concurrency", "10", "--poll", "0.2", "--retry-base", "0.05")
        workers = [WorkerProcess(db_url, fake.url, fake.api_key, *args) for _ in range(2)]
        try:
            for worker in workers:
                worker.started()
            for n in range(LEADS):  # leads keep coming while both drain the backlog
                ingest(db, f"+1415555{n:04d}", dt.datetime.now(dt.UTC))
            total = QUEUED + LEADS
            wait_until(
                lambda: (
                    scalar(
                        db, "select count(*) from pgflow.messages where delivery_status = 'sent'"
                    )
                    == total
                ),
                timeout=60,
                what=f"{total} sent",
            )
        finally:
            for worker in workers:
                worker.stop()
        creates = [r.json["metadata"]["pgflow_message_id"] for r in fake.sms_requests()]
    repeated = {m: n for m, n in collections.Counter(creates).items() if n > 1}
    assert repeated == {}  # no message reached Retell twice
    assert len(creates) == total
    assert rows(db, "select count(*) from pgflow.message_attempts where attempt > 1") == [(0,)]
    # both took a share of the work
    shares = rows(
        db, "select worker_id, count(*) from pgflow.message_attempts group by 1 order by 2"
    )
    assert len(shares) == 2
    assert min(n for _, n in shares) > total // 10, shares

"""The worker outlives its database: the test cluster is restarted (a fast shutdown cuts
every connection, as a failover does) under a running worker, which waits, reconnects and
drains the queue without exiting, losing or double-sending."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from typing import Any

import psycopg
import pytest

from tests.conftest import ROOT, is_local_cluster
from tests.factories import apply_campaign, ingest
from tests.fake_retell import FakeRetell
from tests.processes import WorkerProcess, wait_until

Conn = psycopg.Connection[Any]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_clock,
    pytest.mark.skipif(
        not is_local_cluster(os.environ.get("DATABASE_URL")),
        reason="restarts only the local test cluster",
    ),
]
ARGS = ("--retry-base", "0.2", "--poll", "0.2", "--heartbeat-timeout", "5")


def sent(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select count(*) from pgflow.messages where delivery_status = 'sent'"
        ).fetchone()
        return int(row[0]) if row else 0


def leads(url: str, first: int, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(first, first + n):
            ingest(conn, f"+1212555{i:04d}", dt.datetime.now(dt.UTC))


def test_the_worker_reconnects_after_a_database_restart(db_url: str, db: Conn) -> None:
    apply_campaign(db, window_start="00:00", window_end="24:00", daily_cap=5)
    db.close()
    with FakeRetell() as fake:
        worker = WorkerProcess(db_url, fake.url, fake.api_key, *ARGS).started()
        try:
            leads(db_url, 0, 10)
            wait_until(lambda: sent(db_url) == 10, timeout=30, what="10 sent before")
            restart = subprocess.run(
                [str(ROOT / "scripts" / "db.sh"), "restart"],
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
            assert restart.returncode == 0, restart.stderr
            leads(db_url, 10, 10)
            wait_until(lambda: sent(db_url) == 20, timeout=90, what="20 sent after the restart")
            assert worker.proc.poll() is None, "the worker exited"
            output = worker.output()
            assert '"event": "worker.database_lost"' in output or (
                '"event": "worker.listener_lost"' in output
            )
            assert output.count('"event": "worker.consuming"') >= 2
            # nothing sent twice: one create-sms-chat per message
            bodies = [r.json["to_number"] for r in fake.sms_requests() if r.json]
            assert len(bodies) == len(set(bodies)) == 20
        finally:
            worker.stop()

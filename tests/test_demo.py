"""`pgflow demo` as a newcomer runs it: a subprocess, then the database it leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zoneinfo
from typing import Any

import psycopg
import pytest

from tests.processes import ROOT, wait_until

Conn = psycopg.Connection[Any]
pytestmark = pytest.mark.slow


def demo_env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGFLOW_", "RETELL_"))}
    return {**env, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def demo_contacts(db: Conn) -> list[int]:
    return [
        r[0]
        for r in db.execute(
            "select contact_id from pgflow.lead_events where source = 'demo' order by id"
        )
    ]


def test_the_demo_tells_the_whole_story(db_url: str, db: Conn) -> None:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pgflow.cli.main", "demo"],
        cwd=ROOT,
        env=demo_env(db_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    for line in (
        "OUTCOME success (webhook)",
        "OUTCOME discarded",
        "OUTCOME no_response",
        "OUTCOME escalated",
        "OUTCOME qualified",
        "step 1 deferred",
        "Retell refused",
        "Where to look next",
    ):
        assert line in run.stdout, line
    contacts = demo_contacts(db)
    assert len(contacts) == 5
    outcomes = db.execute(
        "select ct.first_name, cv.conversion_status, cv.outcome_source"
        " from pgflow.conversations cv join pgflow.contacts ct on ct.id = cv.contact_id"
        " where cv.contact_id = any(%s) order by ct.id",
        [contacts],
    ).fetchall()
    assert outcomes == [
        ("Sam", "success", "webhook"),
        ("Pat", "discarded", "rule"),
        ("Lee", "no_response", "rule"),
        ("Kim", "escalated", "rule"),
        ("Ari", "qualified", "rule"),
    ]
    # no duplicate sends: each message reached the transport successfully once at most
    assert db.execute(
        "select count(*) from (select message_id from pgflow.message_attempts"
        " where outcome = 'sent' group by message_id having count(*) > 1) d"
    ).fetchone() == (0,)
    # one confirmation for Pat's STOP, and nothing to Pat after it
    pat = contacts[1]
    assert (
        db.execute(
            "select kind, body from pgflow.messages where contact_id = %s"
            " and direction = 'outbound' and delivery_status = 'sent' order by id",
            [pat],
        ).fetchall()[-1][0]
        == "system"
    )
    # no campaign step was sent in a lead's night (Kim's waited and was never sent)
    steps = db.execute(
        "select ct.timezone, m.sent_at, c.window_start, c.window_end, c.window_days"
        " from pgflow.messages m join pgflow.contacts ct on ct.id = m.contact_id"
        " join pgflow.enrollments e on e.id = m.enrollment_id"
        " join pgflow.campaigns c on c.id = e.campaign_id"
        " where m.contact_id = any(%s) and m.kind = 'campaign' and m.sent_at is not null",
        [contacts],
    ).fetchall()
    assert len(steps) == 6  # step 1 x4, Lee's steps 2 and 3
    for zone, sent_at, start, end, days in steps:
        local = sent_at.astimezone(zoneinfo.ZoneInfo(zone))
        assert local.isoweekday() in days
        assert start <= local.time() < end, (zone, local)
    kim = contacts[3]
    assert db.execute(
        "select count(*) from pgflow.messages where contact_id = %s and kind = 'campaign'"
        " and sent_at is not null",
        [kim],
    ).fetchone() == (0,)
    # Retell's injected 500 was retried, and that message was sent once
    retried = db.execute(
        "select a.message_id from pgflow.message_attempts a"
        " where a.status_code = 500 and a.outcome = 'retry'"
    ).fetchall()
    assert len(retried) == 1
    assert db.execute(
        "select delivery_status, attempts from pgflow.messages where id = %s", [retried[0][0]]
    ).fetchone() == ("sent", 2)
    assert took < 120  # the demo's own figure is reported by the closing note, not asserted


def test_keep_running_then_ctrl_c_stops_everything(db_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgflow.cli.main", "demo", "--keep-running"],
        cwd=ROOT,
        env=demo_env(db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Running"):
                break
        output = "".join(lines)
        assert "Running" in output, output[-3000:]
        assert "curl" in output
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == 2, children  # pgflow serve and pgflow worker
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        rest = proc.stdout.read()
        assert "everything the demo started is stopped" in rest
        for pid in map(int, children):
            wait_until(lambda: not _alive(pid), timeout=10, what=f"child {pid} gone")  # noqa: B023
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by its parent counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"

"""Alerts that open by themselves and resolve by themselves (pgflow.watch), the clock
injected: the worker watches pg_cron's tick, the tick watches the workers, both watch the
deliveries, the dead letters and the queue. Each alert announces itself and its end."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from pgflow import db as pdb
from pgflow import migrations
from pgflow.cli import status as status_cli
from tests.conftest import with_database
from tests.factories import apply_campaign, count, ingest
from tests.helpers import scalar

pytestmark = pytest.mark.real_clock  # see conftest.any_hour

Conn = psycopg.Connection[Any]
OPEN = {"window_start": "00:00", "window_end": "24:00"}
cli = typer.Typer()
cli.command()(status_cli.status)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def open_kinds(db: Conn) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "select kind from pgflow.alerts where resolved_at is null order by kind"
        )
    ]


def notices(db: Conn) -> list[str]:
    return sorted(
        r[0]
        for r in db.execute(
            "select dedupe_key from pgflow.pgqueuer where entrypoint = 'deliver_alert'"
        )
    )


def failing_sends(db: Conn, n: int, *, permanent: bool = False) -> None:
    apply_campaign(db, **OPEN)
    for i in range(n):
        ingest(db, f"+1212555{i:04d}", now())
    for (message,) in db.execute("select id from pgflow.messages order by id").fetchall():
        claim = pdb.claim_message(message, None).run(db)
        assert claim["action"] == "send"
        result = {
            "ok": False,
            "retryable": not permanent,
            "status_code": 400 if permanent else 503,
            "error": "HTTP 503" if not permanent else "HTTP 400",
        }
        pdb.record_send(message, 1, result, 30.0).run(db)


def test_worker_down_is_opened_by_the_tick_and_resolved_by_a_heartbeat(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, "+12125550147", now())  # a send job waits
    assert pdb.watch("tick").run(db)["opened"] == ["worker_down"]
    assert scalar(db, "select severity from pgflow.alerts where kind = 'worker_down'") == (
        "critical"
    )
    assert notices(db) == ["deliver_alert:1"]
    pdb.worker_heartbeat(uuid.uuid4(), "host", 1, "test").run(db)
    assert pdb.watch("tick").run(db)["resolved"] == ["worker_down"]
    assert open_kinds(db) == []


def test_delivery_failures_open_past_the_rate_and_clear_with_time(db: Conn) -> None:
    failing_sends(db, 4)
    assert "delivery_failures" not in pdb.watch("worker").run(db)["opened"]  # under the minimum
    failing_sends_more = 2
    for i in range(failing_sends_more):
        ingest(db, f"+1212556{i:04d}", now())
    for (message,) in db.execute(
        "select id from pgflow.messages where attempts = 0 order by id"
    ).fetchall():
        pdb.claim_message(message, None).run(db)
        pdb.record_send(
            message,
            1,
            {"ok": False, "retryable": True, "status_code": 503, "error": "HTTP 503"},
            30.0,
        ).run(db)
    watched = pdb.watch("worker").run(db)
    assert "delivery_failures" in watched["opened"]
    message = scalar(db, "select message from pgflow.alerts where kind = 'delivery_failures'")
    assert message == "6 of 6 sends failed in the last 15 minutes (100%)"
    later = pdb.watch("worker", now() + dt.timedelta(minutes=16)).run(db)
    assert "delivery_failures" in later["resolved"]


def test_new_dead_letters_open_an_alert_that_clears(db: Conn) -> None:
    failing_sends(db, 1, permanent=True)
    assert "dead_letters" in pdb.watch("worker").run(db)["opened"]
    assert (
        "dead_letters" in pdb.watch("worker", now() + dt.timedelta(minutes=16)).run(db)["resolved"]
    )


def test_a_queue_backlog_opens_when_the_oldest_job_waits_too_long(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, "+12125550147", now())
    assert (
        "queue_backlog"
        not in pdb.watch("worker", now() + dt.timedelta(minutes=4)).run(db)["opened"]
    )
    assert "queue_backlog" in pdb.watch("worker", now() + dt.timedelta(minutes=6)).run(db)["opened"]
    db.execute("delete from pgflow.pgqueuer")
    assert "queue_backlog" in pdb.watch("worker").run(db)["resolved"]


def test_resolved_alerts_announce_their_end_once(db: Conn) -> None:
    failing_sends(db, 1, permanent=True)
    pdb.watch("worker").run(db)
    alert = scalar(db, "select id from pgflow.alerts where kind = 'dead_letters'")
    assert (pdb.alert_notice(alert).run(db) or {}).get("notice") == "opened"
    pdb.record_alert_notice(alert, "opened").run(db)
    assert pdb.alert_notice(alert).run(db) is None
    pdb.watch("worker", now() + dt.timedelta(minutes=16)).run(db)
    assert f"deliver_alert:{alert}:resolved" in notices(db)
    assert (pdb.alert_notice(alert).run(db) or {}).get("notice") == "resolved"
    pdb.record_alert_notice(alert, "resolved").run(db)
    assert pdb.alert_notice(alert).run(db) is None


# --- pg_cron, watched by the worker (in the cron database) -------------------------------


@pytest.fixture
def cron_db(server_url: str) -> Iterator[tuple[Conn, str]]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        cron = scalar(conn, "select current_setting('cron.database_name')")
    url = with_database(server_url, cron)
    migrations.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "update pgflow.alerts set resolved_at = greatest(now(), opened_at)"
            " where resolved_at is null"
        )
        try:
            yield conn, url
        finally:
            conn.execute("select cron.schedule('pgflow-tick', '* * * * *', 'select pgflow.tick()')")
            conn.execute(
                "update pgflow.alerts set resolved_at = greatest(now(), opened_at)"
                " where resolved_at is null"
            )
            conn.execute("delete from pgflow.pgqueuer where entrypoint = 'deliver_alert'")


def test_tick_stalled_opens_when_the_tick_stops_and_resolves(cron_db: tuple[Conn, str]) -> None:
    conn, url = cron_db
    assert "tick_stalled" not in pdb.watch("worker").run(conn)["opened"]
    conn.execute("select cron.unschedule('pgflow-tick')")
    watched = pdb.watch("worker").run(conn)
    assert "tick_stalled" in watched["opened"]
    assert scalar(
        conn,
        "select message from pgflow.alerts where kind = 'tick_stalled' and resolved_at is null",
    ).endswith("cron job pgflow-tick is not scheduled")
    status = CliRunner().invoke(cli, [], env={"DATABASE_URL": url})
    assert status.exit_code == 1
    assert "FAIL tick" in status.output
    assert "pgflow.tick" not in pdb.watch("tick").run(conn)["resolved"]  # the tick cannot judge
    conn.execute("select cron.schedule('pgflow-tick', '* * * * *', 'select pgflow.tick()')")
    assert "tick_stalled" in pdb.watch("worker").run(conn)["resolved"]


def test_tick_stalled_after_three_silent_minutes(cron_db: tuple[Conn, str]) -> None:
    conn, _ = cron_db
    job = scalar(conn, "select jobid from cron.job where jobname = 'pgflow-tick'")
    ran = dt.datetime(2030, 1, 7, 12, 0, tzinfo=dt.UTC)  # a successful run, written by hand
    conn.execute(
        "insert into cron.job_run_details (jobid, runid, job_pid, database, username, command,"
        " status, return_message, start_time, end_time)"
        " values (%s, nextval('cron.runid_seq'), 0, current_database(), current_user,"
        " 'select pgflow.tick()', 'succeeded', '1 row', %s, %s)",
        [job, ran, ran],
    )
    try:
        assert (
            "tick_stalled"
            not in pdb.watch("worker", ran + dt.timedelta(minutes=2)).run(conn)["opened"]
        )
        assert (
            "tick_stalled" in pdb.watch("worker", ran + dt.timedelta(minutes=4)).run(conn)["opened"]
        )
    finally:
        conn.execute("delete from cron.job_run_details where end_time = %s", [ran])


def test_status_prints_the_same_order_twice(db_url: str, db: Conn) -> None:
    apply_campaign(db, **OPEN)
    first = CliRunner().invoke(cli, [], env={"DATABASE_URL": db_url})
    second = CliRunner().invoke(cli, [], env={"DATABASE_URL": db_url})
    assert first.output == second.output
    names = [line.split()[0] for line in first.output.splitlines() if line.startswith("     ")]
    assert names[:4] == ["contacts", "leads_rejected_24h", "enrollments_active", "enrollments_due"]
    assert count(db, "alerts") == 0

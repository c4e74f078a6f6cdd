"""pgflow.tick(): the drip driven by a moving clock; no duplicates; bounded; indexed."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import psycopg
import pytest

from pgflow import db as pdb
from tests.factories import apply_campaign, at, count, ingest, mark_sent
from tests.helpers import row, scalar

Conn = psycopg.Connection[Any]
START = at("2026-11-23 15:00")  # Monday 10:00 in New York
DAY = dt.timedelta(days=1)
MINUTE = dt.timedelta(minutes=1)


def tick(db: Conn, now: dt.datetime) -> dict[str, Any]:
    return pdb.tick(now).run(db)


def test_three_step_campaign_runs_to_no_response(db: Conn) -> None:
    apply_campaign(db)
    lead = ingest(db, "2125550147", START, first_name="Sam")
    mark_sent(db, START)
    assert tick(db, START + MINUTE)["sent"] == 0
    assert tick(db, START + DAY - MINUTE)["sent"] == 0
    assert tick(db, START + DAY)["sent"] == 1
    mark_sent(db, START + DAY)
    assert tick(db, START + 4 * DAY - MINUTE)["sent"] == 0
    third = tick(db, START + 4 * DAY)
    assert (third["sent"], third["completed"]) == (1, 1)
    bodies = [
        r[0]
        for r in db.execute(
            "select body || ' @' || created_at::text from pgflow.messages order by step_position"
        )
    ]
    assert bodies == [
        "Hi Sam, it's Ava from SunCo! @2026-11-23 15:00:00+00",
        "Hi Sam, still interested? @2026-11-24 15:00:00+00",
        "Last note, Sam: reply YES for a call. @2026-11-27 15:00:00+00",
    ]
    assert row(db, "select status, next_step, ended_at from pgflow.enrollments") == (
        "completed",
        None,
        START + 4 * DAY,
    )
    assert count(db, "pgqueuer") == 3
    mark_sent(db, START + 4 * DAY)
    deadline = START + 7 * DAY
    assert tick(db, deadline - MINUTE)["no_response"] == 0
    assert scalar(db, "select status from pgflow.conversations") == "open"
    assert tick(db, deadline)["no_response"] == 1
    assert row(
        db,
        "select status, conversion_status, outcome_source, ended_at"
        " from pgflow.conversations where enrollment_id = %s",
        [lead["enrollment_id"]],
    ) == ("ended", "no_response", "rule", deadline)
    transitions = [
        r[0]
        for r in db.execute(
            "select entity || ':' || coalesce(from_status, '-') || '>' || to_status"
            " from pgflow.events where entity <> 'message' order by id"
        )
    ]
    assert transitions == [
        "enrollment:->active",
        "conversation:->open",
        "enrollment:active>completed",
        "conversation:open>ended",
    ]


def test_no_response_waits_for_a_pending_last_step(db: Conn) -> None:
    apply_campaign(db, steps=[{"delay": "0 seconds", "body": "only step"}])
    ingest(db, "2125550147", START)  # queued, never sent (e.g. the worker is down)
    assert tick(db, START + 10 * DAY)["no_response"] == 0
    mark_sent(db, START + 10 * DAY)
    assert tick(db, START + 10 * DAY)["no_response"] == 1


def test_tick_twice_at_the_same_instant_creates_nothing_twice(db: Conn) -> None:
    apply_campaign(db)
    for i in range(20):
        ingest(db, f"+1212555{i:04d}", START)
    mark_sent(db, START)
    first = tick(db, START + DAY)
    second = tick(db, START + DAY)
    assert (first["sent"], second["sent"]) == (20, 0)
    assert count(db, "messages") == 40
    assert count(db, "pgqueuer") == 40


def test_concurrent_ticks_one_runs_the_other_skips(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    for i in range(20):
        ingest(db, f"+1212555{i:04d}", START)
    with psycopg.connect(db_url) as first, psycopg.connect(db_url, autocommit=True) as second:
        held = pdb.tick(START + DAY).run(first)  # transaction left open, advisory lock held
        skipped = pdb.tick(START + DAY).run(second)
        first.commit()
    assert held["sent"] == 20
    assert skipped == {"skipped": True, "reason": "another tick is running"}
    assert count(db, "messages") == 40


def test_ticks_racing_on_many_connections(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    for i in range(50):
        ingest(db, f"+1212555{i:04d}", START)
    barrier = threading.Barrier(6)
    results: list[dict[str, Any]] = []

    def run() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            barrier.wait()
            results.append(pdb.tick(START + DAY).run(conn))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r.get("sent", 0) for r in results) == 50
    assert count(db, "messages") == 100
    assert count(db, "pgqueuer") == 100
    assert scalar(db, "select count(distinct dedupe_key) from pgflow.messages") == 100


def test_tick_defers_to_the_window_instead_of_sending_at_night(db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", START)
    night = at("2026-11-25 04:00")  # 23:00 in New York, step 2 overdue
    result = tick(db, night)
    assert (result["sent"], result["deferred_window"]) == (0, 1)
    assert scalar(db, "select next_message_at from pgflow.enrollments") == at("2026-11-25 14:00")


def test_daily_cap_defers_until_the_oldest_message_ages_out(db: Conn) -> None:
    apply_campaign(
        db,
        daily_cap=1,
        steps=[{"delay": "0 seconds", "body": "one"}, {"delay": "1 hour", "body": "two"}],
    )
    ingest(db, "2125550147", START)
    mark_sent(db, START)
    result = tick(db, START + dt.timedelta(hours=1))
    assert (result["sent"], result["deferred_cap"]) == (0, 1)
    assert scalar(
        db, "select next_message_at from pgflow.enrollments"
    ) == START + DAY + dt.timedelta(seconds=1)
    assert tick(db, START + DAY + dt.timedelta(seconds=1))["sent"] == 1


def test_paused_campaign_holds_its_drips(db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", START)
    db.execute("update pgflow.campaigns set status = 'paused'")
    result = tick(db, START + DAY)
    assert (result["sent"], result["held"]) == (0, 1)
    db.execute("update pgflow.campaigns set status = 'active'")
    assert tick(db, START + DAY + dt.timedelta(minutes=15))["sent"] == 1


def test_replied_lead_gets_no_more_steps(db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", START)
    db.execute("select pgflow.engage_conversation(id) from pgflow.conversations")
    result = tick(db, START + DAY)
    assert (result["sent"], result["stopped"]) == (0, 1)
    assert row(db, "select status, stop_reason from pgflow.enrollments") == (
        "stopped",
        "lead replied",
    )


def test_opted_out_contact_gets_no_more_steps(db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", START)
    db.execute("update pgflow.contacts set opted_out_at = now(), opt_out_source = 'sms'")
    assert tick(db, START + DAY)["stopped"] == 1
    assert scalar(db, "select status from pgflow.enrollments") == "opted_out"
    assert count(db, "messages") == 1


@pytest.mark.parametrize("population", [20_000])
def test_due_scan_uses_the_partial_index(db: Conn, population: int) -> None:
    apply_campaign(db)
    db.execute(
        """
        with c as (
          insert into pgflow.contacts (phone)
          select '+1212' || lpad(g::text, 7, '0') from generate_series(1, %s) g returning id
        )
        insert into pgflow.enrollments (contact_id, campaign_id, status, next_step,
                                        next_message_at, ended_at)
        select c.id, (select id from pgflow.campaigns),
               case when c.id %% 10 = 0 then 'active' else 'completed' end,
               case when c.id %% 10 = 0 then 2 end,
               case when c.id %% 10 = 0 then now() + (c.id %% 1000) * interval '1 minute' end,
               case when c.id %% 10 = 0 then null else now() end
          from c
        """,
        [population],
    )
    db.execute("analyze pgflow.enrollments")
    # The due scan of pgflow.tick(), verbatim.
    plan = scalar(
        db,
        "explain (format json) select e.id from pgflow.enrollments e"
        " where e.status = 'active' and e.next_message_at <= now() + interval '5 minutes'"
        " order by e.next_message_at limit 1000 for update skip locked",
    )
    text = json.dumps(plan)
    assert "enrollments_due_idx" in text
    assert "Seq Scan" not in text


def test_a_send_whose_job_was_lost_is_queued_again(db: Conn) -> None:
    apply_campaign(db, window_start="00:00", window_end="24:00")
    ingest(db, "2125550147", START)
    ingest(db, "2125550148", START)
    first, second = (r[0] for r in db.execute("select id from pgflow.messages order by id"))
    # one job held as failed (a bug in the worker), the other deleted by hand
    db.execute(
        "update pgflow.pgqueuer set status = 'failed' where dedupe_key = %s", [f"send_sms:{first}"]
    )
    db.execute("delete from pgflow.pgqueuer where dedupe_key = %s", [f"send_sms:{second}"])
    db.execute("update pgflow.messages set delivery_status = 'sending' where id = %s", [first])
    assert tick(db, START + MINUTE)["requeued"] == 0  # not yet: two minutes of grace
    assert tick(db, START + 3 * MINUTE)["requeued"] == 2
    assert tick(db, START + 4 * MINUTE)["requeued"] == 0  # their jobs are back
    assert count(db, "pgqueuer", "status = 'queued' and entrypoint = 'send_sms'") == 2
    mark_sent(db, START + 5 * MINUTE)  # a settled message is never queued again
    db.execute("delete from pgflow.pgqueuer")
    assert tick(db, START + 10 * MINUTE)["requeued"] == 1  # the one still 'sending'

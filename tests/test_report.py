"""`pgflow report --json` on a seeded database, checked against numbers worked out by hand.

The story (campaign "solar": steps at 0, +1 day, +3 days; reply timeout 3 days):
  A  step 1 at T; replies at T+10m; a booking arrives: success (webhook)
  B  steps 1, 2; replies at T+1d+1h, after step 2; classified qualified (llm)
  C  step 1; texts STOP at T+5m: discarded
  D  steps 1, 2, 3; never replies: no_response
  E  enrolled, nothing sent yet (its steps wait in the queue): its conversation is open
  F  enrolled ten days earlier, nothing sent: only counted without --since
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
import typer
from typer.testing import CliRunner

from pgflow import db as pdb
from pgflow.cli import report
from tests.chat_payloads import chat, event
from tests.factories import apply_campaign, at, ingest

Conn = psycopg.Connection[Any]
T = at("2026-11-23 15:00")
MIN = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)
PHONES = {k: f"+1212555010{i}" for i, k in enumerate("ABCDEF")}
cli = typer.Typer()
cli.command()(report.report)


def send_queued(db: Conn, when: dt.datetime, *, skip: str = "E") -> None:
    """What the worker does: claim (reading the live chat first) and record each send."""
    rows = db.execute(
        "select m.id from pgflow.messages m join pgflow.contacts ct on ct.id = m.contact_id"
        " where m.delivery_status = 'queued' and ct.phone <> %s and ct.phone <> %s"
        " order by m.id",
        [PHONES[skip], PHONES["F"]],
    ).fetchall()
    for (message,) in rows:
        claim = pdb.claim_message(message, None, None, when).run(db)
        if claim["action"] == "check_chat":
            claim = pdb.claim_message(message, None, claim["chat_id"], when).run(db)
        if claim["action"] == "send":
            result = {"ok": True, "chat_id": f"chat_{message}"}
            pdb.record_send(message, claim["attempt"], result, 30.0, when).run(db)


def reply(db: Conn, who: str, text: str, when: dt.datetime) -> None:
    conversation, message = db.execute(
        "select cv.id, max(m.id) from pgflow.conversations cv"
        " join pgflow.contacts ct on ct.id = cv.contact_id"
        " join pgflow.messages m on m.conversation_id = cv.id and m.kind = 'campaign'"
        " where ct.phone = %s group by cv.id",
        [PHONES[who]],
    ).fetchone() or (None, None)
    start = int((when - dt.timedelta(seconds=1)).timestamp() * 1000)
    payload = chat(
        f"chat_{message}",
        [("agent", "step"), ("user", text)],
        conversation_id=conversation,
        message_id=message,
        start_ms=start,
    )
    pdb.record_retell_event(event("transcript_updated", payload), False, when).run(db)


def seed(db: Conn) -> None:
    apply_campaign(db, window_start="00:00", window_end="24:00", daily_cap=5)
    ingest(db, PHONES["F"], T - 10 * DAY)
    for who in "ABCDE":
        ingest(db, PHONES[who], T)
    send_queued(db, T)
    reply(db, "C", "STOP", T + 5 * MIN)
    reply(db, "A", "yes!", T + 10 * MIN)
    pdb.record_business_event(
        {"type": "appointment_booked", "phone": PHONES["A"]}, PHONES["A"], T + 20 * MIN
    ).run(db)
    pdb.tick(T + DAY + MIN).run(db)
    send_queued(db, T + DAY + MIN)
    reply(db, "B", "I own it, the bill is $180", T + DAY + 60 * MIN)
    b = db.execute(
        "select cv.id from pgflow.conversations cv join pgflow.contacts ct"
        " on ct.id = cv.contact_id where ct.phone = %s",
        [PHONES["B"]],
    ).fetchone()
    assert b is not None
    question = pdb.outcome_question(b[0], T + 2 * DAY).run(db)
    pdb.record_classification(
        b[0], question["transcript_hash"], "qualified", "owns, $180", 0.9, "m", now=T + 2 * DAY
    ).run(db)
    pdb.tick(T + 4 * DAY + 2 * MIN).run(db)
    send_queued(db, T + 4 * DAY + 2 * MIN)
    pdb.tick(T + 7 * DAY + 3 * MIN).run(db)


def run(db_url: str, *args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"], env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_report_counts_by_hand(db_url: str, db: Conn) -> None:
    seed(db)
    [solar] = run(db_url, "--campaign", "solar", "--since", "2026-11-23T14:00:00+00:00")
    assert solar == {
        "campaign": "solar",
        "since": "2026-11-23T14:00:00+00:00",
        "enrolled": 5,  # A-E (F enrolled before --since)
        "messaged": 4,  # A-D
        "steps_sent": 7,  # step 1 x4, step 2 x2 (B, D), step 3 x1 (D)
        "transport": "retell",
        "delivered": 0,  # Retell reports no delivery receipts
        "undelivered": 0,
        "undelivered_by_class": {},
        "delivery_seconds": {"p50": None, "p90": None},
        "replied": 3,  # A, B, and C's STOP
        "opted_out": 1,
        "reply_rate": 0.75,
        "opt_out_rate": 0.25,
        "median_first_reply_seconds": 600.0,  # of 300 (C), 600 (A), 90000 (B)
        "outcomes": {
            "success": 1,
            "qualified": 1,
            "unqualified": 0,
            "escalated": 0,
            "no_response": 1,
            "discarded": 1,
            "open": 1,  # E
            "engaged": 0,
            "in_review": 0,
        },
        "steps": [
            {"position": 1, "sent": 4, "replied_after": 2},  # A and C
            {"position": 2, "sent": 2, "replied_after": 1},  # B
            {"position": 3, "sent": 1, "replied_after": 0},
        ],
    }
    [everyone] = run(db_url)
    assert everyone["enrolled"] == 6
    assert everyone["messaged"] == 4
    assert run(db_url, "--campaign", "solar", "--since", "2030-01-01")[0]["enrolled"] == 0


def test_report_table_and_unknown_campaign(db_url: str, db: Conn) -> None:
    seed(db)
    table = CliRunner().invoke(cli, [], env={"DATABASE_URL": db_url})
    assert table.exit_code == 0, table.output
    for expected in ("solar", "enrolled", "replied", "75.0%", "no_response", "10.0m"):
        assert expected in table.output
    unknown = CliRunner().invoke(cli, ["--campaign", "nope"], env={"DATABASE_URL": db_url})
    assert unknown.exit_code == 1
    assert "no campaign with slug 'nope'" in unknown.output

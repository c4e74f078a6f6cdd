"""`pgflow conversations show`: what an operator sees of one contact."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import typer
from typer.testing import CliRunner

from pgflow import db as pdb
from pgflow.cli import conversations
from tests.chat_payloads import chat, event
from tests.factories import apply_campaign, at, ingest, mark_sent

Conn = psycopg.Connection[Any]
cli = typer.Typer()
cli.add_typer(conversations.app, name="conversations")


def show(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(
        cli, ["conversations", "show", *args], env={"DATABASE_URL": db_url, "COLUMNS": "200"}
    )


def test_show_a_contact(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    lead = ingest(db, "2125550147", at("2026-11-23 15:00"), first_name="Sam")
    mark_sent(db, at("2026-11-23 15:00"))
    db.execute(
        "select pgflow.end_conversation(id, 'qualified', 'owns a home', 'llm')"
        " from pgflow.conversations"
    )
    result = show(db_url, "(212) 555-0147")
    assert result.exit_code == 0, result.output
    for expected in (
        "+12125550147",
        "Sam",
        "America/New_York",
        "stopped",
        "qualified",
        "owns a home",
        "Hi Sam, it's Ava from SunCo!",
        "sent",
    ):
        assert expected in result.output
    report = json.loads(show(db_url, "+12125550147", "--json").output)
    assert report["enrollments"][0]["id"] == lead["enrollment_id"]
    assert [m["status"] for m in report["messages"]] == ["sent"]
    assert report["conversations"][0]["conversion_status"] == "qualified"


def test_unknown_and_invalid_numbers(db_url: str) -> None:
    missing = show(db_url, "2125550199")
    assert missing.exit_code == 1
    assert "no contact with number +1212***0199" in missing.output
    invalid = show(db_url, "call me")
    assert invalid.exit_code == 1
    assert "not a phone number" in invalid.output


def run(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["conversations", *args], env={"DATABASE_URL": db_url})


def test_list_shows_live_conversations_masked(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", at("2026-11-23 15:00"), first_name="Sam")
    ingest(db, "2125550148", at("2026-11-23 15:00"))
    db.execute(
        "select pgflow.end_conversation(max(id), 'discarded', 'x', 'rule')"
        " from pgflow.conversations"
    )
    result = run(db_url, "list")
    assert result.exit_code == 0, result.output
    assert "+1212***0147" in result.output
    assert "+12125550147" not in result.output
    assert "0148" not in result.output  # ended: not live
    rows = json.loads(run(db_url, "list", "--json").output)
    assert [(r["phone"], r["campaign"], r["status"]) for r in rows] == [
        ("+1212***0147", "solar", "open")
    ]


def test_takeover_stops_the_agent_and_opens_an_alert(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", at("2026-11-23 15:00"))
    result = run(db_url, "takeover", "(212) 555-0147", "--reason", "Dana is calling")
    assert result.exit_code == 0, result.output
    assert "is now yours" in result.output
    assert db.execute(
        "select status, conversion_status, outcome_source, outcome_reason from pgflow.conversations"
    ).fetchone() == ("ended", "escalated", "human", "Dana is calling")
    assert db.execute(
        "select count(*) from pgflow.alerts where resolved_at is null"
    ).fetchone() == (1,)
    again = run(db_url, "takeover", "2125550147")
    assert again.exit_code == 0
    assert "no live conversation" in again.output
    unknown = run(db_url, "takeover", "2125550100")
    assert unknown.exit_code == 1
    assert "no contact with number +1212***0100" in unknown.output


def test_set_outcome_and_the_review_queue(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", at("2026-11-23 15:00"))
    conversation = db.execute("select id from pgflow.conversations").fetchone()
    assert conversation is not None
    said = chat("c1", [("agent", "Hi"), ("user", "maybe?")], conversation_id=conversation[0])
    pdb.record_retell_event(event("transcript_updated", said)).run(db)
    question = pdb.outcome_question(conversation[0]).run(db)
    pdb.record_classification(
        conversation[0], question["transcript_hash"], "qualified", "not sure", 0.3, "m"
    ).run(db)
    queue = run(db_url, "review")
    assert queue.exit_code == 0, queue.output
    assert "+1212***0147" in queue.output
    assert "the LLM is unsure (0.3): qualified, not sure" in queue.output
    assert "llm: qualified (not sure)" in queue.output
    bad = run(db_url, "set-outcome", "2125550147", "won", "--reason", "x")
    assert bad.exit_code == 1
    assert "'won' is not an outcome" in bad.output
    done = run(db_url, "set-outcome", "2125550147", "success", "--reason", "booked by phone")
    assert done.exit_code == 0, done.output
    assert "success (set by a person)" in done.output
    assert db.execute(
        "select conversion_status, outcome_source, outcome_reason from pgflow.conversations"
    ).fetchone() == ("success", "human", "booked by phone")
    assert "nothing waits for review" in run(db_url, "review").output
    assert json.loads(run(db_url, "review", "--json").output) == []

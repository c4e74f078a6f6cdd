"""`pgflow conversations`: what an operator sees of a contact, and a person's hold on a lead."""

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
from tests.helpers import rows, scalar

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


def act(db_url: str, who: str, *args: str, **env: str) -> Any:
    """A command run by the OS user `who` (the actor is `cli:<who>`)."""
    return CliRunner().invoke(
        cli, ["conversations", *args], env={"DATABASE_URL": db_url, "LOGNAME": who, **env}
    )


def test_takeover_holds_the_lead_and_keeps_the_conversation_open(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    lead = ingest(db, "2125550147", at("2026-11-23 15:00"))
    talk = scalar(db, "select id from pgflow.conversations")
    result = act(db_url, "dana", "takeover", "(212) 555-0147", "--reason", "Dana is calling")
    assert result.exit_code == 0, result.output
    assert f"conversation {talk}: held by cli:dana" in result.output
    assert scalar(db, "select held_by from pgflow.contacts") == "cli:dana"
    assert scalar(db, "select status from pgflow.conversations") != "ended"
    assert scalar(db, "select conversion_status from pgflow.conversations") is None
    assert scalar(db, "select status from pgflow.enrollments") == "paused"
    assert rows(db, "select actor, action, conversation_id, detail from pgflow.audit_log") == [
        ("cli:dana", "takeover", talk, {"reason": "Dana is calling"})
    ]
    again = act(db_url, "dana", "takeover", "2125550147")
    assert again.exit_code == 0, again.output
    assert "held by cli:dana already" in again.output
    colleague = act(db_url, "lee", "takeover", "2125550147", "--json")
    assert colleague.exit_code == 0, colleague.output
    assert json.loads(colleague.output) == {
        "result": "held",
        "contact_id": lead["contact_id"],
        "conversation_id": talk,
        "held_by": "cli:lee",
        "previous": "cli:dana",
    }
    unknown = act(db_url, "dana", "takeover", "2125550100")
    assert unknown.exit_code == 1
    assert "+1212***0100 has no conversation" in unknown.output
    missing = act(db_url, "dana", "takeover", "2125550147", "--conversation", "999999")
    assert missing.exit_code == 1
    assert "conversation 999999 does not exist" in missing.output


def test_reply_queues_a_human_message_and_is_refused_after_an_opt_out(
    db_url: str, db: Conn
) -> None:
    apply_campaign(db)
    lead = ingest(db, "2125550147", at("2026-11-23 15:00"))
    talk = scalar(db, "select id from pgflow.conversations")
    text = "Hi Sam, Dana here - can I call you at 3pm? 🙂"
    sent = act(db_url, "dana", "reply", "2125550147", text)
    assert sent.exit_code == 0, sent.output
    message = scalar(db, "select id from pgflow.messages where kind = 'human'")
    assert (
        f"message {message} queued on conversation {talk} (1 segment(s));"
        " the worker sends it" in sent.output
    )
    said = " ".join(sent.output.split())  # what the transport can do, whatever the width
    assert "Retell passes no text while you hold the lead" in said
    assert "put the campaign on transport: twilio" in said
    assert rows(
        db, "select direction, body, delivery_status from pgflow.messages where kind = 'human'"
    ) == [("outbound", text, "queued")]
    assert scalar(db, "select held_by from pgflow.contacts") == "cli:dana"  # replying holds
    assert rows(db, "select action from pgflow.audit_log order by id") == [
        ("takeover",),
        ("reply",),
    ]
    empty = act(db_url, "dana", "reply", "2125550147", "  ")
    assert empty.exit_code == 1
    assert "error: a reply must not be empty" in empty.output
    too_long = act(db_url, "dana", "reply", "2125550147", "x" * 1601)
    assert too_long.exit_code == 1
    assert "a reply is at most 1600 characters (this one has 1601)" in too_long.output
    pdb.opt_out_contact(lead["contact_id"], "operator").run(db)
    refused = act(db_url, "dana", "reply", "2125550147", "one more thing")
    assert refused.exit_code == 1
    assert (
        "error: the lead opted out (operator): nothing more may be sent to them" in refused.output
    )
    unknown = act(db_url, "dana", "reply", "2125550100", "hello")
    assert unknown.exit_code == 1
    assert "+1212***0100 has no conversation" in unknown.output
    assert scalar(db, "select count(*) from pgflow.messages where kind = 'human'") == 1


def test_handback_clears_the_hold_and_fails_when_nobody_holds(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", at("2026-11-23 15:00"))
    talk = scalar(db, "select id from pgflow.conversations")
    nobody = act(db_url, "dana", "handback", "2125550147")
    assert nobody.exit_code == 1
    assert "error: nobody holds this lead: the agent has it already" in nobody.output
    assert act(db_url, "dana", "takeover", "2125550147").exit_code == 0
    back = act(db_url, "dana", "handback", "2125550147")
    assert back.exit_code == 0, back.output
    assert f"conversation {talk}: handed back to the agent; no agent reply queued" in back.output
    assert rows(db, "select held_at, held_by from pgflow.contacts") == [(None, None)]
    assert scalar(db, "select status from pgflow.conversations") != "ended"
    assert rows(db, "select actor, action from pgflow.audit_log order by id") == [
        ("cli:dana", "takeover"),
        ("cli:dana", "hand_back"),
    ]
    assert act(db_url, "dana", "handback", "2125550147").exit_code == 1


def test_handback_in_the_sandbox_queues_the_agent_answer(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", at("2026-11-23 15:00"))
    talk = scalar(db, "select id from pgflow.conversations")
    said = chat("c1", [("agent", "Hi"), ("user", "how much?")], conversation_id=talk)
    pdb.record_retell_event(event("transcript_updated", said)).run(db)
    assert act(db_url, "dana", "takeover", "2125550147").exit_code == 0
    back = act(db_url, "dana", "handback", "2125550147", "--json", PGFLOW_SMS_TRANSPORT="sandbox")
    assert back.exit_code == 0, back.output
    assert json.loads(back.output)["agent_reply_queued"] is True
    assert scalar(db, "select count(*) from pgflow.pgqueuer where entrypoint = 'agent_reply'") == 1


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


def test_reply_on_a_twilio_line_says_twilio_carries_it_as_written(db_url: str, db: Conn) -> None:
    apply_campaign(db, transport="twilio")
    ingest(db, "2125550147", at("2026-11-23 15:00"))
    sent = act(db_url, "dana", "reply", "2125550147", "Dana here: 3pm works?")
    assert sent.exit_code == 0, sent.output
    said = " ".join(sent.output.split())
    assert "Twilio carries it as written and reports its delivery" in said
    assert "Retell" not in said

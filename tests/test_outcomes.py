"""Outcomes in SQL: every end trigger and every way an outcome is given (rule, llm, retell,
webhook, human), review when signals are missing, unsure or disagree, and the rule that a
person's outcome is never overwritten. Real Postgres, the clock injected."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from pgflow import db as pdb
from tests.chat_payloads import chat, event
from tests.factories import apply_campaign, at, count, ingest
from tests.helpers import row, scalar

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")
OPEN = {"window_start": "00:00", "window_end": "24:00", "silence_timeout": "1 day"}
LEAD = "+12125550147"


def talking(db: Conn, *texts: str, replies: bool = False) -> dict[str, Any]:
    """A lead whose step 1 went out as chat_1 and who wrote `texts` back."""
    apply_campaign(db, **OPEN)
    lead = ingest(db, LEAD, NOW, first_name="Sam")
    message = scalar(db, "select id from pgflow.messages")
    pdb.claim_message(message, None, None, NOW).run(db)
    pdb.record_send(message, 1, {"ok": True, "chat_id": "chat_1"}, 30.0, NOW).run(db)
    conversation = scalar(db, "select id from pgflow.conversations")
    lead = {**lead, "conversation_id": conversation, "message_id": message}
    if texts:
        say(db, lead, *texts, replies=replies)
    return lead


def step_chat(lead: dict[str, Any], *texts: str, **kw: Any) -> dict[str, Any]:
    items = [("agent", "Hi Sam!"), *(("user", t) for t in texts)]
    return chat(
        "chat_1",
        items,
        conversation_id=lead["conversation_id"],
        message_id=lead["message_id"],
        start_ms=int(NOW.timestamp() * 1000),
        **kw,
    )


def say(db: Conn, lead: dict[str, Any], *texts: str, replies: bool = False, name: str = "") -> Any:
    payload = event(name or "transcript_updated", step_chat(lead, *texts))
    return pdb.record_retell_event(payload, replies, NOW).run(db)


def outcome(db: Conn) -> tuple[Any, ...]:
    return row(
        db,
        "select status, conversion_status, outcome_source from pgflow.conversations"
        " order by id limit 1",
    )


def jobs(db: Conn, entrypoint: str) -> int:
    return count(db, "pgqueuer", "entrypoint = %s", [entrypoint])


def question(db: Conn, lead: dict[str, Any]) -> dict[str, Any]:
    return pdb.outcome_question(lead["conversation_id"], NOW).run(db)


def classify(db: Conn, lead: dict[str, Any], status: str, confidence: float = 0.9) -> Any:
    q = question(db, lead)
    return pdb.record_classification(
        lead["conversation_id"],
        q["transcript_hash"],
        status,
        f"because {status}",
        confidence,
        "openai/fake",
        now=NOW,
    ).run(db)


# --- end triggers ----------------------------------------------------------------------


def test_an_opt_out_discards_at_once_by_rule(db: Conn) -> None:
    talking(db, "STOP")
    assert outcome(db) == ("ended", "discarded", "rule")


def test_no_reply_after_the_last_step_is_no_response_by_rule(db: Conn) -> None:
    apply_campaign(db, **OPEN, steps=[{"delay": "0 seconds", "body": "Only one"}])
    ingest(db, LEAD, NOW)
    db.execute("update pgflow.messages set delivery_status = 'sent', sent_at = %s", [NOW])
    assert pdb.tick(NOW + dt.timedelta(minutes=1)).run(db)["completed"] == 0
    ended = pdb.tick(NOW + dt.timedelta(days=3, minutes=1)).run(db)
    assert ended["no_response"] == 1
    assert outcome(db) == ("ended", "no_response", "rule")


def test_asking_for_a_person_escalates_with_an_alert_and_a_note_to_the_lead(db: Conn) -> None:
    lead = talking(db, "can I talk to a real person please")
    assert outcome(db) == ("ended", "escalated", "rule")
    assert scalar(db, "select kind from pgflow.alerts") == f"escalation:{lead['conversation_id']}"
    assert scalar(db, "select body from pgflow.messages where kind = 'system'") == (
        "Thanks - a member of our team will text you shortly."
    )
    assert jobs(db, "end_chat") == 1
    assert jobs(db, "deliver_alert") == 1


@pytest.mark.parametrize(
    ("action", "expected"), [("handoff", ("escalated", "rule")), ("booked", ("success", "rule"))]
)
def test_the_agent_hands_over_or_books_and_its_reply_still_goes(
    db: Conn, action: str, expected: tuple[str, str]
) -> None:
    talking(db, "tuesday 3pm works", replies=True)
    text = scalar(db, "select id from pgflow.messages where direction = 'inbound'")
    queued = pdb.record_agent_reply(text, "Done - see you Tuesday!", action, "agreed", NOW).run(db)
    assert outcome(db) == ("ended", *expected)
    claim = pdb.claim_message(queued["message_id"], None, None, NOW).run(db)
    assert claim["action"] == "send"  # the closing message is not suppressed by the end
    if action == "handoff":
        assert count(db, "alerts", "kind like 'escalation:%%'") == 1


@pytest.mark.parametrize(
    ("by", "reason"),
    [("settling it", "conversation ended"), ("taking over", "a person holds this lead")],
)
def test_a_person_after_a_booking_silences_the_closing_message(
    db: Conn, by: str, reason: str
) -> None:
    talking(db, "tuesday 3pm works", replies=True)
    text = scalar(db, "select id from pgflow.messages where direction = 'inbound'")
    queued = pdb.record_agent_reply(text, "Booked!", "booked", "agreed", NOW).run(db)
    conversation = scalar(db, "select id from pgflow.conversations")
    if by == "settling it":
        pdb.set_outcome(conversation, "qualified", "not booked after all", "human", NOW).run(db)
    else:
        pdb.take_over(conversation, "dana@x.com", None, "not booked after all", NOW).run(db)
        assert outcome(db) == ("ended", "success", "rule")  # the outcome stands
    claim = pdb.claim_message(queued["message_id"], None, None, NOW).run(db)
    assert claim == {"action": "suppressed", "reason": reason}


def test_a_quiet_engaged_conversation_is_classified_once(db: Conn) -> None:
    talking(db, "yes, tell me more")
    assert pdb.tick(NOW + dt.timedelta(hours=23)).run(db)["classify_requested"] == 0
    assert pdb.tick(NOW + dt.timedelta(days=1, minutes=1)).run(db)["classify_requested"] == 1
    assert pdb.tick(NOW + dt.timedelta(days=1, minutes=2)).run(db)["classify_requested"] == 0
    assert jobs(db, "classify_outcome") == 1


def test_a_conversation_a_person_holds_is_never_classified(db: Conn) -> None:
    lead = talking(db, "yes, tell me more")
    pdb.take_over(lead["conversation_id"], "dana@x.com", now=NOW).run(db)
    assert pdb.tick(NOW + dt.timedelta(days=2)).run(db)["classify_requested"] == 0
    assert jobs(db, "classify_outcome") == 0
    assert outcome(db) == ("engaged", None, None)


def test_a_new_text_makes_a_quiet_conversation_classifiable_again(db: Conn) -> None:
    lead = talking(db, "yes")
    pdb.tick(NOW + dt.timedelta(days=1, minutes=1)).run(db)
    db.execute("delete from pgflow.pgqueuer where entrypoint = 'classify_outcome'")
    say(db, lead, "yes", "and one more thing")
    later = NOW + dt.timedelta(days=2, minutes=2)
    db.execute("update pgflow.conversations set last_inbound_at = %s", [NOW + dt.timedelta(days=1)])
    assert pdb.tick(later).run(db)["classify_requested"] == 1


def test_a_chat_ended_by_retell_asks_for_a_classification(db: Conn) -> None:
    lead = talking(db, "sounds good")
    say(db, lead, "sounds good", name="chat_ended")
    assert jobs(db, "classify_outcome") == 1
    assert outcome(db)[0] == "engaged"


@pytest.mark.parametrize("max_turns", [1, 5])
def test_the_agent_closing_or_its_last_turn_asks_for_a_classification(
    db: Conn, max_turns: int
) -> None:
    talking(db, "hi", replies=True)
    db.execute("update pgflow.agents set max_turns = %s", [max_turns])
    text = scalar(db, "select id from pgflow.messages where direction = 'inbound'")
    action = "continue" if max_turns == 1 else "end"
    pdb.record_agent_reply(text, "Thanks, bye!", action, None, NOW).run(db)
    assert jobs(db, "classify_outcome") == 1


# --- classification --------------------------------------------------------------------


def test_the_rules_come_first(db: Conn) -> None:
    lead = talking(db)
    assert question(db, lead) == {
        "classify": False,
        "reason": "no_response by rule: the lead never replied",
    }
    assert outcome(db) == ("ended", "no_response", "rule")


def test_the_question_carries_the_transcript_and_the_goal(db: Conn) -> None:
    lead = talking(db, "yes", "do you do roofs too?")
    db.execute("update pgflow.campaigns set goal = 'Book a solar call'")
    q = question(db, lead)
    assert q["classify"] is True
    assert q["goal"] == "Book a solar call"
    assert [t["text"] for t in q["transcript"]] == [
        "Hi Sam, it's Ava from SunCo!",  # our step: the chat's first message is linked to it
        "yes",
        "do you do roofs too?",
    ]


def test_a_classification_ends_it_and_again_writes_nothing(db: Conn) -> None:
    lead = talking(db, "yes I own it, bill is $200")
    transcript = question(db, lead)["transcript_hash"]

    def record() -> Any:
        return pdb.record_classification(
            lead["conversation_id"], transcript, "qualified", "owns, high bill", 0.9, "m", now=NOW
        ).run(db)

    assert record()["result"] == "ended"
    assert outcome(db) == ("ended", "qualified", "llm")
    before = [count(db, t) for t in ("outcome_signals", "events", "alerts")]
    assert record() == {"result": "unchanged"}
    assert [count(db, t) for t in ("outcome_signals", "events", "alerts")] == before


def test_a_transcript_that_went_on_makes_the_verdict_stale(db: Conn) -> None:
    lead = talking(db, "yes")
    old = question(db, lead)["transcript_hash"]
    say(db, lead, "yes", "wait, one question")
    result = pdb.record_classification(
        lead["conversation_id"], old, "qualified", "x", 0.9, "m", now=NOW
    ).run(db)
    assert result == {"result": "stale"}
    assert outcome(db)[0] == "engaged"


@pytest.mark.parametrize("unsure", [True, False])
def test_no_verdict_or_an_unsure_one_goes_to_review_never_a_guess(db: Conn, unsure: bool) -> None:
    lead = talking(db, "maybe")
    if unsure:
        assert classify(db, lead, "qualified", confidence=0.4) == {"result": "review"}
    else:
        failed = pdb.record_classification(
            lead["conversation_id"],
            "h",
            None,
            None,
            None,
            None,
            error="3 attempts: nonsense",
            now=NOW,
        ).run(db)
        assert failed == {"result": "review"}
    assert outcome(db) == ("engaged", None, None)
    assert scalar(db, "select kind from pgflow.alerts where resolved_at is null") == "needs_review"
    reason = scalar(db, "select review_reason from pgflow.conversations")
    assert ("unsure (0.4)" if unsure else "nonsense") in reason


def test_retell_and_the_llm_disagreeing_goes_to_review_with_both_reasons(db: Conn) -> None:
    lead = talking(db, "tuesday works")
    analyzed = step_chat(lead, "tuesday works", status="ended")
    analyzed["chat_analysis"] = {
        "chat_summary": "The lead booked Tuesday.",
        "custom_analysis_data": {"conversion_status": "success"},
    }
    pdb.record_retell_event(event("chat_analyzed", analyzed), False, NOW).run(db)
    assert classify(db, lead, "qualified") == {"result": "review"}
    reason = scalar(db, "select review_reason from pgflow.conversations")
    assert reason == (
        "llm says qualified (because qualified); retell says success (The lead booked Tuesday.)"
    )
    queue = db.execute("select signals from pgflow.review_queue").fetchone()
    assert queue is not None
    assert {s["source"]: s["status"] for s in queue[0]} == {"retell": "success", "llm": "qualified"}


def test_retell_agreeing_lets_the_llm_outcome_stand(db: Conn) -> None:
    lead = talking(db, "tuesday works")
    analyzed = step_chat(lead, "tuesday works")
    analyzed["chat_analysis"] = {"custom_analysis_data": {"conversion_status": "success"}}
    pdb.record_retell_event(event("chat_analyzed", analyzed), False, NOW).run(db)
    assert classify(db, lead, "success")["result"] == "ended"
    assert outcome(db) == ("ended", "success", "llm")


def test_retell_disagreeing_after_the_end_goes_to_review(db: Conn) -> None:
    lead = talking(db, "no thanks, I rent")
    classify(db, lead, "unqualified")
    analyzed = step_chat(lead, "no thanks, I rent", status="ended")
    analyzed["chat_analysis"] = {"custom_analysis_data": {"conversion_status": "Qualified"}}
    pdb.record_retell_event(event("chat_analyzed", analyzed), False, NOW).run(db)
    assert outcome(db) == ("ended", "unqualified", "llm")  # kept, but a person looks
    assert scalar(db, "select review_reason from pgflow.conversations").startswith(
        "retell says qualified"
    )


# --- people and business events ------------------------------------------------------


def test_a_persons_outcome_clears_the_review_and_is_never_overwritten(db: Conn) -> None:
    lead = talking(db, "maybe")
    classify(db, lead, "qualified", confidence=0.3)
    conversation = lead["conversation_id"]
    result = pdb.set_outcome(conversation, "qualified", "called them: keen", "human", NOW).run(db)
    assert result["result"] == "ended"
    assert outcome(db) == ("ended", "qualified", "human")
    assert scalar(db, "select review_reason is null from pgflow.conversations")
    assert scalar(
        db, "select resolved_at is not null from pgflow.alerts where kind = 'needs_review'"
    )
    for source in ("llm", "webhook", "retell", "rule"):
        kept = pdb.set_outcome(conversation, "success", "x", source, NOW).run(db)
        assert kept["result"] == "kept"
    assert outcome(db) == ("ended", "qualified", "human")
    changed = pdb.set_outcome(conversation, "success", "booked by phone", "human", NOW).run(db)
    assert changed["result"] == "changed"
    assert outcome(db) == ("ended", "success", "human")


def test_a_booking_event_replaces_a_rule_outcome(db: Conn) -> None:
    talking(db)
    pdb.tick(NOW + dt.timedelta(days=5)).run(db)  # steps 2 and 3 queued, not sent: still open
    conversation = scalar(db, "select id from pgflow.conversations")
    pdb.end_conversation(conversation, "no_response", "quiet", "rule", NOW).run(db)
    booked = {"type": "appointment_booked", "phone": LEAD, "at": "2026-11-26T15:00:00Z"}
    result = pdb.record_business_event(booked, LEAD, NOW).run(db)
    assert result["result"] == "applied"
    assert result["change"] == "changed"
    assert outcome(db) == ("ended", "success", "webhook")
    assert scalar(db, "select outcome_reason from pgflow.conversations") == (
        "appointment booked for 2026-11-26T15:00:00Z"
    )
    assert pdb.record_business_event(booked, LEAD, NOW).run(db)["result"] == "duplicate"


def test_business_events(db: Conn) -> None:
    lead = talking(db, "hi")
    conversation = lead["conversation_id"]
    takeover = {"type": "human_takeover", "conversation_id": conversation, "id": "evt-1"}
    assert pdb.record_business_event(takeover, None, NOW).run(db)["result"] == "applied"
    assert outcome(db) == ("ended", "escalated", "webhook")
    assert jobs(db, "end_chat") == 1
    text = scalar(db, "select id from pgflow.messages where direction = 'inbound'")
    assert pdb.agent_turn(text, NOW).run(db)["answer"] is False  # the agent is quiet
    disq = {"type": "disqualified", "phone": LEAD, "data": {"reason": "renter"}}
    assert pdb.record_business_event(disq, LEAD, NOW).run(db)["outcome"] == "unqualified"
    unknown = pdb.record_business_event(
        {"type": "appointment_booked", "phone": "+12125550100"}, "+12125550100", NOW
    ).run(db)
    assert unknown["result"] == "unknown_phone"
    invalid = pdb.record_business_event({"type": "won", "phone": LEAD}, LEAD, NOW).run(db)
    assert invalid["result"] == "invalid"
    recorded = db.execute(
        "select result from pgflow.webhook_deliveries where provider = 'events' order by id"
    ).fetchall()
    assert [r[0] for r in recorded] == ["applied", "applied", "unknown_phone", "invalid"]


def test_no_ended_conversation_can_lack_its_outcome(db: Conn) -> None:
    talking(db, "hi")
    for assignments in (
        "status = 'ended', ended_at = now(), outcome_source = 'rule'",
        "status = 'ended', ended_at = now(), conversion_status = 'success'",
        "status = 'ended', conversion_status = 'success', outcome_source = 'rule'",
        "status = 'ended', ended_at = now(), conversion_status = 'success',"
        " outcome_source = 'guess'",
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(f"update pgflow.conversations set {assignments}")
    assert outcome(db) == ("engaged", None, None)

"""The console in SQL (sql/functions/console.sql): a person's hold on a lead (take_over,
human_reply, hand_back, settle), what the hold does to the agent, the drip and Retell, the
audit trail, console users and sessions, and the inbox and conversation reads.

Real Postgres, one database per test, the clock injected (NOW and offsets from it)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import psycopg
import pytest

from pgflow import db as pdb
from pgflow import errors, passwords
from tests.chat_payloads import chat, event, inbound
from tests.factories import apply_campaign, at, campaign_doc, count, ingest
from tests.helpers import row, rows, scalar

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")  # Monday 10:00 in New York
NIGHT = at("2026-11-24 03:00")  # Monday 22:00 in New York: the default window is shut
OPEN = {"window_start": "00:00", "window_end": "24:00"}
LEAD = "+12125550147"
LINE = "+14155550100"
DANA = "dana@x.com"
LEE = "lee@x.com"
HASH = passwords.hash_password("correct horse battery")  # slow on purpose: made once
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def deliver(
    db: Conn, payload: dict[str, Any], *, replies: bool = False, now: dt.datetime = NOW
) -> dict[str, Any]:
    return pdb.record_retell_event(payload, replies, now).run(db)


def on_chat(db: Conn, phone: str = LEAD, **fields: Any) -> dict[str, Any]:
    """A lead whose step 1 went out as Retell chat `chat_1` (what the worker records)."""
    apply_campaign(db, **OPEN)
    lead = ingest(db, phone, NOW, first_name="Sam", **fields)
    message = scalar(
        db, "select id from pgflow.messages where contact_id = %s", [lead["contact_id"]]
    )
    assert pdb.claim_message(message, None, None, NOW).run(db)["action"] == "send"
    sent = pdb.record_send(message, 1, {"ok": True, "chat_id": "chat_1"}, 30.0, NOW).run(db)
    assert sent["action"] == "sent"
    conversation = scalar(
        db, "select id from pgflow.conversations where contact_id = %s", [lead["contact_id"]]
    )
    return {**lead, "message_id": message, "conversation_id": conversation}


def says(db: Conn, lead: dict[str, Any], *texts: str, replies: bool = False) -> dict[str, Any]:
    """The lead's texts in chat_1 (the whole chat so far: Retell sends it every time)."""
    payload = chat(
        "chat_1",
        [("agent", "Hi Sam, it's Ava from SunCo!"), *(("user", t) for t in texts)],
        conversation_id=lead["conversation_id"],
        message_id=lead["message_id"],
        start_ms=int(NOW.timestamp() * 1000),
    )
    return deliver(db, event("transcript_updated", payload), replies=replies)


def texts(db: Conn, phone: str, body: str, now: dt.datetime, line: str = LINE) -> dict[str, Any]:
    """A lead's text in Retell's older sms_inbound shape (it carries the text)."""
    payload = {
        "event": "sms_inbound",
        "sms_inbound": {"from_number": phone, "to_number": line, "message": body},
    }
    return deliver(db, payload, now=now)


def last_inbound(db: Conn) -> int:
    return int(scalar(db, "select max(id) from pgflow.messages where direction = 'inbound'"))


def audit(db: Conn) -> list[tuple[Any, ...]]:
    return rows(
        db, "select actor, action, conversation_id, detail from pgflow.audit_log order by id"
    )


def jobs(db: Conn, entrypoint: str, message_id: int | None = None) -> int:
    if message_id is None:
        return count(db, "pgqueuer", "entrypoint = %s", [entrypoint])
    return count(db, "pgqueuer", "dedupe_key = %s", [f"{entrypoint}:{message_id}"])


def held(db: Conn, contact_id: int) -> tuple[Any, ...]:
    return row(db, "select held_at, held_by from pgflow.contacts where id = %s", [contact_id])


def token(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


# --- take_over ----------------------------------------------------------------------------


def test_take_over_holds_the_lead_pauses_the_drip_and_ends_the_chat(db: Conn) -> None:
    lead = on_chat(db)
    conversation = lead["conversation_id"]
    result = pdb.take_over(conversation, DANA, None, " hot lead ", NOW).run(db)
    assert result == {
        "result": "held",
        "contact_id": lead["contact_id"],
        "conversation_id": conversation,
        "held_by": DANA,
        "previous": None,
    }
    assert held(db, lead["contact_id"]) == (NOW, DANA)
    assert scalar(db, "select status from pgflow.conversations") == "open"  # open for the person
    assert scalar(db, "select status from pgflow.enrollments") == "paused"
    assert jobs(db, "end_chat") == 1  # Retell's own AI must not answer in chat_1
    assert row(
        db, "select from_status, to_status, reason from pgflow.events where entity = 'contact'"
    ) == ("with_agent", "held", "taken over by dana@x.com: hot lead")
    assert audit(db) == [(DANA, "takeover", conversation, {"reason": "hot lead"})]


def test_take_over_again_is_unchanged_and_from_a_colleague_is_recorded(db: Conn) -> None:
    lead = on_chat(db)
    conversation = lead["conversation_id"]
    pdb.take_over(conversation, DANA, None, None, NOW).run(db)
    again = pdb.take_over(conversation, DANA, None, None, NOW + HOUR).run(db)
    assert again == {"result": "unchanged", "contact_id": lead["contact_id"], "held_by": DANA}
    assert len(audit(db)) == 1
    taken = pdb.take_over(conversation, LEE, None, "Dana is out", NOW + HOUR).run(db)
    assert (taken["result"], taken["held_by"], taken["previous"]) == ("held", LEE, DANA)
    assert held(db, lead["contact_id"]) == (NOW, LEE)  # held since Dana took it
    assert audit(db)[-1] == (
        LEE,
        "takeover",
        conversation,
        {"reason": "Dana is out", "from": DANA},
    )
    assert jobs(db, "end_chat") == 1  # one job per chat, still queued


def test_take_over_needs_a_conversation_and_a_person(db: Conn) -> None:
    lead = on_chat(db)
    with pytest.raises(errors.NotFound):
        pdb.take_over(999_999, DANA, now=NOW).run(db)
    with pytest.raises(errors.InvalidInput):
        pdb.take_over(lead["conversation_id"], "  ", now=NOW).run(db)
    assert held(db, lead["contact_id"]) == (None, None)


def test_while_held_the_agent_is_quiet(db: Conn) -> None:
    lead = on_chat(db)
    says(db, lead, "hi", replies=True)
    text = last_inbound(db)
    queued = pdb.record_agent_reply(text, "Hello Sam!", now=NOW).run(db)
    assert queued["result"] == "queued"
    pdb.take_over(lead["conversation_id"], DANA, now=NOW).run(db)
    assert pdb.agent_turn(text, NOW).run(db) == {
        "answer": False,
        "reason": "a person holds this lead",
    }
    claim = pdb.claim_message(queued["message_id"], None, None, NOW).run(db)
    assert claim == {"action": "suppressed", "reason": "a person holds this lead"}
    # later texts, on this conversation, get no answer either
    says(db, lead, "hi", "hello??", replies=True)
    assert pdb.agent_turn(last_inbound(db), NOW).run(db)["answer"] is False


def test_an_escalation_handoff_still_goes_unless_a_person_took_over(db: Conn) -> None:
    lead = on_chat(db)
    says(db, lead, "can you call me instead?", replies=True)
    handoff = pdb.record_agent_reply(
        last_inbound(db), "A colleague will text you.", "handoff", "asked for a call", NOW
    ).run(db)["message_id"]
    # the lead waits for a person: held, by nobody yet
    assert held(db, lead["contact_id"]) == (NOW, None)
    assert row(db, "select status, conversion_status from pgflow.conversations") == (
        "ended",
        "escalated",
    )
    claim = pdb.claim_message(handoff, None, None, NOW).run(db)
    assert claim["action"] == "send"  # the lead is told a person will answer
    assert claim["held"] is True
    pdb.release_interrupted(handoff, 1, NOW).run(db)
    pdb.take_over(lead["conversation_id"], DANA, now=NOW).run(db)
    claim = pdb.claim_message(handoff, None, None, NOW).run(db)
    assert claim == {"action": "suppressed", "reason": "a person holds this lead"}


def test_a_lead_asking_for_a_person_is_held_on_its_next_conversation_too(db: Conn) -> None:
    lead = on_chat(db)
    says(db, lead, "can I talk to a real person", replies=True)
    first = lead["conversation_id"]
    assert row(db, "select status, conversion_status from pgflow.conversations") == (
        "ended",
        "escalated",
    )
    assert held(db, lead["contact_id"]) == (NOW, None)
    assert scalar(db, "select kind from pgflow.alerts where resolved_at is null") == (
        f"escalation:{first}"
    )
    # the lead writes again: a new conversation, and still no agent answer
    says(db, lead, "can I talk to a real person", "hello? anyone?", replies=True)
    text = last_inbound(db)
    second = scalar(db, "select conversation_id from pgflow.messages where id = %s", [text])
    assert second != first
    assert scalar(db, "select status from pgflow.conversations where id = %s", [second]) == (
        "engaged"
    )
    assert pdb.agent_turn(text, NOW).run(db) == {
        "answer": False,
        "reason": "a person holds this lead",
    }
    # both show in the inbox's first bucket: the person must answer
    page = pdb.inbox({}, None, 50, NOW).run(db)
    assert [(r["id"], r["bucket"]) for r in page["rows"]] == [(second, 1), (first, 1)]


def test_chat_inbound_for_a_held_lead_is_refused_unless_the_engine_replies(db: Conn) -> None:
    lead = on_chat(db)
    pdb.take_over(lead["conversation_id"], DANA, now=NOW).run(db)
    refused = deliver(db, inbound(LEAD, LINE, chat_id="chat_2"))
    assert refused["result"] == "held_rejected"
    assert refused["response"] == {"chat_inbound": {"reject": True}}
    assert scalar(
        db, "select result from pgflow.webhook_deliveries where id = %s", [refused["delivery_id"]]
    ) == ("held_rejected")
    note = scalar(
        db,
        "select reason from pgflow.events where entity = 'contact' and to_status = 'held'"
        " and from_status = 'held'",
    )
    assert "the lead texted while a person holds the conversation" in note
    # a refused chat never starts: the conversation's chat (the one to end) is still chat_1
    assert row(db, "select provider_chat_id, chat_status from pgflow.conversations") == (
        "chat_1",
        "ongoing",
    )
    # a retry of that webhook gets the same refusal
    assert deliver(db, inbound(LEAD, LINE, chat_id="chat_2"))["response"] == refused["response"]
    # where the engine writes the replies, the chat goes on (agent_turn keeps the agent quiet)
    answered = deliver(db, inbound(LEAD, LINE, chat_id="chat_3"), replies=True)
    assert answered["result"] == "answered"
    assert answered["response"]["chat_inbound"]["metadata"]["pgflow_conversation_id"] == str(
        lead["conversation_id"]
    )
    assert scalar(db, "select provider_chat_id from pgflow.conversations") == "chat_3"


def test_the_tick_never_ends_a_conversation_a_person_holds(db: Conn) -> None:
    apply_campaign(db, **OPEN, steps=[{"delay": "0 seconds", "body": "Only one"}])
    ingest(db, LEAD, NOW)
    message = scalar(db, "select id from pgflow.messages")
    pdb.claim_message(message, None, None, NOW).run(db)
    pdb.record_send(message, 1, {"ok": True, "chat_id": "chat_1"}, 30.0, NOW).run(db)
    conversation = scalar(db, "select id from pgflow.conversations")
    pdb.take_over(conversation, DANA, now=NOW + HOUR).run(db)
    # the reply timeout after the last step passes while a person works the lead
    assert pdb.tick(NOW + 4 * DAY).run(db)["no_response"] == 0
    assert row(db, "select status, conversion_status from pgflow.conversations") == ("open", None)
    # handed back, the rule applies again
    pdb.hand_back(conversation, DANA, now=NOW + 4 * DAY).run(db)
    assert pdb.tick(NOW + 4 * DAY + HOUR).run(db)["no_response"] == 1
    assert row(
        db, "select status, conversion_status, outcome_source from pgflow.conversations"
    ) == (
        "ended",
        "no_response",
        "rule",
    )


# --- human_reply --------------------------------------------------------------------------


def test_a_persons_reply_is_queued_once_and_takes_the_lead_over(db: Conn) -> None:
    lead = on_chat(db)
    says(db, lead, "is it free?")
    conversation = lead["conversation_id"]
    reply = pdb.human_reply(conversation, " Yes, it is! Dana here.\n", DANA, None, "f1", NOW)
    result = reply.run(db)
    message = result["message_id"]
    assert result == {
        "result": "queued",
        "message_id": message,
        "conversation_id": conversation,
        "segments": 1,
        "transport": "retell",  # what carries it (the CLI says what that transport can do)
    }
    assert row(
        db,
        "select direction, kind, body, delivery_status, conversation_id from pgflow.messages"
        " where id = %s",
        [message],
    ) == ("outbound", "human", "Yes, it is! Dana here.", "queued", conversation)
    assert jobs(db, "send_sms", message) == 1
    # writing takes the lead over first
    assert held(db, lead["contact_id"]) == (NOW, DANA)
    assert [(a[1], a[3]) for a in audit(db)] == [
        ("takeover", {"reason": "replied to the lead"}),
        ("reply", {"message_id": message, "segments": 1}),
    ]
    # the form sent twice: one message
    again = pdb.human_reply(conversation, "Yes, it is! Dana here.", DANA, None, "f1", NOW).run(db)
    assert again == {"result": "duplicate", "message_id": message}
    assert count(db, "messages", "kind = 'human'") == 1
    assert len(audit(db)) == 2
    claim = pdb.claim_message(message, None, None, NOW).run(db)
    assert claim["action"] == "send"
    assert claim["kind"] == "human"
    assert claim["chat_message_id"] == f"pgflow-{message}"
    assert claim["held"] is True
    assert "A person from our team" in claim["variables"]["agent_prompt"]


def test_a_persons_reply_is_refused_after_stop_and_when_empty_or_too_long(db: Conn) -> None:
    lead = on_chat(db)
    conversation = lead["conversation_id"]
    for body in ("", " \n\t ", "x" * 1601):
        with pytest.raises(errors.InvalidInput):
            pdb.human_reply(conversation, body, DANA, now=NOW).run(db)
    with pytest.raises(errors.InvalidInput):
        pdb.human_reply(conversation, "hi", DANA, key="k" * 200, now=NOW).run(db)
    with pytest.raises(errors.NotFound):
        pdb.human_reply(999_999, "hi", DANA, now=NOW).run(db)
    assert count(db, "messages", "kind = 'human'") == 0
    longest = pdb.human_reply(conversation, "x" * 1600, DANA, now=NOW).run(db)
    assert longest["segments"] == 11
    says(db, lead, "STOP")
    with pytest.raises(errors.Suppressed):
        pdb.human_reply(conversation, "Sorry to see you go", DANA, now=NOW).run(db)
    assert count(db, "messages", "kind = 'human'") == 1


def test_a_persons_reply_goes_on_an_escalated_conversation(db: Conn) -> None:
    lead = on_chat(db)
    says(db, lead, "can I talk to a real person")
    conversation = lead["conversation_id"]
    assert scalar(db, "select status from pgflow.conversations") == "ended"
    reply = pdb.human_reply(conversation, "Hi Sam, Dana here.", DANA, now=NOW).run(db)
    assert reply["conversation_id"] == conversation  # answered where it ended
    assert count(db, "conversations") == 1
    claim = pdb.claim_message(reply["message_id"], None, None, NOW).run(db)
    assert claim["action"] == "send"
    assert claim["to_number"] == LEAD


def test_a_persons_text_to_a_lead_who_never_wrote_waits_for_the_window(db: Conn) -> None:
    apply_campaign(db)  # 09:00-20:00 New York
    lead = ingest(db, LEAD, NIGHT - DAY)
    conversation = scalar(db, "select id from pgflow.conversations")
    reply = pdb.human_reply(conversation, "Hi, Dana from SunCo.", DANA, now=NIGHT).run(db)
    claim = pdb.claim_message(reply["message_id"], None, None, NIGHT).run(db)
    opens = at("2026-11-24 14:00")  # Tuesday 09:00 in New York
    assert claim == {
        "action": "defer",
        "reason": "send window closed",
        "rule": "campaign_window",
        "delay_seconds": (opens - NIGHT).total_seconds(),
    }
    assert scalar(
        db, "select delivery_status from pgflow.messages where id = %s", [reply["message_id"]]
    ) == ("queued")
    assert pdb.claim_message(reply["message_id"], None, None, opens).run(db)["action"] == "send"
    # once the lead wrote, a person answers at any hour
    texts(db, LEAD, "who is this?", NIGHT)
    assert held(db, lead["contact_id"])[1] == DANA
    answer = pdb.human_reply(conversation, "Dana, from SunCo.", DANA, now=NIGHT).run(db)
    assert pdb.claim_message(answer["message_id"], None, None, NIGHT).run(db)["action"] == "send"


# --- hand_back ----------------------------------------------------------------------------


def test_hand_back_needs_a_hold(db: Conn) -> None:
    lead = on_chat(db)
    with pytest.raises(errors.IllegalTransition):
        pdb.hand_back(lead["conversation_id"], DANA, now=NOW).run(db)
    assert audit(db) == []


def test_hand_back_lifts_the_hold_and_resolves_the_escalation(db: Conn) -> None:
    lead = on_chat(db)
    says(db, lead, "can I talk to a real person")
    conversation = lead["conversation_id"]
    later = NOW + HOUR
    result = pdb.hand_back(conversation, LEE, None, True, later).run(db)
    assert result == {
        "result": "handed_back",
        "contact_id": lead["contact_id"],
        "conversation_id": conversation,
        "agent_reply_queued": False,  # the conversation ended: nothing for the agent
    }
    assert held(db, lead["contact_id"]) == (None, None)
    assert scalar(db, "select resolved_at from pgflow.alerts") == later
    assert audit(db) == [
        (LEE, "hand_back", conversation, {"agent_reply_queued": False}),
    ]


@pytest.mark.parametrize(
    ("engine_replies", "answered_by_person", "queued"),
    [(True, False, True), (False, False, False), (True, True, False)],
)
def test_hand_back_has_the_agent_answer_a_text_nobody_answered(
    db: Conn, engine_replies: bool, answered_by_person: bool, queued: bool
) -> None:
    lead = on_chat(db)
    conversation = lead["conversation_id"]
    pdb.take_over(conversation, DANA, now=NOW).run(db)
    says(db, lead, "still there?")
    text = last_inbound(db)
    if answered_by_person:
        pdb.human_reply(conversation, "Yes!", DANA, now=NOW).run(db)
    assert jobs(db, "agent_reply") == 0
    result = pdb.hand_back(conversation, DANA, None, engine_replies, NOW).run(db)
    assert result["agent_reply_queued"] is queued
    assert jobs(db, "agent_reply", text) == int(queued)
    assert held(db, lead["contact_id"]) == (None, None)
    turn = pdb.agent_turn(text, NOW).run(db)
    assert turn["answer"] is not answered_by_person
    if answered_by_person:
        assert turn["reason"] == "already answered"


# --- settle -------------------------------------------------------------------------------


def test_settle_gives_a_persons_outcome_and_audits_it(db: Conn) -> None:
    lead = on_chat(db)
    says(db, lead, "yes, I own the house")
    conversation = lead["conversation_id"]
    with pytest.raises(errors.InvalidInput):
        pdb.settle(conversation, "won", None, DANA, now=NOW).run(db)
    result = pdb.settle(conversation, "qualified", " owns the house ", DANA, None, NOW).run(db)
    assert result == {"result": "ended", "conversation_id": conversation, "status": "qualified"}
    assert row(
        db,
        "select status, conversion_status, outcome_source, outcome_reason"
        " from pgflow.conversations",
    ) == ("ended", "qualified", "human", "owns the house")
    changed = pdb.settle(conversation, "success", None, LEE, None, NOW + HOUR).run(db)
    assert changed["result"] == "changed"
    assert scalar(db, "select outcome_reason from pgflow.conversations") == "set by lee@x.com"
    assert audit(db) == [
        (
            DANA,
            "set_outcome",
            conversation,
            {"status": "qualified", "result": "ended", "reason": "owns the house"},
        ),
        (
            LEE,
            "set_outcome",
            conversation,
            {"status": "success", "before": "qualified", "result": "changed"},
        ),
    ]
    # nothing but a person overwrites it
    assert pdb.set_outcome(conversation, "no_response", "x", "rule", NOW).run(db)["result"] == (
        "kept"
    )


def test_settle_dead_letters_audits_each_message(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    dead = []
    for phone in (LEAD, "+12125550148"):
        ingest(db, phone, NOW)
        message = scalar(db, "select max(id) from pgflow.messages")
        assert pdb.claim_message(message, None, None, NOW).run(db)["action"] == "send"
        failed = {"ok": False, "retryable": False, "status_code": 422, "error": "HTTP 422"}
        assert pdb.record_send(message, 1, failed, 1.0, NOW).run(db)["action"] == "dead_letter"
        dead.append(message)
    requeued = pdb.settle_dead_letters("requeue", [dead[0], 999_999], DANA, None, NOW).run(db)
    assert requeued == [
        {"id": dead[0], "result": "requeued"},
        {"id": 999_999, "result": "not_found"},
    ]
    assert scalar(db, "select delivery_status from pgflow.messages where id = %s", [dead[0]]) == (
        "queued"
    )
    discarded = pdb.settle_dead_letters("discard", dead, LEE, None, NOW).run(db)
    assert [d["result"] for d in discarded] == ["not_dead_letter", "discarded"]
    conversations = [
        scalar(db, "select conversation_id from pgflow.messages where id = %s", [m]) for m in dead
    ]
    assert audit(db) == [
        (DANA, "requeue", conversations[0], {"message_id": dead[0]}),
        (LEE, "discard", conversations[1], {"message_id": dead[1]}),
    ]
    with pytest.raises(errors.InvalidInput):
        pdb.settle_dead_letters("delete", dead, DANA, None, NOW).run(db)


# --- console users and sessions -------------------------------------------------------------


def test_console_users_are_added_once_and_enabled_again(db: Conn) -> None:
    added = pdb.add_console_user(" Dana@X.com ", "agent", HASH, "cli:root", None, NOW).run(db)
    assert (added["result"], added["email"], added["role"]) == ("added", DANA, "agent")
    with pytest.raises(errors.Conflict):
        pdb.add_console_user("dana@x.com", "admin", HASH, "cli:root", None, NOW).run(db)
    pdb.change_console_user(DANA, "disable", "cli:root", now=NOW).run(db)
    again = pdb.add_console_user(DANA, "manager", HASH, "cli:root", None, NOW + HOUR).run(db)
    assert (again["result"], again["user_id"], again["role"]) == (
        "enabled",
        added["user_id"],
        "manager",
    )
    for email, role, password_hash in (
        ("not an email", "agent", HASH),
        ("lee@", "agent", HASH),
        (LEE, "owner", HASH),
        (LEE, "agent", "plain text"),
    ):
        with pytest.raises(errors.InvalidInput):
            pdb.add_console_user(email, role, password_hash, "cli:root", None, NOW).run(db)
    listed = pdb.console_user_list(NOW + HOUR).run(db)
    assert [(u["email"], u["role"], u["disabled_at"]) for u in listed] == [(DANA, "manager", None)]
    assert "password_hash" not in listed[0]
    assert [a[1] for a in audit(db)] == ["user_add", "user_disable", "user_add"]
    with pytest.raises(errors.NotFound):
        pdb.change_console_user(LEE, "disable", "cli:root", now=NOW).run(db)
    with pytest.raises(errors.InvalidInput):
        pdb.change_console_user(DANA, "delete", "cli:root", now=NOW).run(db)
    with pytest.raises(psycopg.Error) as no_action:
        db.execute("select pgflow.change_console_user(%s, null, null, 'cli:root')", [DANA])
    assert no_action.value.sqlstate == "PF003"


def test_a_sign_in_opens_a_session_that_expires_when_idle(db: Conn) -> None:
    user = pdb.add_console_user(DANA, "agent", HASH, "cli:root", None, NOW).run(db)
    signed = pdb.record_sign_in(DANA, True, token("a"), "10.0.0.1", "Firefox", NOW).run(db)
    assert (signed["result"], signed["user_id"], signed["role"]) == (
        "signed_in",
        user["user_id"],
        "agent",
    )
    assert pdb.console_session(token("a"), NOW + HOUR).run(db) == {
        "session_id": signed["session_id"],
        "user_id": user["user_id"],
        "email": DANA,
        "role": "agent",
    }
    assert pdb.console_session(token("unknown"), NOW).run(db) is None
    # idle for 13 hours: gone (12 hours after it was last seen)
    pdb.record_sign_in(DANA, True, token("b"), None, None, NOW).run(db)
    assert pdb.console_session(token("b"), NOW + 13 * HOUR).run(db) is None
    # seen every 11 hours it lives on, but never past 7 days
    seen = NOW
    while seen < NOW + 7 * DAY - 11 * HOUR:
        seen += 11 * HOUR
        assert pdb.console_session(token("a"), seen).run(db) is not None, seen
    assert pdb.console_session(token("a"), NOW + 7 * DAY).run(db) is None
    assert [a[1] for a in audit(db)] == ["user_add", "sign_in", "sign_in"]
    with pytest.raises(errors.NotFound):
        pdb.record_sign_in(LEE, True, token("c"), None, None, NOW).run(db)


@pytest.mark.parametrize(
    ("action", "audited"),
    [("revoke", "sessions_revoke"), ("disable", "user_disable"), ("password", "user_password")],
)
def test_a_session_ends_when_the_user_is_revoked_disabled_or_given_a_password(
    db: Conn, action: str, audited: str
) -> None:
    pdb.add_console_user(DANA, "agent", HASH, "cli:root", None, NOW).run(db)
    pdb.record_sign_in(DANA, True, token("a"), None, None, NOW).run(db)
    pdb.record_sign_in(DANA, True, token("b"), None, None, NOW).run(db)
    assert pdb.console_session(token("a"), NOW + HOUR).run(db) is not None
    changed = pdb.change_console_user(DANA, action, "admin@x.com", HASH, None, NOW + HOUR).run(db)
    assert changed == {"result": action, "email": DANA, "sessions_ended": 2}
    assert pdb.console_session(token("a"), NOW + 2 * HOUR).run(db) is None
    assert pdb.console_session(token("b"), NOW + 2 * HOUR).run(db) is None
    assert audit(db)[-1][:2] == ("admin@x.com", audited)


def test_signing_out_ends_the_session(db: Conn) -> None:
    pdb.add_console_user(DANA, "agent", HASH, "cli:root", None, NOW).run(db)
    pdb.record_sign_in(DANA, True, token("a"), None, None, NOW).run(db)
    assert pdb.end_console_session(token("a"), NOW + HOUR).run(db) == {"result": "signed_out"}
    assert pdb.console_session(token("a"), NOW + HOUR).run(db) is None
    assert pdb.end_console_session(token("a"), NOW + HOUR).run(db) == {"result": "unchanged"}
    assert audit(db)[-1][:2] == (DANA, "sign_out")


def test_five_failed_sign_ins_in_15_minutes_throttle_the_email(db: Conn) -> None:
    pdb.add_console_user(DANA, "agent", HASH, "cli:root", None, NOW).run(db)
    who = pdb.console_sign_in_user(" DANA@x.com", NOW).run(db)
    assert (who["email"], who["role"], who["password_hash"]) == (DANA, "agent", HASH)
    assert who["retry_after_seconds"] == 0
    stranger = pdb.console_sign_in_user(LEE, NOW).run(db)
    assert (stranger["user_id"], stranger["password_hash"]) == (None, None)
    minute = dt.timedelta(minutes=1)
    for n in range(4):
        pdb.record_sign_in(DANA, False, None, "10.0.0.1", None, NOW + n * minute).run(db)
    assert pdb.console_sign_in_user(DANA, NOW + 4 * minute).run(db)["retry_after_seconds"] == 0
    failed = pdb.record_sign_in(DANA, False, None, "10.0.0.1", None, NOW + 4 * minute).run(db)
    assert failed == {"result": "failed"}
    throttled = pdb.console_sign_in_user(DANA, NOW + 5 * minute).run(db)
    assert throttled["retry_after_seconds"] == 10 * 60  # until the first failure is 15 min old
    # the oldest failure ages out: free again, until the next failure
    free = pdb.console_sign_in_user(DANA, NOW + 15 * minute + dt.timedelta(seconds=1))
    assert free.run(db)["retry_after_seconds"] == 0
    # an unknown email is throttled the same way
    for n in range(5):
        pdb.record_sign_in(LEE, False, None, None, None, NOW + n * minute).run(db)
    assert pdb.console_sign_in_user(LEE, NOW + 5 * minute).run(db)["retry_after_seconds"] > 0
    # a success clears the failures before it
    pdb.record_sign_in(DANA, True, token("a"), None, None, NOW + 16 * minute).run(db)
    for n in range(4):
        pdb.record_sign_in(DANA, False, None, None, None, NOW + (17 + n) * minute).run(db)
    assert pdb.console_sign_in_user(DANA, NOW + 21 * minute).run(db)["retry_after_seconds"] == 0


# --- the inbox ----------------------------------------------------------------------------


def inbox_ids(db: Conn, filters: dict[str, Any] | None = None) -> list[int]:
    page = pdb.inbox(filters or {}, None, 200, NOW).run(db)
    assert page["next"] is None
    return [r["id"] for r in page["rows"]]


def conversation_of(db: Conn, lead: dict[str, Any]) -> int:
    return int(
        scalar(
            db,
            "select max(id) from pgflow.conversations where contact_id = %s",
            [lead["contact_id"]],
        )
    )


def leads_in_every_state(db: Conn) -> dict[str, int]:
    """One conversation per inbox case, on two campaigns; {case: conversation id}."""
    doc = campaign_doc("solar", **OPEN)
    doc["campaigns"] += campaign_doc("roofing", from_number="+14155550199", **OPEN)["campaigns"]
    pdb.apply_campaigns(doc, NOW - 30 * DAY).run(db)
    made: dict[str, Any] = {}

    def lead(name: str, n: int, created: dt.datetime, **fields: Any) -> dict[str, Any]:
        made[name] = ingest(db, f"+121255501{n:02d}", created, **fields)
        return dict(made[name])

    lead("old_quiet", 1, NOW - 10 * DAY)
    lead("new_quiet", 2, NOW - HOUR, campaign="roofing", first_name="Ria", last_name="Lopez")
    lead("wrote_2_days_ago", 3, NOW - 5 * DAY)
    texts(db, "+12125550103", "yes please", NOW - 2 * DAY)
    lead("wrote_an_hour_ago", 4, NOW - 4 * DAY, first_name="Sam", last_name="Lee")
    texts(db, "+12125550104", "tell me more", NOW - HOUR)
    lead("wrote_8_days_ago", 5, NOW - 9 * DAY)
    texts(db, "+12125550105", "maybe later", NOW - 8 * DAY)
    held_lead = lead("held", 6, NOW - 6 * DAY, campaign="roofing")
    lead("escalated", 7, NOW - 7 * DAY)
    texts(db, "+12125550107", "can I talk to a real person", NOW - 7 * DAY + HOUR)
    lead("review", 8, NOW - 2 * HOUR)
    ids = {name: conversation_of(db, value) for name, value in made.items()}
    pdb.take_over(ids["held"], DANA, None, None, NOW - 6 * DAY).run(db)
    assert held_lead["status"] == "created"
    pdb.end_conversation(ids["review"], "no_response", "quiet", "rule", NOW - 2 * HOUR).run(db)
    pdb.set_outcome(ids["review"], "success", "booked", "llm", NOW - 2 * HOUR).run(db)
    return ids


def test_the_inbox_puts_who_needs_a_person_first_then_recent_replies(db: Conn) -> None:
    ids = leads_in_every_state(db)
    page = pdb.inbox({}, None, 50, NOW).run(db)
    assert page["next"] is None
    order = {v: k for k, v in ids.items()}
    assert [(order[r["id"]], r["bucket"]) for r in page["rows"]] == [
        ("review", 1),  # activity 2 hours ago
        ("held", 1),  # created 6 days ago
        ("escalated", 1),  # the lead wrote 7 days ago
        ("wrote_an_hour_ago", 2),
        ("wrote_2_days_ago", 2),
        ("new_quiet", 3),
        ("wrote_8_days_ago", 3),
        ("old_quiet", 3),
    ]
    first = page["rows"][3]
    assert (first["phone"], first["first_name"], first["campaign"]) == (
        "+12125550104",
        "Sam",
        "solar",
    )
    assert (first["last_text"], first["last_direction"], first["status"]) == (
        "tell me more",
        "inbound",
        "engaged",
    )
    held_row = page["rows"][1]
    assert (held_row["held_by"], held_row["campaign"]) == (DANA, "roofing")


def test_the_inbox_filters(db: Conn) -> None:
    ids = leads_in_every_state(db)

    def names(**filters: Any) -> list[str]:
        order = {v: k for k, v in ids.items()}
        return [order[i] for i in inbox_ids(db, filters)]

    assert names(campaign="roofing") == ["held", "new_quiet"]
    assert names(campaign="nope") == []
    assert names(state="held") == ["held", "escalated"]
    assert names(state="review") == ["review"]
    assert names(state="engaged") == ["wrote_an_hour_ago", "wrote_2_days_ago", "wrote_8_days_ago"]
    assert names(state="open") == ["held", "new_quiet", "old_quiet"]
    assert names(state="ended") == ["review", "escalated"]
    assert names(outcome="escalated") == ["escalated"]
    assert names(outcome="no_response") == ["review"]
    assert names(q="(212) 555-0104") == ["wrote_an_hour_ago"]
    assert names(q="0105") == ["wrote_8_days_ago"]
    assert names(q="sam LEE") == ["wrote_an_hour_ago"]
    assert names(q="lopez") == ["new_quiet"]
    assert names(q="nobody") == []
    assert names(campaign="solar", state="engaged", q="0103") == ["wrote_2_days_ago"]


def test_inbox_pages_return_every_conversation_once(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    for n in range(30):
        # several conversations share an instant: the id breaks the tie
        lead = ingest(db, f"+121255501{n:02d}", NOW - (n % 4) * HOUR - DAY)
        if n % 3 == 0:
            texts(db, f"+121255501{n:02d}", f"text {n}", NOW - (n % 5) * HOUR)
        if n % 7 == 0:
            pdb.take_over(conversation_of(db, lead), DANA, None, None, NOW).run(db)
    everything = pdb.inbox({}, None, 200, NOW).run(db)["rows"]
    assert len(everything) == 30
    assert {r["bucket"] for r in everything} == {1, 2, 3}
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        page = pdb.inbox({}, after, 7, NOW).run(db)
        pages += 1
        assert len(page["rows"]) == (7 if page["next"] else 30 - 7 * (pages - 1))
        seen += [r["id"] for r in page["rows"]]
        after = page["next"]
        if after is None:
            break
    assert pages == 5
    assert seen == [r["id"] for r in everything]  # the same order, no duplicates, none lost
    assert len(set(seen)) == 30


def test_the_inbox_pages_with_a_filter(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    for n in range(12):
        ingest(db, f"+121255501{n:02d}", NOW - n * HOUR)
        texts(db, f"+121255501{n:02d}", f"text {n}", NOW - n * HOUR)
    first = pdb.inbox({"state": "engaged"}, None, 5, NOW).run(db)
    second = pdb.inbox({"state": "engaged"}, first["next"], 5, NOW).run(db)
    third = pdb.inbox({"state": "engaged"}, second["next"], 5, NOW).run(db)
    assert (len(first["rows"]), len(second["rows"]), len(third["rows"])) == (5, 5, 2)
    assert third["next"] is None
    ids = [r["id"] for p in (first, second, third) for r in p["rows"]]
    assert ids == inbox_ids(db, {"state": "engaged"})


# --- the conversation page ----------------------------------------------------------------


def test_conversation_view_has_everything_the_page_shows(db: Conn) -> None:
    lead = on_chat(db, last_name="Lee")
    conversation = lead["conversation_id"]
    says(db, lead, "is it free?")
    pdb.take_over(conversation, DANA, None, "hot lead", NOW).run(db)
    later = NOW + dt.timedelta(minutes=1)
    reply = pdb.human_reply(conversation, "Yes, free. Dana here.", DANA, None, None, later)
    message = reply.run(db)["message_id"]
    pdb.settle(conversation, "qualified", "owns the house", DANA, None, later).run(db)
    view = pdb.conversation_view(conversation, NOW).run(db)
    assert view is not None
    assert view["conversation"]["id"] == conversation
    assert view["conversation"]["conversion_status"] == "qualified"
    assert view["needs_person"] is False  # settled: ended, and not escalated
    assert (view["contact"]["phone"], view["contact"]["held_by"]) == (LEAD, DANA)
    assert view["campaign"]["slug"] == "solar"
    assert view["agent"] == "ava"
    assert [(t["direction"], t["kind"], t["body"]) for t in view["transcript"]] == [
        ("outbound", "campaign", "Hi Sam, it's Ava from SunCo!"),
        ("inbound", "lead", "is it free?"),
        ("outbound", "human", "Yes, free. Dana here."),
    ]
    assert view["transcript"][2]["id"] == message
    notes = [(n["entity"], n["to"]) for n in view["notes"]]
    assert ("contact", "held") in notes
    assert ("enrollment", "paused") in notes
    assert ("conversation", "ended") in notes
    drip = view["drip"]
    assert drip["status"] == "stopped"  # settled: the conversation and its drip ended
    assert [(s["position"], s["status"]) for s in drip["steps"]] == [
        (1, "sent"),
        (2, None),
        (3, None),
    ]
    assert [(s["source"], s["status"]) for s in view["signals"]] == [("human", "qualified")]
    assert [a["action"] for a in view["audit"]] == ["takeover", "reply", "set_outcome"]
    assert view["others"] == []
    assert pdb.conversation_view(999_999, NOW).run(db) is None


def test_the_cursor_moves_when_anything_changes(db: Conn) -> None:
    lead = on_chat(db)
    before = pdb.console_cursor().run(db)
    assert pdb.console_cursor().run(db) == before
    pdb.human_reply(lead["conversation_id"], "Hi Sam", DANA, now=NOW).run(db)
    after = pdb.console_cursor().run(db)
    assert after != before
    says(db, lead, "hello")
    assert pdb.console_cursor().run(db) != after


def test_the_drip_timeline_says_why_a_step_waits(db: Conn) -> None:
    apply_campaign(db, window_start="09:00", window_end="20:00")
    lead = ingest(db, LEAD, NOW, first_name="Sam")  # queued in the window...
    message = scalar(db, "select id from pgflow.messages where kind = 'campaign'")
    claim = pdb.claim_message(message, None, None, NIGHT).run(db)  # ...claimed after it shut
    assert (claim["action"], claim["reason"]) == ("defer", "send window closed")
    conversation = scalar(
        db, "select id from pgflow.conversations where contact_id = %s", [lead["contact_id"]]
    )
    view = pdb.conversation_view(conversation, NIGHT).run(db)
    assert view is not None
    [step1, *_] = view["drip"]["steps"]
    assert (step1["status"], step1["deferred_reason"]) == ("queued", "send window closed")
    assert step1["send_after"] is not None
    morning = at("2026-11-24 14:00")  # 09:00 in New York
    assert pdb.claim_message(message, None, None, morning).run(db)["action"] == "send"
    assert (
        scalar(db, "select deferred_reason from pgflow.messages where id = %s", [message]) is None
    )


def test_a_crm_takeover_before_any_reply_stops_every_drip_step(db: Conn) -> None:
    lead = on_chat(db)
    apply_campaign(db, "roofing", **OPEN)  # a second drip of the same lead
    ingest(db, LEAD, NOW, campaign="roofing", first_name="Sam")
    takeover = {"type": "human_takeover", "conversation_id": lead["conversation_id"], "id": "e1"}
    assert pdb.record_business_event(takeover, None, NOW).run(db)["result"] == "applied"
    assert held(db, lead["contact_id"]) == (NOW, None)  # waiting for a person
    assert rows(db, "select status from pgflow.enrollments order by id") == [
        ("stopped",),  # the escalated conversation's own drip ended with it
        ("paused",),  # and the other campaign's waits too
    ]
    assert pdb.tick(NOW + 5 * DAY).run(db)["sent"] == 0


def test_prune_drops_old_console_sessions_and_sign_ins(db: Conn) -> None:
    pdb.add_console_user(DANA, "agent", HASH, "test", None, NOW).run(db)
    old, recent = NOW - 60 * DAY, NOW - DAY
    pdb.record_sign_in(DANA, True, token("old"), None, None, old).run(db)
    pdb.record_sign_in(DANA, True, token("recent"), None, None, recent).run(db)
    pdb.record_sign_in(DANA, False, None, None, None, old).run(db)
    result = db.execute("select pgflow.prune(%s)", [NOW]).fetchone()
    assert result is not None
    assert result[0]["console_sessions"] == 1
    assert count(db, "console_sessions") == 1
    assert pdb.console_session(token("recent"), recent).run(db) is not None
    assert count(db, "console_sign_ins", "attempted_at < %s", [NOW - 30 * DAY]) == 0

"""The inbound half in SQL: pgflow.record_retell_event() and what a lead's text sets off.

Each test plays Retell's side with chat objects in Retell's shape (tests/chat_payloads.py)
against a real database, the clock injected."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import psycopg
import pytest

from pgflow import db as pdb
from tests.chat_payloads import chat, event, inbound
from tests.conftest import create_clone, drop_database, with_database
from tests.factories import apply_campaign, at, campaign_doc, count, ingest
from tests.helpers import row, scalar

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")  # Monday 10:00 in New York
OPEN = {"window_start": "00:00", "window_end": "24:00", "help_text": "SunCo help: call 555-0100"}
LEAD = "+12125550147"
LINE = "+14155550100"


def deliver(db: Conn, payload: dict[str, Any], *, replies: bool = False) -> dict[str, Any]:
    return pdb.record_retell_event(payload, replies, NOW).run(db)


def sent_first_step(db: Conn, chat_id: str = "chat_1") -> dict[str, Any]:
    """A lead whose step 1 went out as Retell chat `chat_id` (what the worker records)."""
    apply_campaign(db, **OPEN)
    lead = ingest(db, LEAD, NOW, first_name="Sam")
    message = scalar(db, "select id from pgflow.messages")
    claim = pdb.claim_message(message, None, None, NOW).run(db)
    assert claim["action"] == "send"
    result = {"ok": True, "chat_id": chat_id, "status_code": 200}
    assert pdb.record_send(message, 1, result, 30.0, NOW).run(db)["action"] == "sent"
    conversation = scalar(db, "select id from pgflow.conversations")
    return {**lead, "message_id": message, "conversation_id": conversation}


def step_chat(lead: dict[str, Any], *items: tuple[str, str], **kw: Any) -> dict[str, Any]:
    body = "Hi Sam, it's Ava from SunCo!"
    return chat(
        kw.pop("chat_id", "chat_1"),
        [("agent", body), *items],
        conversation_id=lead["conversation_id"],
        message_id=lead["message_id"],
        start_ms=int(NOW.timestamp() * 1000),
        **kw,
    )


# --- stop-on-reply -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["transcript_updated", "chat_ended", "chat_analyzed"])
def test_a_reply_in_any_chat_event_pauses_the_drip(db: Conn, name: str) -> None:
    lead = sent_first_step(db)
    result = deliver(db, event(name, step_chat(lead, ("user", "yes, tell me more"))))
    assert result["result"] == "recorded"
    assert result["inbound"] == 1
    # engaged when the lead wrote (Retell's timestamp of the text), not when we heard of it
    assert row(db, "select status, engaged_at from pgflow.conversations") == (
        "engaged",
        NOW + dt.timedelta(seconds=1),
    )
    assert row(db, "select status from pgflow.enrollments") == ("paused",)
    assert scalar(db, "select reason from pgflow.events where to_status = 'paused'") == (
        "lead replied"
    )
    # the campaign step is linked to the chat's first agent message, never recorded twice
    assert count(db, "messages", "direction = 'outbound'") == 1
    assert scalar(db, "select chat_message_id from pgflow.messages where kind = 'campaign'") == (
        "chat_1-m0"
    )
    # a step due afterwards is never sent: the paused drip is not due, and a message
    # already queued for it is suppressed at send time
    assert pdb.tick(NOW + dt.timedelta(days=2)).run(db)["sent"] == 0


def test_a_reply_in_the_older_sms_inbound_shape_pauses_the_drip(db: Conn) -> None:
    sent_first_step(db)
    payload = {
        "event": "sms_inbound",
        "sms_inbound": {"from_number": LEAD, "to_number": LINE, "message": "who is this?"},
    }
    result = deliver(db, payload)
    assert result["result"] == "answered"
    assert scalar(db, "select status from pgflow.conversations") == "engaged"
    assert scalar(db, "select status from pgflow.enrollments") == "paused"
    assert scalar(db, "select body from pgflow.messages where direction = 'inbound'") == (
        "who is this?"
    )


def test_a_reply_from_the_transcript_string_alone(db: Conn) -> None:
    lead = sent_first_step(db)
    payload = step_chat(lead, ("user", "yes\nand I own the house"))
    del payload["message_with_tool_calls"]
    deliver(db, event("chat_ended", payload))
    assert scalar(db, "select body from pgflow.messages where direction = 'inbound'") == (
        "yes\nand I own the house"
    )
    assert scalar(db, "select status from pgflow.conversations") == "engaged"
    assert count(db, "messages", "direction = 'outbound'") == 1


def test_tool_calls_and_transitions_are_not_messages(db: Conn) -> None:
    lead = sent_first_step(db)
    payload = step_chat(lead, ("user", "ok"), ("agent", "Great! Do you own your home?"))
    payload["message_with_tool_calls"].insert(
        1, {"role": "node_transition", "former_node_id": "a", "new_node_id": "b"}
    )
    deliver(db, event("transcript_updated", payload))
    assert [r[0] for r in db.execute("select kind from pgflow.messages order by created_at")] == [
        "campaign",
        "lead",
        "agent",
    ]


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The tables a webhook changes, without surrogate ids or delivery bookkeeping."""
    queries = {
        "messages": "select dedupe_key, direction, kind, body, delivery_status, created_at,"
        " chat_message_id, intent from pgflow.messages order by dedupe_key",
        "conversations": "select status, conversion_status, engaged_at, chat_status,"
        " last_inbound_at, provider_chat_id, agent_turns from pgflow.conversations order by id",
        "enrollments": "select status, stop_reason, ended_at from pgflow.enrollments",
        "contacts": "select phone, opted_out_at from pgflow.contacts",
        "events": "select entity, from_status, to_status, reason, occurred_at from pgflow.events"
        " order by entity, entity_id, id",
        "jobs": "select entrypoint, priority from pgflow.pgqueuer order by entrypoint, priority",
    }
    with psycopg.connect(url) as conn:
        return {k: [tuple(r) for r in conn.execute(q).fetchall()] for k, q in queries.items()}


ORDERS = {
    "in_order": [0, 1, 2, 3],
    "three_times_each": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "reversed": [3, 2, 1, 0],
    "shuffled_with_repeats": [2, 0, 3, 1, 2, 0],
}


def run_deliveries(server_url: str, template_db: str, order: list[int]) -> dict[str, Any]:
    name = create_clone(server_url, template_db)
    url = with_database(server_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            lead = sent_first_step(conn)
            chats = [
                step_chat(lead),
                step_chat(lead, ("user", "Yes!")),
                step_chat(lead, ("user", "Yes!"), ("agent", "Own or rent?"), ("user", "own")),
                step_chat(
                    lead,
                    ("user", "Yes!"),
                    ("agent", "Own or rent?"),
                    ("user", "own"),
                    status="ended",
                ),
            ]
            events = [
                event(n, c)
                for n, c in zip(
                    ("chat_started", "transcript_updated", "transcript_updated", "chat_ended"),
                    chats,
                    strict=True,
                )
            ]
            for i in order:
                deliver(conn, events[i])
            deliveries = count(conn, "webhook_deliveries")
        return {"tables": snapshot(url), "deliveries": deliveries}
    finally:
        drop_database(server_url, name)


def test_repeated_and_reordered_deliveries_give_the_same_state(
    server_url: str, template_db: str
) -> None:
    results = {k: run_deliveries(server_url, template_db, v) for k, v in ORDERS.items()}
    expected = results["in_order"]["tables"]
    assert [m[3] for m in expected["messages"] if m[1] == "inbound"] == ["Yes!", "own"]
    for name, result in results.items():
        assert result["tables"] == expected, f"{name} differs from one in-order delivery"
        assert result["deliveries"] == len(set(ORDERS[name])), "one row per distinct delivery"


def test_a_duplicate_is_answered_like_the_first(db: Conn) -> None:
    sent_first_step(db)
    first = deliver(db, inbound(LEAD, LINE))
    again = deliver(db, inbound(LEAD, LINE))
    assert again["result"] == "duplicate"
    assert again["response"] == first["response"]


def test_unknown_events_and_chats_are_recorded_and_ignored(db: Conn) -> None:
    sent_first_step(db)
    assert deliver(db, {"event": "call_started", "call": {}})["result"] == "ignored"
    stranger = chat("chat_other", [("user", "hello?")])
    assert deliver(db, event("transcript_updated", stranger))["result"] == "unknown_chat"
    assert count(db, "webhook_deliveries") == 2
    assert count(db, "messages", "direction = 'inbound'") == 0


# --- opt-out ---------------------------------------------------------------------------------


def test_stop_suppresses_everything_with_one_confirmation(db: Conn) -> None:
    lead = sent_first_step(db)
    apply_campaign(db, "roofing", from_number="+14155550199", **OPEN)
    other = ingest(db, LEAD, NOW, campaign="roofing")
    assert other["status"] == "created"
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "STOP"))))

    assert row(db, "select opt_out_source, opted_out_at from pgflow.contacts") == ("keyword", NOW)
    assert [r[0] for r in db.execute("select status from pgflow.enrollments order by id")] == [
        "opted_out",
        "opted_out",
    ]
    ended = db.execute(
        "select conversion_status, outcome_source from pgflow.conversations order by id"
    ).fetchall()
    assert ended == [("discarded", "rule"), ("discarded", "rule")]
    # the other campaign's queued step is suppressed; one confirmation is queued
    assert (
        scalar(
            db,
            "select delivery_status from pgflow.messages where enrollment_id = %s",
            [other["enrollment_id"]],
        )
        == "suppressed"
    )
    confirmations = db.execute(
        "select body, conversation_id from pgflow.messages where kind = 'system'"
    ).fetchall()
    assert confirmations == [
        (
            "You are unsubscribed and will receive no more messages. Reply START to resubscribe.",
            lead["conversation_id"],
        )
    ]
    jobs = sorted(r[0] for r in db.execute("select entrypoint from pgflow.pgqueuer"))
    assert jobs.count("end_chat") == 1  # the lead's Retell chat is ended
    assert row(db, "select action, source, text from pgflow.opt_outs") == (
        "opt_out",
        "keyword",
        "STOP",
    )

    # another STOP, in a later delivery: no second confirmation
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "STOP"), ("user", "stop!!"))))
    assert count(db, "messages", "kind = 'system'") == 1
    # a new lead webhook for that phone is suppressed, and nothing else may be sent
    assert ingest(db, LEAD, NOW, campaign="roofing")["status"] == "suppressed"
    step = scalar(db, "select id from pgflow.messages where kind = 'campaign' order by id limit 1")
    db.execute("update pgflow.messages set delivery_status = 'queued' where id = %s", [step])
    assert pdb.claim_message(step, None, None, NOW).run(db)["action"] == "suppressed"
    confirmation = scalar(db, "select id from pgflow.messages where kind = 'system'")
    claim = pdb.claim_message(confirmation, None, None, NOW).run(db)
    assert claim["action"] == "send"
    assert claim["end_chat_after"] is True


@pytest.mark.parametrize(
    "text",
    [
        *("STOP", "stopall", "Unsubscribe.", "CANCEL", "end", "QUIT!", "revoke", "OptOut"),
        *("stop texting me", "take me off your list", "don't contact me again"),
    ],
)
def test_keywords_and_phrases_opt_out(db: Conn, text: str) -> None:
    lead = sent_first_step(db)
    deliver(db, event("transcript_updated", step_chat(lead, ("user", text))))
    assert scalar(db, "select opted_out_at is not null from pgflow.contacts")
    assert scalar(db, "select status from pgflow.enrollments") == "opted_out"
    assert count(db, "messages", "kind = 'system'") == 1
    # nothing else may reach the lead, from any campaign
    apply_campaign(db, "other", from_number="+14155550177", **OPEN)
    assert ingest(db, LEAD, NOW, campaign="other")["status"] == "suppressed"
    assert pdb.tick(NOW + dt.timedelta(days=5)).run(db)["sent"] == 0


@pytest.mark.parametrize("text", ["Don't stop!", "stop by tomorrow at 3?"])
def test_sentences_with_stop_do_not_opt_out(db: Conn, text: str) -> None:
    lead = sent_first_step(db)
    deliver(db, event("transcript_updated", step_chat(lead, ("user", text))))
    assert scalar(db, "select opted_out_at is null from pgflow.contacts")
    assert scalar(db, "select status from pgflow.conversations") == "engaged"
    # left to the LLM's judgment where one is configured
    assert scalar(db, "select intent from pgflow.messages where direction = 'inbound'") == (
        "maybe_opt_out"
    )
    assert count(db, "pgqueuer", "entrypoint = 'judge_opt_out'") == 1


def test_an_llm_judgment_opts_out_or_keeps(db: Conn) -> None:
    lead = sent_first_step(db)
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "ugh stop it with these"))))
    message = scalar(db, "select id from pgflow.messages where direction = 'inbound'")
    assert pdb.opt_out_question(message).run(db) == {
        "message_id": message,
        "text": "ugh stop it with these",
    }
    assert pdb.record_opt_out_judgment(message, True, NOW).run(db) == {"result": "opted_out"}
    assert row(db, "select opt_out_source from pgflow.contacts") == ("llm",)
    assert pdb.record_opt_out_judgment(message, False, NOW).run(db) == {"result": "already_judged"}
    assert pdb.opt_out_question(message).run(db) is None


def test_start_lifts_an_opt_out_without_re_enrolling(db: Conn) -> None:
    lead = sent_first_step(db)
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "STOP"))))
    # texting anything else while opted out is recorded and answered by nobody
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "STOP"), ("user", "hm"))))
    assert count(db, "messages", "kind = 'system'") == 1
    deliver(
        db,
        event(
            "transcript_updated",
            step_chat(lead, ("user", "STOP"), ("user", "hm"), ("user", "START")),
        ),
    )
    assert scalar(db, "select opted_out_at is null from pgflow.contacts")
    assert [r[0] for r in db.execute("select action from pgflow.opt_outs order by id")] == [
        "opt_out",
        "opt_in",
    ]
    assert scalar(db, "select status from pgflow.enrollments") == "opted_out"  # not resumed
    assert count(db, "messages", "kind = 'system'") == 2  # opt-out and opt-in confirmations


def test_help_gets_the_campaign_help_text(db: Conn) -> None:
    lead = sent_first_step(db)
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "HELP"))))
    assert scalar(db, "select body from pgflow.messages where kind = 'system'") == (
        "SunCo help: call 555-0100"
    )
    assert scalar(db, "select opted_out_at is null from pgflow.contacts")


# --- chat_inbound ------------------------------------------------------------------------------


def two_campaigns(db: Conn) -> None:
    doc = campaign_doc("solar", **OPEN)
    doc["agents"].append({"name": "rita", "prompt": "You are Rita from RoofCo."})
    roofing = campaign_doc("roofing", agent="rita", from_number="+14155550199", **OPEN)
    doc["campaigns"] += roofing["campaigns"]
    doc["agents"][0]["retell_agent_id"] = "agent_ava"
    doc["agents"][1]["retell_agent_id"] = "agent_rita"
    doc["agents"].append({"name": "front-desk", "prompt": "You answer new inquiries."})
    doc["numbers"] = [{"number": "+14155550199", "inbound_agent": "front-desk"}]
    pdb.apply_campaigns(doc, NOW).run(db)


@pytest.mark.parametrize("nested", [True, False])
def test_chat_inbound_is_answered_with_the_campaign_agent(db: Conn, nested: bool) -> None:
    two_campaigns(db)
    ingest(db, "+12125550147", NOW, campaign="solar", first_name="Sam")
    ingest(db, "+12125550148", NOW, campaign="roofing", first_name="Ria")
    a = deliver(db, inbound("+12125550147", "+14155550100", nested=nested))["response"]
    b = deliver(db, inbound("+12125550148", "+14155550199", nested=nested))["response"]
    assert a["chat_inbound"]["override_agent_id"] == "agent_ava"
    assert a["chat_inbound"]["dynamic_variables"]["agent_prompt"] == "You are Ava. Be brief."
    assert a["chat_inbound"]["dynamic_variables"]["first_name"] == "Sam"
    assert b["chat_inbound"]["override_agent_id"] == "agent_rita"
    assert b["chat_inbound"]["dynamic_variables"]["agent_prompt"] == "You are Rita from RoofCo."
    for answer in (a, b):
        variables = answer["chat_inbound"]["dynamic_variables"]
        assert all(isinstance(v, str) and v.strip() for v in variables.values()), variables
        metadata = answer["chat_inbound"]["metadata"]
        assert metadata["pgflow_conversation_id"].isdigit()


def test_unknown_number_gets_the_line_inbound_agent_or_a_reject(db: Conn) -> None:
    two_campaigns(db)
    known_line = deliver(db, inbound("+12125550199", "+14155550199"))
    assert known_line["result"] == "answered"
    variables = known_line["response"]["chat_inbound"]["dynamic_variables"]
    assert variables["agent_prompt"] == "You answer new inquiries."
    assert count(db, "contacts", "phone = '+12125550199'") == 1
    no_agent = deliver(db, inbound("+12125550198", "+14155550100"))
    assert no_agent["result"] == "unknown_number_rejected"
    assert no_agent["response"] == {"chat_inbound": {"reject": True}}
    assert count(db, "webhook_deliveries") == 2


def test_a_suppressed_contact_is_rejected_unless_the_text_is_start(db: Conn) -> None:
    lead = sent_first_step(db)
    pdb.opt_out_contact(scalar(db, "select id from pgflow.contacts"), "operator").run(db)
    assert deliver(db, inbound(LEAD, LINE))["response"] == {"chat_inbound": {"reject": True}}
    start = {
        "event": "sms_inbound",
        "sms_inbound": {"from_number": LEAD, "to_number": LINE, "message": "START"},
    }
    answered = deliver(db, start)
    assert answered["result"] == "answered"
    assert scalar(db, "select opted_out_at is null from pgflow.contacts")
    assert lead["conversation_id"] < answered["conversation_id"]


# --- the send-time check of a live chat --------------------------------------------------------


def second_step_queued(db: Conn) -> tuple[dict[str, Any], int]:
    lead = sent_first_step(db)
    pdb.tick(NOW + dt.timedelta(days=1, minutes=1)).run(db)
    step2 = scalar(db, "select id from pgflow.messages where step_position = 2")
    return lead, step2


def test_a_reply_no_webhook_mentioned_is_found_before_the_next_step(db: Conn) -> None:
    lead, step2 = second_step_queued(db)
    later = NOW + dt.timedelta(days=1, minutes=2)
    claim = pdb.claim_message(step2, None, None, later).run(db)
    assert claim == {"action": "check_chat", "chat_id": "chat_1"}
    # the worker reads the chat (GET /get-chat) and records it
    pdb.record_chat(step_chat(lead, ("user", "sorry, missed this - yes!")), "get_chat").run(db)
    claim = pdb.claim_message(step2, None, "chat_1", later).run(db)
    assert claim == {"action": "suppressed", "reason": "lead replied"}


def test_a_quiet_chat_lets_the_next_step_go(db: Conn) -> None:
    lead, step2 = second_step_queued(db)
    later = NOW + dt.timedelta(days=1, minutes=2)
    pdb.record_chat(step_chat(lead), "get_chat").run(db)
    claim = pdb.claim_message(step2, None, "chat_1", later).run(db)
    assert claim["action"] == "send"
    assert claim["previous_chat_id"] == "chat_1"


def test_an_ended_chat_needs_no_check(db: Conn) -> None:
    lead, step2 = second_step_queued(db)
    deliver(db, event("chat_ended", step_chat(lead, status="ended")))
    later = NOW + dt.timedelta(days=1, minutes=2)
    assert pdb.claim_message(step2, None, None, later).run(db)["action"] == "send"


# --- agent turns (engine-written replies) and take_over ------------------------------------------


def test_two_quick_texts_get_one_agent_turn(db: Conn) -> None:
    lead = sent_first_step(db)
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "hi"))), replies=True)
    deliver(
        db,
        event("transcript_updated", step_chat(lead, ("user", "hi"), ("user", "is it free?"))),
        replies=True,
    )
    first, second = (
        r[0] for r in db.execute("select id from pgflow.messages where direction = 'inbound'")
    )
    jobs = db.execute(
        "select execute_after > now() from pgflow.pgqueuer where entrypoint = 'agent_reply'"
    ).fetchall()
    assert jobs == [(True,), (True,)]  # debounced
    assert pdb.agent_turn(first, NOW).run(db) == {
        "answer": False,
        "reason": "a later text will be answered",
    }
    turn = pdb.agent_turn(second, NOW).run(db)
    assert turn["answer"] is True
    assert [t["text"] for t in turn["transcript"]] == [
        "Hi Sam, it's Ava from SunCo!",
        "hi",
        "is it free?",
    ]
    assert turn["agent"]["prompt"] == "You are Ava. Be brief."
    assert pdb.record_agent_reply(first, "stale answer", now=NOW).run(db)["result"] == "stale"
    queued = pdb.record_agent_reply(second, "Yes - the quote is free!", now=NOW).run(db)
    assert queued["result"] == "queued"
    assert pdb.record_agent_reply(second, "again", now=NOW).run(db) == {
        "result": "stale",
        "reason": "already answered",
    }
    assert scalar(db, "select agent_turns from pgflow.conversations") == 1
    claim = pdb.claim_message(queued["message_id"], None, None, NOW).run(db)
    assert claim["action"] == "send"
    assert claim["chat_message_id"] == f"pgflow-{queued['message_id']}"


def test_no_agent_turn_after_an_opt_out_or_past_max_turns(db: Conn) -> None:
    lead = sent_first_step(db)
    db.execute("update pgflow.agents set max_turns = 1")
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "hi"))), replies=True)
    first = scalar(db, "select max(id) from pgflow.messages where direction = 'inbound'")
    assert pdb.record_agent_reply(first, "Hello!", now=NOW).run(db)["result"] == "queued"
    items = [("user", "hi"), ("agent", "Hello!"), ("user", "more?")]
    deliver(db, event("transcript_updated", step_chat(lead, *items)), replies=True)
    second = scalar(db, "select max(id) from pgflow.messages where direction = 'inbound'")
    assert pdb.agent_turn(second, NOW).run(db) == {
        "answer": False,
        "reason": "the agent has used its turns",
    }
    db.execute("update pgflow.agents set max_turns = 5")
    assert pdb.agent_turn(second, NOW).run(db)["answer"] is True
    pdb.opt_out_contact(lead["contact_id"], "operator").run(db)
    assert pdb.agent_turn(second, NOW).run(db)["answer"] is False
    assert pdb.record_agent_reply(second, "too late", now=NOW).run(db)["result"] == "stale"


def test_take_over_silences_the_agent_and_the_drip(db: Conn) -> None:
    lead, step2 = second_step_queued(db)
    result = pdb.take_over(lead["conversation_id"], "dana@x.com", None, "Dana calls", NOW).run(db)
    assert result["result"] == "held"
    # the person holds the lead; the conversation stays open for the person's texts
    assert row(db, "select held_at, held_by from pgflow.contacts") == (NOW, "dana@x.com")
    assert row(db, "select status, conversion_status from pgflow.conversations") == ("open", None)
    assert count(db, "alerts") == 0  # a person has it: nobody needs telling
    assert count(db, "pgqueuer", "entrypoint = 'end_chat'") == 1  # Retell's AI stops
    # the drip is paused: its queued step waits (and goes nowhere while paused)
    assert scalar(db, "select status from pgflow.enrollments") == "paused"
    later = NOW + dt.timedelta(days=1, minutes=2)
    claim = pdb.claim_message(step2, None, None, later).run(db)
    assert claim == {"action": "defer", "reason": "drip paused", "delay_seconds": 900}
    assert pdb.tick(NOW + dt.timedelta(days=5)).run(db)["sent"] == 0
    # the lead writes: recorded, and the agent does not answer
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "hello?"))), replies=True)
    text = scalar(db, "select id from pgflow.messages where direction = 'inbound'")
    assert scalar(db, "select status from pgflow.conversations") == "engaged"
    assert pdb.agent_turn(text, NOW).run(db) == {
        "answer": False,
        "reason": "a person holds this lead",
    }
    assert pdb.record_agent_reply(text, "too late", now=NOW).run(db)["result"] == "stale"


def test_a_lead_writing_after_no_response_opens_a_new_conversation(db: Conn) -> None:
    lead = sent_first_step(db)
    conversation = lead["conversation_id"]
    pdb.end_conversation(conversation, "no_response", "quiet", "rule", NOW).run(db)
    deliver(db, event("transcript_updated", step_chat(lead, ("user", "sorry, still interested"))))
    rows = db.execute("select id, status from pgflow.conversations order by id").fetchall()
    assert rows == [(conversation, "ended"), (conversation + 1, "engaged")]
    assert (
        scalar(db, "select conversation_id from pgflow.messages where direction = 'inbound'")
        == conversation + 1
    )


def test_every_item_key_is_unique(db: Conn) -> None:
    """Keys without a Retell message_id fall back to chat id and position."""
    lead = sent_first_step(db)
    payload = step_chat(lead, ("user", "a"), ("user", "b"))
    for entry in payload["message_with_tool_calls"]:
        entry.pop("message_id", None)
    for _ in itertools.repeat(None, 2):
        deliver(db, event("transcript_updated", payload))
        deliver(db, event("chat_ended", {**payload, "chat_status": "ended"}))
    assert [
        r[0]
        for r in db.execute("select chat_message_id from pgflow.messages order by created_at, id")
    ] == [
        "chat_1:0",
        "chat_1:1",
        "chat_1:2",
    ]

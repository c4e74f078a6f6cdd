"""Inbound and the agent: Retell's webhooks and chats, agent turns, opt-outs."""

from __future__ import annotations

from typing import Any, cast

from pgflow.db.core import Call, Now, Row, function_call, json_call, json_list_call, rows_call


def record_retell_event(
    payload: dict[str, Any], engine_replies: bool = False, now: Now = None
) -> Call[Row]:
    """pgflow.record_retell_event(): one Retell webhook, recorded once and handled;
    {result, response?: what to answer Retell, ...}."""
    return json_call("record_retell_event", payload, engine_replies, now)


def record_twilio_status(message_id: int, payload: dict[str, Any], now: Now = None) -> Call[Row]:
    """pgflow.record_twilio_status(): one status callback, once per (MessageSid, status);
    {result: applied | stale | duplicate | unknown_message | ignored | invalid}."""
    return json_call("record_twilio_status", message_id, payload, now)


def record_twilio_inbound(payload: dict[str, Any], now: Now = None) -> Call[Row]:
    """pgflow.record_twilio_inbound(): one text from a lead through Twilio, once per
    MessageSid; {result: recorded | duplicate | invalid | unknown_number_ignored |
    ignored_opted_out, effect?, conversation_id?}."""
    return json_call("record_twilio_inbound", payload, now)


def receipt_to_check(message_id: int) -> Call[Row | None]:
    """pgflow.receipt_to_check(): {message_id, sid} of a Twilio text still waiting for its
    final status, else None."""
    return cast(Call[Row | None], function_call("receipt_to_check", message_id))


def record_chat(
    chat: dict[str, Any], event: str = "get_chat", engine_replies: bool = False, now: Now = None
) -> Call[Row]:
    """pgflow.record_chat(): a chat object (e.g. from GET /get-chat) recorded like a webhook."""
    return json_call("record_chat", chat, event, engine_replies, now)


def agent_turn(trigger_id: int, now: Now = None) -> Call[Row]:
    """pgflow.agent_turn(): what the agent needs to answer a lead text, or {answer: false}."""
    return json_call("agent_turn", trigger_id, now)


def record_agent_reply(
    trigger_id: int,
    body: str,
    action: str = "continue",
    reason: str | None = None,
    now: Now = None,
) -> Call[Row]:
    """pgflow.record_agent_reply(): the reply queued for sending (a `booked` or `handoff`
    action also gives the outcome), or {result: stale}."""
    return json_call("record_agent_reply", trigger_id, body, action, reason, now)


def opt_out_question(message_id: int) -> Call[Row | None]:
    """pgflow.opt_out_question(): {message_id, text} while it waits for a judgment."""
    return cast(Call[Row | None], function_call("opt_out_question", message_id))


def record_opt_out_judgment(message_id: int, opt_out: bool, now: Now = None) -> Call[Row]:
    return json_call("record_opt_out_judgment", message_id, opt_out, now)


def inbound_intent(text: str) -> Call[Row]:
    """pgflow.inbound_intent(): {intent, rule} for a lead's text, by the rules."""
    call = rows_call("select intent, rule from pgflow.inbound_intent(%(text)s)", {"text": text})
    return Call(call.query, call.params, lambda rows: rows[0])


def opt_out_contact(
    contact_id: int,
    source: str,
    message_id: int | None = None,
    text: str | None = None,
    now: Now = None,
) -> Call[Row]:
    return json_call("opt_out_contact", contact_id, source, message_id, text, now)


def live_conversations(limit: int = 200) -> Call[list[Row]]:
    """Rows of the view pgflow.live_conversations, most recent activity first."""
    return rows_call(
        "select id, phone, campaign, agent, status, from_number, created_at, engaged_at,"
        " agent_turns, chat_status, last_message_at from pgflow.live_conversations"
        " order by last_message_at desc, id desc limit %(limit)s",
        {"limit": limit},
    )


def retell_setup_inputs() -> Call[list[Row]]:
    """Our sending numbers but the Twilio lines (a Twilio campaign's numbers: their texts
    must not reach Retell), and the Retell agent ids our agents name, for `retell setup`."""
    return rows_call(
        "select 'number' as kind, n.number as value from pgflow.sending_numbers n"
        " where not exists (select 1 from pgflow.campaign_numbers cn"
        " join pgflow.campaigns c on c.id = cn.campaign_id where cn.number = n.number"
        " and c.transport = 'twilio' and c.status <> 'archived')"
        " union all select distinct 'agent', retell_agent_id from pgflow.agents"
        " where retell_agent_id is not null order by 1, 2"
    )


def twilio_numbers() -> Call[list[Row]]:
    """pgflow.twilio_numbers(): the sending numbers of the campaigns on the Twilio
    transport, for `twilio setup`: [{number, campaigns: [slug, ...]}, ...]."""
    return json_list_call("twilio_numbers")

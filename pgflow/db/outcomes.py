"""Outcomes: the rules and the LLM's verdicts, a person's outcome, the funnel, numbers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from pgflow.db.core import Call, Now, Row, json_call, json_list_call, rows_call


def outcome_question(conversation_id: int, now: Now = None) -> Call[Row]:
    """pgflow.outcome_question(): the rules first, else {classify: true, transcript, goal,
    transcript_hash, ...} for the LLM."""
    return json_call("outcome_question", conversation_id, now)


def record_classification(
    conversation_id: int,
    transcript_hash: str,
    status: str | None,
    reason: str | None,
    confidence: float | None,
    model: str | None,
    error: str | None = None,
    now: Now = None,
    source: str = "llm",
) -> Call[Row]:
    """pgflow.record_classification(): ended | review | stale | unchanged | kept | changed."""
    return json_call(
        "record_classification",
        conversation_id,
        transcript_hash,
        status,
        reason,
        confidence,
        model,
        error,
        now,
        source,
    )


def set_outcome(
    conversation_id: int, status: str, reason: str | None, source: str, now: Now = None
) -> Call[Row]:
    """pgflow.set_outcome(): give an outcome (a person's is never overwritten)."""
    return json_call("set_outcome", conversation_id, status, reason, source, now)


def record_business_event(payload: dict[str, Any], phone: str | None, now: Now = None) -> Call[Row]:
    """pgflow.record_business_event(): a booking, takeover or disqualification for a lead;
    {result: applied | duplicate | unknown_phone | unknown_conversation | invalid}."""
    return json_call("record_business_event", payload, phone, now)


def funnel(campaign: str | None = None, since: dt.datetime | None = None) -> Call[list[Row]]:
    """pgflow.funnel(): per campaign, the funnel of its leads enrolled since `since`."""
    return json_list_call("funnel", campaign, since)


def send_latency(now: Now = None) -> Call[Row]:
    """pgflow.send_latency(): per kind, queued-to-sent seconds over the last hour as
    cumulative buckets [[le, count], ...] with count and sum."""
    return json_call("send_latency", dt.timedelta(hours=1), now)


def number_report(now: Now = None) -> Call[list[Row]]:
    """Each sending number: its campaigns, limits and today's (UTC) use."""
    return rows_call(
        "select number, campaigns, inbound_agent, per_second, daily_segments, messages_today,"
        " segments_today from pgflow.number_report(%(now)s)",
        {"now": now},
    )


def set_number_limits(number: str, limits: dict[str, Any], now: Now = None) -> Call[Row]:
    """pgflow.set_number_limits(): apply each given limit (None removes it); NotFound."""
    return Call(
        sql.SQL(
            "select number, per_second, daily_segments"
            " from pgflow.set_number_limits(%(number)s, %(limits)s, %(now)s)"
        ),
        {"number": number, "limits": Jsonb(limits), "now": now},
        lambda rows: rows[0],
    )


def review_queue(limit: int = 200) -> Call[list[Row]]:
    """Rows of the view pgflow.review_queue, oldest first (phones unmasked: mask them)."""
    return rows_call(
        "select id, phone, campaign, status, conversion_status, outcome_source, review_reason,"
        " review_requested_at, signals from pgflow.review_queue"
        " order by review_requested_at, id limit %(limit)s",
        {"limit": limit},
    )


def live_conversation_of(phone: str) -> Call[int | None]:
    """The contact's conversation an operator means: the live one, else the latest."""
    return Call(
        sql.SQL(
            "select cv.id from pgflow.conversations cv join pgflow.contacts ct"
            " on ct.id = cv.contact_id where ct.phone = %(phone)s"
            " order by (cv.status <> 'ended') desc, cv.id desc limit 1"
        ),
        {"phone": phone},
        lambda rows: int(rows[0]["id"]) if rows else None,
    )

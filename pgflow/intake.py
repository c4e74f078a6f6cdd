"""Lead intake shared by the lead webhook and the CSV import.

A lead is ONE `pgflow.ingest_lead()` call with what the edge derived from the phone
(E.164, an inferred zone). When the SQL cannot take a value at all (a consent time that is
not a time, a NUL character in a string), the lead is still kept: `pgflow.reject_lead()`
records the body as unreadable with `rejection_detail()` saying why, in our words."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import psycopg

from pgflow import db, errors, phones

# What the SQL may refuse a value with: the lead is then recorded as invalid_payload.
UNTAKEABLE = (psycopg.DataError, errors.InvalidInput)
MAX_DETAIL = 500


def edge(payload: Any) -> tuple[dict[str, Any] | None, str]:
    """The `p_edge` argument for a payload's phone, and the phone masked for logs."""
    if not isinstance(payload, dict) or not isinstance(payload.get("phone"), str):
        return None, "-"
    normalized = phones.normalize(payload["phone"])
    return normalized.as_edge(), phones.mask(normalized.e164 or payload["phone"].strip())


def rejection_detail(exc: Exception) -> str:
    """Why the database could not take a lead, in words a lead source can act on."""
    if isinstance(exc, psycopg.Error):
        if isinstance(exc, psycopg.errors.UntranslatableCharacter) or "\\u0000" in str(exc):
            return "text must not contain NUL characters (\\u0000)"
        message = exc.diag.message_primary or str(exc)
    else:
        message = str(exc)
    return message[:MAX_DETAIL]


def storable(raw: bytes | str) -> str:
    """A body as text Postgres can keep: bad UTF-8 and NUL become U+FFFD."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text.replace("\x00", "\ufffd")


def ingest(
    conn: psycopg.Connection[Any],
    payload: Any,
    raw: bytes | str | None = None,
    *,
    source: str | None = None,
    now: dt.datetime | None = None,
    savepoint: bool = False,
) -> dict[str, Any]:
    """One lead on a sync connection (autocommit, or in a transaction with `savepoint`)."""
    lead_edge, _ = edge(payload)
    try:
        # In a transaction the call sits in a savepoint, so a failure leaves it usable.
        with conn.transaction() if savepoint else contextlib.nullcontext():
            return db.ingest_lead(payload, lead_edge, now).run(conn)
    except UNTAKEABLE as exc:
        detail = rejection_detail(exc)
        try:
            return _reject(payload, raw, detail, source, now).run(conn)
        except psycopg.errors.InsufficientPrivilege:
            # A login without EXECUTE on pgflow.reject_lead: still report the lead.
            return {"status": "rejected", "error": "invalid_payload", "detail": detail}


async def ingest_async(
    conn: psycopg.AsyncConnection[Any],
    payload: Any,
    raw: bytes | str | None = None,
    *,
    source: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One lead on an async autocommit connection."""
    lead_edge, _ = edge(payload)
    try:
        return await db.ingest_lead(payload, lead_edge, now).arun(conn)
    except UNTAKEABLE as exc:
        return await _reject(payload, raw, rejection_detail(exc), source, now).arun(conn)


def _reject(
    payload: Any, raw: bytes | str | None, detail: str, source: str | None, now: dt.datetime | None
) -> db.Call[dict[str, Any]]:
    body = storable(raw if raw is not None else json.dumps(payload, ensure_ascii=False))
    return db.reject_lead(body, "invalid_payload", detail, source, now)

"""Lead intake shared by the lead webhook and the CSV import.

A lead is ONE `pgflow.ingest_lead()` call with what the edge derived from the phone
(E.164, an inferred zone), derived once per lead by `prepare()`. When the SQL cannot take a
value at all (a consent time that is not a time, a NUL character in a string), the lead is
still kept: `pgflow.reject_lead()` records the body as unreadable with `rejection_detail()`
saying why, in our words.

`ingest()` (sync) and `ingest_async()` are twins: the same two calls, the same errors
caught; what the second call is and what to report without it is built once, by
`_rejection()` (procrastinate's manager builds its sync and async twins from one helper
the same way)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from typing import Any

import psycopg

from pgflow import db, errors, phones

# What the SQL may refuse a value with: the lead is then recorded as invalid_payload.
UNTAKEABLE = (psycopg.DataError, errors.InvalidInput)
MAX_DETAIL = 500
# The one wording for a NUL character, whichever side finds it (the webhook's jsonb check too).
NUL_TEXT = "text must not contain NUL characters (\\u0000)"


@dataclasses.dataclass(frozen=True)
class Lead:
    """One lead as it arrives, with what the edge derived from its phone."""

    payload: Any
    raw: bytes | str | None  # the body as received; None: the payload is serialised
    source: str | None
    now: dt.datetime | None
    edge: dict[str, Any] | None  # the `p_edge` argument: E.164 and an inferred zone
    phone: str  # masked, for logs


def prepare(
    payload: Any,
    raw: bytes | str | None = None,
    *,
    source: str | None = None,
    now: dt.datetime | None = None,
) -> Lead:
    """The lead with its phone normalised (once) and masked for logs."""
    edge: dict[str, Any] | None = None
    phone = "-"
    if isinstance(payload, dict) and isinstance(payload.get("phone"), str):
        normalized = phones.normalize(payload["phone"])
        edge = normalized.as_edge()
        phone = phones.mask(normalized.e164 or payload["phone"].strip())
    return Lead(payload, raw, source, now, edge, phone)


def rejection_detail(exc: Exception) -> str:
    """Why the database could not take a lead, in words a lead source can act on."""
    if isinstance(exc, psycopg.Error):
        if isinstance(exc, psycopg.errors.UntranslatableCharacter) or "\\u0000" in str(exc):
            return NUL_TEXT
        message = exc.diag.message_primary or str(exc)
    else:
        message = str(exc)
    return message[:MAX_DETAIL]


def storable_body(raw: bytes | str) -> str:
    """A request body as text a text column can keep: bad UTF-8 and NUL become U+FFFD.
    (A JSON document for a jsonb column: `pgflow.web.http.storable_json`.)"""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text.replace("\x00", "\ufffd")


def _rejection(lead: Lead, exc: Exception) -> tuple[db.Call[db.Row], db.Row]:
    """For a lead the SQL cannot take: the call that keeps it as unreadable, and what to
    report when that call is not allowed (a login without EXECUTE on pgflow.reject_lead)."""
    detail = rejection_detail(exc)
    raw = lead.raw if lead.raw is not None else json.dumps(lead.payload, ensure_ascii=False)
    call = db.reject_lead(storable_body(raw), "invalid_payload", detail, lead.source, lead.now)
    return call, {"status": "rejected", "error": "invalid_payload", "detail": detail}


def ingest(conn: psycopg.Connection[Any], lead: Lead, *, savepoint: bool = False) -> db.Row:
    """One lead on a sync connection (autocommit, or in a transaction with `savepoint`:
    each call then sits in a savepoint, so a failure leaves the transaction usable)."""

    def run(call: db.Call[db.Row]) -> db.Row:
        with conn.transaction() if savepoint else contextlib.nullcontext():
            return call.run(conn)

    try:
        return run(db.ingest_lead(lead.payload, lead.edge, lead.now))
    except UNTAKEABLE as exc:
        reject, unrecorded = _rejection(lead, exc)
    try:
        return run(reject)
    except psycopg.errors.InsufficientPrivilege:
        return unrecorded


async def ingest_async(conn: psycopg.AsyncConnection[Any], lead: Lead) -> db.Row:
    """One lead on an async autocommit connection: `ingest`'s twin."""
    try:
        return await db.ingest_lead(lead.payload, lead.edge, lead.now).arun(conn)
    except UNTAKEABLE as exc:
        reject, unrecorded = _rejection(lead, exc)
    try:
        return await reject.arun(conn)
    except psycopg.errors.InsufficientPrivilege:
        return unrecorded

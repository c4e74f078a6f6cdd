"""Lead intake shared by the lead webhook and the CSV import.

A lead is ONE `pgflow.ingest_lead()` call with what the edge derived from the phone
(E.164, an inferred zone), derived once per lead by `prepare()`. When the SQL cannot take a
value at all (a consent time that is not a time, a NUL character in a string), the lead is
still kept: `pgflow.reject_lead()` records the body as unreadable with `rejection_detail()`
saying why, in our words.

`ingest()` (sync) and `ingest_async()` are twins around one core, `_steps()`: a generator
that yields each database call and receives its answer or its error, so what happens on
which error is written once; the twins only run the calls, each in a `_Run.step()`
(procrastinate's manager builds its sync and async twins from one helper the same way)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Generator, Iterator
from typing import Any

import psycopg

from pgflow import db, errors, phones

# What the SQL may refuse a value with: the lead is then recorded as invalid_payload.
UNTAKEABLE = (psycopg.DataError, errors.InvalidInput)
MAX_DETAIL = 500

# The core: yields a call, gets its answer back (or its error thrown in), returns the result.
Steps = Generator[db.Call[db.Row], db.Row, db.Row]


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
            return "text must not contain NUL characters (\\u0000)"
        message = exc.diag.message_primary or str(exc)
    else:
        message = str(exc)
    return message[:MAX_DETAIL]


def storable_body(raw: bytes | str) -> str:
    """A request body as text a text column can keep: bad UTF-8 and NUL become U+FFFD.
    (A JSON document for a jsonb column: `pgflow.web.http.storable_json`.)"""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text.replace("\x00", "\ufffd")


def _steps(lead: Lead) -> Steps:
    """The intake of one lead, whatever runs the calls."""
    try:
        return (yield db.ingest_lead(lead.payload, lead.edge, lead.now))
    except UNTAKEABLE as exc:
        detail = rejection_detail(exc)
    raw = lead.raw if lead.raw is not None else json.dumps(lead.payload, ensure_ascii=False)
    body = storable_body(raw)
    try:
        return (yield db.reject_lead(body, "invalid_payload", detail, lead.source, lead.now))
    except psycopg.errors.InsufficientPrivilege:
        # A login without EXECUTE on pgflow.reject_lead: still report the lead.
        return {"status": "rejected", "error": "invalid_payload", "detail": detail}


def ingest(conn: psycopg.Connection[Any], lead: Lead, *, savepoint: bool = False) -> db.Row:
    """One lead on a sync connection (autocommit, or in a transaction with `savepoint`:
    each call then sits in a savepoint, so a failure leaves the transaction usable)."""
    run = _Run(lead)
    while run.call is not None:
        with run.step(), conn.transaction() if savepoint else contextlib.nullcontext():
            run.answer = run.call.run(conn)
    return run.result


async def ingest_async(conn: psycopg.AsyncConnection[Any], lead: Lead) -> db.Row:
    """One lead on an async autocommit connection."""
    run = _Run(lead)
    while run.call is not None:
        with run.step():
            run.answer = await run.call.arun(conn)
    return run.result


class _Run:
    """The core (`_steps`) driven one call at a time: run `call` inside `step()` and put
    its answer in `answer`; an error raised there goes to the core, which handles it or
    raises it again. `call` is None once the core has its `result`."""

    def __init__(self, lead: Lead) -> None:
        self._steps = _steps(lead)
        self.call: db.Call[db.Row] | None = next(self._steps)
        self.answer: db.Row = {}
        self.result: db.Row = {}

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        try:
            try:
                yield
            except Exception as exc:
                self.call = self._steps.throw(exc)
            else:
                self.call = self._steps.send(self.answer)
        except StopIteration as done:
            self.call, self.result = None, done.value

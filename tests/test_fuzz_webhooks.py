"""Hostile input against the three webhooks, on a real server (uvicorn) and a real database.

What this file proves, for POST /webhooks/leads, /webhooks/retell and /webhooks/events:

- The answer is always 2xx or 4xx, never 5xx: random JSON (hypothesis `st.recursive`),
  wrong types for every known field, 10,000 nested arrays, huge strings near and over the
  body limits, invalid UTF-8, NUL characters (`\\u0000` escapes and raw NUL bytes), emoji,
  SQL-looking strings and phone numbers of every shape.
- A 4xx body is `{"error": <code>, "detail": <text>}` in our own words: no psycopg class, no
  traceback, no SQLSTATE, no raw PostgreSQL message.
- Nothing is half-written: a rejected lead creates no contact, enrollment, conversation,
  message or job, and every lead past the token check leaves exactly one `lead_events` row
  that says how it ended. A refused token, a bad/missing/replayed Retell signature (older
  than 5 minutes) and an oversized body write nothing at all (the lead webhook alone records
  its 413). A validly signed Retell body that is not a JSON object is a 400 that writes
  nothing; a validly signed JSON object of any shape is 2xx and recorded once in
  `webhook_deliveries`; an authorised business event that parses as an object is recorded.
- A body over the limit is refused with 413 while the client is still sending it (a raw
  socket declares far more than it sends, or streams chunks with no end): the server never
  reads it whole.

Each test function has its own database and its own server; hypothesis runs its examples
against them (counting rows before and after each request) with `derandomize=True`, so CI
sees the same examples every run. Requests carry `Connection: close`: a 500 makes uvicorn
drop the connection, and that must not turn the next example into a transport error.

The bugs this file found are kept as regression tests at the end (each collects every case
of its bug): values jsonb cannot hold, nesting just inside the parser's limit, identifiers
too long to index, chat events without messages, timestamps out of range.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import random
import re
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from psycopg.types.json import Jsonb

from pgflow.config import Settings
from pgflow.web.events import EVENTS_BODY_LIMIT
from pgflow.web.http import storable_json as storable
from pgflow.web.http import unstorable
from pgflow.web.leads import LEAD_BODY_LIMIT
from pgflow.web.retell import RETELL_BODY_LIMIT
from tests.factories import at, campaign_doc, ingest
from tests.fake_retell import FakeRetell
from tests.helpers import scalar
from tests.processes import serving

Conn = psycopg.Connection[Any]
LEAD_TOKEN = "lead-t0ken-for-fuzz"
EVENTS_TOKEN = "ev3nts-t0ken-for-fuzz"
KEY = "retell-key-for-fuzz"
NOW = at("2026-11-23 15:00")
KNOWN_PHONE = "+12125550147"  # a contact with a live conversation, for events and Retell
LINE = "+14155550100"  # the campaign's sending number
LEAD_AUTH = {"Authorization": f"Bearer {LEAD_TOKEN}"}
EVENTS_AUTH = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
CLOSE = {"Connection": "close"}
LEADS, RETELL, EVENTS = "/webhooks/leads", "/webhooks/retell", "/webhooks/events"
LIMITS = {LEADS: LEAD_BODY_LIMIT, RETELL: RETELL_BODY_LIMIT, EVENTS: EVENTS_BODY_LIMIT}
CHAT_EVENTS = ("chat_started", "transcript_updated", "chat_ended", "chat_analyzed")
FIVE_MINUTES_MS = 5 * 60 * 1000

TABLES = (
    "contacts",
    "enrollments",
    "conversations",
    "messages",
    "pgqueuer",
    "lead_events",
    "webhook_deliveries",
)
COUNTS = "select " + ", ".join(f"(select count(*) from pgflow.{t})" for t in TABLES)
# What a rejected lead must not have created.
LEAD_ROWS = ("contacts", "enrollments", "conversations", "messages", "pgqueuer")

# Fragments of PostgreSQL's and psycopg's own messages: never in a `detail` we answer.
RAW_DATABASE_WORDS = (
    "psycopg",
    "Traceback",
    "SQLSTATE",
    "unsupported Unicode escape sequence",
    "invalid input syntax",
    "CONTEXT:",
    "DETAIL:",
    "HINT:",
    "PL/pgSQL",
    "pg_catalog",
    "unnamed portal",
    "violates",
    "index row size",
    "stack depth limit",
    "out of range",
    "cannot be converted to text",
    "current transaction is aborted",
)

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz(max_examples: int) -> settings:
    return settings(FUZZ, max_examples=max_examples)


# --- the server under test ---------------------------------------------------------------


@dataclasses.dataclass
class Served:
    client: httpx.Client
    db: Conn
    signer: FakeRetell
    conversation_id: int

    def counts(self) -> dict[str, int]:
        found = self.db.execute(COUNTS).fetchone()
        assert found is not None
        return dict(zip(TABLES, (int(n) for n in found), strict=True))

    def post(self, path: str, body: bytes, headers: Mapping[str, str | bytes]) -> httpx.Response:
        raw = [
            (name.encode("latin-1"), value if isinstance(value, bytes) else value.encode("latin-1"))
            for name, value in {**headers, **CLOSE}.items()
        ]
        return self.client.post(path, content=body, headers=raw)

    def signed(self, body: bytes, *, at_ms: int | None = None) -> dict[str, str]:
        return self.signer.webhooks.headers(body, at_ms)

    # Each method below sends one request and checks the whole contract for it.

    def lead(self, body: bytes) -> httpx.Response:
        """An authorised lead: 2xx/4xx in our words, exactly one lead_events row saying how
        it ended, and nothing else written when it was refused."""
        before = self.counts()
        response = self.post(LEADS, body, LEAD_AUTH)
        answer = check_contract(response, body)
        after = self.counts()
        assert after["lead_events"] == before["lead_events"] + 1, "one lead_events row a lead"
        assert after["webhook_deliveries"] == before["webhook_deliveries"]
        result, error_code = self.db.execute(
            "select result, error_code from pgflow.lead_events order by id desc limit 1"
        ).fetchone() or (None, None)
        if response.status_code >= 400:
            assert (result, error_code) == ("rejected", answer["error"])
            assert {t: after[t] for t in LEAD_ROWS} == {t: before[t] for t in LEAD_ROWS}, (
                "a rejected lead wrote rows"
            )
        else:
            assert set(answer) == {"contact_id", "enrollment_id", "status"}
            assert (result, error_code) == (answer["status"], None)
            created = 1 if response.status_code == 201 else 0
            assert after["enrollments"] == before["enrollments"] + created
            if response.status_code == 201:
                phone = scalar(
                    self.db,
                    "select phone from pgflow.contacts where id = %s",
                    [answer["contact_id"]],
                )
                assert re.fullmatch(r"\+[1-9][0-9]{6,14}", phone), phone
        return response

    def event(self, body: bytes, payload: Any = None) -> httpx.Response:
        """An authorised business event: 2xx/4xx; recorded once when it parsed as an object
        (`payload` is that object when the test knows it), nothing written otherwise."""
        before = self.counts()
        response = self.post(EVENTS, body, EVENTS_AUTH)
        answer = check_contract(response, body)
        after = self.counts()
        delta = after["webhook_deliveries"] - before["webhook_deliveries"]
        if response.status_code in (400, 413):
            assert answer["error"] in ("malformed_json", "invalid_payload", "payload_too_large")
            if isinstance(payload, dict):  # only what jsonb cannot hold, in our words
                assert answer == {"error": "invalid_payload", "detail": unstorable(payload)}
            assert after == before
            return response
        assert response.status_code in (200, 404, 422), response.text
        assert delta in (0, 1)
        # A repeat (same body or same id) changes nothing and answers "duplicate".
        assert (delta == 0) == (answer.get("result") == "duplicate"), (delta, answer)
        if isinstance(payload, dict):
            recorded = scalar(
                self.db,
                "select count(*) from pgflow.webhook_deliveries where provider = 'events'"
                " and (payload = %(p)s"
                "      or delivery_key = 'id:' || pgflow._short_key(nullif(%(p)s ->> 'id', '')))",
                {"p": Jsonb(payload)},
            )
            assert recorded >= 1, "an event that parsed as an object was not recorded"
        assert after["lead_events"] == before["lead_events"]
        assert after["contacts"] == before["contacts"]
        return response

    def retell(
        self, body: bytes, headers: Mapping[str, str | bytes], payload: Any = None
    ) -> httpx.Response:
        """A Retell delivery with the given headers; when `payload` is the JSON object the
        body carries and it is signed, it must be 2xx and recorded exactly once."""
        before = self.counts()
        if isinstance(payload, dict):
            existed = self._retell_rows(payload)
        response = self.post(RETELL, body, headers)
        check_contract(response, body)
        after = self.counts()
        if response.status_code >= 400:
            assert after == before, "a refused Retell delivery wrote rows"
            return response
        assert isinstance(payload, dict), "only a JSON object may be accepted"
        assert self._retell_rows(payload) == 1, "a signed object is recorded exactly once"
        delta = after["webhook_deliveries"] - before["webhook_deliveries"]
        assert delta == (0 if existed else 1)
        assert after["lead_events"] == before["lead_events"]
        return response

    def _retell_rows(self, payload: dict[str, Any]) -> int:
        return int(
            scalar(
                self.db,
                "select count(*) from pgflow.webhook_deliveries"
                " where provider = 'retell' and payload = %s",
                [Jsonb(storable(payload))],  # kept with NUL and surrogates replaced
            )
        )


def outcome(response: httpx.Response) -> str:
    """`201`, `200 applied`, `422 invalid_phone`...: for hypothesis' statistics."""
    answer = response.json()
    word = answer.get("error") or answer.get("status") or answer.get("result")
    if word is None and isinstance(answer.get("chat_inbound"), dict):
        word = "chat_inbound " + ",".join(sorted(answer["chat_inbound"]))
    return f"{response.status_code} {word or ''}".strip()


def check_contract(response: httpx.Response, sent: bytes = b"") -> Any:
    """Never a 5xx; a 4xx is `{"error": code, "detail": text}` in our own words."""
    assert 200 <= response.status_code < 500, f"{response.status_code}: {response.text[:800]}"
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.status_code,
        response.headers.get("content-type"),
        response.text[:200],
    )
    answer = response.json()
    if response.status_code >= 400:
        assert isinstance(answer, dict), answer
        assert set(answer) == {"error", "detail"}, answer
        assert isinstance(answer["error"], str), answer
        assert re.fullmatch(r"[a-z][a-z_]*", answer["error"]), answer
        assert isinstance(answer["detail"], str), answer
        assert answer["detail"].strip(), answer
        echoed = sent.decode("utf-8", errors="replace").lower()
        for word in RAW_DATABASE_WORDS:
            if word.lower() not in echoed:  # the detail may quote what the sender wrote
                assert word.lower() not in answer["detail"].lower(), answer
    return answer


@pytest.fixture
def served(db_url: str, db: Conn) -> Iterator[Served]:
    """This test's own database (one campaign, one lead with a live conversation) and its
    own server."""
    db.execute(
        "select pgflow.apply_campaigns(%s)",
        [Jsonb(campaign_doc("solar", window_start="00:00", window_end="24:00"))],
    )
    assert ingest(db, KNOWN_PHONE, NOW)["status"] == "created"
    conversation_id = int(scalar(db, "select id from pgflow.conversations"))
    config = Settings(
        database_url=db_url,
        lead_token=LEAD_TOKEN,
        events_token=EVENTS_TOKEN,
        retell_api_key=KEY,
    )
    with serving(config, NOW) as client:
        yield Served(client, db, FakeRetell(KEY), conversation_id)


class _OneLineTraceback(logging.Filter):
    """uvicorn logs a 500's traceback from the server thread while the test thread may be
    formatting its own failure; on Python 3.11 before 3.11.8 both use `ast` (traceback
    carets) with one per-interpreter recursion counter, and the race ends pytest with
    `SystemError: AST constructor recursion depth mismatch` (CPython gh-106905). The
    server's exception is kept as one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = str(exc).splitlines()[0] if str(exc) else ""
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {first}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


@pytest.fixture(autouse=True)
def _server_errors_in_one_line() -> Iterator[None]:
    one_line = _OneLineTraceback()
    logger = logging.getLogger("uvicorn.error")
    logger.addFilter(one_line)
    try:
        yield
    finally:
        logger.removeFilter(one_line)


# --- strategies ----------------------------------------------------------------------------

HOSTILE_TEXT = (
    "",
    " ",
    "'; drop table pgflow.contacts; --",
    "Robert'); DROP TABLE pgflow.leads;--",
    '" or 1=1 --',
    "$1",
    "%s%s%s%n",
    "\\",
    "\\u0000",
    "a\u0000b",
    "\u0000",
    "\U0001f600",
    "\U0001f469\U0001f3fd\u200d\U0001f680",
    "\u202egnp.exe",
    "\ufeff",
    "\u200b",
    "{{first_name}}",
    "<script>alert(1)</script>",
    "\r\n",
    "null",
    "NaN",
    "Infinity",
    "\U0010ffff",
)


SURROGATES: tuple[Literal["Cs"]] = ("Cs",)


def texts(*, nul: bool, max_size: int = 16) -> SearchStrategy[str]:
    """Any text (surrogates excluded: they are not UTF-8; the regressions send them as
    escapes), plus the hostile classics; `nul=False` keeps U+0000 out."""
    alphabet = st.characters(
        exclude_categories=SURROGATES, exclude_characters=None if nul else ("\x00",)
    )
    classics = [t for t in HOSTILE_TEXT if nul or "\x00" not in t]
    return st.text(alphabet, max_size=max_size) | st.sampled_from(classics)


def json_values(text: SearchStrategy[str], max_leaves: int = 10) -> SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


US_FORMATS = (
    "({a}) {b}-{c}",
    "{a}-{b}-{c}",
    "{a}.{b}.{c}",
    "{a}{b}{c}",
    "+1 {a} {b} {c}",
    "1-{a}-{b}-{c}",
    "+1({a}){b}{c}",
    " {a} {b} {c} ",
    "{a}/{b}-{c}",
    "{a}{b}{c} ext. 12",
    "tel:+1-{a}-{b}-{c}",
)
ODD_PHONES = (
    "",
    "   ",
    "\t",
    "+",
    "++14155550123",
    "1-800-FLOWERS",
    "415-555-CALL",
    "call me maybe",
    "N/A",
    "0",
    "911",
    "+0 000 000 0000",
    "+999 1234567890",
    "\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663",  # Arabic-Indic digits
    "\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13",  # full-width digits
    "415\u00a0555\u00a00123",
    "415555\u00000123",
    "'; drop table pgflow.contacts; --",
    "\U0001f4de 415 555 0123",
    "9" * 300,
    "1" * 20_000,
)


def us_phones() -> SearchStrategy[str]:
    """US numbers in the formats people type (some of them not valid numbers)."""
    return st.builds(
        lambda a, b, c, fmt: fmt.format(a=a, b=b, c=f"{c:04d}"),
        st.integers(200, 999),
        st.integers(200, 999),
        st.integers(0, 9999),
        st.sampled_from(US_FORMATS),
    )


def phones() -> SearchStrategy[str]:
    """Phone numbers of every shape: US formats, country codes, punctuation soup, letters,
    empty, very long."""
    us = us_phones()
    international = st.builds(
        lambda cc, rest: cc + rest,
        st.sampled_from(["+1", "+44", "+33", "+49", "+81", "+91", "+52", "+61", "+7", "00", "+"]),
        st.text("0123456789 -", min_size=1, max_size=16),
    )
    soup = st.text("0123456789 ()-.+/x#*", max_size=30)
    lettered = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz -", max_size=20)
    long_digits = st.text("0123456789", min_size=16, max_size=400)
    return us | international | soup | lettered | long_digits | st.sampled_from(ODD_PHONES)


def lead_payloads() -> SearchStrategy[dict[str, Any]]:
    """A lead object with every known field sometimes right, sometimes of any type."""
    text = texts(nul=True)
    value = json_values(text)
    consent = st.fixed_dictionaries(
        {},
        optional={
            "at": st.datetimes().map(lambda d: d.isoformat()) | text | value,
            "text": text | value,
            "source": text | value,
        },
    )
    return st.fixed_dictionaries(
        {"campaign": st.just("solar") | text | value, "phone": phones() | value},
        optional={
            "first_name": text | value,
            "last_name": text | value,
            "email": st.emails() | text | value,
            "timezone": st.sampled_from(["America/Chicago", "UTC", "Mars/Olympus", "EST5EDT"])
            | text
            | value,
            "source": text | value,
            "external_id": text | value,
            "consent": consent | value,
            "attributes": st.dictionaries(text, value, max_size=4) | value,
        },
    )


def plausible_leads() -> SearchStrategy[dict[str, Any]]:
    """Leads that are mostly taken (the campaign, a US number), with hostile text in every
    optional field: what gets stored must survive it."""
    text = texts(nul=True, max_size=40)
    consent = st.fixed_dictionaries(
        {},
        optional={
            "at": st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat()),
            "text": text,
            "source": text,
        },
    )
    return st.fixed_dictionaries(
        {"campaign": st.just("solar"), "phone": us_phones()},
        optional={
            "first_name": text,
            "last_name": text,
            "email": st.emails() | text,
            "timezone": st.sampled_from(["America/Chicago", "Europe/Paris", "Asia/Kolkata"]),
            "source": text,
            "external_id": text,
            "consent": consent,
            "attributes": st.dictionaries(text, text | st.integers() | st.booleans(), max_size=4),
        },
    )


LEAD_FIELDS = (
    "campaign",
    "phone",
    "first_name",
    "last_name",
    "email",
    "timezone",
    "source",
    "external_id",
    "consent",
    "attributes",
)
GOOD_LEAD = {"campaign": "solar", "phone": "(415) 555-0123", "first_name": "Sam"}

BAD_BYTES = (b"\x00", b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x80")


def encoded(value: SearchStrategy[Any]) -> SearchStrategy[bytes]:
    """JSON text of `value`, escaped to ASCII or not."""
    return st.builds(
        lambda v, ascii_only: json.dumps(v, ensure_ascii=ascii_only).encode("utf-8"),
        value,
        st.booleans(),
    )


def mangled(body: SearchStrategy[bytes]) -> SearchStrategy[bytes]:
    """A body with a raw NUL, invalid UTF-8 or a BOM spliced in, or cut short."""

    def splice(raw: bytes, where: int, bad: bytes, cut: bool) -> bytes:
        at_ = where % (len(raw) + 1)
        return raw[:at_] if cut else raw[:at_] + bad + raw[at_:]

    return st.builds(
        splice, body, st.integers(0, 10_000), st.sampled_from(BAD_BYTES), st.booleans()
    )


EVENT_TYPES = ("appointment_booked", "human_takeover", "disqualified")


def events_payloads(conversation_id: int = 1) -> SearchStrategy[dict[str, Any]]:
    text = texts(nul=True)
    value = json_values(text)
    data = st.fixed_dictionaries({}, optional={"note": text, "reason": text})
    plausible = st.fixed_dictionaries(
        {"type": st.sampled_from(EVENT_TYPES)},
        optional={"at": st.datetimes().map(lambda d: d.isoformat()) | text, "data": data},
    ).flatmap(
        lambda event: st.one_of(
            st.builds(
                lambda phone: {**event, "phone": phone},
                st.sampled_from([KNOWN_PHONE, "(212) 555-0147", "212.555.0147", "2125550100"]),
            ),
            st.builds(
                lambda cid: {**event, "conversation_id": cid},
                st.sampled_from([conversation_id, str(conversation_id), conversation_id + 1]),
            ),
        )
    )
    return (
        plausible
        | st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["appointment_booked", "human_takeover", "disqualified"])
                | text
                | value,
                "phone": st.sampled_from([KNOWN_PHONE, "(212) 555-0147", "2125550100"])
                | phones().filter(lambda p: "\x00" not in p)
                | value,
                "conversation_id": st.integers() | text | value,
                "at": st.datetimes().map(lambda d: d.isoformat()) | text | value,
                "data": st.fixed_dictionaries({}, optional={"note": text | value, "reason": text})
                | value,
                "id": text | st.integers() | value,
            },
        )
        | st.dictionaries(text, value, max_size=5)
    )


def retell_payloads(conversation_id: int) -> SearchStrategy[dict[str, Any]]:
    """Retell webhooks of random shape around the real ones (chat_inbound and the chat
    events), some correlated to the live conversation."""
    text = texts(nul=True)
    value = json_values(text, max_leaves=6)
    role = st.sampled_from(["user", "agent", "tool_call_invocation", "node_transition"])
    message = st.fixed_dictionaries(
        {},
        optional={
            "role": role | value,
            "content": st.sampled_from(["yes!", "STOP", "who is this?", "no thanks"])
            | text
            | value,
            "message_id": text | st.integers(),
            "created_timestamp": st.integers(0, 10**15) | text | value,
        },
    )
    metadata = st.fixed_dictionaries(
        {},
        optional={
            "pgflow_conversation_id": st.sampled_from([str(conversation_id), "0", "1e3"])
            | st.integers()
            | text,
            "pgflow_message_id": st.sampled_from(["1", "99"]) | st.integers() | text,
        },
    )
    chat = st.fixed_dictionaries(
        {"message_with_tool_calls": st.lists(message | value, max_size=4) | value},
        optional={
            "chat_id": st.sampled_from(["chat_1", "chat_2", ""]) | text | value,
            "agent_id": text | value,
            "chat_status": st.sampled_from(["ongoing", "ended", "error"]) | value,
            "metadata": metadata | value,
            "transcript": text | value,
            "chat_analysis": st.fixed_dictionaries(
                {},
                optional={
                    "custom_analysis_data": st.fixed_dictionaries(
                        {},
                        optional={
                            "conversion_status": st.sampled_from(["success", "unqualified"]) | value
                        },
                    ),
                    "chat_summary": text | value,
                },
            )
            | value,
        },
    )
    inbound = st.fixed_dictionaries(
        {},
        optional={
            "from_number": st.sampled_from([KNOWN_PHONE, "+12125550100"]) | text | value,
            "to_number": st.just(LINE) | text | value,
            "chat_id": text,
            "message": text | value,
            "agent_id": text | value,
        },
    )
    event_name = st.sampled_from(
        ["chat_inbound", "sms_inbound", *CHAT_EVENTS, "call_started", "", "CHAT_STARTED"]
    )
    # Close to what Retell sends: a chat of the live conversation, or our number texted by
    # the lead or by a stranger; hostile texts, opt-outs and opt-ins among the messages.
    said = st.sampled_from(
        ["STOP", "START", "HELP", "yes!", "stop texting me", "can I talk to a real person?"]
    )
    plain_message = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "agent", "tool_call_invocation"]),
            "content": said | text,
        },
        optional={
            "message_id": st.sampled_from(["m1", "m2", "m3"]) | text,
            "created_timestamp": st.integers(1_700_000_000_000, 1_900_000_000_000),
        },
    )
    plain_chat = st.fixed_dictionaries(
        {
            "chat_id": st.sampled_from(["chat_1", "chat_2"]),
            "metadata": st.just({"pgflow_conversation_id": str(conversation_id)}) | metadata,
            "message_with_tool_calls": st.lists(plain_message, max_size=4),
        },
        optional={
            "chat_status": st.sampled_from(["ongoing", "ended"]),
            "chat_analysis": st.fixed_dictionaries(
                {
                    "custom_analysis_data": st.fixed_dictionaries(
                        {"conversion_status": st.sampled_from(["success", "qualified", "x"])}
                    ),
                    "chat_summary": text,
                }
            ),
        },
    )
    plain_inbound = st.fixed_dictionaries(
        {"from_number": st.sampled_from([KNOWN_PHONE, "+12125550100"]), "to_number": st.just(LINE)},
        optional={"chat_id": st.sampled_from(["chat_1", "chat_3"]) | text, "message": said | text},
    )
    plausible = st.one_of(
        st.builds(
            lambda name, chat: {"event": name, "chat": chat},
            st.sampled_from(CHAT_EVENTS),
            plain_chat,
        ),
        st.builds(lambda body: {"event": "chat_inbound", "chat_inbound": body}, plain_inbound),
        st.builds(lambda body: {"event": "sms_inbound", **body}, plain_inbound),
    )
    shaped = st.fixed_dictionaries(
        {"event": event_name | text | value},
        optional={"chat": chat | value, "chat_inbound": inbound | value, "message": text},
    )
    flat_inbound = st.builds(lambda body: {"event": "chat_inbound", **body}, inbound)
    return plausible | shaped | flat_inbound | st.dictionaries(text, value, max_size=5)


def grants(authorization: str | None, token: str) -> bool:
    """Whether the server would take this Authorization header for `token`."""
    if authorization is None:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and given.strip() == token


def nested(depth: int, inner: bytes = b"[]") -> bytes:
    """An object whose attributes hold `depth` nested arrays (or objects)."""
    opening, closing = (b"[", b"]") if inner == b"[]" else (b'{"a":', b"}")
    return (
        b'{"campaign": "solar", "phone": "2125550147", "type": "nope", "event": "x",'
        b' "attributes": {"a": ' + opening * depth + b"0" + closing * depth + b"}}"
    )


# --- POST /webhooks/leads ------------------------------------------------------------------


def wrong_types() -> SearchStrategy[dict[str, Any]]:
    """A good lead with one known field replaced by any JSON value."""
    return st.builds(
        lambda field, value: {**GOOD_LEAD, field: value},
        st.sampled_from(LEAD_FIELDS),
        json_values(texts(nul=True)),
    )


@pytest.mark.slow
@fuzz(120)
@given(
    payload=st.one_of(
        plausible_leads(), lead_payloads(), wrong_types(), json_values(texts(nul=True))
    ),
    ascii_only=st.booleans(),
)
@example(payload={**GOOD_LEAD, "first_name": "a\u0000b"}, ascii_only=True)
@example(payload={**GOOD_LEAD, "campaign": "'; drop table pgflow.contacts; --"}, ascii_only=False)
@example(payload={**GOOD_LEAD, "first_name": "\U0001f600 \u202e"}, ascii_only=False)
@example(payload={**GOOD_LEAD, "consent": "yes"}, ascii_only=True)
@example(payload=[GOOD_LEAD], ascii_only=True)
def test_leads_random_json_and_wrong_types(served: Served, payload: Any, ascii_only: bool) -> None:
    response = served.lead(json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8"))
    event(outcome(response))


@pytest.mark.slow
@fuzz(60)
@given(phone=phones())
@example(phone="(415) 555-0123")
@example(phone="+44 20 7946 0958")
def test_leads_phone_numbers_of_every_shape(served: Served, phone: str) -> None:
    """Every phone is either refused (422 invalid_phone, or invalid_payload for a NUL) and
    recorded, or stored as E.164 (checked in `Served.lead`)."""
    response = served.lead(json.dumps({"campaign": "solar", "phone": phone}).encode())
    event(outcome(response))
    if response.status_code >= 400:
        assert response.json()["error"] in ("invalid_phone", "invalid_payload"), response.text


@pytest.mark.slow
@fuzz(50)
@given(
    body=st.binary(max_size=300)
    | mangled(encoded(lead_payloads()))
    | st.sampled_from([b"", b"{", b"}", b"[", b'"', b"\x00", b"nul", b"\xef\xbb\xbf{}"])
)
def test_leads_raw_bytes(served: Served, body: bytes) -> None:
    event(outcome(served.lead(body)))


NUL_IN_EACH_FIELD = [
    # json.dumps writes U+0000 as the escape \u0000
    (f"NUL escape in {field}", json.dumps({**GOOD_LEAD, field: "a\x00b"}).encode(), {422})
    for field in ("campaign", "phone", "first_name", "last_name", "email", "source", "external_id")
]
HOSTILE_LEAD_BODIES: list[tuple[str, bytes, set[int]]] = [
    ("10,000 nested arrays", b"[" * 10_000 + b"]" * 10_000, {400}),
    ("10,000 nested objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, {400}),
    ("10,000 nested arrays in a lead", nested(10_000), {400}),
    ("10,000 unclosed arrays", b"[" * 10_000, {400}),
    ("raw NUL byte", b'{"campaign": "solar", "phone": "415555\x000123"}', {400}),
    ("invalid UTF-8", b'{"campaign": "solar", "phone": "\xff\xfe"}', {400}),
    ("overlong UTF-8", b'{"campaign": "solar\xc0\xaf", "phone": "4155550123"}', {400}),
    ("UTF-8 of a surrogate", b'{"campaign": "solar", "first_name": "\xed\xa0\x80"}', {400}),
    ("UTF-16 with BOM", json.dumps(GOOD_LEAD).encode("utf-16"), {400}),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + json.dumps(GOOD_LEAD).encode(), {200, 201}),
    ("empty", b"", {400}),
    ("NaN", b'{"campaign": "solar", "phone": "4155550123", "n": NaN}', {400}),
    ("5000-digit number", b'{"campaign": "solar", "n": ' + b"9" * 5000 + b"}", {400}),
    ("a JSON string", b'"solar"', {422}),
    ("a JSON list", json.dumps([GOOD_LEAD]).encode(), {422}),
    ("null", b"null", {422}),
    ("duplicate keys", b'{"phone": "x", "campaign": "solar", "phone": "4155550124"}', {200, 201}),
    *NUL_IN_EACH_FIELD,
    (
        "NUL escape in an attribute key",
        b'{"campaign": "solar", "phone": "4155550123", "attributes": {"a\\u0000": 1}}',
        {422},
    ),
    (
        "NUL escape in consent",
        b'{"campaign": "solar", "phone": "4155550123", "consent": {"text": "\\u0000"}}',
        {422},
    ),
]


def padded(size: int, *, pad: str = "x") -> bytes:
    """A valid lead object of exactly `size` bytes (padded in an attribute)."""
    head = json.dumps({"campaign": "solar", "phone": "4155550126", "attributes": {"pad": ""}})
    room = size - len(head.encode())
    unit = len(pad.encode())
    body = head.replace('"pad": ""', '"pad": "' + pad * (room // unit) + "y" * (room % unit) + '"')
    raw = body.encode()
    assert len(raw) == size
    return raw


def test_named_hostile_lead_bodies(served: Served) -> None:
    """Nesting, encodings, NUL, SQL-looking text and sizes around the 64 KiB limit."""
    for name, body, statuses in HOSTILE_LEAD_BODIES:
        response = served.lead(body)
        assert response.status_code in statuses, (name, response.text)
        if name.startswith("NUL escape"):
            assert response.json()["error"] == "invalid_payload", (name, response.text)
            assert "NUL" in response.json()["detail"], (name, response.text)

    evil = "'; drop table pgflow.contacts; --"
    fields = {"first_name": evil, "last_name": f'"{evil}', "attributes": {evil: evil}}
    answer = served.lead(json.dumps({**GOOD_LEAD, "phone": "4155550125", **fields}).encode())
    assert answer.json()["status"] == "created"
    stored = served.db.execute(
        "select first_name, last_name, attributes from pgflow.contacts where id = %s",
        [answer.json()["contact_id"]],
    ).fetchone()
    assert stored == (evil, f'"{evil}', {evil: evil})
    assert served.lead(json.dumps({**GOOD_LEAD, "campaign": evil}).encode()).status_code == 404

    # at the limit (also in 4-byte characters) it is read; one byte more is a recorded 413
    assert served.lead(padded(LEAD_BODY_LIMIT)).status_code == 201
    assert served.lead(padded(LEAD_BODY_LIMIT - 1)).status_code == 200
    assert served.lead(padded(LEAD_BODY_LIMIT, pad="\U0001f600")).status_code == 200
    for over in (padded(LEAD_BODY_LIMIT + 1), padded(LEAD_BODY_LIMIT + 3, pad="\U0001f600")):
        assert served.lead(over).status_code == 413
        kept = scalar(
            served.db, "select length(raw_body) from pgflow.lead_events order by id desc limit 1"
        )
        assert kept <= LEAD_BODY_LIMIT
    long_name = {**GOOD_LEAD, "first_name": "x" * (LEAD_BODY_LIMIT - 200)}
    assert served.lead(json.dumps(long_name).encode()).json()["error"] == "invalid_payload"
    long_phone = {**GOOD_LEAD, "phone": "4" * (LEAD_BODY_LIMIT - 200)}
    assert served.lead(json.dumps(long_phone).encode()).json()["error"] == "invalid_phone"


# --- refused at the door: tokens and signatures --------------------------------------------

SIGNATURE_ATTACKS = ("missing", "empty", "wrong_key", "old", "future", "other_body", "garbled")
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def authorizations() -> SearchStrategy[str | None]:
    latin1 = st.binary(min_size=1, max_size=40).map(
        lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F).decode("latin-1").strip()
    )
    near_misses = st.sampled_from(
        [
            "",
            "Bearer",
            "Bearer ",
            f"Basic {LEAD_TOKEN}",
            f"Bearer {LEAD_TOKEN}x",
            f"Bearer {LEAD_TOKEN[:-1]}",
            f"Bearer {EVENTS_TOKEN}",
            f"Bearer {LEAD_TOKEN}",
            f"bearer{LEAD_TOKEN}",
            f"Bearer {EVENTS_TOKEN}!",
        ]
    )
    return st.none() | near_misses | latin1 | st.text(PRINTABLE, max_size=60)


def header_value(text: str) -> bytes:
    """As sent on the wire: latin-1 bytes, without the surrounding blanks HTTP forbids."""
    return text.strip(" \t").encode("latin-1")


def retell_headers(
    served: Served, body: bytes, attack: str, skew_ms: int, garbage: str
) -> dict[str, str | bytes]:
    """Headers for `body` with a signature that is missing, wrong, replayed or garbled."""
    now_ms = int(time.time() * 1000)
    headers: dict[str, str | bytes] = {"content-type": "application/json"}
    if attack == "empty":
        headers["x-retell-signature"] = ""
    elif attack == "wrong_key":
        headers = {**FakeRetell(KEY + "-not").webhooks.headers(body)}
    elif attack == "old":  # a replay: signed correctly, but more than 5 minutes ago
        headers = {**served.signed(body, at_ms=now_ms - skew_ms)}
    elif attack == "future":
        headers = {**served.signed(body, at_ms=now_ms + skew_ms)}
    elif attack == "other_body":
        headers = {**served.signed(body + b" ")}
    elif attack == "garbled":
        headers["x-retell-signature"] = header_value(garbage)
    return headers


@pytest.mark.slow
@fuzz(90)
@given(
    endpoint=st.sampled_from([LEADS, RETELL, EVENTS]),
    authorization=authorizations(),
    body=encoded(lead_payloads()) | encoded(retell_payloads(1)) | st.binary(max_size=200),
    attack=st.sampled_from(SIGNATURE_ATTACKS),
    skew_ms=st.integers(FIVE_MINUTES_MS + 1000, 10**11),
    garbage=st.text(PRINTABLE, max_size=80),
)
def test_without_the_token_or_a_valid_signature_it_is_401_and_nothing_is_written(
    served: Served,
    endpoint: str,
    authorization: str | None,
    body: bytes,
    attack: str,
    skew_ms: int,
    garbage: str,
) -> None:
    """A missing or wrong token (the lead token on the events webhook and vice versa), and a
    Retell signature that is missing, wrong, for another body, or more than 5 minutes old
    or ahead."""
    if endpoint == RETELL:
        headers = retell_headers(served, body, attack, skew_ms, garbage)
    else:
        token = LEAD_TOKEN if endpoint == LEADS else EVENTS_TOKEN
        assume(not grants(authorization, token))
        headers = {} if authorization is None else {"Authorization": header_value(authorization)}
    before = served.counts()
    response = served.post(endpoint, body, headers)
    assert response.status_code == 401, response.text
    assert check_contract(response, body)["error"] == "unauthorized"
    assert served.counts() == before


# --- validly signed (or authorised) bodies -------------------------------------------------


@pytest.mark.slow
@fuzz(80)
@given(data=st.data())
def test_retell_signed_objects_of_any_shape_are_2xx_and_recorded(
    served: Served, data: st.DataObject
) -> None:
    payload = data.draw(retell_payloads(served.conversation_id))
    body = json.dumps(payload).encode()
    event(outcome(served.retell(body, served.signed(body), payload)))


@pytest.mark.slow
@fuzz(60)
@given(payload=events_payloads())
@example(payload={"type": "appointment_booked", "phone": "(212) 555-0147", "id": "e1"})
@example(payload={"type": "appointment_booked", "phone": "(212) 555-0147", "id": "e1", "x": 1})
@example(payload={"type": "human_takeover", "conversation_id": "99999999999999999999"})
@example(payload={"type": "disqualified", "phone": "'; drop table pgflow.contacts; --"})
def test_events_random_payloads_are_answered_and_recorded(
    served: Served, payload: dict[str, Any]
) -> None:
    event(outcome(served.event(json.dumps(payload).encode(), payload)))


NOT_OBJECTS = [b"", b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000, nested(10_000), b"null"]


@pytest.mark.slow
@fuzz(70)
@given(
    endpoint=st.sampled_from([RETELL, EVENTS]),
    body=encoded(json_values(texts(nul=True)).filter(lambda v: not isinstance(v, dict)))
    | mangled(encoded(retell_payloads(1)) | encoded(events_payloads()))
    | st.binary(max_size=200)
    | st.sampled_from(NOT_OBJECTS),
)
def test_signed_or_authorised_bodies_that_are_not_objects_are_400(
    served: Served, endpoint: str, body: bytes
) -> None:
    """Not JSON, not UTF-8, 10,000 levels deep, or JSON but not an object: 400, nothing
    written (a spliced or truncated body that still parses as an object must be taken)."""
    try:
        parsed = json.loads(body.decode("utf-8").removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        parsed = None
    if endpoint == RETELL:
        assume(not isinstance(parsed, dict))
        response = served.retell(body, served.signed(body))
    elif isinstance(parsed, dict):
        served.event(body, parsed)
        return
    else:
        response = served.event(body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("malformed_json", "invalid_payload"), response.text


def test_retell_and_event_bodies_at_their_limits(served: Served) -> None:
    payload = {"event": "chat_started", "chat": {"chat_id": "c9", "message_with_tool_calls": []}}
    body = json.dumps(payload).encode()
    served.retell(body, served.signed(body), payload)
    # Retell's retry of the same delivery (a fresh signature) changes nothing.
    served.retell(body, served.signed(body), payload)
    # exactly 1 MiB, signed: taken; one byte more: 413 before the signature is looked at
    head = b'{"event": "chat_ended", "pad": "'
    exact = head + b"x" * (RETELL_BODY_LIMIT - len(head) - 2) + b'"}'
    assert len(exact) == RETELL_BODY_LIMIT
    served.retell(exact, served.signed(exact), json.loads(exact))
    over = head + b"x" * (RETELL_BODY_LIMIT - len(head) - 1) + b'"}'
    assert served.retell(over, served.signed(over)).status_code == 413
    assert served.retell(exact + b" ", {}).status_code == 413
    assert served.retell(exact, {}).status_code == 401

    head = b'{"type": "nope", "data": {"note": "'
    exact = head + b"x" * (EVENTS_BODY_LIMIT - len(head) - 3) + b'"}}'
    assert len(exact) == EVENTS_BODY_LIMIT
    assert served.event(exact, json.loads(exact)).json()["error"] == "invalid"
    assert served.event(exact + b" ").status_code == 413


# --- over the limit, while the body is still arriving --------------------------------------


def read_response(sock: socket.socket) -> tuple[int, Any]:
    with sock.makefile("rb") as stream:
        status = int(stream.readline().split()[1])
        length = 0
        while line := stream.readline().strip():
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, json.loads(stream.read(length))


def post_unfinished(served: Served, path: str, headers: dict[str, str], *, chunked: bool) -> Any:
    """Declare (or stream) far more than the limit, send one byte more than the limit and
    then nothing: the answer must come while the client is still "sending"."""
    limit = LIMITS[path]
    url = urlsplit(str(served.client.base_url))
    assert url.hostname is not None
    assert url.port is not None
    head = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {limit * 1024}")
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        left = limit + 1
        while left:
            piece = b"x" * min(left, 16_384)
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            left -= len(piece)
        # The body is unfinished (no final chunk, Content-Length far away): only a server
        # that stopped reading at the limit can answer now.
        status, answer = read_response(sock)
    assert status == 413, answer
    assert answer == {"error": "payload_too_large", "detail": answer["detail"]}
    return answer


def test_oversized_bodies_are_413_before_they_end(served: Served) -> None:
    doors = {LEADS: LEAD_AUTH, RETELL: {"x-retell-signature": "v=1,d=00"}, EVENTS: EVENTS_AUTH}
    for path, headers in doors.items():
        for chunked in (False, True):
            before = served.counts()
            post_unfinished(served, path, headers, chunked=chunked)
            after = served.counts()
            if path == LEADS:  # the lead webhook records its refusals, with what it read
                assert after == {**before, "lead_events": before["lead_events"] + 1}
                assert served.db.execute(
                    "select error_code, length(raw_body) from pgflow.lead_events"
                    " order by id desc limit 1"
                ).fetchone() == ("payload_too_large", LEAD_BODY_LIMIT)
            else:
                assert after == before, (path, chunked)


# --- regressions: bugs this file found (each test collects every case of its bug) --------

JSONB_REFUSES = {
    "a \\u0000 escape in a string": b'"a\\u0000b"',
    "a \\u0000 escape in a key": b'{"a\\u0000": 1}',
    "1e400 (read by Python as inf)": b"1e400",
    "an unpaired surrogate escape \\ud800": b'"\\ud800"',
}


# Was a bug: /webhooks/retell and /webhooks/events: a JSON value that Python parses but
# PostgreSQL's jsonb refuses (a \u0000 escape in a string or a key, 1e400 which Python
# reads as inf, an unpaired surrogate \ud800) is passed to the SQL call unchecked; psycopg
# raises UntranslatableCharacter / InvalidTextRepresentation (DataError), which neither
# handler catches (they catch only db.UNAVAILABLE and errors.InvalidInput): a 500 Internal
# Server Error instead of a 4xx in our words (or a 2xx, recorded)
def test_values_jsonb_cannot_hold_are_refused_not_a_500(served: Served) -> None:
    crashed = []
    for kind, value in JSONB_REFUSES.items():
        retell = b'{"event": "chat_started", "chat": {"chat_id": "c"}, "x": ' + value + b"}"
        event = b'{"type": "disqualified", "phone": "2125550147", "x": ' + value + b"}"
        for path, body, headers in (
            (RETELL, retell, served.signed(retell)),
            (EVENTS, event, EVENTS_AUTH),
        ):
            response = served.post(path, body, headers)
            if response.status_code >= 500:
                crashed.append((path, kind, response.status_code))
            else:
                check_contract(response, body)
    assert not crashed, crashed


# Was a bug: /webhooks/leads: a number beyond float range (1e400, read as inf) or an
# unpaired surrogate escape (\ud800) is refused 422 invalid_payload, but the detail is
# PostgreSQL's raw message 'invalid input syntax for type json' (intake.rejection_detail
# falls back to diag.message_primary), not words of ours naming the problem
def test_lead_refusal_detail_is_in_our_words(served: Served) -> None:
    for value in (b"1e400", b'"\\ud800"'):
        body = b'{"campaign": "solar", "phone": "4155550123", "first_name": ' + value + b"}"
        assert served.lead(body).json()["error"] == "invalid_payload"


# Was a bug: /webhooks/leads, /webhooks/retell and /webhooks/events: JSON nested just
# inside json.loads' recursion limit (about 960-975 levels on the server's stack) parses,
# then psycopg's Jsonb dumper (json.dumps, deeper in the stack) raises RecursionError
# 'maximum recursion depth exceeded while encoding a JSON object', which is not caught:
# 500 instead of 400 malformed_json (10,000 levels are refused cleanly)
def test_nesting_just_inside_the_parser_limit_is_not_a_500(served: Served) -> None:
    crashed: dict[str, list[int]] = {}
    for endpoint in (LEADS, RETELL, EVENTS):
        for depth in range(900, 1001):
            body = nested(depth)
            auth = {LEADS: LEAD_AUTH, EVENTS: EVENTS_AUTH}.get(endpoint) or served.signed(body)
            response = served.post(endpoint, body, auth)
            if response.status_code >= 500:
                crashed.setdefault(endpoint, []).append(depth)
            else:
                check_contract(response, body)
    assert not crashed, f"5xx at these depths: {crashed}"


def _incompressible(n: int, seed: int = 7) -> str:
    """Text PostgreSQL cannot compress under its btree limit (2704 bytes an entry)."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(rng.choice(alphabet) for _ in range(n))


# Was a bug: a value of a few KB (here 6,000 characters) that PostgreSQL cannot compress,
# in a field that ends up in a btree index (a lead's external_id:
# lead_events_external_idx; a Retell chat.chat_id or event name, or a business event's id:
# webhook_deliveries_provider_key through delivery_key), fails with ProgramLimitExceeded
# ('index row size ... exceeds btree version 4 maximum 2704'), a subclass of
# psycopg.OperationalError that the handlers take for db.UNAVAILABLE: 503
# database_unavailable 'retry later' for a request that can never succeed (Retell retries
# it for ever; the lead leaves no lead_events row)
def test_long_identifiers_are_not_database_unavailable(served: Served) -> None:
    long = _incompressible(6000)
    cases: list[tuple[str, dict[str, Any]]] = [
        (LEADS, {**GOOD_LEAD, "external_id": long}),
        (RETELL, {"event": "chat_started", "chat": {"chat_id": long}}),
        (RETELL, {"event": long}),
        (EVENTS, {"type": "disqualified", "phone": KNOWN_PHONE, "id": long}),
    ]
    unavailable = []
    for endpoint, payload in cases:
        body = json.dumps(payload).encode()
        auth = {LEADS: LEAD_AUTH, EVENTS: EVENTS_AUTH}.get(endpoint) or served.signed(body)
        response = served.post(endpoint, body, auth)
        if response.status_code >= 500:
            unavailable.append((endpoint, sorted(payload), response.text))
        else:
            check_contract(response, body)
    assert not unavailable, unavailable


# Was a bug: /webhooks/retell: a chat event correlated to a conversation whose chat has
# neither a message_with_tool_calls array nor a transcript key (e.g. chat_analyzed
# carrying only chat_analysis) reaches pgflow._chat_items, where `jsonb_typeof(p_chat ->
# 'transcript') <> 'string'` is NULL rather than true, so it goes on to FOREACH over
# string_to_array(NULL): 'FOREACH expression must not be null' -> 500
def test_correlated_chat_without_messages_or_transcript_is_not_a_500(served: Served) -> None:
    metadata = {"pgflow_conversation_id": str(served.conversation_id)}
    payload = {
        "event": "chat_analyzed",
        "chat": {"chat_id": "chat_1", "metadata": metadata, "chat_analysis": {}},
    }
    body = json.dumps(payload).encode()
    served.retell(body, served.signed(body), payload)


# Was a bug: /webhooks/retell: a message whose created_timestamp has 16 digits beyond
# about 9.3e15 ms (e.g. 9999999999999999) passes pgflow._chat_items' check '^\d{10,16}$'
# and to_timestamp() raises 'timestamp out of range' (DatetimeFieldOverflow) -> 500
def test_far_future_created_timestamp_is_not_a_500(served: Served) -> None:
    message = {
        "role": "user",
        "content": "hi",
        "message_id": "m1",
        "created_timestamp": 9_999_999_999_999_999,
    }
    chat = {
        "chat_id": "chat_1",
        "metadata": {"pgflow_conversation_id": str(served.conversation_id)},
        "message_with_tool_calls": [message],
    }
    payload = {"event": "transcript_updated", "chat": chat}
    body = json.dumps(payload).encode()
    served.retell(body, served.signed(body), payload)

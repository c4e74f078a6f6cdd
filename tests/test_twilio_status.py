"""Twilio's delivery receipts in SQL (pgflow.record_twilio_status) and over HTTP
(POST /webhooks/twilio/status): once per (MessageSid, status), only forward, and what a
carrier's error sets off; a forged signature writes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import psycopg
import pytest

from pgflow import db as pdb
from pgflow.config import Settings
from tests.factories import apply_campaign, at, count, ingest
from tests.fake_twilio import FakeTwilio
from tests.helpers import row, rows, scalar
from tests.processes import serving

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")  # Monday 10:00 in New York
OPEN = {"window_start": "00:00", "window_end": "24:00"}
LEAD = "+12125550147"
SID = "SM" + "a" * 32
TOKEN = "twilio-token"


def sent_step(db: Conn, sid: str = SID, record: bool = True) -> dict[str, Any]:
    """A lead whose step 1 went out through Twilio as `sid` (the answer recorded or not)."""
    apply_campaign(db, **OPEN)
    lead = ingest(db, LEAD, NOW, first_name="Sam")
    message = scalar(db, "select id from pgflow.messages where kind = 'campaign'")
    assert pdb.claim_message(message, None, None, NOW).run(db)["action"] == "send"
    if record:
        result = {"ok": True, "provider_message_id": sid, "status_code": 201}
        assert pdb.record_send(message, 1, result, 30.0, NOW).run(db)["action"] == "sent"
    return {**lead, "message_id": message}


def status(db: Conn, message: int, value: str, code: int | None = None, sid: str = SID) -> Any:
    payload = {"MessageSid": sid, "MessageStatus": value, "AccountSid": "AC" + "0" * 32}
    if code is not None:
        payload["ErrorCode"] = str(code)
    return pdb.record_twilio_status(message, payload, NOW).run(db)


def state(db: Conn, message: int) -> tuple[Any, ...]:
    return row(
        db,
        "select delivery_status, provider_status, carrier_error_code, delivered_at is not null"
        " from pgflow.messages where id = %s",
        [message],
    )


def test_sent_then_delivered_and_a_late_sent_changes_nothing(db: Conn) -> None:
    lead = sent_step(db)
    m = lead["message_id"]
    assert status(db, m, "sent")["result"] == "applied"
    assert status(db, m, "delivered")["result"] == "applied"
    assert state(db, m) == ("delivered", "delivered", None, True)
    assert status(db, m, "queued")["result"] == "stale"  # out of order: never back
    assert status(db, m, "delivered")["result"] == "duplicate"  # Twilio's retry
    assert state(db, m) == ("delivered", "delivered", None, True)
    assert count(db, "webhook_deliveries", "provider = 'twilio'") == 3


def test_a_receipt_before_our_own_answer_is_applied_when_the_send_is_recorded(
    db: Conn,
) -> None:
    lead = sent_step(db, record=False)
    m = lead["message_id"]
    assert status(db, m, "delivered")["result"] == "applied"
    assert state(db, m) == ("sending", "delivered", None, False)
    result = {"ok": True, "provider_message_id": SID, "status_code": 201}
    assert pdb.record_send(m, 1, result, 30.0, NOW).run(db)["action"] == "sent"
    assert state(db, m) == ("delivered", "delivered", None, True)


def test_delivered_before_sent_stays_delivered(db: Conn) -> None:
    lead = sent_step(db)
    m = lead["message_id"]
    assert status(db, m, "delivered")["result"] == "applied"
    assert status(db, m, "sent")["result"] == "stale"
    assert state(db, m) == ("delivered", "delivered", None, True)


def test_a_receipt_for_another_message_is_not_applied(db: Conn) -> None:
    lead = sent_step(db)
    other = "SM" + "b" * 32
    assert status(db, lead["message_id"], "delivered", sid=other)["result"] == "unknown_message"
    assert state(db, lead["message_id"])[0] == "sent"


def test_a_bad_number_ends_the_contacts_drips_as_discarded(db: Conn) -> None:
    lead = sent_step(db)
    assert status(db, lead["message_id"], "undelivered", 30006)["effect"] == "bad_number"
    assert state(db, lead["message_id"]) == ("failed", "undelivered", 30006, False)
    assert scalar(db, "select delivery_error from pgflow.messages") == (
        "undelivered: error 30006 (bad_number)"
    )
    assert scalar(db, "select status from pgflow.enrollments") == "stopped"
    assert row(db, "select conversion_status, outcome_reason from pgflow.conversations") == (
        "discarded",
        "the carrier refused a text: error 30006 (bad_number)",
    )


def test_21610_suppresses_the_contact_without_a_confirmation(db: Conn) -> None:
    lead = sent_step(db)
    status(db, lead["message_id"], "failed", 21610)
    assert scalar(db, "select opt_out_source from pgflow.contacts") == "carrier"
    assert count(db, "messages", "kind = 'system'") == 0  # Twilio already told the lead


def test_one_filtered_text_warns_and_a_burst_pauses_the_campaign(db: Conn) -> None:
    lead = sent_step(db)
    status(db, lead["message_id"], "undelivered", 30007)
    assert scalar(db, "select status from pgflow.campaigns") == "active"
    assert rows(db, "select kind, severity from pgflow.alerts where resolved_at is null") == [
        ("carrier_filtered:solar", "warning")
    ]
    for n, phone in enumerate(("+12125550148", "+12125550149"), start=2):
        ingest(db, phone, NOW, first_name="Lee")
        message = scalar(db, "select max(id) from pgflow.messages where kind = 'campaign'")
        assert pdb.claim_message(message, None, None, NOW).run(db)["action"] == "send"
        sid = "SM" + str(n) * 32
        result = {"ok": True, "provider_message_id": sid, "status_code": 201}
        assert pdb.record_send(message, 1, result, 30.0, NOW).run(db)["action"] == "sent"
        status(db, message, "undelivered", 30007, sid=sid)
    assert scalar(db, "select status from pgflow.campaigns") == "paused"  # 3 within an hour
    assert rows(
        db, "select kind, severity from pgflow.alerts where resolved_at is null order by id"
    ) == [("carrier_filtered:solar", "warning"), ("carrier_paused:solar", "critical")]


def test_an_unregistered_sender_pauses_the_campaign_at_once(db: Conn) -> None:
    lead = sent_step(db)
    status(db, lead["message_id"], "undelivered", 30034)
    assert scalar(db, "select status from pgflow.campaigns") == "paused"
    assert scalar(db, "select kind from pgflow.alerts where resolved_at is null") == (
        "carrier_sender:solar"
    )


def test_an_unreachable_handset_is_tried_again_within_the_attempts(db: Conn) -> None:
    lead = sent_step(db)
    m = lead["message_id"]
    assert status(db, m, "undelivered", 30003)["effect"] == "retry"
    assert row(
        db,
        "select delivery_status, provider_message_id, send_after > %s from pgflow.messages",
        [NOW],
    ) == ("queued", None, True)
    later = NOW + dt.timedelta(minutes=11)
    assert pdb.claim_message(m, None, None, later).run(db)["action"] == "send"


def test_invalid_callbacks_write_nothing(db: Conn) -> None:
    lead = sent_step(db)
    bad = pdb.record_twilio_status(lead["message_id"], {"MessageStatus": "sent"}, NOW).run(db)
    assert bad["result"] == "invalid"
    assert count(db, "webhook_deliveries", "provider = 'twilio'") == 0


@pytest.fixture
def web(db_url: str) -> Any:
    settings = Settings(
        database_url=db_url, twilio_auth_token=TOKEN, public_url="https://sms.example.com"
    )
    with serving(settings) as client:
        yield client


def test_the_status_webhook_checks_the_signature_on_the_public_url(
    db: Conn, web: httpx.Client
) -> None:
    lead = sent_step(db)
    path = f"/webhooks/twilio/status?message_id={lead['message_id']}"
    params = {"MessageSid": SID, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}
    with FakeTwilio(auth_token=TOKEN) as fake:
        good = fake.sign("https://sms.example.com" + path, params)
        forged = fake.sign("https://sms.example.com" + path, {**params, "MessageStatus": "sent"})
        local = fake.sign(str(web.base_url) + path, params)  # not the URL Twilio called
    for signature in (forged, local, ""):
        refused = web.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert refused.status_code == 403
    assert count(db, "webhook_deliveries", "provider = 'twilio'") == 0
    assert state(db, lead["message_id"])[0] == "sent"
    ok = web.post(path, data=params, headers={"X-Twilio-Signature": good})
    assert ok.status_code == 204
    assert state(db, lead["message_id"])[0] == "delivered"


def test_a_receipt_in_flight_never_blocks_a_persons_reply(db: Conn, db_url: str) -> None:
    """A receipt updates its text twice in one transaction, so the second update checks the
    text's foreign keys (key-share locks on the contact and the conversation). A person's
    take-over and reply lock those rows for no key update: they go on while the receipt's
    transaction is open (with `for update` they waited, and a deadlock followed)."""
    lead = sent_step(db)
    conversation = scalar(db, "select id from pgflow.conversations")
    with psycopg.connect(db_url) as receipt:  # a transaction left open
        payload = {"MessageSid": SID, "MessageStatus": "delivered"}
        assert (
            pdb.record_twilio_status(lead["message_id"], payload, NOW).run(receipt)["result"]
            == "applied"
        )
        with psycopg.connect(db_url, autocommit=True) as person:
            person.execute("set lock_timeout = '2s'")
            pdb.take_over(conversation, "rep@example.com", None, None, NOW).run(person)
            reply = pdb.human_reply(conversation, "Dana here", "rep@example.com", None, "k",
                                    NOW).run(person)  # fmt: skip
            assert reply["result"] == "queued"
        receipt.rollback()

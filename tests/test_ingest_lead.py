"""pgflow.ingest_lead(): intake, idempotency, suppression, rejections, speed to lead."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgflow import db as pdb
from tests.factories import apply_campaign, at, count, ingest
from tests.helpers import row, scalar

Conn = psycopg.Connection[Any]
# Monday 2026-11-23 15:00 UTC = 10:00 in New York, 07:00 in Los Angeles.
MORNING = at("2026-11-23 15:00")


@pytest.fixture
def campaign(db: Conn) -> int:
    return apply_campaign(db)


def test_new_lead_is_enrolled_and_step_one_goes_at_once(db: Conn, campaign: int) -> None:
    result = ingest(db, "(212) 555-0147", MORNING, first_name="Sam", source="form")
    assert result["status"] == "created"
    contact = row(
        db,
        "select phone, first_name, timezone from pgflow.contacts where id = %s",
        [result["contact_id"]],
    )
    assert contact == ("+12125550147", "Sam", "America/New_York")
    enrollment = row(
        db,
        "select status, next_step, next_message_at from pgflow.enrollments where id = %s",
        [result["enrollment_id"]],
    )
    assert enrollment == ("active", 2, at("2026-11-24 15:00"))
    message = row(
        db,
        "select body, delivery_status, step_position, segments, encoding,"
        " dedupe_key from pgflow.messages",
    )
    assert message == (
        "Hi Sam, it's Ava from SunCo!",
        "queued",
        1,
        1,
        "gsm7",
        f"step:{result['enrollment_id']}:1",
    )
    job = row(
        db,
        "select entrypoint, convert_from(payload, 'UTF8')::jsonb ->> 'id', priority"
        " from pgflow.pgqueuer",
    )
    assert job[0] == "send_sms"
    assert int(job[1]) == scalar(db, "select id from pgflow.messages")
    assert job[2] > 0  # ahead of the tick's routine work
    assert scalar(db, "select status from pgflow.conversations") == "open"
    assert row(db, "select result, source from pgflow.lead_events") == ("created", "form")


def test_same_lead_twice_is_already_enrolled(db: Conn, campaign: int) -> None:
    first = ingest(db, "+1 212 555 0147", MORNING)
    second = ingest(db, "212.555.0147", MORNING)
    assert second == {**first, "status": "already_enrolled"}
    assert count(db, "messages") == 1
    assert count(db, "pgqueuer") == 1
    assert count(db, "lead_events") == 2


def test_two_identical_leads_at_the_same_moment(db_url: str, db: Conn, campaign: int) -> None:
    """The first holds its transaction open while the second arrives on another connection."""
    results: list[dict[str, Any]] = []
    with psycopg.connect(db_url) as first, psycopg.connect(db_url, autocommit=True) as second:
        results.append(ingest(first, "2125550147", MORNING, first_name="Sam"))
        waiter = threading.Thread(
            target=lambda: results.append(ingest(second, "2125550147", MORNING))
        )
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive(), "the second call must wait for the first to commit"
        first.commit()
        waiter.join(10)
    assert sorted(r["status"] for r in results) == ["already_enrolled", "created"]
    assert results[0]["enrollment_id"] == results[1]["enrollment_id"]
    assert count(db, "contacts") == 1
    assert count(db, "enrollments") == 1
    assert count(db, "messages") == 1
    assert count(db, "pgqueuer") == 1


def test_a_burst_of_identical_leads_on_many_connections(
    db_url: str, db: Conn, campaign: int
) -> None:
    n = 8
    barrier = threading.Barrier(n)
    statuses: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            barrier.wait()
            status = ingest(conn, "+12125550147", MORNING)["status"]
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(statuses) == ["already_enrolled"] * (n - 1) + ["created"]
    assert (
        count(db, "contacts"),
        count(db, "enrollments"),
        count(db, "messages"),
        count(db, "pgqueuer"),
    ) == (1, 1, 1, 1)


def test_opted_out_contact_is_recorded_but_not_enrolled(db: Conn, campaign: int) -> None:
    db.execute(
        "insert into pgflow.contacts (phone, opted_out_at, opt_out_source)"
        " values ('+12125550147', now(), 'sms')"
    )
    result = ingest(db, "2125550147", MORNING)
    assert result["status"] == "suppressed"
    assert result["enrollment_id"] is None
    assert count(db, "enrollments") == 0
    assert count(db, "messages") == 0
    assert scalar(db, "select result from pgflow.lead_events") == "suppressed"
    # the lead's own data does not lift the opt-out
    assert scalar(db, "select opted_out_at is not null from pgflow.contacts")


@pytest.mark.parametrize(
    ("payload", "edge", "error"),
    [
        ({"campaign": "nope", "phone": "2125550147"}, None, "unknown_campaign"),
        (
            {"campaign": "solar", "phone": "12"},
            {"phone": None, "phone_error": "bad"},
            "invalid_phone",
        ),
        ({"campaign": "solar", "phone": "call me"}, None, "invalid_phone"),
        ({"campaign": "solar"}, None, "invalid_payload"),
        ({"phone": "2125550147"}, None, "invalid_payload"),
        (
            {"campaign": "solar", "phone": "2125550147", "timezone": "Mars/Base"},
            None,
            "invalid_timezone",
        ),
        ({"campaign": "solar", "phone": "2125550147", "email": "nope"}, None, "invalid_email"),
        ({"campaign": "solar", "phone": "2125550147", "attributes": [1]}, None, "invalid_payload"),
        (
            {"campaign": "solar", "phone": "2125550147", "first_name": {"x": 1}},
            None,
            "invalid_payload",
        ),
        ([1, 2, 3], None, "invalid_payload"),
        (
            {"campaign": "solar", "phone": "2125550147", "consent": {"at": "now"}},
            None,
            "invalid_payload",
        ),
        (
            {"campaign": "solar", "phone": "2125550147", "consent": {"at": "2026-13-45"}},
            None,
            "invalid_payload",
        ),
        (
            {"campaign": "solar", "phone": "2125550147", "consent": {"text": 5}},
            None,
            "invalid_payload",
        ),
    ],
)
def test_rejected_leads_are_recorded_with_the_reason(
    db: Conn, campaign: int, payload: Any, edge: Any, error: str
) -> None:
    result = pdb.ingest_lead(payload, edge, MORNING).run(db)
    assert result["status"] == "rejected"
    assert result["error"] == error
    assert result["detail"]
    event = row(
        db, "select result, error_code, error_detail, payload is not null from pgflow.lead_events"
    )
    assert event == ("rejected", error, result["detail"], True)
    assert count(db, "contacts") == 0


def test_inactive_campaign_rejects(db: Conn) -> None:
    apply_campaign(db, status="paused")
    result = ingest(db, "2125550147", MORNING)
    assert (result["status"], result["error"]) == ("rejected", "campaign_inactive")


def test_unreadable_body_is_recorded(db: Conn) -> None:
    result = pdb.reject_lead("{not json", "malformed_json", "Expecting property name").run(db)
    assert result["error"] == "malformed_json"
    assert row(db, "select raw_body, error_code from pgflow.lead_events") == (
        "{not json",
        "malformed_json",
    )


def test_time_zone_explicit_wins_inferred_only_fills(db: Conn, campaign: int) -> None:
    ingest(db, "2125550147", MORNING, timezone="America/Chicago")
    assert scalar(db, "select timezone from pgflow.contacts") == "America/Chicago"
    ingest(db, "2125550147", MORNING)  # inferred New York does not overwrite
    assert scalar(db, "select timezone from pgflow.contacts") == "America/Chicago"
    ingest(db, "2125550147", MORNING, timezone="America/Denver")
    assert scalar(db, "select timezone from pgflow.contacts") == "America/Denver"


def test_contact_fields_merge_and_attributes_accumulate(db: Conn, campaign: int) -> None:
    ingest(db, "2125550147", MORNING, first_name="Sam", attributes={"roof": "new"})
    ingest(db, "2125550147", MORNING, last_name="Lee", attributes={"bill": 180})
    contact = row(db, "select first_name, last_name, attributes from pgflow.contacts")
    assert contact == ("Sam", "Lee", {"roof": "new", "bill": 180})


def test_missing_first_name_uses_the_fallback(db: Conn, campaign: int) -> None:
    ingest(db, "2125550147", MORNING)
    assert scalar(db, "select body from pgflow.messages") == "Hi there, it's Ava from SunCo!"


def test_consent_is_recorded(db: Conn, campaign: int) -> None:
    ingest(
        db,
        "2125550147",
        MORNING,
        source="landing",
        consent={"text": "I agree to receive texts", "at": "2026-11-23T14:59:00Z"},
    )
    consent = row(db, "select consent_at, consent_source, consent_text from pgflow.contacts")
    assert consent == (at("2026-11-23 14:59"), "landing", "I agree to receive texts")
    # a later lead (another campaign, another form) cannot rewrite the evidence
    apply_campaign(db, "roofing")
    ingest(
        db,
        "2125550147",
        MORNING,
        campaign="roofing",
        source="other-form",
        consent={"text": "something else", "at": "2026-11-20T10:00:00Z"},
    )
    again = row(db, "select consent_at, consent_source, consent_text from pgflow.contacts")
    assert again == consent


def test_sql_alone_normalises_us_numbers(db: Conn, campaign: int) -> None:
    result = pdb.ingest_lead({"campaign": "solar", "phone": "(212) 555-0147"}, None, MORNING).run(
        db
    )
    assert result["status"] == "created"
    assert scalar(db, "select phone from pgflow.contacts") == "+12125550147"

"""POST /webhooks/events on a real server: its own token only, outcomes from a CRM, an
unknown phone is a 404 that is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pgflow.config import Settings
from tests.factories import apply_campaign, at, count, ingest
from tests.helpers import row
from tests.processes import serving

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")
EVENTS = {"Authorization": "Bearer ev3nts"}


@pytest.fixture
def client(db_url: str, db: Conn) -> Iterator[httpx.Client]:
    apply_campaign(db, window_start="00:00", window_end="24:00")
    ingest(db, "+12125550147", NOW)
    settings = Settings(database_url=db_url, lead_token="lead-token", events_token="ev3nts")
    with serving(settings, NOW) as c:
        yield c


def post(client: httpx.Client, payload: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        "/webhooks/events", json=payload, headers=EVENTS if headers is None else headers
    )


def test_only_the_events_token_is_accepted(client: httpx.Client, db: Conn) -> None:
    booked = {"type": "appointment_booked", "phone": "(212) 555-0147"}
    assert post(client, booked, {}).status_code == 401
    assert post(client, booked, {"Authorization": "Bearer lead-token"}).status_code == 401
    assert post(client, booked, {"Authorization": "Bearer ev3nts-not"}).status_code == 401
    assert count(db, "webhook_deliveries") == 0


def test_a_booking_gives_success(client: httpx.Client, db: Conn) -> None:
    response = post(
        client,
        {
            "type": "appointment_booked",
            "phone": "(212) 555-0147",
            "at": "2026-11-26T15:00:00Z",
            "data": {"note": "Calendly"},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "success"
    assert row(
        db, "select conversion_status, outcome_source, outcome_reason from pgflow.conversations"
    ) == ("success", "webhook", "appointment booked for 2026-11-26T15:00:00Z: Calendly")
    again = post(
        client,
        {
            "type": "appointment_booked",
            "phone": "(212) 555-0147",
            "at": "2026-11-26T15:00:00Z",
            "data": {"note": "Calendly"},
        },
    )
    assert again.status_code == 200
    assert again.json()["result"] == "duplicate"


def test_unknown_phone_is_404_and_recorded(client: httpx.Client, db: Conn) -> None:
    response = post(client, {"type": "appointment_booked", "phone": "(212) 555-0100"})
    assert response.status_code == 404
    assert response.json() == {
        "error": "unknown_phone",
        "detail": "no conversation with that phone",
    }
    assert row(db, "select provider, result from pgflow.webhook_deliveries") == (
        "events",
        "unknown_phone",
    )


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"type": "won", "phone": "2125550147"}, 422, "invalid"),
        ({"type": "disqualified"}, 422, "invalid"),
        ({"type": "disqualified", "phone": "not a phone"}, 422, "invalid"),
        ({"type": "human_takeover", "conversation_id": 999999}, 404, "unknown_conversation"),
        ([1, 2], 400, "invalid_payload"),
    ],
)
def test_events_that_cannot_apply(
    client: httpx.Client, db: Conn, payload: Any, status: int, code: str
) -> None:
    response = post(client, payload)
    assert response.status_code == status
    assert response.json()["error"] == code
    if status != 400:
        assert count(db, "webhook_deliveries") == 1

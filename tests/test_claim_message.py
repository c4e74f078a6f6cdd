"""pgflow.claim_message() and pgflow.record_send() at the SQL level: the send-time re-check,
backoff bounds, stale results, and campaigns that share a sending number."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from pgflow import db as pdb
from tests.factories import apply_campaign, at, ingest
from tests.helpers import scalar

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")  # Monday 10:00 in New York
OPEN = {"window_start": "00:00", "window_end": "24:00"}


def claim(db: Conn, message: int, now: dt.datetime = NOW) -> dict[str, Any]:
    return pdb.claim_message(message, None, None, now).run(db)


def record(db: Conn, message: int, attempt: int, result: dict[str, Any]) -> dict[str, Any]:
    return pdb.record_send(message, attempt, result, 30.0, NOW).run(db)


def message_of(db: Conn, enrollment: int) -> int:
    value: int = scalar(
        db, "select max(id) from pgflow.messages where enrollment_id = %s", [enrollment]
    )
    return value


def test_campaigns_sharing_a_number_answer_to_their_own_drip(db: Conn) -> None:
    apply_campaign(db, "solar", **OPEN)
    apply_campaign(db, "roofing", **OPEN)  # same from_number
    a = ingest(db, "2125550147", NOW, campaign="solar")
    b = ingest(db, "2125550147", NOW, campaign="roofing")
    assert scalar(db, "select count(*) from pgflow.conversations") == 1  # one live line
    pdb.stop_enrollment(a["enrollment_id"], "operator stopped solar").run(db)
    # roofing's message is not suppressed because solar's drip stopped
    assert claim(db, message_of(db, b["enrollment_id"]))["action"] == "send"
    assert claim(db, message_of(db, a["enrollment_id"])) == {
        "action": "suppressed",
        "reason": "enrollment stopped",
    }


def test_claim_skips_what_is_not_waiting(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    lead = ingest(db, "2125550147", NOW)
    message = message_of(db, lead["enrollment_id"])
    assert claim(db, 999_999) == {"action": "skip", "reason": "no such message"}
    first = claim(db, message)
    assert (first["action"], first["attempt"]) == ("send", 1)
    assert record(db, message, 1, {"ok": True, "chat_id": "chat_1"}) == {"action": "sent"}
    assert claim(db, message) == {"action": "skip", "reason": "message is sent"}
    # a late or repeated result changes nothing
    assert record(db, message, 1, {"ok": False, "retryable": True}) == {"action": "stale"}
    assert (
        scalar(db, "select delivery_status from pgflow.messages where id = %s", [message]) == "sent"
    )


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [(1, None, 24, 36), (3, None, 96, 144), (1, 500, 500, 500), (9, None, 2880, 3600 * 1.2)],
)
def test_backoff_bounds(
    db: Conn, attempt: int, retry_after: int | None, low: float, high: float
) -> None:
    apply_campaign(db, max_attempts=10, **OPEN)
    lead = ingest(db, "2125550147", NOW)
    message = message_of(db, lead["enrollment_id"])
    db.execute("update pgflow.messages set attempts = %s where id = %s", [attempt - 1, message])
    assert claim(db, message)["attempt"] == attempt
    result = record(
        db,
        message,
        attempt,
        {
            "ok": False,
            "retryable": True,
            "status_code": 503,
            "error": "HTTP 503",
            "retry_after": retry_after,
        },
    )
    assert result["action"] == "retry"
    assert low <= result["delay_seconds"] <= high
    due = scalar(db, "select send_after from pgflow.messages where id = %s", [message])
    assert due == NOW + dt.timedelta(seconds=result["delay_seconds"])
    # not before its time: a job that comes back early is deferred again
    early = claim(db, message, NOW + dt.timedelta(seconds=1))
    assert (early["action"], early["reason"]) == ("defer", "backoff")


def test_last_attempt_is_a_dead_letter(db: Conn) -> None:
    apply_campaign(db, max_attempts=2, **OPEN)
    lead = ingest(db, "2125550147", NOW)
    message = message_of(db, lead["enrollment_id"])
    for attempt, expected in ((1, "retry"), (2, "dead_letter")):
        db.execute("update pgflow.messages set send_after = null where id = %s", [message])
        assert claim(db, message)["attempt"] == attempt
        outcome = record(
            db, message, attempt, {"ok": False, "retryable": True, "error": f"HTTP 500 #{attempt}"}
        )
        assert outcome["action"] == expected
    assert (
        scalar(db, "select delivery_error from pgflow.messages where id = %s", [message])
        == "HTTP 500 #2"
    )
    assert [
        r[0] for r in db.execute("select outcome from pgflow.message_attempts order by attempt")
    ] == ["retry", "dead_letter"]

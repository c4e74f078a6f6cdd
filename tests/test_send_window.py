"""Send windows in the contact's local time: deferral, zones, days, DST."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.factories import apply_campaign, at, count, ingest
from tests.helpers import row, scalar

Conn = psycopg.Connection[Any]
NY = ZoneInfo("America/New_York")


def next_open(db: Conn, tz: str, now: dt.datetime, days: list[int] | None = None) -> dt.datetime:
    value: dt.datetime = scalar(
        db,
        "select pgflow.next_window_open(%s, '09:00', '20:00', %s::smallint[], %s)",
        [tz, days or [1, 2, 3, 4, 5, 6, 7], now],
    )
    return value


def test_lead_at_2330_local_gets_step_one_at_0900_next_morning(db: Conn) -> None:
    apply_campaign(db)
    late = dt.datetime(2026, 11, 23, 23, 30, tzinfo=NY)
    result = ingest(db, "2125550147", late)
    assert result["status"] == "created"
    assert count(db, "messages") == 0
    due = scalar(db, "select next_message_at from pgflow.enrollments")
    assert due == dt.datetime(2026, 11, 24, 9, 0, tzinfo=NY)
    # the tick before the opening sends nothing; at the opening it sends
    assert scalar(db, "select pgflow.tick(%s) ->> 'sent'", [due - dt.timedelta(minutes=1)]) == "0"
    assert scalar(db, "select pgflow.tick(%s) ->> 'sent'", [due]) == "1"
    assert scalar(db, "select created_at from pgflow.messages") == due


def test_new_york_and_los_angeles_at_the_same_instant(db: Conn) -> None:
    apply_campaign(db)
    instant = at("2026-11-23 14:30")  # 09:30 in New York, 06:30 in Los Angeles
    ny = ingest(db, "+12125550147", instant)
    la = ingest(db, "+14155550147", instant)
    sent = {
        r[0]
        for r in db.execute(
            "select e.id from pgflow.messages m"
            " join pgflow.conversations c on c.id = m.conversation_id"
            " join pgflow.enrollments e on e.id = c.enrollment_id"
        )
    }
    assert sent == {ny["enrollment_id"]}
    la_due = scalar(
        db, "select next_message_at from pgflow.enrollments where id = %s", [la["enrollment_id"]]
    )
    assert la_due == dt.datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("America/Los_Angeles"))


def test_campaign_zone_applies_when_the_number_says_nothing(db: Conn) -> None:
    apply_campaign(db, timezone="America/Chicago")
    instant = at("2026-11-23 14:30")  # 08:30 in Chicago: closed
    ingest(db, "+18005550147", instant)  # toll-free: no zone
    assert count(db, "messages") == 0
    assert scalar(db, "select next_message_at from pgflow.enrollments") == at("2026-11-23 15:00")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # spring forward: 2026-03-08 02:00 EST -> 03:00 EDT; 09:00 that day is 13:00 UTC
        (dt.datetime(2026, 3, 7, 23, 30, tzinfo=NY), at("2026-03-08 13:00")),
        # fall back: 2026-11-01 02:00 EDT -> 01:00 EST; 09:00 that day is 14:00 UTC
        (dt.datetime(2026, 10, 31, 23, 30, tzinfo=NY), at("2026-11-01 14:00")),
        # inside the window on the changeover day itself
        (at("2026-11-01 14:30"), at("2026-11-01 14:30")),
        # 19:59 is open, 20:00 is closed
        (
            dt.datetime(2026, 11, 23, 19, 59, tzinfo=NY),
            dt.datetime(2026, 11, 23, 19, 59, tzinfo=NY),
        ),
        (dt.datetime(2026, 11, 23, 20, 0, tzinfo=NY), dt.datetime(2026, 11, 24, 9, 0, tzinfo=NY)),
    ],
)
def test_window_opening_across_dst(db: Conn, now: dt.datetime, expected: dt.datetime) -> None:
    assert next_open(db, "America/New_York", now) == expected


def test_closed_days_are_skipped(db: Conn) -> None:
    # Saturday 2026-11-28 10:00 in New York; Monday-to-Friday only -> Monday 09:00
    saturday = dt.datetime(2026, 11, 28, 10, 0, tzinfo=NY)
    assert next_open(db, "America/New_York", saturday, [1, 2, 3, 4, 5]) == dt.datetime(
        2026, 11, 30, 9, 0, tzinfo=NY
    )


def test_dst_day_deferral_through_ingest(db: Conn) -> None:
    apply_campaign(db)
    ingest(db, "2125550147", dt.datetime(2026, 3, 7, 23, 30, tzinfo=NY))
    assert row(db, "select next_message_at from pgflow.enrollments") == (at("2026-03-08 13:00"),)

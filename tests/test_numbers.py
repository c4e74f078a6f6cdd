"""Sending numbers as a resource: a campaign's pool, the sticky sender, per-number limits
enforced at claim time by deferring (never dropping), and `pgflow numbers`."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from pgflow import campaigns
from pgflow import db as pdb
from pgflow.cli import numbers, status
from pgflow.errors import InvalidInput, NotFound
from tests.factories import apply_campaign, at, campaign_doc, ingest, mark_sent
from tests.helpers import rows, scalar

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")  # Monday 10:00 in New York
OPEN = {"window_start": "00:00", "window_end": "24:00"}
POOL = ["+14155550100", "+12125550100", "+16465550100"]
WORKER = uuid.UUID(int=7)


def claim(db: Conn, message: int, now: dt.datetime) -> dict[str, Any]:
    return pdb.claim_message(message, WORKER, None, now).run(db)


def sent(db: Conn, message: int, attempt: int, now: dt.datetime) -> None:
    result = pdb.record_send(
        message, attempt, {"ok": True, "chat_id": f"chat_{message}"}, 30.0, now
    )
    assert result.run(db) == {"action": "sent"}


def line_of(db: Conn, phone: str) -> list[str]:
    """The numbers each message to this phone went out from, in order."""
    return [
        r[0]
        for r in rows(
            db,
            "select cv.from_number from pgflow.messages m"
            " join pgflow.conversations cv on cv.id = m.conversation_id"
            " join pgflow.contacts ct on ct.id = m.contact_id where ct.phone = %s order by m.id",
            [phone],
        )
    ]


def queued(db: Conn) -> list[int]:
    return [
        r[0]
        for r in rows(
            db, "select id from pgflow.messages where delivery_status = 'queued' order by id"
        )
    ]


def test_a_lead_keeps_one_number_for_every_step_and_the_next_conversation(db: Conn) -> None:
    apply_campaign(db, from_number=POOL[0], from_numbers=POOL, **OPEN)
    apply_campaign(db, "roofing", from_number=POOL[0], from_numbers=POOL, **OPEN)
    leads = [f"+1312555{n:04d}" for n in range(12)]  # Chicago: no local number in the pool
    for phone in leads:
        ingest(db, phone, NOW)
    for day in (1, 4):
        mark_sent(db, NOW + dt.timedelta(days=day - 1))
        pdb.tick(NOW + dt.timedelta(days=day)).run(db)
    mark_sent(db, NOW + dt.timedelta(days=4))
    used = set()
    for phone in leads:
        lines = line_of(db, phone)
        assert len(lines) == 3, (phone, lines)
        assert len(set(lines)) == 1, (phone, lines)  # sticky
        used.add(lines[0])
    assert used == set(POOL)  # the pool is shared out
    # the conversation ends; the lead's next campaign talks from the same number
    first = leads[0]
    pdb.tick(NOW + dt.timedelta(days=8)).run(db)
    assert scalar(db, "select count(*) from pgflow.conversations where status <> 'ended'") == 0
    ingest(db, first, NOW + dt.timedelta(days=9), campaign="roofing")
    assert set(line_of(db, first)) == {line_of(db, first)[0]}
    assert len(line_of(db, first)) == 4


def test_a_lead_gets_the_pool_number_of_its_own_area_code(db: Conn) -> None:
    apply_campaign(db, from_number=POOL[0], from_numbers=POOL, **OPEN)
    ingest(db, "+16465550199", NOW)  # New York (646)
    ingest(db, "+12125550147", NOW)  # New York (212)
    assert line_of(db, "+16465550199") == ["+16465550100"]
    assert line_of(db, "+12125550147") == ["+12125550100"]


def test_a_number_leaving_the_pool_keeps_its_live_conversations(db: Conn) -> None:
    apply_campaign(db, from_number=POOL[0], from_numbers=POOL, **OPEN)
    ingest(db, "+12125550147", NOW)
    assert line_of(db, "+12125550147") == [POOL[1]]
    result = pdb.apply_campaigns(campaign_doc(from_number=POOL[0], **OPEN)).run(db)
    assert result["campaigns"][0]["action"] == "updated"
    assert [r[0] for r in rows(db, "select number from pgflow.campaign_numbers")] == [POOL[0]]
    mark_sent(db, NOW)
    pdb.tick(NOW + dt.timedelta(days=1)).run(db)
    assert line_of(db, "+12125550147") == [POOL[1], POOL[1]]
    # applying the same file again changes nothing
    again = pdb.apply_campaigns(campaign_doc(from_number=POOL[0], **OPEN)).run(db)
    assert again["campaigns"][0]["action"] == "unchanged"


def test_a_reply_on_a_pool_number_stops_the_drip(db: Conn) -> None:
    apply_campaign(db, from_number=POOL[0], from_numbers=POOL, **OPEN)
    ingest(db, "+12125550147", NOW)
    mark_sent(db, NOW)
    conversation = scalar(db, "select id from pgflow.conversations")
    assert scalar(db, "select from_number from pgflow.conversations") == POOL[1]
    pdb.engage_conversation(conversation, "lead replied", NOW + dt.timedelta(hours=1)).run(db)
    result = pdb.tick(NOW + dt.timedelta(days=1)).run(db)
    assert (result["sent"], result["stopped"]) == (0, 1)


def test_the_daily_limit_defers_to_the_next_utc_day_and_never_drops(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    pdb.set_number_limits(POOL[0], {"daily_segments": 2}).run(db)
    for n in range(3):
        ingest(db, f"+1312555{n:04d}", NOW)
    first, second, third = queued(db)
    for message in (first, second):
        assert claim(db, message, NOW)["action"] == "send"
        sent(db, message, 1, NOW)
    deferred = claim(db, third, NOW)
    assert (deferred["action"], deferred["reason"]) == ("defer", "number daily limit")
    midnight = at("2026-11-24 00:00")
    assert (
        midnight
        <= NOW + dt.timedelta(seconds=deferred["delay_seconds"])
        <= midnight + dt.timedelta(minutes=10)
    )
    assert (
        scalar(db, "select delivery_status from pgflow.messages where id = %s", [third]) == "queued"
    )
    # the next day it goes
    assert claim(db, third, midnight + dt.timedelta(minutes=10))["action"] == "send"
    usage = rows(
        db,
        "select day::text, sum(messages)::int, sum(segments)::int from pgflow.number_usage"
        " group by day order by day",
    )
    assert usage == [("2026-11-23", 2, 2), ("2026-11-24", 1, 1)]


def test_a_long_text_counts_its_segments_against_the_daily_limit(db: Conn) -> None:
    steps = [{"delay": "0 seconds", "body": "x" * 200}]  # two segments
    apply_campaign(db, steps=steps, **OPEN)
    pdb.set_number_limits(POOL[0], {"daily_segments": 3}).run(db)
    ingest(db, "+13125550001", NOW)
    ingest(db, "+13125550002", NOW)
    first, second = queued(db)
    assert claim(db, first, NOW)["action"] == "send"
    assert claim(db, second, NOW)["reason"] == "number daily limit"  # 2 + 2 > 3


def test_the_rate_limit_reserves_one_slot_per_message(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    pdb.set_number_limits(POOL[0], {"per_second": 2}).run(db)
    for n in range(5):
        ingest(db, f"+1312555{n:04d}", NOW)
    messages = queued(db)
    answers = [claim(db, m, NOW) for m in messages]
    assert answers[0]["action"] == "send"
    assert [a["action"] for a in answers[1:]] == ["defer"] * 4
    assert [a["reason"] for a in answers[1:]] == ["number rate limit"] * 4
    assert [a["delay_seconds"] for a in answers[1:]] == [0.5, 1.0, 1.5, 2.0]
    # each comes back at its slot and goes without taking another one
    for message, answer in zip(messages[1:], answers[1:], strict=True):
        slot = NOW + dt.timedelta(seconds=answer["delay_seconds"])
        assert claim(db, message, slot)["action"] == "send"
    assert scalar(db, "select count(*) from pgflow.messages where delivery_status = 'sending'") == 5
    # early is not allowed: a message back before its slot waits again (the backoff check)
    ingest(db, "+13125559999", NOW)
    late = queued(db)[0]
    early = claim(db, late, NOW + dt.timedelta(seconds=2))
    assert early["action"] == "defer"
    assert early["delay_seconds"] == pytest.approx(0.5)
    assert claim(db, late, NOW + dt.timedelta(seconds=2.4))["reason"] == "backoff"
    assert claim(db, late, NOW + dt.timedelta(seconds=2.5))["action"] == "send"


def test_an_opt_out_confirmation_is_never_held_back_by_a_limit(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    pdb.set_number_limits(POOL[0], {"daily_segments": 1, "per_second": 0.001}).run(db)
    lead = ingest(db, "+13125550001", NOW)
    (first,) = queued(db)
    assert claim(db, first, NOW)["action"] == "send"
    sent(db, first, 1, NOW)
    pdb.opt_out_contact(lead["contact_id"], "keyword", None, "STOP", NOW).run(db)
    (confirmation,) = queued(db)
    assert claim(db, confirmation, NOW)["action"] == "send"
    assert rows(db, "select sum(messages)::int, sum(segments)::int from pgflow.number_usage") == [
        (2, 2)
    ]


def test_limits_from_the_campaign_file(db: Conn) -> None:
    text = """
agents: [{name: ava, prompt: Be brief.}]
campaigns:
  - slug: solar
    name: Solar
    agent: ava
    from_numbers: ["(415) 555-0100", "+1 212 555 0100", "415.555.0100"]
    steps: [{body: Hi}]
numbers:
  - {number: "415-555-0100", per_second: 1, daily_segments: 2000}
"""
    with pytest.raises(InvalidInput, match=r"from_numbers\[2\]: \+14155550100 is listed twice"):
        campaigns.parse(text)
    doc = campaigns.parse(text.replace(', "415.555.0100"', "")).doc
    assert doc["campaigns"][0]["from_number"] == "+14155550100"
    assert doc["campaigns"][0]["from_numbers"] == ["+14155550100", "+12125550100"]
    pdb.apply_campaigns(doc).run(db)
    report = {r["number"]: r for r in pdb.number_report(NOW).run(db)}
    assert (float(report[POOL[0]]["per_second"]), report[POOL[0]]["daily_segments"]) == (1.0, 2000)
    assert report[POOL[1]]["campaigns"] == ["solar"]
    # a later file without the limit keys keeps them; null removes one
    pdb.apply_campaigns({**doc, "numbers": [{"number": POOL[0]}]}).run(db)
    assert pdb.number_report(NOW).run(db)[1]["daily_segments"] == 2000
    pdb.apply_campaigns({**doc, "numbers": [{"number": POOL[0], "daily_segments": None}]}).run(db)
    assert pdb.number_report(NOW).run(db)[1]["daily_segments"] is None
    with pytest.raises(InvalidInput, match=r"numbers\[0\].per_second"):
        campaigns.parse(text.replace("per_second: 1", "per_second: 0"))


def test_set_number_limits_refuses_an_unknown_number_or_limit(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    with pytest.raises(NotFound, match=r"no sending number \+19995550100"):
        pdb.set_number_limits("+19995550100", {"per_second": 1}).run(db)
    with pytest.raises(InvalidInput, match="unknown limit"):
        pdb.set_number_limits(POOL[0], {"per_minute": 1}).run(db)


def invoke(db_url: str, *args: str) -> Any:
    cli = typer.Typer()
    cli.add_typer(numbers.app, name="numbers")
    cli.command(name="status")(status.status)
    return CliRunner().invoke(cli, list(args), env={"DATABASE_URL": db_url, "COLUMNS": "60"})


def test_numbers_cli_sets_limits_and_status_shows_use_against_them(db_url: str, db: Conn) -> None:
    apply_campaign(db, from_number=POOL[0], from_numbers=POOL[:2], **OPEN)
    done = invoke(
        db_url, "numbers", "set", POOL[0], "--per-second", "1", "--daily-segments", "2000"
    )
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "+14155550100: 1/s, 2,000 segments/day"
    ingest(db, "+14155550123", dt.datetime.now(dt.UTC))  # San Francisco: the 415 number
    (message,) = queued(db)
    assert claim(db, message, dt.datetime.now(dt.UTC))["action"] == "send"
    listed = invoke(db_url, "numbers", "list", "--json")
    assert listed.exit_code == 0, listed.output
    by_number = {n["number"]: n for n in json.loads(listed.output)}
    assert by_number[POOL[0]]["segments_today"] == 1
    assert by_number[POOL[0]]["daily_segments"] == 2000
    assert by_number[POOL[1]]["per_second"] is None
    report = invoke(db_url, "status")
    assert "number +14155550100     1/2,000 segments today (1 sends), 1/s" in report.output
    assert "number +12125550100     0 segments today (0 sends), no rate limit" in report.output
    cleared = invoke(db_url, "numbers", "set", POOL[0], "--no-per-second")
    assert cleared.output.strip() == "+14155550100: no rate limit, 2,000 segments/day"
    for bad, message_text in (
        (["--per-second", "0"], "--per-second must be more than 0"),
        ([], "nothing to set"),
        (["--per-second", "2", "--no-per-second"], "choose one"),
    ):
        refused = invoke(db_url, "numbers", "set", POOL[0], *bad)
        assert refused.exit_code == 1, refused.output
        assert message_text in refused.output, refused.output
    unknown = invoke(db_url, "numbers", "set", "+19995550100", "--per-second", "1")
    assert unknown.exit_code == 1
    assert "no sending number +19995550100" in unknown.output

"""State rules on marketing texts, with an injected clock: the campaign's window and a
state's hours (the stricter wins), a state's cap per rolling 24 h, quiet days, replies not
held back, the strictest default when no state can be told, DST, and the dry run."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from pgflow import db as pdb
from pgflow.cli.main import app as cli
from pgflow.config import Settings
from tests.factories import apply_campaign, at, count, ingest
from tests.helpers import row, rows, scalar
from tests.processes import serving

Conn = psycopg.Connection[Any]
OPEN = {"window_start": "00:00", "window_end": "24:00"}
TAMPA = "+18135550147"  # 813: Florida
DALLAS = "+12145550147"  # 214: Texas
NEW_YORK = "+12125550147"
UTC = dt.UTC


def enrollment(db: Conn, phone: str) -> tuple[Any, ...]:
    return row(
        db,
        "select e.next_message_at, e.deferred_rule from pgflow.enrollments e"
        " join pgflow.contacts c on c.id = e.contact_id where c.phone = %s",
        [phone],
    )


def steps_sent(db: Conn, phone: str) -> int:
    return count(
        db,
        "messages m",
        "m.kind = 'campaign' and m.contact_id = (select id from pgflow.contacts where phone = %s)",
        [phone],
    )


def rules_of(db: Conn, phone: str, state: str | None) -> Any:
    return scalar(db, "select pgflow.contact_rules(%s, %s)", [phone, state])


def claim(db: Conn, message: int, now: dt.datetime) -> dict[str, Any]:
    return pdb.claim_message(message, None, None, now).run(db)


def test_tampa_at_2030_waits_for_8_next_morning(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, TAMPA, at("2026-11-24 01:30"))  # Monday 20:30 in Tampa
    assert steps_sent(db, TAMPA) == 0
    assert enrollment(db, TAMPA) == (at("2026-11-24 13:00"), "state_window:FL")  # 8:00 EST
    assert pdb.tick(at("2026-11-24 12:59")).run(db)["sent"] == 0
    assert pdb.tick(at("2026-11-24 13:00")).run(db)["sent"] == 1


def test_a_new_york_lead_at_2015_goes_and_a_tampa_lead_waits(db: Conn) -> None:
    """A 9:00-20:30 window is legal in New York and not in Tampa (window ends are exclusive:
    20:30 itself is outside the campaign's window, so the check is at 20:15)."""
    apply_campaign(db, window_start="09:00", window_end="20:30")
    now = at("2026-11-24 01:15")  # Monday 20:15 on the East coast
    ingest(db, NEW_YORK, now)
    ingest(db, TAMPA, now)
    assert steps_sent(db, NEW_YORK) == 1
    assert steps_sent(db, TAMPA) == 0
    assert enrollment(db, TAMPA) == (at("2026-11-24 14:00"), "state_window:FL")  # 9:00


def test_texas_on_sunday_at_10_waits_until_noon(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, DALLAS, at("2026-11-22 16:00"))  # Sunday 10:00 in Dallas (CST)
    assert enrollment(db, DALLAS) == (at("2026-11-22 18:00"), "state_window:TX")


def test_the_fourth_florida_text_in_24_hours_waits_for_the_oldest_to_be_a_day_old(
    db: Conn,
) -> None:
    steps = [{"delay": "0m", "body": f"step {n}"} for n in (1,)] + [
        {"delay": "1h", "body": f"step {n}"} for n in (2, 3, 4)
    ]
    apply_campaign(db, daily_cap=10, steps=steps, **OPEN)
    start = at("2026-11-23 15:00")  # Monday 10:00 in Tampa
    ingest(db, TAMPA, start)
    for hours in (1, 2):
        assert pdb.tick(start + dt.timedelta(hours=hours)).run(db)["sent"] == 1
    assert steps_sent(db, TAMPA) == 3
    assert pdb.tick(start + dt.timedelta(hours=3)).run(db)["sent"] == 0
    waits = enrollment(db, TAMPA)
    assert waits[1] == "state_cap:FL"
    assert start + dt.timedelta(hours=24) <= waits[0] <= start + dt.timedelta(hours=24, seconds=1)
    # a New York lead on the same campaign is held only by the campaign's own cap (10)
    ingest(db, NEW_YORK, start)
    for hours in (1, 2, 3):
        pdb.tick(start + dt.timedelta(hours=hours)).run(db)
    assert steps_sent(db, NEW_YORK) == 4


def test_the_claim_holds_a_fourth_florida_text_sent_within_the_day(db: Conn) -> None:
    """The tick counts the texts it created; the claim counts those sent (or being sent)."""
    apply_campaign(db, daily_cap=10, **OPEN)
    start = at("2026-11-23 15:00")
    ingest(db, TAMPA, start)
    first = scalar(db, "select id from pgflow.messages where kind = 'campaign'")
    # three texts of other campaigns went out in the last hour (sent_at known)
    for minutes in (60, 45, 30):
        db.execute(
            "insert into pgflow.messages (conversation_id, contact_id, enrollment_id, direction,"
            " kind, body, step_position, delivery_status, segments, encoding, dedupe_key,"
            " sent_at, created_at, updated_at)"
            " select conversation_id, contact_id, enrollment_id, 'outbound', 'campaign',"
            " 'earlier', 1, 'sent', 1, 'gsm7', 'earlier:' || %(h)s, %(t)s, %(t)s, %(t)s"
            " from pgflow.messages where id = %(m)s",
            {"t": start - dt.timedelta(minutes=minutes), "m": first, "h": minutes},
        )
    answer = claim(db, first, start)
    assert (answer["action"], answer["rule"]) == ("defer", "state_cap:FL")
    assert answer["delay_seconds"] == pytest.approx(23 * 3600)  # the oldest (1 h ago) + 24 h
    assert row(
        db, "select deferred_rule, deferred_reason from pgflow.messages where id = %s", [first]
    ) == ("state_cap:FL", "Florida limit: 3 marketing texts per 24 h")
    assert claim(db, first, start + dt.timedelta(hours=23))["action"] == "send"


def test_replies_in_a_conversation_the_lead_started_are_not_held_back(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    lead = ingest(db, TAMPA, at("2026-11-23 15:00"))
    conversation = scalar(db, "select id from pgflow.conversations")
    late = at("2026-11-24 02:00")  # 21:00 in Tampa
    db.execute(
        "insert into pgflow.messages (conversation_id, contact_id, direction, kind, body,"
        " delivery_status, segments, encoding, dedupe_key, created_at, updated_at) values"
        " (%s, %s, 'outbound', 'agent', 'Happy to help!', 'queued', 1, 'gsm7', 'a1', %s, %s)",
        [conversation, lead["contact_id"], late, late],
    )
    agent = scalar(db, "select id from pgflow.messages where kind = 'agent'")
    assert claim(db, agent, late)["action"] == "send"


def test_the_given_state_and_the_area_code_both_apply(db: Conn) -> None:
    """A New York number of a lead who says they live in Florida: Florida's hours too."""
    apply_campaign(db, **OPEN)
    ingest(db, NEW_YORK, at("2026-11-23 15:00"))
    db.execute("update pgflow.contacts set state = 'FL'")  # the lead form's state
    message = scalar(db, "select id from pgflow.messages where kind = 'campaign'")
    answer = claim(db, message, at("2026-11-24 01:30"))  # 20:30 in New York: federal allows
    assert (answer["action"], answer["rule"]) == ("defer", "state_window:FL")
    assert rules_of(db, NEW_YORK, "FL") == ["FL", "US"]


@pytest.mark.parametrize(
    ("phone", "state", "rules"),
    [
        (TAMPA, None, ["FL", "US"]),
        (NEW_YORK, None, ["US"]),
        ("+14165550147", None, ["US"]),  # Toronto: a province, the federal hours only
        (NEW_YORK, "QQ", ["US", "ZZ"]),  # a state code nobody knows: the strictest
        ("+18005550147", None, ["US", "ZZ"]),  # toll-free: no area to tell
        ("+442079460147", None, ["US", "ZZ"]),  # abroad
        ("+18095550147", None, ["US", "ZZ"]),  # +1 809 is the Dominican Republic
    ],
)
def test_which_rules_apply(db: Conn, phone: str, state: str | None, rules: list[str]) -> None:
    assert rules_of(db, phone, state) == rules


def test_a_lead_whose_state_cannot_be_told_gets_the_strictest_hours(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    # Saturday 9:30 in New York: the federal hours allow it, the strictest (10-17) do not
    ingest(db, "+18005550147", at("2026-11-28 14:30"), timezone="America/New_York")
    assert row(db, "select next_message_at, deferred_rule from pgflow.enrollments") == (
        at("2026-11-28 15:00"),
        "state_window:ZZ",
    )


@pytest.mark.parametrize(
    ("evening", "morning"),
    [
        # spring forward on Sunday 2027-03-14: Saturday 20:30 EST, Sunday 8:00 EDT
        (at("2027-03-14 01:30"), at("2027-03-14 12:00")),
        # fall back on Sunday 2026-11-01: Saturday 20:30 EDT, Sunday 8:00 EST
        (at("2026-11-01 00:30"), at("2026-11-01 13:00")),
    ],
)
def test_dst_the_morning_after_is_8_local(db: Conn, evening: dt.datetime, morning: Any) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, TAMPA, evening)
    assert enrollment(db, TAMPA) == (morning, "state_window:FL")


def test_deferrals_are_counted_by_rule_for_status_and_metrics(db: Conn, db_url: str) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, TAMPA, at("2026-11-24 01:30"))
    ingest(db, DALLAS, at("2026-11-22 16:00"))
    assert pdb.deferrals().run(db) == [
        {"rule": "state_window:FL", "steps": 1, "texts": 0},
        {"rule": "state_window:TX", "steps": 1, "texts": 0},
    ]
    status = CliRunner().invoke(cli, ["status", "--json"], env={"DATABASE_URL": db_url})
    assert json.loads(status.output)["deferrals"][0]["rule"] == "state_window:FL"
    with serving(Settings(database_url=db_url)) as web:
        scrape = web.get("/metrics").text
    assert 'pgflow_deferred{rule="state_window:TX",what="step"} 1.0' in scrape
    assert 'pgflow_deferred{rule="state_window:FL",what="text"} 0.0' in scrape


# --- the dry run ----------------------------------------------------------------------------


def simulate(db_url: str, *args: str) -> Any:
    result = CliRunner().invoke(
        cli, ["campaign", "simulate", *args, "--json"], env={"DATABASE_URL": db_url}
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_simulate_a_file_by_hand_computed_times(db_url: str, db: Conn, tmp_path: Any) -> None:
    campaign_file = tmp_path / "c.yaml"
    campaign_file.write_text(
        "agents:\n  - name: ava\n    prompt: hi\n"
        "campaigns:\n  - slug: trial\n    name: Trial\n    agent: ava\n"
        '    from_number: "+14155550100"\n    timezone: America/New_York\n'
        '    send_window: {start: "09:00", end: "20:30", days: daily}\n'
        "    daily_cap: 5\n    steps:\n      - {delay: 0m, body: one}\n"
        "      - {delay: 1h, body: two}\n      - {delay: 1h, body: three}\n"
        "      - {delay: 1h, body: four}\n"
    )
    # Saturday 2026-11-21 at 19:00 UTC: 14:00 in New York and Tampa, 13:00 in Dallas
    leads = simulate(
        db_url, str(campaign_file), "--at", "2026-11-21T19:00:00Z",
        "--phones", TAMPA, "--phones", DALLAS, "--phones", "+14015550147",
        "--phones", f"{NEW_YORK}:QQ", "--days", "3",
    )  # fmt: skip
    by = {lead["phone"]: lead for lead in leads}
    local = {p: [(s["local"], s["rule"]) for s in by[p]["steps"]] for p in by}
    assert local[TAMPA] == [  # FL: 3 per 24 h; the 4th waits for the 1st to be a day old
        ("Sat 2026-11-21 14:00", None),
        ("Sat 2026-11-21 15:00", None),
        ("Sat 2026-11-21 16:00", None),
        ("Sun 2026-11-22 14:00", "state_cap:FL"),
    ]
    assert local[DALLAS] == [
        ("Sat 2026-11-21 13:00", None),
        ("Sat 2026-11-21 14:00", None),
        ("Sat 2026-11-21 15:00", None),
        ("Sat 2026-11-21 16:00", None),
    ]
    assert local["+14015550147"] == [  # RI weekends 10-17
        ("Sat 2026-11-21 14:00", None),
        ("Sat 2026-11-21 15:00", None),
        ("Sat 2026-11-21 16:00", None),
        ("Sun 2026-11-22 10:00", "state_window:RI"),
    ]
    assert local[NEW_YORK] == [  # an unknown state: the strictest, 3 per 24 h
        ("Sat 2026-11-21 14:00", None),
        ("Sat 2026-11-21 15:00", None),
        ("Sat 2026-11-21 16:00", None),
        ("Sun 2026-11-22 14:00", "state_cap:ZZ"),
    ]
    assert count(db, "campaigns") == 0  # a dry run: the file was rolled back


def test_simulate_an_applied_campaign_in_text(db_url: str, db: Conn) -> None:
    apply_campaign(db, **OPEN)
    result = CliRunner().invoke(
        cli,
        ["campaign", "simulate", "solar", "--at", "2026-11-24T01:30:00Z", "--phones", TAMPA],
        env={"DATABASE_URL": db_url, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "Tue 2026-11-24 08:00" in said
    assert "Florida hours for marketing texts" in said
    assert rows(db, "select slug from pgflow.campaigns") == [("solar",)]


def test_a_state_given_on_the_lead_form_applies_from_the_first_step(db: Conn) -> None:
    """The lead webhook's state (a code or a name): a New York number that says Florida is
    held at 20:30 by Florida's hours; one that says "Atlantis" gets the strictest."""
    apply_campaign(db, **OPEN)
    ingest(db, NEW_YORK, at("2026-11-24 01:30"), state="Florida")  # 20:30 in New York
    assert enrollment(db, NEW_YORK) == (at("2026-11-24 13:00"), "state_window:FL")
    ingest(db, "+13125550147", at("2026-11-23 14:30"), state="Atlantis")  # Chicago, 8:30
    assert scalar(db, "select state from pgflow.contacts where phone = '+13125550147'") == "ZZ"
    assert enrollment(db, "+13125550147") == (at("2026-11-23 15:00"), "state_window:ZZ")

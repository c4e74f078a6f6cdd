"""`pgflow twilio setup` against the fake Twilio: the plan (reads only), the writes, a second
run that changes nothing; a number whose texts went to Retell switched with a warning; then
the command end to end on a migrated database with campaigns on both transports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import psycopg
import pytest
import typer
from typer.testing import CliRunner, Result

from pgflow import db as pdb
from pgflow import twilio_setup
from pgflow.cli import twilio
from pgflow.config import Settings
from pgflow.transport.twilio import TwilioClient
from tests.factories import campaign_doc
from tests.fake_twilio import FakeTwilio

Conn = psycopg.Connection[Any]
cli = typer.Typer()
cli.add_typer(twilio.app, name="twilio")

PUBLIC = "https://sms.example.com"
HOOK = f"{PUBLIC}/webhooks/twilio/inbound"
RETELL = "https://api.retellai.com/twilio-sms-webhook/agent_x"
VOICE = "https://voice.example.com/calls/status"
NEW = "+14155550100"  # in the account, no SMS URL yet
TAKEN = "+14155550101"  # its texts go to Retell
RIGHT = "+14155550102"  # already ours
GONE = "+14155550103"  # not in the account


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


def client(fake: FakeTwilio, public_url: str = PUBLIC) -> TwilioClient:
    return TwilioClient(
        fake.account_sid,
        fake.auth_token,
        public_url=public_url,
        base_url=fake.url,
        timeout=httpx.Timeout(2.0),
    )


def run_setup(
    fake: FakeTwilio, numbers: Mapping[str, Sequence[str]], *, dry_run: bool = False
) -> list[twilio_setup.Change]:
    async def go() -> list[twilio_setup.Change]:
        async with client(fake) as twilio_client:
            return await twilio_setup.setup(twilio_client, numbers, dry_run=dry_run)

    return asyncio.run(go())


def actions(changes: Sequence[twilio_setup.Change]) -> list[tuple[str, str]]:
    return [(c.target.removeprefix("number "), c.action) for c in changes]


def four_numbers(fake: FakeTwilio) -> dict[str, list[str]]:
    fake.add_number(NEW, status_callback=VOICE)
    fake.add_number(TAKEN, sms_url=RETELL)
    fake.add_number(RIGHT, sms_url=HOOK)
    return {GONE: ["wind"], TAKEN: ["solar", "wind"], RIGHT: ["hydro"], NEW: ["solar"]}


# --- plan and apply -------------------------------------------------------------------------


def test_plan_reads_apply_writes_and_a_second_run_changes_nothing(fake: FakeTwilio) -> None:
    numbers = four_numbers(fake)

    async def plan_only() -> list[twilio_setup.Change]:
        async with client(fake) as twilio_client:
            return await twilio_setup.plan(twilio_client, numbers)

    planned = asyncio.run(plan_only())
    assert actions(planned) == [
        (NEW, "create"),
        (TAKEN, "update"),
        (TAKEN, "warning"),
        (RIGHT, "unchanged"),
        (GONE, "missing"),
    ]
    assert fake.number_requests("POST") == []
    by = {(c.target, c.action): c for c in planned}
    assert by[f"number {NEW}", "create"].detail == "no SmsUrl yet"
    assert by[f"number {NEW}", "create"].sid == fake.number(NEW)["sid"]
    assert by[f"number {TAKEN}", "update"].detail == f"old SmsUrl {RETELL} (POST)"
    assert by[f"number {TAKEN}", "warning"].detail == (
        f"its texts went to Retell ({RETELL}): once switched, every lead who texts {TAKEN} "
        "reaches pgflow, not a Retell agent, whatever campaign wrote to them"
    )
    assert by[f"number {RIGHT}", "unchanged"].detail == "already ours"
    assert by[f"number {TAKEN}", "update"].campaigns == ("solar", "wind")
    assert by[f"number {GONE}", "missing"].sid is None
    assert "not in this Twilio account" in by[f"number {GONE}", "missing"].detail

    done = run_setup(fake, numbers)
    assert actions(done) == actions(planned)
    writes = fake.number_requests("POST")
    assert sorted(r.path.rsplit("/", 1)[1] for r in writes) == sorted(
        f"{fake.number(n)['sid']}.json" for n in (NEW, TAKEN)
    )
    assert all(r.form == {"SmsUrl": HOOK, "SmsMethod": "POST"} for r in writes)
    for number in (NEW, TAKEN, RIGHT):
        assert (fake.number(number)["sms_url"], fake.number(number)["sms_method"]) == (
            HOOK,
            "POST",
        )
    assert fake.number(NEW)["status_callback"] == VOICE  # voice: left alone

    again = run_setup(fake, numbers)
    assert actions(again) == [
        (NEW, "unchanged"),
        (TAKEN, "unchanged"),
        (RIGHT, "unchanged"),
        (GONE, "missing"),
    ]
    assert len(fake.number_requests("POST")) == 2  # nothing written the second time


def test_dry_run_writes_nothing(fake: FakeTwilio) -> None:
    numbers = four_numbers(fake)
    before = fake.numbers
    planned = run_setup(fake, numbers, dry_run=True)
    assert {"create", "update"} <= {c.action for c in planned}
    assert fake.number_requests("POST") == []
    assert fake.numbers == before


@pytest.mark.parametrize(
    ("settings", "action", "detail", "warned"),
    [
        ({"sms_url": HOOK, "sms_method": "GET"}, "update", "old SmsMethod GET", False),
        (
            {"sms_url": "https://demo.twilio.com/welcome/sms/reply"},
            "update",
            "old SmsUrl https://demo.twilio.com/welcome/sms/reply (POST)",
            False,  # Twilio's placeholder: nobody loses texts
        ),
        (
            {"sms_url": "https://bob:hunter2@crm.example.com/sms?key=s3cret", "sms_method": "GET"},
            "update",
            "old SmsUrl https://bob:***@crm.example.com/sms?*** (GET)",
            True,
        ),
    ],
)
def test_what_an_update_says(
    fake: FakeTwilio, settings: dict[str, str], action: str, detail: str, warned: bool
) -> None:
    fake.add_number(NEW, **settings)
    [change, *warnings] = run_setup(fake, {NEW: ["solar"]})
    assert (change.action, change.detail) == (action, detail)
    assert [w.action for w in warnings] == (["warning"] if warned else [])
    if warned:
        assert warnings[0].detail == (
            "its texts went to https://bob:***@crm.example.com/sms?***: once switched, every "
            f"lead who texts {NEW} reaches pgflow instead, whatever campaign wrote to them"
        )
    assert fake.number(NEW)["sms_url"] == HOOK


def test_an_sms_application_on_the_number_is_a_warning(fake: FakeTwilio) -> None:
    app_sid = "AP" + "c" * 32
    fake.add_number(RIGHT, sms_url=HOOK, sms_application_sid=app_sid)
    assert [(c.action, app_sid in c.detail) for c in run_setup(fake, {RIGHT: []})] == [
        ("unchanged", False),
        ("warning", True),
    ]


def test_the_client_finds_only_the_exact_number(fake: FakeTwilio) -> None:
    sid = fake.add_number(NEW, sms_url=RETELL, status_callback=VOICE)

    async def go() -> tuple[Any, ...]:
        async with client(fake) as twilio_client:
            part = await twilio_client.find_number(NEW[:-1])  # Twilio lists it: a part matches
            whole = await twilio_client.find_number(NEW)
            with pytest.raises(ValueError, match="PN"):
                await twilio_client.set_number_sms_url("SM" + "0" * 32, HOOK)
            return part, whole

    part, whole = asyncio.run(go())
    assert part is None
    assert whole is not None
    assert (whole.sid, whole.sms_url, whole.sms_method, whole.status_callback) == (
        sid,
        RETELL,
        "POST",
        VOICE,
    )
    assert whole.sms_application_sid is None  # Twilio's "" is None
    assert [r.query["PhoneNumber"] for r in fake.number_requests("GET")] == [NEW[:-1], NEW]


@pytest.mark.parametrize(
    ("public_url", "problem"),
    [
        (None, "PGFLOW_PUBLIC_URL is not set"),
        ("http://sms.example.com", "must start with https://"),
        ("https://sms.example.com?x=1", "no query or fragment"),
        ("https://my_host.example.com", "underscore"),
        ("https://sms.example.com", None),
        ("https://sms.example.com/pgflow", None),
        ("http://127.0.0.1:8080", None),
        ("http://localhost:8080", None),
    ],
)
def test_the_public_url_must_be_https_or_local(public_url: str | None, problem: str | None) -> None:
    found = twilio_setup.public_url_problem(public_url)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_config_problems_name_every_missing_setting() -> None:
    bare = Settings(database_url="postgresql://x/y")
    assert [p.split(" ")[0] for p in twilio_setup.config_problems(bare)] == [
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "PGFLOW_PUBLIC_URL",
    ]
    api_key = Settings(
        database_url="postgresql://x/y",
        twilio_account_sid="SK" + "a" * 32,
        twilio_auth_token="t",
        public_url=PUBLIC,
    )
    assert twilio_setup.config_problems(api_key) == [
        "TWILIO_ACCOUNT_SID must be the account's SID: AC and 32 characters"
    ]


# --- the command ----------------------------------------------------------------------------


def env(fake: FakeTwilio, db_url: str, **overrides: str | None) -> dict[str, str | None]:
    values: dict[str, str | None] = {
        "DATABASE_URL": db_url,
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_BASE_URL": fake.url,
        "PGFLOW_PUBLIC_URL": PUBLIC,
        "PGFLOW_SMS_TRANSPORT": None,
    }
    values.update(overrides)
    return values


def invoke(fake: FakeTwilio, db_url: str, *args: str, **overrides: str | None) -> Result:
    return CliRunner().invoke(
        cli, ["twilio", "setup", *args], env=env(fake, db_url, **overrides), color=False
    )


def apply_campaigns(db: Conn) -> None:
    """solar and hydro on Twilio (hydro sends from two numbers), wind on Retell."""
    pdb.apply_campaigns(campaign_doc("solar", transport="twilio", from_number=TAKEN)).run(db)
    hydro = campaign_doc("hydro", transport="twilio", from_number=RIGHT, from_numbers=[GONE])
    pdb.apply_campaigns(hydro).run(db)
    pdb.apply_campaigns(campaign_doc("wind", from_number="+14155550199")).run(db)


def test_the_command_plans_switches_then_changes_nothing(
    fake: FakeTwilio, db_url: str, db: Conn
) -> None:
    apply_campaigns(db)
    assert pdb.twilio_numbers().run(db) == [
        {"number": TAKEN, "campaigns": ["solar"]},
        {"number": RIGHT, "campaigns": ["hydro"]},
        {"number": GONE, "campaigns": ["hydro"]},
    ]
    fake.add_number(TAKEN, sms_url=RETELL)
    fake.add_number(RIGHT, sms_url=HOOK)
    fake.add_number("+14155550199", sms_url=RETELL)  # the Retell campaign's: not ours to touch

    plan = invoke(fake, db_url, "--dry-run", "--json")
    assert plan.exit_code == 1, plan.output  # GONE is not in the account
    answer = json.loads(plan.stdout)
    assert (answer["dry_run"], answer["sms_url"]) == (True, HOOK)
    assert [(c["target"], c["action"]) for c in answer["changes"]] == [
        (f"number {TAKEN}", "update"),
        (f"number {TAKEN}", "warning"),
        (f"number {RIGHT}", "unchanged"),
        (f"number {GONE}", "missing"),
    ]
    assert plan.stderr == f"error: not in this Twilio account: {GONE}\n"
    assert fake.number_requests("POST") == []

    done = invoke(fake, db_url)
    assert done.exit_code == 1, done.output
    lines = done.stdout.splitlines()
    assert lines[0].strip() == "Twilio set-up"
    [taken] = [line for line in lines if line.startswith(f"│ {TAKEN}")]
    assert "│ update " in taken
    assert "│ solar " in taken
    assert f"│ old SmsUrl {RETELL} (POST) " in taken
    [warning] = [line for line in lines if line.startswith("warning:")]
    assert warning.startswith(f"warning: {TAKEN}: its texts went to Retell ({RETELL}): ")
    assert lines[-1] == (
        f"SmsUrl: {HOOK} (POST). Delivery receipts come with each send (its StatusCallback); "
        "each number's own status callback is for voice calls and is left alone."
    )
    assert done.stderr == f"error: not in this Twilio account: {GONE}\n"
    assert fake.number(TAKEN)["sms_url"] == HOOK
    assert fake.number("+14155550199")["sms_url"] == RETELL
    assert len(fake.number_requests("POST")) == 1

    fake.add_number(GONE)  # bought it
    again = invoke(fake, db_url, "--json")
    assert again.exit_code == 0, again.output
    assert [c["action"] for c in json.loads(again.stdout)["changes"]] == [
        "unchanged",
        "unchanged",
        "create",
    ]
    last = invoke(fake, db_url, "--json")
    assert {c["action"] for c in json.loads(last.stdout)["changes"]} == {"unchanged"}
    assert len(fake.number_requests("POST")) == 2


def test_no_campaign_on_twilio_is_nothing_to_do(fake: FakeTwilio, db_url: str, db: Conn) -> None:
    pdb.apply_campaigns(campaign_doc("wind")).run(db)
    result = invoke(fake, db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "No campaign uses the Twilio transport: nothing to set up.\n"
    as_json = invoke(fake, db_url, "--json")
    assert json.loads(as_json.stdout) == {"dry_run": False, "sms_url": HOOK, "changes": []}
    assert fake.requests == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"TWILIO_AUTH_TOKEN": None, "PGFLOW_PUBLIC_URL": None},
            "error: TWILIO_AUTH_TOKEN is not set (the account's auth token); PGFLOW_PUBLIC_URL "
            "is not set: the public https address Twilio reaches this server on, e.g. "
            "https://sms.example.com\n",
        ),
        (
            {"PGFLOW_PUBLIC_URL": "http://sms.example.com"},
            "error: PGFLOW_PUBLIC_URL 'http://sms.example.com' must start with https:// "
            "(http:// only for 127.0.0.1 or localhost)\n",
        ),
    ],
)
def test_missing_settings_are_clear_errors(
    fake: FakeTwilio, overrides: dict[str, str | None], message: str
) -> None:
    # refused before any database or Twilio call: this database does not exist
    result = invoke(fake, "postgresql://127.0.0.1:1/nowhere", **overrides)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == message
    assert fake.requests == []


def test_a_wrong_token_is_a_clear_error(fake: FakeTwilio, db_url: str, db: Conn) -> None:
    pdb.apply_campaigns(campaign_doc("solar", transport="twilio")).run(db)
    result = invoke(fake, db_url, TWILIO_AUTH_TOKEN="not-the-token")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: Twilio number lookup: HTTP 401 error 20003: Authenticate (check "
        "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN); the numbers set before it stay set: run "
        "it again when fixed\n"
    )
    assert "not-the-token" not in result.output


def test_a_database_behind_the_code_says_migrate(fake: FakeTwilio, db_url: str, db: Conn) -> None:
    db.execute("drop function pgflow.twilio_numbers()")  # as before the migration that adds it
    result = invoke(fake, db_url)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: this database's schema is older than pgflow: run `pgflow db migrate` first\n"
    )

"""Campaign files: validation messages, idempotent apply, the steps-replacement rule, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from pgflow import campaign_schema, campaigns, errors
from pgflow.cli import campaign as campaign_cli
from tests.factories import at, count, ingest, mark_sent
from tests.helpers import row, scalar

Conn = psycopg.Connection[Any]
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "solar.yaml"

cli = typer.Typer()
cli.add_typer(campaign_cli.app, name="campaign")


def apply_file(db_url: str, path: Path, *extra: str) -> Any:
    return CliRunner().invoke(
        cli, ["campaign", "apply", str(path), *extra], env={"DATABASE_URL": db_url}
    )


def test_example_parses_to_the_normalised_document() -> None:
    doc = campaigns.load(EXAMPLE).doc
    campaign = doc["campaigns"][0]
    assert campaign["window_days"] == [1, 2, 3, 4, 5, 6]
    assert (campaign["window_start"], campaign["window_end"]) == ("09:00", "20:00")
    assert campaign["reply_timeout"] == "3 days 0 seconds"
    assert campaign["silence_timeout"] == "1 days 0 seconds"
    assert [s["delay"] for s in campaign["steps"]] == [
        "0 days 0 seconds",
        "1 days 0 seconds",
        "3 days 0 seconds",
    ]


EDITS = [
    (lambda c: c.update(delai="1d"), "campaigns[0].delai: unknown key"),
    (
        lambda c: c["steps"][0].update(delay="1x"),
        "campaigns[0].steps[0].delay: '1x' is not a duration",
    ),
    (lambda c: c.update(from_number="555"), "campaigns[0].from_number: '555'"),
    (lambda c: c.update(timezone="Eastern"), "campaigns[0].timezone: 'Eastern' is not an IANA"),
    (lambda c: c["send_window"].update(start="21:00"), "start must be before end"),
    (lambda c: c["send_window"].update(days=["funday"]), "'funday' is not a day"),
    (lambda c: c.update(steps=[]), "at least one step is required"),
    (lambda c: c.update(daily_cap=0), "daily_cap: must be a whole number"),
    (lambda c: c.update(slug="Solar Q4"), "campaigns[0].slug: use lowercase"),
]


@pytest.mark.parametrize(
    ("edit", "message"),
    EDITS,
)
def test_validation_names_the_problem(edit: Any, message: str) -> None:
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text())
    edit(data["campaigns"][0])
    with pytest.raises(errors.InvalidInput, match=r".*") as info:
        campaigns.parse(yaml.safe_dump(data))
    assert message in str(info.value)


def test_apply_is_idempotent(db_url: str, db: Conn) -> None:
    first = apply_file(db_url, EXAMPLE)
    assert first.exit_code == 0, first.output
    assert "created" in first.output
    again = apply_file(db_url, EXAMPLE, "--json")
    assert again.exit_code == 0, again.output
    assert '"action": "unchanged"' in again.output
    assert '"action": "updated"' not in again.output
    assert '"action": "created"' not in again.output
    counts = [count(db, t) for t in ("agents", "campaigns", "campaign_steps", "sending_numbers")]
    assert counts == [2, 2, 5, 2]  # solar-q4 (3 steps) and solar-q4-twilio (2), a number each
    assert row(
        db,
        "select a.name from pgflow.sending_numbers n join pgflow.agents a"
        " on a.id = n.inbound_agent_id",
    ) == ("front-desk",)
    assert row(
        db,
        "select status, daily_cap, window_days, reply_timeout::text, transport"
        " from pgflow.campaigns where slug = 'solar-q4'",
    ) == ("active", 3, [1, 2, 3, 4, 5, 6], "3 days", "retell")
    assert scalar(db, "select transport from pgflow.campaigns where slug = 'solar-q4-twilio'") == (
        "twilio"
    )


def test_dry_run_changes_nothing(db_url: str, db: Conn) -> None:
    result = apply_file(db_url, EXAMPLE, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    assert count(db, "campaigns") == 0


def test_steps_passed_by_an_enrollment_are_fixed(db_url: str, db: Conn, tmp_path: Path) -> None:
    assert apply_file(db_url, EXAMPLE).exit_code == 0
    text = EXAMPLE.read_text()
    edited = tmp_path / "edited.yaml"
    edited.write_text(text.replace("Is now a good time", "Got a minute"))
    # nobody has passed step 1 yet: the change is taken
    assert apply_file(db_url, edited).exit_code == 0
    assert "Got a minute" in scalar(db, "select body from pgflow.campaign_steps where position = 1")
    # a lead receives step 1; changing it again is refused with a clear error
    assert ingest(db, "2125550147", at("2026-11-23 15:00"), "solar-q4")["status"] == "created"
    mark_sent(db, at("2026-11-23 15:00"))
    refused = apply_file(db_url, EXAMPLE)
    assert refused.exit_code == 1
    assert "already passed step 1" in refused.output
    assert "Got a minute" in scalar(db, "select body from pgflow.campaign_steps where position = 1")
    # changing a later step (not yet passed) is fine
    later = tmp_path / "later.yaml"
    later.write_text(edited.read_text().replace("Last note from SunCo", "Final note from SunCo"))
    result = apply_file(db_url, later)
    assert result.exit_code == 0, result.output
    assert scalar(db, "select body from pgflow.campaign_steps where position = 3").startswith(
        "Final note"
    )


def test_unreadable_file_is_a_clear_error(db_url: str, tmp_path: Path) -> None:
    missing = apply_file(db_url, tmp_path / "nope.yaml")
    assert missing.exit_code == 1
    assert "cannot read" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [\n")
    result = apply_file(db_url, bad)
    assert result.exit_code == 1
    assert "not valid YAML" in result.output


# --- the published schema -----------------------------------------------------------------

# What only our own checks can see (a zone, a phone, a window's order): the schema allows it.
BEYOND_THE_SCHEMA = {"'555'", "'Eastern'", "start must be before end"}


def test_examples_validate_against_the_published_schema() -> None:
    import jsonschema
    import yaml

    validator = jsonschema.Draft202012Validator(campaign_schema.SCHEMA)
    validator.check_schema(campaign_schema.SCHEMA)
    for path in sorted(EXAMPLE.parent.glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path


@pytest.mark.parametrize(("edit", "message"), EDITS)
def test_the_schema_rejects_what_the_checks_reject(edit: Any, message: str) -> None:
    import jsonschema
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text())
    edit(data["campaigns"][0])
    errors_found = list(jsonschema.Draft202012Validator(campaign_schema.SCHEMA).iter_errors(data))
    if any(beyond in message for beyond in BEYOND_THE_SCHEMA):
        assert errors_found == []
    else:
        assert errors_found, f"the schema lets through what the checks reject: {message}"


def test_errors_name_the_file_line_and_field(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("delay: 1d", "delay: 1x")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "delay: 1x" in t)
    with pytest.raises(errors.InvalidInput) as info:
        campaigns.load(broken)
    assert f"{broken}:{line}: campaigns[0].steps[1].delay: '1x' is not a duration" in str(
        info.value
    )


def test_campaign_schema_prints_the_schema() -> None:
    import json

    result = CliRunner().invoke(cli, ["campaign", "schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == campaign_schema.SCHEMA

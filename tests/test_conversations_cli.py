"""`pgflow conversations show`: what an operator sees of one contact."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import typer
from typer.testing import CliRunner

from pgflow.cli import conversations
from tests.factories import apply_campaign, at, ingest, mark_sent

Conn = psycopg.Connection[Any]
cli = typer.Typer()
cli.add_typer(conversations.app, name="conversations")


def show(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(
        cli, ["conversations", "show", *args], env={"DATABASE_URL": db_url, "COLUMNS": "200"}
    )


def test_show_a_contact(db_url: str, db: Conn) -> None:
    apply_campaign(db)
    lead = ingest(db, "2125550147", at("2026-11-23 15:00"), first_name="Sam")
    mark_sent(db, at("2026-11-23 15:00"))
    db.execute(
        "select pgflow.end_conversation(id, 'qualified', 'owns a home', 'llm')"
        " from pgflow.conversations"
    )
    result = show(db_url, "(212) 555-0147")
    assert result.exit_code == 0, result.output
    for expected in (
        "+12125550147",
        "Sam",
        "America/New_York",
        "stopped",
        "qualified",
        "owns a home",
        "Hi Sam, it's Ava from SunCo!",
        "sent",
    ):
        assert expected in result.output
    report = json.loads(show(db_url, "+12125550147", "--json").output)
    assert report["enrollments"][0]["id"] == lead["enrollment_id"]
    assert [m["status"] for m in report["messages"]] == ["sent"]
    assert report["conversations"][0]["conversion_status"] == "qualified"


def test_unknown_and_invalid_numbers(db_url: str) -> None:
    missing = show(db_url, "2125550199")
    assert missing.exit_code == 1
    assert "no contact with number +1212***0199" in missing.output
    invalid = show(db_url, "call me")
    assert invalid.exit_code == 1
    assert "not a phone number" in invalid.output

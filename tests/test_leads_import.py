"""`pgflow leads import` against a real database (typer's CliRunner)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner, Result

from pgflow import leads
from pgflow.cli import leads as leads_cli
from tests.factories import apply_campaign, count
from tests.helpers import row

Conn = psycopg.Connection[Any]

cli = typer.Typer()
cli.add_typer(leads_cli.app, name="leads")

# A BOM, sloppy headers, a blank line, a bad phone, a duplicate of row 2, a bad consent_at.
LEADS_CSV = (
    "\ufeffPhone Number, First Name ,E-mail,Roof Age,consent_text,Consent At\n"
    "(415) 555-0123,Sam,sam@example.com,12,I agree to texts,2026-11-20T10:00:00Z\n"
    "+1 415-555-0124,Ana,,,,\n"
    "\n"
    "555-01,Bad,,,,\n"
    "4155550123,Sam,,,,\n"
    "415 555 0125,Bo,,,,yesterday-ish\n"
)


@pytest.fixture
def campaign(db: Conn) -> int:
    return apply_campaign(db, "solar-q4", window_start="00:00", window_end="23:59")


def run(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["leads", "import", *args], env={"DATABASE_URL": db_url})


def write(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def totals(db: Conn) -> tuple[int, int, int]:
    return count(db, "contacts"), count(db, "enrollments"), count(db, "messages")


def test_import_counts_reports_errors_and_exits_2(
    db_url: str, db: Conn, campaign: int, tmp_path: Path
) -> None:
    path = write(tmp_path, LEADS_CSV)
    errors_file = tmp_path / "errors.csv"
    result = run(db_url, str(path), "--campaign", "solar-q4", "--errors-file", str(errors_file))
    assert result.exit_code == 2, result.output
    for word in ("created", "already_enrolled", "rejected", "invalid_phone", "invalid_payload"):
        assert word in result.output

    with errors_file.open(encoding="utf-8", newline="") as f:
        reported = list(csv.reader(f))
    assert reported[0] == ["line", "phone", "error", "detail"]
    assert [(r[0], r[2]) for r in reported[1:]] == [
        ("5", "invalid_phone"),
        ("7", "invalid_payload"),
    ]
    assert reported[1][1] == "***"  # a short raw phone is masked whole
    assert "consent.at must be an ISO 8601 time" in reported[2][3]
    assert "+14155550125" not in errors_file.read_text(encoding="utf-8")

    contacts, enrollments, messages = totals(db)
    assert (contacts, enrollments) == (2, 2)
    assert messages <= 2
    sam = row(
        db,
        "select first_name, email, attributes, consent_text, consent_at is not null"
        " from pgflow.contacts where phone = '+14155550123'",
    )
    assert sam == ("Sam", "sam@example.com", {"roof_age": "12"}, "I agree to texts", True)
    assert row(
        db,
        "select source, external_id from pgflow.lead_events where result = 'created' order by id"
        " limit 1",
    ) == ("csv:leads.csv", "leads.csv:2")
    assert count(db, "lead_events") == 5

    # Re-running the same file is safe: nothing new, the same rows rejected again.
    again = run(db_url, str(path), "--campaign", "solar-q4", "--json")
    assert again.exit_code == 2, again.output
    summary = json.loads(again.stdout)
    assert {k: summary[k] for k in ("created", "already_enrolled", "suppressed", "rejected")} == {
        "created": 0,
        "already_enrolled": 3,
        "suppressed": 0,
        "rejected": 2,
    }
    assert [(e["line"], e["error"]) for e in summary["errors"]] == [
        (5, "invalid_phone"),
        (7, "invalid_payload"),
    ]
    assert totals(db) == (contacts, enrollments, messages)


def test_clean_file_exits_0_and_source_can_be_named(
    db_url: str, db: Conn, campaign: int, tmp_path: Path
) -> None:
    path = write(tmp_path, "mobile,external_id,Plan\n4155550123,crm-1,gold\n4155550124,,\n")
    result = run(db_url, str(path), "--campaign", "solar-q4", "--source", "crm", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == 2
    events = db.execute("select source, external_id from pgflow.lead_events order by id").fetchall()
    assert events == [("crm", "crm-1"), ("crm", "leads.csv:3")]


def test_dry_run_keeps_nothing(db_url: str, db: Conn, campaign: int, tmp_path: Path) -> None:
    path = write(tmp_path, LEADS_CSV)
    result = run(db_url, str(path), "--campaign", "solar-q4", "--dry-run", "--json")
    assert result.exit_code == 2, result.output
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True
    # Row 6 repeats row 2: rolled back in between, so it shows as created too.
    assert (summary["created"], summary["rejected"]) == (3, 2)
    assert totals(db) == (0, 0, 0)
    assert count(db, "lead_events") == 0
    assert count(db, "pgqueuer") == 0


def test_unknown_campaign_fails_fast(db_url: str, db: Conn, campaign: int, tmp_path: Path) -> None:
    path = write(tmp_path, LEADS_CSV)
    result = run(db_url, str(path), "--campaign", "nope")
    assert result.exit_code == 1
    assert "no campaign with slug 'nope'" in result.output
    assert count(db, "lead_events") == 0


def test_file_level_errors_exit_1(db_url: str, db: Conn, campaign: int, tmp_path: Path) -> None:
    no_phone = write(tmp_path, "name,email\nSam,sam@example.com\n")
    result = run(db_url, str(no_phone), "--campaign", "solar-q4")
    assert result.exit_code == 1
    assert "no phone column" in result.output

    missing = run(db_url, str(tmp_path / "absent.csv"), "--campaign", "solar-q4")
    assert missing.exit_code == 1
    assert "no such file" in missing.output

    twice = write(tmp_path, "phone,mobile\n4155550123,4155550124\n", "twice.csv")
    ambiguous = run(db_url, str(twice), "--campaign", "solar-q4")
    assert ambiguous.exit_code == 1
    assert "would both fill" in ambiguous.output

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("phone,first_name\n4155550123,Ren\u00e9e\n".encode("latin-1"))
    not_utf8 = run(db_url, str(latin1), "--campaign", "solar-q4")
    assert not_utf8.exit_code == 1
    assert "not UTF-8" in not_utf8.output
    assert count(db, "lead_events") == 0


def test_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, 'phone,note\n\n4155550123,"two\nlines"\n4155550124,x\n')
    with leads.LeadFile(path) as lead_file:
        rows = list(lead_file.rows())
    assert [r.line for r in rows] == [3, 5]
    assert rows[0].fields == {"external_id": "leads.csv:3", "attributes": {"note": "two\nlines"}}


@pytest.fixture
def operator_url(login_url: Callable[[str], str]) -> str:
    """URL of a new login in role pgflow_operator (what the CLI is meant to run as)."""
    return login_url("pgflow_operator")


def test_import_runs_as_the_operator_role(
    operator_url: str, db: Conn, campaign: int, tmp_path: Path
) -> None:
    path = write(tmp_path, LEADS_CSV)
    result = run(operator_url, str(path), "--campaign", "solar-q4", "--json")
    assert result.exit_code == 2, result.output
    summary = json.loads(result.stdout)
    assert (summary["created"], summary["already_enrolled"], summary["rejected"]) == (2, 1, 2)
    assert totals(db)[:2] == (2, 2)

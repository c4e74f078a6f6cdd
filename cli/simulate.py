"""`pgflow campaign simulate`: when each step of a campaign would go to sample leads, and
which rule decided, before it goes live. Nothing is written: a campaign FILE is applied in
a transaction that is rolled back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from pgflow import campaigns, db, phones
from pgflow.errors import PgflowError

from .common import console, fail, print_json, settings

# A lead in each state whose rules differ, and two the rules do not reach (NY, CA), one in
# Canada and one abroad (the strictest default): `--phones` replaces them.
SAMPLES = (
    "+18135550123",  # Tampa, FL: 8-20, 3 per 24 h
    "+12145550123",  # Dallas, TX: 9-21, Sundays from noon
    "+14015550123",  # Providence, RI: 9-18 weekdays, 10-17 weekends
    "+18605550123",  # Hartford, CT: 9-20
    "+12125550123",  # New York: the federal 8-21 only
    "+13105550123",  # Los Angeles
    "+14165550123",  # Toronto
    "+442079460123",  # London: no US state can be told
)


def simulate(
    target: str = typer.Argument(..., help="A campaign's slug, or a campaign YAML file."),
    campaign: str | None = typer.Option(
        None, "--campaign", help="With a FILE of several campaigns: the one to simulate."
    ),
    phone: list[str] | None = typer.Option(
        None,
        "--phones",
        help="A sample lead's number, as PHONE or PHONE:STATE for a lead who gave a state "
        "(repeat the option for more). Default: a lead in each state with its own rules.",
    ),
    days: int = typer.Option(14, min=1, max=90, help="How many days ahead."),
    start: str | None = typer.Option(
        None, "--at", help="When the leads arrive (ISO time, UTC when no zone); default now."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """When each step would go to sample leads, in their local time, and which rule decided.

    The rules: the campaign's window, a state's hours (Florida, Texas, ...), a state's cap per 24 h, a quiet day. Nothing is written: a FILE is applied and rolled back."""  # noqa: E501
    at = _when(start)
    leads = [_lead(p) for p in (phone or SAMPLES)]
    path = Path(target)
    with db.connect(settings().database_url, autocommit=False, application="cli") as conn:
        try:
            slug = target
            if path.suffix in (".yaml", ".yml") or path.exists():
                slug = _apply_file(conn, path, campaign)
            result = db.simulate_campaign(slug, leads, days, at).run(conn)
        except PgflowError as exc:
            fail(str(exc))
        finally:
            conn.rollback()  # a dry run: the file's campaign is never kept
    if as_json:
        print_json(result)
        return
    _print(slug, result)


def _when(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"--at {value!r}: use an ISO time, e.g. 2026-11-23T20:30-05:00")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _lead(raw: str) -> dict[str, Any]:
    number, _, state = raw.partition(":")
    found = phones.normalize(number)
    if found.e164 is None:
        fail(f"--phones {number!r}: {found.error}")
    lead: dict[str, Any] = {"phone": found.e164}
    if found.timezone:
        lead["timezone"] = found.timezone
    if state.strip():
        lead["state"] = state.strip().upper()
    return lead


def _apply_file(conn: Any, path: Path, campaign: str | None) -> str:
    parsed = campaigns.load(path)
    slugs = [str(c["slug"]) for c in parsed.doc.get("campaigns", [])]
    if campaign is None and len(slugs) != 1:
        fail(f"{path} has {len(slugs)} campaigns ({', '.join(slugs)}): choose one with --campaign")
    slug = campaign or slugs[0]
    if slug not in slugs:
        fail(f"{path} has no campaign {slug!r} (it has {', '.join(slugs)})")
    db.apply_campaigns(parsed.doc).run(conn)
    return slug


def _print(slug: str, result: list[dict[str, Any]]) -> None:
    table = Table(title=f"{slug}: when each step would go (nobody replies)", title_justify="left")
    for column in ("lead", "zone", "rules", "step", "local time", "decided by"):
        table.add_column(column)
    for lead in result:
        rules = ", ".join(r for r in lead["rules"] if r != "US") or "federal"
        for i, step in enumerate(lead["steps"]):
            first = i == 0
            table.add_row(
                phones.mask(lead["phone"]) if first else "",
                lead["timezone"] if first else "",
                rules if first else "",
                str(step["step"]),
                step["local"] or "-",
                step["why"],
            )
    console.print(table)

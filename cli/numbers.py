"""`pgflow numbers`: sending numbers, their use today and their carrier limits."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from pgflow import db, health
from pgflow.errors import PgflowError

from .common import console, fail, print_json, settings

app = typer.Typer(help="Sending numbers and their carrier limits.", no_args_is_help=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each sending number: the campaigns that send from it, today's use (UTC), its limits.

    A send over a limit waits (deferred), it is never dropped."""
    with db.connect(settings().database_url, application="cli") as conn:
        rows = [health.number_row(r) for r in db.number_report().run(conn)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no sending numbers (apply a campaign file first)")
        return
    table = Table()
    for column in ("number", "campaigns", "sends today", "segments today", "per second"):
        table.add_column(column)
    for r in rows:
        daily = r["daily_segments"]
        table.add_row(
            r["number"],
            ", ".join(r["campaigns"]) or "-",
            f"{r['messages_today']:,}",
            f"{r['segments_today']:,}" + (f" / {daily:,}" if daily else " (no limit)"),
            f"{r['per_second']:g}" if r["per_second"] else "no limit",
        )
    console.print(table)


@app.command("set")
def set_(
    number: str = typer.Argument(..., help="The sending number (E.164, e.g. +14155550100)."),
    per_second: float | None = typer.Option(
        None, "--per-second", help="Messages per second from this number."
    ),
    daily_segments: int | None = typer.Option(
        None, "--daily-segments", help="SMS segments per UTC day from this number."
    ),
    no_per_second: bool = typer.Option(False, "--no-per-second", help="Remove the rate limit."),
    no_daily_segments: bool = typer.Option(
        False, "--no-daily-segments", help="Remove the daily limit."
    ),
) -> None:
    """Set or remove a number's limits (what is not named stays as it is).

    A campaign file's `numbers:` entry sets them too (per_second, daily_segments), when applied."""
    limits: dict[str, Any] = {}
    if per_second is not None and no_per_second:
        fail("--per-second and --no-per-second together: choose one")
    if daily_segments is not None and no_daily_segments:
        fail("--daily-segments and --no-daily-segments together: choose one")
    if per_second is not None:
        if not 0 < per_second <= 1000:
            fail("--per-second must be more than 0 and at most 1000")
        limits["per_second"] = per_second
    if no_per_second:
        limits["per_second"] = None
    if daily_segments is not None:
        if daily_segments < 1:
            fail("--daily-segments must be at least 1")
        limits["daily_segments"] = daily_segments
    if no_daily_segments:
        limits["daily_segments"] = None
    if not limits:
        fail("nothing to set: give --per-second, --daily-segments or a --no-... option")
    with db.connect(settings().database_url, application="cli") as conn:
        try:
            row = db.set_number_limits(number, limits).run(conn)
        except PgflowError as exc:
            fail(str(exc))
    rate = f"{float(row['per_second']):g}/s" if row["per_second"] is not None else "no rate limit"
    daily = f"{row['daily_segments']:,} segments/day" if row["daily_segments"] else "no daily limit"
    console.print(f"{row['number']}: {rate}, {daily}", highlight=False)

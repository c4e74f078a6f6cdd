"""`pgflow dead-letters`: list, requeue or discard messages that could not be sent."""

from __future__ import annotations

from typing import Any

import typer

from pgflow import db
from pgflow.errors import PgflowError

from .common import console, fail, parse_since, print_json, print_listing, settings

app = typer.Typer(help="Messages that could not be sent.", no_args_is_help=True)


@app.command("list")
def list_(
    campaign: str | None = typer.Option(None, help="Only this campaign (slug)."),
    since: str | None = typer.Option(None, help="Only those failed at or after this time."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(200, min=1, help="At most this many (newest first)."),
) -> None:
    """List dead letters, newest first (phones masked)."""
    with db.connect(settings().database_url, application="cli") as conn:
        rows = db.dead_letters(campaign, parse_since(since), limit).run(conn)
    columns = ("id", "campaign", "phone", "attempts", "failed at", "error")
    print_listing(rows, as_json, columns, _cells, empty="no dead letters", counted="dead letter(s)")


def _cells(r: dict[str, Any]) -> list[str]:
    error = (r["delivery_error"] or "")[:80]
    if r["contact_opted_out"]:
        error = "[opted out] " + error
    return [
        str(r["id"]),
        r["campaign"] or "-",
        r["phone"],
        str(r["attempts"]),
        f"{r['failed_at']:%Y-%m-%d %H:%M}",
        error,
    ]


def _report(results: list[dict[str, Any]], as_json: bool, verb: str) -> None:
    if as_json:
        print_json(results)
    else:
        for r in results:
            detail = f" ({r['detail']})" if r.get("detail") else ""
            console.print(f"{r['id']}: {r['result']}{detail}", highlight=False)
        done = sum(1 for r in results if r["result"] == verb)
        console.print(f"{done} of {len(results)} {verb}")
    if any(r["result"] != verb for r in results):
        raise typer.Exit(1)


@app.command()
def requeue(
    ids: list[int] = typer.Argument(None, help="Message ids."),
    all_: bool = typer.Option(False, "--all", help="Every dead letter (see --campaign)."),
    campaign: str | None = typer.Option(None, help="With --all: only this campaign."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Send dead letters again (attempts reset). Opted-out contacts are refused.

    Exits 1 when any id was not requeued (missing, not a dead letter, or refused)."""
    if bool(ids) == all_:
        fail("give message ids, or --all (optionally with --campaign)")
    if campaign and not all_:
        fail("--campaign goes with --all")
    with db.connect(settings().database_url, application="cli") as conn:
        try:
            results = db.requeue_dead_letters(ids or None, campaign).run(conn)
        except PgflowError as exc:
            fail(str(exc))
    if not results:
        console.print("no dead letters to requeue")
        return
    _report(results, as_json, "requeued")


@app.command()
def discard(
    ids: list[int] = typer.Argument(..., help="Message ids."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Give up on dead letters for good (they become 'failed')."""
    with db.connect(settings().database_url, application="cli") as conn:
        results = db.discard_dead_letters(ids).run(conn)
    _report(results, as_json, "discarded")

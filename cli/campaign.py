"""`pgflow campaign`: declarative agents, campaigns and steps."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pgflow import campaign_schema, campaigns, db
from pgflow.errors import PgflowError

from .common import console, err_console, fail, print_json, settings
from .simulate import simulate

app = typer.Typer(help="Agents, campaigns and their steps.", no_args_is_help=True)
app.command()(simulate)


@app.command()
def apply(
    file: Path = typer.Argument(..., help="Campaign YAML file.", exists=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show, change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create or update agents and campaigns from FILE (idempotent; upsert by name and slug)."""
    try:
        parsed = campaigns.load(file)
    except PgflowError as exc:
        fail(str(exc))
    for warning in parsed.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    with db.connect(settings().database_url, autocommit=False, application="cli") as conn:
        try:
            result = db.apply_campaigns(parsed.doc).run(conn)
        except PgflowError as exc:
            conn.rollback()
            fail(str(exc))
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    if as_json:
        print_json(result | {"dry_run": dry_run})
        return
    table = Table(title="dry run: nothing changed" if dry_run else None)
    table.add_column("kind")
    table.add_column("name")
    table.add_column("action")
    table.add_column("steps")
    for agent in result["agents"]:
        table.add_row("agent", Text(agent["name"]), agent["action"], "")
    for campaign in result["campaigns"]:
        table.add_row("campaign", campaign["slug"], campaign["action"], campaign["steps"])
    for number in result.get("numbers", []):
        table.add_row("number", number["number"], number["action"], "")
    console.print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of campaign files (point your editor's YAML support at it)."""
    print_json(campaign_schema.SCHEMA)

"""`pgflow db`: schema migrations."""

from __future__ import annotations

import typer

from pgflow import migrations

from .common import console, fail, print_json, settings

app = typer.Typer(help="Schema migrations (yoyo, sql/migrations/).", no_args_is_help=True)


@app.command()
def migrate() -> None:
    """Apply every pending migration (safe to run again: a no-op when current)."""
    url = settings().database_url
    try:
        applied = migrations.migrate(url)
    except Exception as exc:
        fail(f"migration failed: {exc}")
    if applied:
        for mid in applied:
            console.print(f"applied {mid}")
    else:
        console.print("schema is current; nothing to apply")


@app.command()
def upgrade(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show which migrations would run and what they change."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with --dry-run)."),
) -> None:
    """Apply pending migrations; with --dry-run, only show what each one would change.

    The dry run names the tables, functions, views, indexes and grants, for a DBA to review."""
    url = settings().database_url
    pending = migrations.status(url).pending
    if not dry_run:
        migrate()
        return
    plan = [
        {"migration": m, "comment": migrations.comment(m), "changes": migrations.describe(m)}
        for m in pending
    ]
    if as_json:
        print_json(plan)
        return
    if not plan:
        console.print("schema is current; nothing would run")
        return
    for item in plan:
        console.print(f"[bold]{item['migration']}[/bold]  {item['comment']}", highlight=False)
        for change in item["changes"]:
            console.print(f"    {change}", highlight=False, markup=False)
    console.print(f"{len(plan)} migration(s) would run; `pgflow db upgrade` applies them")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List applied and pending migrations; exit 1 when any is pending."""
    st = migrations.status(settings().database_url)
    if as_json:
        print_json({"applied": st.applied, "pending": st.pending})
    else:
        for mid in st.applied:
            console.print(f"[green]applied[/green]  {mid}")
        for mid in st.pending:
            console.print(f"[yellow]pending[/yellow]  {mid}")
    if st.pending:
        raise typer.Exit(1)


@app.command()
def rollback(
    count: int = typer.Option(1, "--count", "-n", min=1, help="How many migrations to undo."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Roll back the most recent migrations (destroys the data they hold)."""
    if not yes:
        typer.confirm(f"Roll back the last {count} migration(s)?", abort=True)
    for mid in migrations.rollback(settings().database_url, count):
        console.print(f"rolled back {mid}")

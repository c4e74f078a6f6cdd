"""`pgflow leads`: import lead lists (CSV) into a campaign."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import psycopg
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from pgflow import db
from pgflow import leads as lead_import
from pgflow.errors import PgflowError

from .common import console, err_console, fail, print_json, settings

app = typer.Typer(help="Lead lists.", no_args_is_help=True)

ERRORS_SHOWN = 100
PROGRESS_EVERY = 100  # rows between two updates of the bar (it redraws 10 times a second)
ERRORS_FILE_COLUMNS = ("line", "phone", "error", "detail")


@app.callback()
def leads() -> None:
    """Lead lists: import a CSV into a campaign."""


@app.command("import")
def import_(
    file: Path = typer.Argument(
        ...,
        help="CSV with a header row. Required: a phone column (phone, phone_number, mobile,"
        " ...). Optional: first_name, last_name, email, timezone, state, external_id,"
        " consent_text, consent_at, consent_source, consent_ip, consent_user_agent. Other"
        " columns become attributes.",
    ),
    campaign: str = typer.Option(..., "--campaign", help="Slug of the campaign to enroll in."),
    source: str | None = typer.Option(
        None, "--source", help='Lead source recorded with each row (default "csv:<file name>").'
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Run every row through the same checks in a rolled-back transaction; keep nothing.",
    ),
    errors_file: Path | None = typer.Option(
        None, "--errors-file", help="Also write the rejected rows (line, phone, error) as CSV."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    row_by_row: bool = typer.Option(
        False,
        "--row-by-row",
        help="One ingest_lead call per row (the webhook's path) instead of chunks of rows"
        " applied set-based; the same results, much slower.",
    ),
) -> None:
    """Enroll every row of FILE in a campaign, with the lead webhook's rules.

    Rows go in chunks of 5,000, each applied set-based in one transaction.
    --row-by-row makes one ingest_lead call per row instead; --dry-run always does.
    Safe to re-run: rows already enrolled count as already_enrolled.

    Exit code: 0 every row accepted, 2 some rows rejected, 1 the file could not be imported."""
    url = settings().database_url
    try:
        lead_file = lead_import.LeadFile(file)
    except PgflowError as exc:
        fail(str(exc))
    with contextlib.ExitStack() as stack:
        stack.enter_context(lead_file)
        try:
            conn = stack.enter_context(db.connect(url, application="leads-import"))
            lead_import.check_campaign(conn, campaign)
        except PgflowError as exc:
            fail(str(exc))
        except psycopg.OperationalError as exc:
            fail(f"cannot reach the database: {exc}".strip())
        write_error = _open_errors_file(errors_file, stack) if errors_file else None

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]} rows, {task.fields[rejected]} rejected"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=not err_console.is_terminal,
            transient=False,
        )
        task = progress.add_task(
            "dry run" if dry_run else "importing", total=lead_file.size, rows=0, rejected=0
        )
        rows = 0
        rejected = 0

        def on_row(outcome: lead_import.RowOutcome) -> None:
            nonlocal rows, rejected
            rows += 1
            if not outcome.accepted:
                rejected += 1
                if write_error is not None:
                    write_error([outcome.line, outcome.phone, outcome.error, outcome.detail])
            if rows % PROGRESS_EVERY == 0 or not outcome.accepted:
                progress.update(task, completed=lead_file.position, rows=rows, rejected=rejected)

        lead_source = source or lead_import.default_source(file)
        try:
            with progress:
                if dry_run or row_by_row:
                    summary = lead_import.import_rows(
                        conn, lead_file.rows(), campaign, lead_source, on_row, dry_run=dry_run
                    )
                else:
                    summary = lead_import.import_rows_bulk(
                        conn, lead_file.rows(), campaign, lead_source, on_row
                    )
                progress.update(task, rows=rows, rejected=rejected)
                progress.update(task, completed=lead_file.size)
        except psycopg.Error as exc:
            fail(f"database error after {rows} rows: {exc}".strip())

    if as_json:
        print_json(summary.as_dict())
    else:
        _print_summary(summary, errors_file)
    if summary.file_error is not None:
        fail(summary.file_error)
    raise typer.Exit(summary.exit_code)


def _open_errors_file(
    path: Path, stack: contextlib.ExitStack
) -> Callable[[Iterable[object]], object]:
    """A CSV writer's writerow for the rejected rows (header written), closed by `stack`."""
    try:
        handle: IO[str] = stack.enter_context(path.open("w", encoding="utf-8", newline=""))
    except OSError as exc:
        fail(f"--errors-file {path}: {exc.strerror or exc}")
    writer = csv.writer(handle)
    writer.writerow(ERRORS_FILE_COLUMNS)
    return writer.writerow


def _print_summary(summary: lead_import.ImportSummary, errors_file: Path | None) -> None:
    title = "Dry run (nothing kept)" if summary.dry_run else "Lead import"
    table = Table(title=title, title_justify="left")
    table.add_column("result")
    table.add_column("rows", justify="right")
    table.add_row("created", str(summary.created))
    table.add_row("already_enrolled", str(summary.already_enrolled))
    table.add_row("suppressed", str(summary.suppressed))
    table.add_row("rejected", str(summary.rejected), style="red" if summary.rejected else None)
    table.add_row("total", str(summary.rows), style="bold")
    console.print(table)
    if not summary.errors:
        return
    errors = Table(title="Rejected rows", title_justify="left")
    for column in ("line", "phone", "error", "detail"):
        errors.add_column(column, overflow="fold")
    for outcome in summary.errors[:ERRORS_SHOWN]:
        errors.add_row(
            str(outcome.line),
            Text(outcome.phone),
            Text(outcome.error or ""),
            Text(outcome.detail or ""),
        )
    console.print(errors)
    more = summary.rejected - min(len(summary.errors), ERRORS_SHOWN)
    if more > 0:
        where = f"see {errors_file}" if errors_file else "use --errors-file for all of them"
        console.print(f"... and {more} more rejected rows ({where})", highlight=False)
    elif errors_file:
        console.print(f"rejected rows written to {escape(str(errors_file))}", highlight=False)

"""Lead import from CSV (`pgflow leads import`): ingest a lead file row by row.

Each row takes the webhook's path (`pgflow.intake`): the phone is normalised at the edge
and the row is ONE `pgflow.ingest_lead()` call on an autocommit connection, so every row
leaves a `pgflow.lead_events` row and re-running a file is safe (`already_enrolled`). The
payload's `source` defaults to `csv:<file name>`. Reading the file and mapping its columns
to a lead is `pgflow.lead_csv` (LeadFile, LeadFileError are re-exported here)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg

from pgflow import db, intake
from pgflow.lead_csv import LeadFile, LeadFileError, LeadRow

__all__ = [
    "ImportSummary",
    "LeadFile",
    "LeadFileError",
    "RowOutcome",
    "check_campaign",
    "default_source",
    "import_row",
    "import_rows",
]

ACCEPTED_STATUSES = ("created", "already_enrolled", "suppressed")
MAX_KEPT_ERRORS = 1000

ProgressCallback = Callable[["RowOutcome"], None]


def default_source(path: Path) -> str:
    return f"csv:{path.name}"


@dataclasses.dataclass(frozen=True)
class RowOutcome:
    line: int
    phone: str  # masked
    status: str  # created | already_enrolled | suppressed | rejected
    error: str | None = None
    detail: str | None = None
    contact_id: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED_STATUSES


@dataclasses.dataclass
class ImportSummary:
    dry_run: bool = False
    created: int = 0
    already_enrolled: int = 0
    suppressed: int = 0
    rejected: int = 0
    errors: list[RowOutcome] = dataclasses.field(default_factory=list)
    max_errors: int = MAX_KEPT_ERRORS
    file_error: str | None = None

    @property
    def rows(self) -> int:
        return self.created + self.already_enrolled + self.suppressed + self.rejected

    @property
    def errors_dropped(self) -> int:
        """Rejected rows beyond `max_errors` (counted, not kept)."""
        return self.rejected - len(self.errors)

    @property
    def exit_code(self) -> int:
        """0 every row accepted, 2 some rows rejected, 1 the file could not be read to the end."""
        if self.file_error is not None:
            return 1
        return 2 if self.rejected else 0

    def add(self, outcome: RowOutcome) -> None:
        if outcome.status == "created":
            self.created += 1
        elif outcome.status == "already_enrolled":
            self.already_enrolled += 1
        elif outcome.status == "suppressed":
            self.suppressed += 1
        else:
            self.rejected += 1
            if len(self.errors) < self.max_errors:
                self.errors.append(outcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "rows": self.rows,
            "created": self.created,
            "already_enrolled": self.already_enrolled,
            "suppressed": self.suppressed,
            "rejected": self.rejected,
            "file_error": self.file_error,
            "errors": [dataclasses.asdict(e) for e in self.errors],
        }


def check_campaign(conn: psycopg.Connection[Any], slug: str) -> None:
    """Fail fast (LeadFileError) unless the campaign takes leads: pgflow.campaign_refusal()."""
    refusal = db.campaign_refusal(slug).run(conn)
    if refusal is None:
        return
    hint = (
        "; apply it first with `pgflow campaign apply`"
        if refusal["error"] == "unknown_campaign"
        else ""
    )
    raise LeadFileError(f"{refusal['detail']}{hint}")


def import_rows(
    conn: psycopg.Connection[Any],
    rows: Iterable[LeadRow],
    campaign: str,
    source: str,
    progress_cb: ProgressCallback | None = None,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> ImportSummary:
    """Ingest each row with one pgflow.ingest_lead() call on `conn` (autocommit).

    With `dry_run`, each row runs the same call inside a transaction that is rolled back:
    the same checks, nothing kept (rows repeated within the file show as created each
    time). A LeadFileError while reading ends the import early: `file_error` says why;
    the rows before it stay imported (re-running the file is safe)."""
    summary = ImportSummary(dry_run=dry_run)
    try:
        for lead in rows:
            outcome = import_row(conn, lead, campaign, source, dry_run=dry_run, now=now)
            summary.add(outcome)
            if progress_cb is not None:
                progress_cb(outcome)
    except LeadFileError as exc:
        summary.file_error = str(exc)
    return summary


def import_row(
    conn: psycopg.Connection[Any],
    lead: LeadRow,
    campaign: str,
    source: str,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> RowOutcome:
    prepared = intake.prepare(lead.payload(campaign, source), source=source, now=now)
    rollback = conn.transaction(force_rollback=True) if dry_run else contextlib.nullcontext()
    with rollback:
        result = intake.ingest(conn, prepared, savepoint=dry_run)
    status = str(result.get("status"))
    if status in ACCEPTED_STATUSES:
        return RowOutcome(lead.line, prepared.phone, status, contact_id=result.get("contact_id"))
    return RowOutcome(
        lead.line,
        prepared.phone,
        "rejected",
        error=str(result.get("error") or "rejected"),
        detail=str(result.get("detail") or ""),
    )

"""Lead import from CSV (`pgflow leads import`): ingest a lead file, set-based or row by row.

Each row is prepared as the webhook prepares a lead (`pgflow.intake.prepare`: the phone
normalised at the edge, the payload's `source` defaulting to `csv:<file name>`). Then:

- `import_rows_bulk` (the default of the command): chunks of CHUNK_ROWS rows, each COPYed
  into a staging table of its own transaction and applied by ONE `pgflow.import_leads()` call in ONE
  transaction, with ingest_lead's rules (sql/functions/import.sql). A row the database
  cannot take at all (a NUL character) goes the row-by-row way, as does a chunk the
  set-based call refuses with a data error, so such a row is recorded as the webhook
  records it;
- `import_rows` (`--row-by-row`, `--dry-run`): each row is ONE `pgflow.ingest_lead()` call
  on an autocommit connection.

Either way every row leaves a `pgflow.lead_events` row and re-running a file is safe
(`already_enrolled`). Reading the file and mapping its columns to a lead is
`pgflow.lead_csv` (LeadFile, LeadFileError are re-exported here)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from pgflow import db, errors, intake
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
    "import_rows_bulk",
    "payload_text",
]

ACCEPTED_STATUSES = ("created", "already_enrolled", "suppressed")
MAX_KEPT_ERRORS = 1000
CHUNK_ROWS = 5000  # rows per set-based call and transaction (memory stays bounded)

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
    return _outcome(lead.line, prepared.phone, result)


def import_rows_bulk(
    conn: psycopg.Connection[Any],
    rows: Iterable[LeadRow],
    campaign: str,
    source: str,
    progress_cb: ProgressCallback | None = None,
    *,
    now: dt.datetime | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportSummary:
    """`import_rows`' twin, set-based: chunks of `chunk_rows` rows, each COPYed into a
    staging table of its own transaction and applied by one pgflow.import_leads() call in one
    transaction. The same rows written and the same outcomes as row by row, reported in file
    order (`progress_cb` is called for each row once its chunk is committed). A
    LeadFileError while reading ends the import after the rows read before it."""
    summary = ImportSummary()
    chunks = _chunks(rows, chunk_rows)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except _FileEnded as ended:
            chunk, summary.file_error = ended.rows, ended.reason
        for outcome in _import_chunk(conn, chunk, campaign, source, now):
            summary.add(outcome)
            if progress_cb is not None:
                progress_cb(outcome)
        if summary.file_error is not None:
            break
    return summary


class _FileEnded(Exception):
    """The file could not be read past `rows` (a LeadFileError: `reason`)."""

    def __init__(self, rows: list[LeadRow], reason: str) -> None:
        super().__init__(reason)
        self.rows, self.reason = rows, reason


def _chunks(rows: Iterable[LeadRow], size: int) -> Iterator[list[LeadRow]]:
    chunk: list[LeadRow] = []
    try:
        for lead in rows:
            chunk.append(lead)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except LeadFileError as exc:
        raise _FileEnded(chunk, str(exc)) from None
    if chunk:
        yield chunk


def _import_chunk(
    conn: psycopg.Connection[Any],
    chunk: list[LeadRow],
    campaign: str,
    source: str,
    now: dt.datetime | None,
) -> list[RowOutcome]:
    """One chunk, set-based; its rows' outcomes in file order."""
    staged: list[tuple[LeadRow, intake.Lead, str]] = []
    alone: list[LeadRow] = []
    for lead in chunk:
        prepared = intake.prepare(lead.payload(campaign, source), source=source, now=now)
        text = payload_text(prepared)
        if "\\u0000" in text:  # jsonb cannot hold it: ingest_lead's caller records the row
            alone.append(lead)
        else:
            staged.append((lead, prepared, text))
    outcomes: dict[int, RowOutcome] = {}
    if staged:
        try:
            with conn.transaction():
                db.create_lead_staging().run(conn)
                _stage(conn, staged)
                answers = db.import_staged_leads(campaign, source, now).run(conn)
        except (psycopg.DataError, errors.InvalidInput):
            # A value the set-based call cannot take: the chunk row by row, each row
            # recorded as the webhook records it.
            alone.extend(lead for lead, _, _ in staged)
        else:
            masked = {lead.line: prepared.phone for lead, prepared, _ in staged}
            for answer in answers:
                line = int(answer["line"])
                outcomes[line] = _outcome(line, masked[line], answer)
    for lead in alone:
        outcomes[lead.line] = import_row(conn, lead, campaign, source, now=now)
    return [outcomes[line] for line in sorted(outcomes)]


def payload_text(prepared: intake.Lead) -> str:
    """The payload as the JSON text the staging table takes."""
    return json.dumps(prepared.payload, ensure_ascii=False)


def _stage(conn: psycopg.Connection[Any], staged: list[tuple[LeadRow, intake.Lead, str]]) -> None:
    with conn.cursor() as cur, cur.copy(db.copy_lead_staging()) as copy:
        for lead, prepared, text in staged:
            edge = prepared.edge or {}
            copy.write_row(
                (lead.line, text, edge.get("phone"), edge.get("phone_error"), edge.get("timezone"))
            )


def _outcome(line: int, phone: str, answer: dict[str, Any]) -> RowOutcome:
    """A row's outcome from ingest_lead's (or import_leads') answer."""
    status = str(answer.get("status"))
    if status in ACCEPTED_STATUSES:
        return RowOutcome(line, phone, status, contact_id=answer.get("contact_id"))
    return RowOutcome(
        line,
        phone,
        "rejected",
        error=str(answer.get("error") or "rejected"),
        detail=str(answer.get("detail") or ""),
    )

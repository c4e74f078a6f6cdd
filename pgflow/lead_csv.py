"""Lead files (CSV) for `pgflow leads import`: read, streamed, and map each record to a lead.

Columns (header names are case-, space- and punctuation-insensitive):
- phone (required): `phone`, `phone_number`, `mobile`, `cell`, `telephone`, ... (PHONE_ALIASES)
- `first_name`, `last_name`, `email`, `timezone`, `state`, `external_id` (and FIELD_ALIASES)
- `consent_text`, `consent_at`, `consent_source`, `consent_ip`, `consent_user_agent` -> the
  lead's `consent` object
- anything else -> `attributes` (keyed by the normalised header, e.g. "Roof Age" -> roof_age)

The payload's `external_id` defaults to `<file name>:<line>`. The file is UTF-8 (a BOM is
tolerated) and streamed: it is never loaded whole; a record that cannot be read (bad
UTF-8, an unclosed quote) is a LeadFileError naming its line."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pgflow import errors

PHONE_ALIASES = frozenset(
    {
        "phone",
        "phone_number",
        "phonenumber",
        "phone_no",
        "mobile",
        "mobile_phone",
        "mobile_number",
        "mobilephone",
        "cell",
        "cell_phone",
        "cellphone",
        "cell_number",
        "telephone",
        "tel",
        "sms",
    }
)
FIELD_ALIASES: dict[str, str] = {
    "first_name": "first_name",
    "firstname": "first_name",
    "first": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "last": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "email": "email",
    "email_address": "email",
    "e_mail": "email",
    "timezone": "timezone",
    "time_zone": "timezone",
    "tz": "timezone",
    "state": "state",
    "state_code": "state",
    "province": "state",
    "external_id": "external_id",
    "externalid": "external_id",
    "lead_id": "external_id",
}
CONSENT_COLUMNS: dict[str, str] = {
    "consent_text": "text",
    "consent_at": "at",
    "consent_source": "source",
    "consent_ip": "ip",
    "consent_user_agent": "user_agent",
}


class LeadFileError(errors.PgflowError):
    """The file cannot be imported at all (missing, unreadable, no phone column, ...)."""

    code = "lead_file"


def header_key(name: str) -> str:
    """'  Phone Number ' -> 'phone_number'; 'E-mail' -> 'e_mail'."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


@dataclasses.dataclass(frozen=True)
class Column:
    index: int
    header: str
    kind: str  # "phone" | "field" | "consent" | "attribute"
    key: str


def map_header(header: list[str]) -> list[Column]:
    """Where each column goes; LeadFileError without a phone column or with two columns
    that would fill the same field."""
    columns: list[Column] = []
    seen: dict[tuple[str, str], str] = {}
    for index, raw in enumerate(header):
        name = raw.lstrip("\ufeff")
        key = header_key(name)
        if not key:
            continue  # an unnamed column (e.g. a trailing comma) carries nothing we can name
        if key in PHONE_ALIASES:
            column = Column(index, name, "phone", "phone")
        elif key in FIELD_ALIASES:
            column = Column(index, name, "field", FIELD_ALIASES[key])
        elif key in CONSENT_COLUMNS:
            column = Column(index, name, "consent", CONSENT_COLUMNS[key])
        else:
            column = Column(index, name, "attribute", key)
        target = (column.kind, column.key)
        if target in seen:
            raise LeadFileError(
                f"columns {seen[target]!r} and {name!r} would both fill {column.key!r};"
                " rename or remove one"
            )
        seen[target] = name
        columns.append(column)
    if ("phone", "phone") not in seen:
        found = ", ".join(repr(h) for h in header) or "none"
        raise LeadFileError(
            f"no phone column (looked for {', '.join(sorted(PHONE_ALIASES))}); columns: {found}"
        )
    return columns


@dataclasses.dataclass(frozen=True)
class LeadRow:
    """One data row: its line in the file, the raw phone, and the payload fields."""

    line: int
    phone: str
    fields: dict[str, Any]

    def payload(self, campaign: str, source: str) -> dict[str, Any]:
        """The pgflow.ingest_lead() payload."""
        return {"campaign": campaign, "source": source, "phone": self.phone, **self.fields}


def map_row(columns: list[Column], cells: list[str], line: int, file_name: str) -> LeadRow:
    """A CSV record as a lead: empty cells are left out, values are stripped."""
    phone = ""
    fields: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    consent: dict[str, str] = {}
    for column in columns:
        value = cells[column.index].strip() if column.index < len(cells) else ""
        if column.kind == "phone":
            phone = value
        elif not value:
            continue
        elif column.kind == "field":
            fields[column.key] = value
        elif column.kind == "consent":
            consent[column.key] = value
        else:
            attributes[column.key] = value
    fields.setdefault("external_id", f"{file_name}:{line}")
    if attributes:
        fields["attributes"] = attributes
    if consent:
        fields["consent"] = consent
    return LeadRow(line, phone, fields)


ENCODING_PROBE = 64 * 1024  # bytes checked for UTF-8 before the header is read


class LeadFile:
    """A lead CSV opened for streaming; the header is checked when it opens.

    `position` / `size` (bytes, approximate while reading) drive a progress bar."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        try:
            self._raw = path.open("rb")
            self.size = os.fstat(self._raw.fileno()).st_size
        except FileNotFoundError:
            raise LeadFileError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise LeadFileError(f"{path}: is a directory") from None
        except OSError as exc:
            raise LeadFileError(f"{path}: {exc.strerror or exc}") from None
        self._check_encoding()
        self._reader = csv.reader(self._lines(), strict=True)
        self._record_end = 0  # the last line of the last record read
        try:
            header = self._next()
        except StopIteration:
            self.close()
            raise LeadFileError(f"{path}: the file is empty (a header row is required)") from None
        except LeadFileError:
            self.close()
            raise
        self.header_line = self._reader.line_num
        try:
            self.columns = map_header(header)
        except LeadFileError as exc:
            self.close()
            raise LeadFileError(f"{path}: {exc}") from None

    def _check_encoding(self) -> None:
        """A file that is not UTF-8 from its start (UTF-16, a spreadsheet, binary) is refused
        before its header is read; one that turns bad later is refused at that line."""
        head = self._raw.read(ENCODING_PROBE)
        self._raw.seek(0)
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:  # not a character cut by the probe's end
                self.close()
                line = head.count(b"\n", 0, exc.start) + 1
                raise LeadFileError(
                    f"{self.path}, line {line}: not UTF-8 ({exc.reason}); save the file as"
                    " CSV UTF-8"
                ) from None

    def _lines(self) -> Iterator[str]:
        """The file's lines, each decoded on its own: a byte that is not UTF-8 is reported
        on its own line (a leading BOM is dropped)."""
        number = 0
        for chunk in self._raw:
            for raw in chunk.splitlines(keepends=True):  # \n, \r\n and old Mac \r
                number += 1
                if number == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise LeadFileError(
                        f"{self.path}, line {number}: not UTF-8 (byte {exc.start + 1} of the"
                        f" line: {exc.reason}); save the file as UTF-8"
                    ) from None
                yield text

    def _next(self) -> list[str]:
        """The next non-blank record; StopIteration at the end."""
        while True:
            try:
                record = next(self._reader)
            except csv.Error as exc:
                start = self._record_end + 1
                detail = str(exc)
                if "unexpected end of data" in detail:
                    detail = 'a field opened with a quote (") is never closed'
                raise LeadFileError(f"{self.path}, line {start}: {detail}") from None
            self._record_end = self._reader.line_num
            if any(cell.strip() for cell in record):
                return record

    def rows(self) -> Iterator[LeadRow]:
        """Data rows in file order; `line` is the line on which the record starts."""
        while True:
            before = self._reader.line_num
            try:
                cells = self._next()
            except StopIteration:
                return
            # Blank lines were skipped: the record starts where its own lines begin.
            end = self._reader.line_num
            start = max(before + 1, end - _record_lines(cells) + 1)
            yield map_row(self.columns, cells, start, self.name)

    @property
    def position(self) -> int:
        """Bytes read so far (ahead of the current row by at most the read buffer)."""
        try:
            return min(self._raw.tell(), self.size)
        except (OSError, ValueError):
            return self.size

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> LeadFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _record_lines(cells: list[str]) -> int:
    """Physical lines a record spans (quoted cells may hold newlines)."""
    return 1 + sum(cell.count("\n") for cell in cells)

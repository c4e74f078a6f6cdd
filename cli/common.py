"""Shared pieces of the CLI: settings, logging set-up, output helpers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table

from pgflow import logs, phones
from pgflow.config import Settings
from pgflow.errors import PgflowError

# Width for tables written to a pipe or a file (a terminal uses its own width).
PIPE_WIDTH = 200


class _Console(Console):
    """rich's Console that never wraps a printed line (soft wrap) and, when the output is
    not a terminal, lays tables out at a fixed wide width instead of 80 columns: what a
    log, a pipe or a test reads does not depend on the terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        measured: ConsoleDimensions = Console.size.fget(self)  # type: ignore[attr-defined]
        return measured if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, measured.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console(soft_wrap=True)
err_console = _Console(stderr=True, soft_wrap=True)


def settings() -> Settings:
    try:
        return Settings.from_env()
    except PgflowError as exc:
        fail(str(exc))


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def print_listing(
    rows: list[dict[str, Any]],
    as_json: bool,
    columns: Sequence[str],
    cells: Callable[[dict[str, Any]], Sequence[str]],
    *,
    empty: str,
    counted: str,
) -> None:
    """A listing, each row's phone masked: JSON with --json; else `empty` when there are no
    rows, or a table (`cells` gives a row's cells) and the count of `counted` things."""
    for r in rows:
        r["phone"] = phones.mask(r["phone"])
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(empty)
        return
    table = Table()
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(*cells(r))
    console.print(table)
    console.print(f"{len(rows)} {counted}")


def e164(phone: str) -> str:
    """The number in E.164, or fail saying why it is not a phone number."""
    number = phones.normalize(phone)
    if number.e164 is None:
        fail(f"{phone!r}: {number.error}")
    return number.e164


def parse_since(value: str | None) -> dt.datetime | None:
    """--since as a time (UTC when it names no zone); None when not given."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since {value!r}: use an ISO date or time, e.g. 2026-11-23 or 2026-11-23T09:00")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def configure_logging(level: str = "INFO", config: Settings | None = None) -> None:
    """One JSON object a line on stderr (PGFLOW_LOG_FORMAT=text: key=value for a terminal),
    secrets redacted; the library itself never configures logging."""
    secrets: list[str | None] = []
    text = False
    if config is not None:
        secrets = [config.retell_api_key, config.lead_token, config.events_token]
        text = config.log_format == "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logs.TextFormatter(secrets) if text else logs.JsonFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO; our own events already say what happened.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))

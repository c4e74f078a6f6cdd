"""Shared pieces of the CLI: settings, logging set-up, output helpers."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

from pgflow.config import Settings
from pgflow.errors import PgflowError

console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    try:
        return Settings.from_env()
    except PgflowError as exc:
        fail(str(exc))


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def configure_logging(level: str = "INFO") -> None:
    """key=value lines on stderr; the library itself never configures logging."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # httpx logs every request at INFO; our own events already say what happened.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))

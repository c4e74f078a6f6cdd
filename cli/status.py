"""`pgflow status`: health at a glance."""

from __future__ import annotations

import time
from typing import Any

import typer

from pgflow import health

from .common import console, print_json, settings


def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    watch: float = typer.Option(
        0.0, "--watch", min=0.0, help="Refresh every this many seconds (0: once)."
    ),
) -> None:
    """Health at a glance: the checks, then the figures in a fixed order.

    Exits 1 when anything is unhealthy (with --watch: when Ctrl-C stops it, by the last report)."""
    url = settings().database_url
    report = health.report(url)
    try:
        while True:
            if watch and console.is_terminal:
                console.clear()
            _print(report, as_json)
            if not watch:
                break
            time.sleep(watch)
            report = health.report(url)
    except KeyboardInterrupt:
        pass
    if not report.healthy:
        raise typer.Exit(1)


def _print(report: health.Report, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    for check in report.checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {check.name:<12} {check.detail}", highlight=False)
    for name, value in report.figures.items():
        console.print(f"     {name:<28} {value}", highlight=False)
    for line in number_lines(report.numbers):
        console.print(f"     {line}", highlight=False)
    for d in report.deferrals:
        console.print(
            f"     waiting for {d['rule']:<22} {d['steps']:,} step(s), {d['texts']:,} text(s)",
            highlight=False,
        )


def number_lines(numbers: list[dict[str, Any]]) -> list[str]:
    """Each sending number's use today (UTC) against its limits, one line each."""
    lines = []
    for n in numbers:
        daily = n["daily_segments"]
        used = f"{n['segments_today']:,}" + (f"/{daily:,}" if daily else "")
        rate = f"{n['per_second']:g}/s" if n["per_second"] else "no rate limit"
        lines.append(
            f"number {n['number']:<16} {used} segments today ({n['messages_today']:,} sends),"
            f" {rate}"
        )
    return lines

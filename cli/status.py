"""`pgflow status`: health at a glance."""

from __future__ import annotations

import typer

from pgflow import health

from .common import console, print_json, settings


def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Health at a glance; exits 1 when anything is unhealthy."""
    report = health.report(settings().database_url)
    if as_json:
        print_json(report.as_dict())
    else:
        for check in report.checks:
            mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
            console.print(f"{mark} {check.name:<12} {check.detail}", highlight=False)
        for name, value in report.figures.items():
            console.print(f"     {name:<28} {value}", highlight=False)
    if not report.healthy:
        raise typer.Exit(1)

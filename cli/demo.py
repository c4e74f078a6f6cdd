"""`pgflow demo`: the whole story on local defaults, as a live timeline."""

from __future__ import annotations

from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from pgflow.demo import Lead, Options, Story
from pgflow.errors import PgflowError

from .common import console, err_console
from .report import print_funnel

COLORS = {
    "sam": "blue",
    "pat": "red",
    "lee": "yellow",
    "kim": "magenta",
    "ari": "cyan",
    "jo": "green",
}


class RichDisplay:
    def step(self, text: str) -> None:
        console.print(f"[dim]  · {text}[/dim]", highlight=False)

    def lead(self, elapsed: float, who: Lead, text: str, style: str = "") -> None:
        color = COLORS.get(who.key, "white")
        line = f"[dim]{elapsed:6.1f}s[/dim]  [{color}]{who.name:<4}[/{color}] "
        line += f"[dim]{who.masked}[/dim]  "
        line += f"[{style}]{_escape(text)}[/{style}]" if style else _escape(text)
        console.print(line, highlight=False)

    def note(self, elapsed: float, text: str) -> None:
        console.print(f"[dim]{elapsed:6.1f}s[/dim]  [bold]{_escape(text)}[/bold]", highlight=False)

    def summary(self, leads: list[Lead], state: dict[int, dict[str, Any]]) -> None:
        table = Table(title=f"the {len(leads)} leads", title_justify="left")
        for column in ("lead", "phone", "time zone", "role", "outcome", "by", "sent", "why"):
            table.add_column(column)
        for lead in leads:
            row = state[lead.contact_id]
            ok = row["conversion_status"] == lead.expected
            outcome = row["conversion_status"] or (
                "in review" if row["review_reason"] else row["status"] or "-"
            )
            table.add_row(
                f"[{COLORS.get(lead.key, 'white')}]{lead.name}[/]",
                lead.masked,
                lead.zone,
                lead.role,
                f"[{'green' if ok else 'red'}]{outcome}[/]",
                row["outcome_source"] or "-",
                str(row["sent"]),
                _escape(row["outcome_reason"] or row["review_reason"] or ""),
            )
        console.print()
        console.print(table)

    def funnel(self, funnel: list[dict[str, Any]]) -> None:
        for item in funnel:
            print_funnel(item)

    def pointers(self, lines: list[str]) -> None:
        console.print()
        console.print("[bold]Where to look next[/bold] (the data stays in the local database):")
        for line in lines:
            console.print(f"  {line}", highlight=False, markup=False)


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def demo(
    keep_running: bool = typer.Option(
        False, "--keep-running", help="Leave the server, worker and sandbox up (Ctrl-C stops)."
    ),
    port: int = typer.Option(0, min=0, max=65535, help="The web server's port (0: a free one)."),
) -> None:
    """The whole flow on local defaults, as a live timeline.

    A local database (or DATABASE_URL), the demo campaigns, the sandbox transport (Retell's and Twilio's APIs, locally), the web server and the worker; six leads, a reply, a STOP, a silence, a request for a person, a qualified lead, a person answering a lead on Twilio from the CLI; then the funnel."""  # noqa: E501
    console.print(
        Panel.fit(
            "[bold]pgflow-sms demo[/bold]: six leads through the real endpoints, queue and "
            "worker,\nRetell and Twilio played by the local sandbox, the clock moved forward "
            "where a drip waits days.",
            border_style="blue",
        )
    )
    run = Story(RichDisplay(), Options(keep_running=keep_running, port=port))
    try:
        problems = run.run()
    except KeyboardInterrupt:
        run.tear_down()
        err_console.print("stopped: everything the demo started is stopped")
        raise typer.Exit(130) from None
    except (PgflowError, OSError) as exc:
        run.tear_down()
        err_console.print(f"[red]demo failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if problems and not run.model:
        for problem in problems:
            err_console.print(f"[red]not as it should be:[/red] {problem}", highlight=False)
        if keep_running:
            run.tear_down()
        raise typer.Exit(1)
    for problem in problems:
        console.print(f"[yellow]note:[/yellow] {problem} (the model's judgment)", highlight=False)
    if keep_running:
        console.print(
            "\n[bold]Running[/bold]: Ctrl-C stops the server, the worker and the sandbox."
        )
        try:
            run.keep_running()
        except PgflowError as exc:
            err_console.print(f"[red]stopped:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
        console.print("stopped: everything the demo started is stopped")

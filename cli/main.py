"""`pgflow`: the operator's command line."""

from __future__ import annotations

import psycopg
import typer

from pgflow import __version__
from pgflow.errors import first_line

from . import (
    campaign,
    contacts,
    conversations,
    db,
    dead_letters,
    demo,
    leads,
    numbers,
    report,
    retell,
    sandbox,
    serve,
    status,
    twilio,
    users,
    worker,
)
from .common import err_console

app = typer.Typer(
    help="pgflow-sms: inbound leads to SMS conversations, run from Postgres.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pgflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the installed version and exit.",
    ),
) -> None:
    """pgflow-sms: inbound leads to SMS conversations, run from Postgres."""


app.add_typer(db.app, name="db")
app.add_typer(campaign.app, name="campaign")
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(leads.app, name="leads")
app.add_typer(conversations.app, name="conversations")
app.add_typer(contacts.app, name="contacts")
app.add_typer(numbers.app, name="numbers")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(retell.app, name="retell")
app.add_typer(twilio.app, name="twilio")
app.add_typer(users.app, name="users")
app.command(name="status")(status.status)
app.command(name="report")(report.report)
app.command(name="demo")(demo.demo)
app.command(name="worker")(worker.worker)
app.command(name="serve")(serve.serve)


def main() -> None:
    try:
        app()
    except psycopg.OperationalError as exc:
        # No traceback for the commonest operator error: say which database and why.
        err_console.print(
            f"[red]error:[/red] cannot reach the database: {first_line(exc, None)}",
            highlight=False,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

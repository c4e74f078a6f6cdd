"""`pgflow`: the operator's command line."""

from __future__ import annotations

import psycopg
import typer

from . import (
    campaign,
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
    worker,
)
from .common import err_console

app = typer.Typer(
    help="pgflow-sms: inbound leads to SMS conversations, run from Postgres.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(campaign.app, name="campaign")
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(leads.app, name="leads")
app.add_typer(conversations.app, name="conversations")
app.add_typer(numbers.app, name="numbers")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(retell.app, name="retell")
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
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err_console.print(
            f"[red]error:[/red] cannot reach the database: {first_line}", highlight=False
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

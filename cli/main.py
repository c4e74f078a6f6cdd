"""`pgflow`: the operator's command line."""

from __future__ import annotations

import typer

from . import campaign, db, dead_letters, leads, serve, status, worker

app = typer.Typer(
    help="pgflow-sms: inbound leads to SMS conversations, run from Postgres.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(campaign.app, name="campaign")
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(leads.app, name="leads")
app.command(name="status")(status.status)
app.command(name="worker")(worker.worker)
app.command(name="serve")(serve.serve)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

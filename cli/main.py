"""`pgflow`: the operator's command line."""

from __future__ import annotations

import typer

from . import campaign, db, status

app = typer.Typer(
    help="pgflow-sms: inbound leads to SMS conversations, run from Postgres.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(campaign.app, name="campaign")
app.command(name="status")(status.status)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

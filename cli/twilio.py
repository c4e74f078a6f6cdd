"""`pgflow twilio setup`: point the Twilio sending numbers' incoming texts at us."""

from __future__ import annotations

import asyncio

import psycopg
import typer
from rich.markup import escape
from rich.table import Table

from pgflow import db, twilio_setup
from pgflow.transport import TransportError
from pgflow.transport.twilio import TwilioClient

from .common import console, fail, print_json, settings

app = typer.Typer(help="The Twilio side of pgflow-sms.", no_args_is_help=True)

RECEIPTS_NOTE = (
    "Delivery receipts come with each send (its StatusCallback); each number's own status "
    "callback is for voice calls and is left alone."
)


@app.command()
def setup(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Point every Twilio sending number's incoming texts at us, idempotently (--dry-run: show the plan only).

    \b
    - the numbers: the sending numbers of the campaigns with transport: twilio;
    - each number's SmsUrl becomes PGFLOW_PUBLIC_URL/webhooks/twilio/inbound, SmsMethod POST;
    - an SmsUrl elsewhere (Retell, say) is replaced, with a warning: every lead on that number is affected;
    - its status callback (voice calls) stays: delivery receipts come with each send.

    Needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PGFLOW_PUBLIC_URL (--dry-run too: it reads each number, and writes nothing). Exits 1 when a number is not in the Twilio account.
    """  # noqa: E501 (typer keeps a docstring's line breaks: one line a paragraph)
    config = settings()
    problems = twilio_setup.config_problems(config)
    if problems:
        fail("; ".join(problems))
    with db.connect(config.database_url, application="cli") as conn:
        try:
            rows = db.twilio_numbers().run(conn)
        except psycopg.errors.UndefinedFunction:
            fail("this database's schema is older than pgflow: run `pgflow db migrate` first")
    numbers = {str(r["number"]): [str(c) for c in r.get("campaigns") or []] for r in rows}
    sms_url = twilio_setup.sms_url(config.public_url or "")
    if not numbers:
        if as_json:
            print_json({"dry_run": dry_run, "sms_url": sms_url, "changes": []})
        else:
            console.print("No campaign uses the Twilio transport: nothing to set up.")
        return

    async def run() -> list[twilio_setup.Change]:
        async with TwilioClient(
            config.twilio_account_sid or "",
            config.twilio_auth_token or "",
            public_url=config.public_url or "",
            base_url=config.twilio_base_url,
        ) as client:
            return await twilio_setup.setup(client, numbers, dry_run=dry_run)

    try:
        changes = asyncio.run(run())
    except TransportError as exc:
        hint = " (check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)" if exc.alert else ""
        fail(f"{exc.message}{hint}; the numbers set before it stay set: run it again when fixed")
    missing = [c.target.removeprefix("number ") for c in changes if c.action == "missing"]
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "sms_url": sms_url,
                "changes": [c.as_dict() for c in changes],
            }
        )
    else:
        _print(changes, dry_run, sms_url)
    if missing:
        fail(f"not in this Twilio account: {', '.join(missing)}")


def _print(changes: list[twilio_setup.Change], dry_run: bool, sms_url: str) -> None:
    table = Table(title="plan (nothing changed)" if dry_run else "Twilio set-up")
    for column in ("number", "action", "campaigns", "detail"):
        table.add_column(column)
    for change in changes:
        if change.action != "warning":
            number = change.target.removeprefix("number ")
            cells = (number, change.action, ", ".join(change.campaigns), change.detail)
            table.add_row(*(escape(cell) for cell in cells))
    console.print(table)
    for change in changes:
        if change.action == "warning":
            number = change.target.removeprefix("number ")
            console.print(f"[yellow]warning:[/yellow] {escape(number)}: {escape(change.detail)}")
    console.print(f"SmsUrl: {escape(sms_url)} ({twilio_setup.SMS_METHOD}). {RECEIPTS_NOTE}")

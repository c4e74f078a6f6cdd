"""`pgflow retell setup`: configure the Retell LLM, chat agent and numbers through the API."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from pgflow import campaigns, db, retell_setup
from pgflow.transport import TransportError
from pgflow.transport.retell import RetellClient

from .common import console, fail, print_json, settings

app = typer.Typer(help="The Retell side of pgflow-sms.", no_args_is_help=True)


@app.command()
def setup(
    webhook_url: str = typer.Option(
        ...,
        help="Our public POST /webhooks/retell URL, e.g. https://sms.example.com/webhooks/retell",
    ),
    silence: str = typer.Option("24h", help="A chat ends after this much silence (2m-72h)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create or update the Retell side, idempotently (--dry-run: show the plan only).

    \b
    - the Retell LLM: {{agent_prompt}} as its prompt, {{sms_body}} as its first text;
    - the chat agent pgflow-sms: our webhook, transcript_updated, silence timeout, analysis;
    - every sending number: its SMS agents and its inbound SMS webhook.
    """
    config = settings()
    if not config.retell_api_key:
        fail("RETELL_API_KEY is not set")
    seconds = campaigns.parse_duration(silence)
    if seconds is None or not 120 <= seconds <= 72 * 3600:
        fail(f"--silence {silence!r}: a duration from 2m to 72h")
    if not webhook_url.startswith(("https://", "http://")):
        fail("--webhook-url must be an http(s) URL")
    with db.connect(config.database_url, application="cli") as conn:
        inputs = db.retell_setup_inputs().run(conn)
    numbers = [r["value"] for r in inputs if r["kind"] == "number"]
    agent_ids = [r["value"] for r in inputs if r["kind"] == "agent"]

    async def run() -> list[retell_setup.Change]:
        async with RetellClient(config.retell_api_key or "", config.retell_base_url) as client:
            return await retell_setup.setup(
                client,
                webhook_url=webhook_url,
                numbers=numbers,
                agent_ids=agent_ids,
                silence_ms=seconds * 1000,
                dry_run=dry_run,
            )

    try:
        changes = asyncio.run(run())
    except TransportError as exc:
        fail(f"Retell refused: {exc.message}")
    if as_json:
        print_json({"dry_run": dry_run, "changes": [c.as_dict() for c in changes]})
        return
    table = Table(title="plan (nothing changed)" if dry_run else "Retell set-up")
    for column in ("target", "action", "detail"):
        table.add_column(column)
    for change in changes:
        table.add_row(change.target, change.action, change.detail)
    console.print(table)

"""`pgflow sandbox`: the local SMS transport that speaks Retell's and Twilio's APIs (serve),
and the lead's side of it (say)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import typer

from pgflow import db, logs, phones
from pgflow.config import SANDBOX_API_KEY, SANDBOX_BASE_URL, SANDBOX_TWILIO_ACCOUNT_SID
from pgflow.sandbox.faults import parse_script
from pgflow.sandbox.server import Sandbox, serve_forever
from pgflow.transport import TransportError
from pgflow.transport.sandbox import SandboxClient

from .common import configure_logging, console, e164, fail, print_json, settings

app = typer.Typer(
    help="The local sandbox SMS transport (Retell's and Twilio's APIs on 127.0.0.1).",
    no_args_is_help=True,
)
log = logging.getLogger("pgflow.sandbox")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8090, min=0, max=65535, help="TCP port (0: any free port)."),
    webhook_url: str = typer.Option(
        "http://127.0.0.1:8080/webhooks/retell", help="Where chat events are POSTed (signed)."
    ),
    public_url: str | None = typer.Option(
        None,
        help="The base URL of `pgflow serve` for Twilio's inbound webhooks (default: "
        "PGFLOW_PUBLIC_URL, else the origin of --webhook-url).",
    ),
    twilio_number: list[str] = typer.Option(
        [],
        "--twilio-number",
        metavar="PHONE",
        help="Our number whose texts Twilio carries (repeatable). A number we send from "
        "through Twilio's API, or whose SmsUrl is set, becomes one too.",
    ),
    script: str = typer.Option("", help="Faults for the next Retell sends, e.g. 500,429,drop."),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Serve Retell's and Twilio's APIs locally until SIGTERM.

    Point RETELL_BASE_URL and TWILIO_BASE_URL here, or set PGFLOW_SMS_TRANSPORT=sandbox.
    Twilio's Account SID and auth token are TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.
    In sandbox mode they default to the sandbox's own, the token to RETELL_API_KEY."""
    config = settings()
    configure_logging(log_level, config)
    key = config.retell_api_key or SANDBOX_API_KEY
    base = public_url or config.public_url
    sandbox = Sandbox(
        key,
        host=host,
        port=port,
        webhook_url=webhook_url,
        public_url=base,
        twilio_account_sid=config.twilio_account_sid or SANDBOX_TWILIO_ACCOUNT_SID,
        twilio_auth_token=config.twilio_auth_token or key,
        twilio_numbers=[e164(number) for number in twilio_number],
    )
    sandbox.script(*parse_script(script))
    serve_forever(
        sandbox,
        announce=lambda url: logs.event(
            log,
            "sandbox.started",
            url=url,
            webhook_url=webhook_url,
            public_url=sandbox.public_url,
        ),
    )


@app.command()
def say(
    phone: str = typer.Argument(..., help="The lead's number (any common format)."),
    text: str = typer.Argument(..., help="What the lead texts."),
    to: str | None = typer.Option(
        None, "--to", help="Our number (default: the line of the lead's latest conversation)."
    ),
    wait: float = typer.Option(
        10.0, min=0, help="Seconds to wait for an answer on the lead's phone (0: do not wait)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Play the lead: text our number through the sandbox and show what comes back."""
    config = settings()
    lead = e164(phone)
    line = e164(to) if to else _latest_line(config.database_url, lead)
    url = config.retell_base_url if config.sandbox else SANDBOX_BASE_URL
    key = config.retell_api_key if config.sandbox and config.retell_api_key else SANDBOX_API_KEY
    try:
        result, answers = asyncio.run(_say(url, key, lead, line, text, wait))
    except TransportError as exc:
        fail(f"the sandbox at {url} did not take the text: {exc.message}")
    if as_json:
        print_json({**result, "answers": answers})
        return
    console.print(f"{phones.mask(lead)} -> {line}: {text}", highlight=False)
    if result.get("result") == "rejected":
        console.print("dropped: the engine rejected this text (e.g. the contact opted out)")
    elif result.get("result") == "failed":
        status = result.get("webhook_status")
        why = f"HTTP {status}" if status else "no answer"
        console.print(f"not taken: Twilio's webhook to the engine got {why}")
    for answer in answers:
        console.print(f"{line} -> {phones.mask(lead)}: {answer['text']}", highlight=False)
    if wait and not answers and result.get("result") not in ("rejected", "failed"):
        console.print(f"no answer within {wait:g}s")


async def _say(
    url: str, key: str, lead: str, line: str, text: str, wait: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    async with SandboxClient(key, url) as client:
        before = len(await client.phone(lead))
        result = await client.say(lead, line, text)
        deadline = time.monotonic() + wait
        answers: list[dict[str, Any]] = []
        while wait and time.monotonic() < deadline:
            texts = await client.phone(lead)
            answers = [t for t in texts[before:] if t["direction"] == "to_lead"]
            if answers:
                await asyncio.sleep(0.5)  # a second text of the same answer, if any
                answers = [
                    t for t in (await client.phone(lead))[before:] if t["direction"] == "to_lead"
                ]
                break
            await asyncio.sleep(0.2)
    return result, answers


def _latest_line(database_url: str, lead: str) -> str:
    with db.connect(database_url, application="cli") as conn:
        report = db.contact_report(lead, 1).run(conn)
    conversations = (report or {}).get("conversations") or []
    if not conversations:
        fail(f"{phones.mask(lead)} has no conversation: say which number with --to")
    return str(conversations[-1]["from_number"])

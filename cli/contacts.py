"""`pgflow contacts`: proof of a contact's consent, and erasure on request."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from pgflow import db, errors, phones

from .common import console, e164, fail, print_json, settings
from .conversations import actor

app = typer.Typer(help="Contacts: proof of consent, erasure on request.", no_args_is_help=True)


def _when(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else "-"


def _masked_request(request: Any) -> str:
    """The lead request as compact JSON, its phone masked."""
    if not isinstance(request, dict):
        return json.dumps(request)
    shown = dict(request)
    if isinstance(shown.get("phone"), str):
        raw = shown["phone"]
        shown["phone"] = phones.mask(phones.normalize(raw).e164 or raw)
    return json.dumps(shown, ensure_ascii=False, default=str)


@app.command()
def consent(
    phone: str = typer.Argument(..., help="The contact's number, in any common format."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the number unmasked)."),
) -> None:
    """Proof of consent: every consent of the number's contacts, every opt-out and opt-in.

    Each consent: when, its source, the exact disclosure, the request, the ip and user agent.
    Each opt-out and opt-in: when, its source, the text that caused it.
    A contact forgotten since keeps when and how it consented, and the disclosure text.
    Exits 1 when the number never had a contact."""
    number = e164(phone)
    with db.connect(settings().database_url, application="cli") as conn:
        try:
            record = db.contact_consent(number).run(conn)
        except errors.NotFound:
            fail(f"no contact with number {phones.mask(number)}")
    if as_json:
        print_json(record)
        return
    suppressed = " (suppressed: a contact with it was forgotten)" if record["suppressed"] else ""
    console.print(f"[bold]{phones.mask(number)}[/bold]{suppressed}", highlight=False)
    for contact in record["contacts"]:
        _print_contact(contact)


def _print_contact(contact: dict[str, Any]) -> None:
    name = " ".join(p for p in (contact["first_name"], contact["last_name"]) if p) or "-"
    state = (
        f"forgotten {_when(contact['forgotten_at'])}"
        if contact["forgotten_at"]
        else f"{phones.mask(contact['phone'])}  {name}"
    )
    console.print(
        f"\ncontact {contact['id']}: {escape(state)}, since {_when(contact['created_at'])}",
        highlight=False,
    )
    if contact["opted_out_at"]:
        console.print(
            f"opted out {_when(contact['opted_out_at'])} ({contact['opt_out_source']})",
            highlight=False,
        )
    if not contact["consents"]:
        console.print("no consent recorded", highlight=False)
    for c in contact["consents"]:
        console.print(
            f"consent {c['id']} given {_when(c['given_at'])}, source {c['source'] or '-'}",
            highlight=False,
        )
        lines = {
            "disclosure": c["disclosure"] or "-",
            "ip": c["ip"] or "-",
            "user agent": c["user_agent"] or "-",
            "request": (
                f"lead event {c['lead_event_id'] or '-'}: {_masked_request(c['request'])}"
                if c["request"] is not None
                else f"lead event {c['lead_event_id'] or '-'} (none kept)"
            ),
        }
        for key, value in lines.items():
            console.print(f"  {key}: {escape(value)}", highlight=False)
    if contact["opt_outs"]:
        table = Table(title="opt-outs and opt-ins")
        for column in ("at", "action", "source", "text"):
            table.add_column(column)
        for o in contact["opt_outs"]:
            table.add_row(
                _when(o["occurred_at"]), o["action"], o["source"], escape(o["text"] or "")
            )
        console.print(table)
    erasure = contact["erasure"]
    if erasure:
        console.print(
            f"erased {_when(erasure['erased_at'])} at the request of "
            f"{escape(erasure['requested_by'])}"
            + (f": {escape(erasure['reason'])}" if erasure["reason"] else ""),
            highlight=False,
        )


def _interactive() -> bool:
    """True when a person at a terminal can answer the confirmation."""
    return sys.stdin.isatty()


@app.command()
def forget(
    phone: str = typer.Argument(..., help="The contact's number, in any common format."),
    reason: str | None = typer.Option(
        None,
        "--reason",
        help="Why, e.g. the request's reference (kept; their own names, number, email redacted).",
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Erase a person on request: names, email, attributes, texts, transcripts, everywhere.

    The number is kept only as a keyed hash that stays suppressed.
    A new lead or text from it arrives opted out: an erasure request also means never text again.
    What the funnel counts stays, and so do when and how the person consented.
    Who asked (cli:<your user>) and when are recorded.
    It cannot be undone: without --yes it asks first, and refuses when no terminal can answer."""
    number = e164(phone)
    masked = phones.mask(number)
    if not yes:
        if not _interactive():
            fail(f"not forgetting {masked}: pass --yes to confirm (no terminal to ask on)")
        if not typer.confirm(f"Forget {masked} for good? It cannot be undone."):
            fail(f"{masked} was not forgotten")
    with db.connect(settings().database_url, application="cli") as conn:
        try:
            result = db.forget_contact(number, actor(), reason).run(conn)
        except errors.NotFound:
            fail(f"no contact with number {masked}")
        except errors.PgflowError as exc:
            fail(str(exc))
    if as_json:
        print_json(result)
        return
    removed = ", ".join(f"{n} {table}" for table, n in result["removed"].items() if n)
    console.print(
        f"contact {result['contact_id']} forgotten (erasure {result['erasure_id']}); "
        f"{masked} stays suppressed ({result['suppression_source']})",
        highlight=False,
    )
    console.print(f"erased: {removed or 'nothing else held their data'}", highlight=False)

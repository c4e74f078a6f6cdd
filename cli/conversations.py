"""`pgflow conversations show PHONE`: a contact's drips, conversations and transcript."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from pgflow import db, phones

from .common import console, fail, print_json, settings

app = typer.Typer(help="Conversations with contacts.", no_args_is_help=True)


def _when(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else "-"


@app.command()
def show(
    phone: str = typer.Argument(..., help="The contact's number, in any common format."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(200, min=1, help="At most this many messages (the newest)."),
) -> None:
    """Enrollments, conversations with their outcome, and the transcript of one contact."""
    number = phones.normalize(phone)
    if number.e164 is None:
        fail(f"{phone!r}: {number.error}")
    with db.connect(settings().database_url, application="cli") as conn:
        report = db.contact_report(number.e164, limit).run(conn)
    if report is None:
        fail(f"no contact with number {phones.mask(number.e164)}")
    if as_json:
        print_json(report)
        return
    contact = report["contact"]
    name = " ".join(p for p in (contact["first_name"], contact["last_name"]) if p) or "-"
    console.print(
        f"[bold]{contact['phone']}[/bold]  {name}  zone {contact['timezone'] or '-'}",
        highlight=False,
    )
    if contact["opted_out_at"]:
        console.print(
            f"[red]opted out[/red] {_when(contact['opted_out_at'])} ({contact['opt_out_source']})",
            highlight=False,
        )
    drips = Table(title="enrollments")
    for column in ("id", "campaign", "status", "next step", "next at", "ended / reason"):
        drips.add_column(column)
    for e in report["enrollments"]:
        drips.add_row(
            str(e["id"]),
            e["campaign"],
            e["status"],
            str(e["next_step"] or "-"),
            _when(e["next_message_at"]),
            " ".join(x for x in (_when(e["ended_at"]), e["stop_reason"] or "") if x),
        )
    console.print(drips)
    talks = Table(title="conversations")
    for column in ("id", "from", "status", "outcome", "source", "reason"):
        talks.add_column(column)
    for c in report["conversations"]:
        talks.add_row(
            str(c["id"]),
            c["from_number"],
            c["status"],
            c["conversion_status"] or "-",
            c["outcome_source"] or "-",
            c["outcome_reason"] or "",
        )
    console.print(talks)
    transcript = Table(title="messages")
    for column in ("at", "", "kind", "status", "text"):
        transcript.add_column(column)
    for m in report["messages"]:
        arrow = "→" if m["direction"] == "outbound" else "←"
        status = m["status"] + (f" ({m['attempts']} attempts)" if m["attempts"] > 1 else "")
        text = m["body"] + (f"\n[red]{m['error']}[/red]" if m["error"] else "")
        transcript.add_row(_when(m["at"]), arrow, m["kind"], status, text)
    console.print(transcript)

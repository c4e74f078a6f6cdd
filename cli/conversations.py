"""`pgflow conversations`: list the live ones, show one contact, take a lead over, reply to
it and hand it back."""

from __future__ import annotations

import datetime as dt
import getpass
from typing import Any

import psycopg
import typer
from rich.table import Table

from pgflow import db, errors, phones
from pgflow.agent import OUTCOMES

from .common import console, e164, fail, print_json, print_listing, settings

app = typer.Typer(help="Conversations with contacts.", no_args_is_help=True)


def _when(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else "-"


def _age(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((dt.datetime.now(dt.UTC) - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


COLUMNS = ("id", "phone", "campaign")  # the first columns of every listing of conversations


def _cells(r: dict[str, Any]) -> list[str]:
    return [str(r["id"]), r["phone"], r["campaign"] or "(inbound)"]


def actor() -> str:
    """Who acts from the command line, for the audit trail: `cli:<os user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in the environment nor in the password file
        return "cli:unknown"


def _target(conn: psycopg.Connection[Any], number: str, conversation: int | None) -> int:
    """The conversation given, else the contact's live one, else its latest; fail when the
    contact has none."""
    target = conversation or db.live_conversation_of(number).run(conn)
    if target is None:
        fail(f"{phones.mask(number)} has no conversation")
    return target


_CONVERSATION_HELP = "This conversation (default: the live one, else the latest)."


@app.command("set-outcome")
def set_outcome(
    phone: str = typer.Argument(..., help="The contact's number, in any common format."),
    status: str = typer.Argument(..., help=f"One of: {', '.join(OUTCOMES)}."),
    reason: str = typer.Option(..., "--reason", help="Why (kept with the outcome)."),
    conversation: int | None = typer.Option(None, "--conversation", help=_CONVERSATION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Set a conversation's outcome as a person: it ends the conversation, clears its review.

    A person's outcome replaces what a rule, the LLM or Retell said; nothing overwrites it."""
    if status not in OUTCOMES:
        fail(f"{status!r} is not an outcome; use one of: {', '.join(OUTCOMES)}")
    number = e164(phone)
    with db.connect(settings().database_url, application="cli") as conn:
        target = _target(conn, number, conversation)
        try:
            result = db.settle(target, status, reason, actor()).run(conn)  # audited
        except errors.NotFound:
            fail(f"no conversation {target}")
    if as_json:
        print_json(result)
        return
    console.print(
        f"conversation {result['conversation_id']}: {result['status']} (set by a person)",
        highlight=False,
    )


@app.command()
def review(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (phones masked)."),
    limit: int = typer.Option(200, min=1, help="At most this many (oldest first)."),
) -> None:
    """Conversations waiting for a person to set their outcome, with every signal on them.

    The signals are the LLM's, Retell's and the rules'. Settle each with `set-outcome`."""
    with db.connect(settings().database_url, application="cli") as conn:
        rows = db.review_queue(limit).run(conn)
    print_listing(
        rows,
        as_json,
        (*COLUMNS, "state", "why", "signals"),
        _review_cells,
        empty="nothing waits for review",
        counted="conversation(s) wait for review",
    )


def _review_cells(r: dict[str, Any]) -> list[str]:
    signals = "; ".join(
        f"{s['source']}: {s['status']}" + (f" ({s['reason']})" if s["reason"] else "")
        for s in r["signals"]
    )
    state = r["conversion_status"] or r["status"]
    return [*_cells(r), state, r["review_reason"], signals]


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (phones masked)."),
    limit: int = typer.Option(200, min=1, help="At most this many (most recent activity first)."),
) -> None:
    """Conversations not ended: phone (masked), campaign, state, last message age."""
    with db.connect(settings().database_url, application="cli") as conn:
        rows = db.live_conversations(limit).run(conn)
    print_listing(
        rows,
        as_json,
        (*COLUMNS, "state", "agent turns", "last message"),
        _live_cells,
        empty="no live conversations",
        counted="live conversation(s)",
    )


def _live_cells(r: dict[str, Any]) -> list[str]:
    age = _age(r["last_message_at"]) + " ago"
    return [*_cells(r), r["status"], str(r["agent_turns"]), age]


@app.command()
def takeover(
    phone: str = typer.Argument(..., help="The contact's number, in any common format."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit trail)."),
    conversation: int | None = typer.Option(None, "--conversation", help=_CONVERSATION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A person holds the lead: no AI text reaches it, its drip pauses, the chat ends.

    The conversation stays open for your texts (`reply`) until you `handback`.
    Taking over from a colleague is allowed, and recorded."""
    number = e164(phone)
    who = actor()
    with db.connect(settings().database_url, application="cli") as conn:
        target = _target(conn, number, conversation)
        try:
            result = db.take_over(target, who, None, reason).run(conn)
        except errors.PgflowError as exc:
            fail(str(exc))
    if as_json:
        print_json(result)
        return
    if result["result"] == "unchanged":
        console.print(f"conversation {target}: held by {who} already", highlight=False)
        return
    taken = f" (taken from {result['previous']})" if result.get("previous") else ""
    console.print(
        f"conversation {result['conversation_id']}: held by {result['held_by']}{taken}",
        highlight=False,
    )


@app.command()
def reply(
    phone: str = typer.Argument(..., help="The contact's number, in any common format."),
    text: str = typer.Argument(..., help="The text to send, exactly as the lead should read it."),
    conversation: int | None = typer.Option(None, "--conversation", help=_CONVERSATION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Text the lead as a person: the message is queued and the worker sends it.

    Replying takes the lead over first (as `takeover` does).
    Refused (exit 1) when the lead opted out, or the text is empty or over 1600 characters."""
    number = e164(phone)
    with db.connect(settings().database_url, application="cli") as conn:
        target = _target(conn, number, conversation)
        try:
            result = db.human_reply(target, text, actor()).run(conn)
        except errors.PgflowError as exc:
            fail(str(exc))
    if as_json:
        print_json(result)
        return
    if result["result"] == "duplicate":
        console.print(f"message {result['message_id']} was queued already", highlight=False)
        return
    console.print(
        f"message {result['message_id']} queued on conversation {result['conversation_id']}"
        f" ({result['segments']} segment(s)); the worker sends it",
        highlight=False,
    )
    carrier = "twilio" if result.get("transport") == "twilio" else "retell"
    if carrier == "retell" and settings().sandbox:
        carrier = "sandbox"
    console.print(CARRIES[carrier], highlight=False)


# What a person's text can and cannot do on each transport (docs/operations.md).
CARRIES = {
    "twilio": "Twilio carries it as written and reports its delivery; the lead's answers "
    "reach the console, and the agent stays quiet until you hand the lead back.",
    "sandbox": "The sandbox posts it into the lead's live chat, as written.",
    "retell": "Retell carries it as the first text of a new chat, which is then ended so "
    "Retell's AI says nothing more. Retell passes no text while you hold the lead: an "
    "answer shows as a note, not its words, and no delivery is reported. For two-way "
    "texting by a person, put the campaign on transport: twilio.",
}


@app.command()
def handback(
    phone: str = typer.Argument(..., help="The contact's number, in any common format."),
    conversation: int | None = typer.Option(None, "--conversation", help=_CONVERSATION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Hand the lead back to the agent: the hold ends and its escalation alerts resolve.

    A paused drip stays paused. Exits 1 when nobody holds the lead.
    With the sandbox transport, a lead's text nobody answered gets the agent's answer at once."""
    number = e164(phone)
    config = settings()
    with db.connect(config.database_url, application="cli") as conn:
        target = _target(conn, number, conversation)
        try:
            result = db.hand_back(target, actor(), None, config.sandbox).run(conn)
        except errors.PgflowError as exc:
            fail(str(exc))
    if as_json:
        print_json(result)
        return
    queued = (
        "an agent reply to the lead's last text is queued"
        if result["agent_reply_queued"]
        else "no agent reply queued"
    )
    console.print(
        f"conversation {result['conversation_id']}: handed back to the agent; {queued}",
        highlight=False,
    )


@app.command()
def show(
    phone: str = typer.Argument(..., help="The contact's number, in any common format."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(200, min=1, help="At most this many messages (the newest)."),
) -> None:
    """Enrollments, conversations with their outcome, and the transcript of one contact."""
    number = e164(phone)
    with db.connect(settings().database_url, application="cli") as conn:
        report = db.contact_report(number, limit).run(conn)
    if report is None:
        fail(f"no contact with number {phones.mask(number)}")
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

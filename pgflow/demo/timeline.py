"""What the story sees and shows: the leads' state read from the database, every event
since the last look as one line of the timeline (through a `Display`), and waits for a
condition on that state with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg

from pgflow.db import demo as demo_db
from pgflow.demo.cast import Lead
from pgflow.demo.local import DemoError

WAIT = 30.0  # seconds any one beat of the story may take
State = dict[int, dict[str, Any]]  # per contact id: its demo_state row


class Display(Protocol):
    def step(self, text: str) -> None: ...

    def lead(self, elapsed: float, who: Lead, text: str, style: str = "") -> None: ...

    def note(self, elapsed: float, text: str) -> None: ...

    def summary(self, leads: list[Lead], state: State) -> None: ...

    def funnel(self, funnel: list[dict[str, Any]]) -> None: ...

    def pointers(self, lines: list[str]) -> None: ...


class Timeline:
    """The leads as the database has them; `check` raises when a part of the demo died."""

    def __init__(
        self,
        display: Display,
        conn: psycopg.Connection[Any],
        leads: list[Lead],
        started: float,
        check: Callable[[], None],
    ) -> None:
        self.display = display
        self.conn = conn
        self.leads = leads
        self.started = started
        self.check = check
        self.seen_event = 0
        self.seen_alert = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        self.display.note(self.elapsed(), text)

    def state(self) -> State:
        rows = demo_db.demo_state([lead.contact_id for lead in self.leads if lead.contact_id]).run(
            self.conn
        )
        return {int(r["contact_id"]): r for r in rows}

    def wait(self, condition: Callable[[State], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            self.pump()
            if condition(self.state()):
                self.pump()
                return
            if time.monotonic() > deadline:
                raise DemoError(f"waited {WAIT:.0f} s for {what}; see the logs")
            self.check()
            time.sleep(0.15)

    def pump(self) -> None:
        """Print what happened since the last look."""
        contacts = [lead.contact_id for lead in self.leads if lead.contact_id]
        if not contacts:
            return
        by_contact = {lead.contact_id: lead for lead in self.leads}
        rows = demo_db.timeline(contacts, self.seen_event, self.seen_alert).run(self.conn)
        for row in rows:
            if row["source"] == "alert":
                self.seen_alert = max(self.seen_alert, int(row["id"]))
            else:
                self.seen_event = max(self.seen_event, int(row["id"]))
            text = describe(row)
            lead = by_contact.get(row["contact_id"])
            if text and lead is not None:
                self.display.lead(self.elapsed(), lead, text[0], text[1])


def describe(row: dict[str, Any]) -> tuple[str, str] | None:
    """One timeline line (and its style) for an event, or None for noise."""
    entity, old, new = row["entity"], row["from_status"], row["to_status"]
    reason = row["reason"] or ""
    if entity == "alert":
        return f"alert: {reason}", "magenta"
    if entity == "contact":
        if new == "opted_out":
            return f"opted out ({reason})", "red"
        if new == "subscribed":
            return "resubscribed", "green"
        if new == "held" and old == "with_agent":
            return f"held for a person: the agent stays quiet ({reason})", "magenta"
        if new == "held":
            return f"a person holds the lead ({reason})", "magenta"
        if new == "with_agent":
            return f"back with the agent ({reason})", "cyan"
        return None
    if entity == "enrollment":
        if new == "paused":
            return "drip paused: the lead replied", "cyan"
        if new in ("opted_out", "stopped", "completed") and old:
            return f"drip {new} ({reason})", "dim"
        return None
    if entity == "conversation":
        if new == "engaged" and old == "open" and row.get("held"):
            return "engaged: the drip stops; a person holds the lead, the agent stays quiet", "cyan"
        if new == "engaged" and old == "open":
            return "engaged: the drip stops, the agent takes over", "cyan"
        if new == "ended":
            return (
                f"OUTCOME {row['conversion_status']} ({row['outcome_source']}): "
                f"{row['outcome_reason']}",
                "bold green",
            )
        return None
    body = _short(row["body"] or "")
    kind = row["kind"]
    if row["direction"] == "inbound":
        return f'<- "{body}"', "bold"
    who = {
        "campaign": f"step {row['step_position']}",
        "agent": "agent",
        "system": "system",
        "human": "person",
    }.get(kind, kind)
    if old is None and new == "queued":
        return (
            (f'-> {who} queued: "{body}"', "")
            if kind != "agent"
            else (f'-> agent writes: "{body}"', "")
        )
    if new == "sent":
        attempt = f" on attempt {row['attempts']}" if (row["attempts"] or 1) > 1 else ""
        return f"-> {who} sent{attempt}", "green"
    if new == "delivered":
        return f"-> {who} delivered (Twilio's receipt)", "green"
    if new == "failed":
        return f"x {who} undelivered ({row['delivery_error']})", "red"
    if old == "sending" and new == "queued":
        return f"x Retell refused ({reason}); the worker retries", "yellow"
    if new == "suppressed":
        return f"{who} suppressed ({row['delivery_error']})", "dim"
    if new == "dead_letter":
        return f"{who} dead letter ({row['delivery_error']})", "red"
    return None


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The clock moved forward: days pass in seconds, pgflow.tick() runs at injected times
(no waiting for pg_cron), each tick a line of the timeline."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg

from pgflow import db
from pgflow.demo.cast import Lead
from pgflow.demo.local import DemoError
from pgflow.demo.timeline import Timeline


class Clock:
    def __init__(self, conn: psycopg.Connection[Any], timeline: Timeline) -> None:
        self.conn = conn
        self.tl = timeline

    def tick(self, when: dt.datetime, why: str) -> None:
        """pgflow.tick() at an injected time (retried while pg_cron's own tick holds the lock)."""
        for _ in range(100):
            result = db.tick(when).run(self.conn)
            if not result.get("skipped"):
                self.tl.note(f"tick at {when:%a %d %b %H:%M} UTC ({why})")
                return
            time.sleep(0.1)
        raise DemoError("the tick stayed locked by another tick (pg_cron)")

    def advance_to_step(self, lead: Lead, step: int) -> None:
        """Tick at the step's due time; a due time outside the window (a Sunday, a night)
        moves it to the next opening, so tick again there, until the step is made."""
        sent_before = self.tl.state()[lead.contact_id]["sent"]
        for _ in range(5):
            state = self.tl.state()[lead.contact_id]
            if state["pending"] or state["sent"] > sent_before:
                break
            due = state["next_message_at"]
            if due is None:
                raise DemoError(f"{lead.name} has no step {step} to send")
            self.tick(due + dt.timedelta(minutes=1), f"{lead.name}'s step {step} due")
        self.tl.wait(
            lambda s: s[lead.contact_id]["sent"] > sent_before,
            f"{lead.name}'s step {step} to be sent",
        )

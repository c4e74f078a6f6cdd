"""The story itself: the set-up, the six leads' beats, the clock moved forward where a drip
waits days, then the summary, the funnel, the checks and where to look next."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
import time
import zoneinfo
from typing import Any

import psycopg

from pgflow import campaigns, db, errors, migrations, passwords
from pgflow.db import demo as demo_db
from pgflow.demo.cast import Lead, Window, choose_leads
from pgflow.demo.clock import Clock
from pgflow.demo.local import (
    CAMPAIGN_FILE,
    DB_SCRIPT,
    DemoError,
    given_url,
    run_dir,
    shown,
    start_local,
    state_dir,
    stop_command,
)
from pgflow.demo.stage import EVENTS_TOKEN, LEAD_TOKEN, Stage
from pgflow.demo.timeline import Display, State, Timeline

# The story runs on the demo's own copy of the example campaign (solar-q4 of
# examples/solar.yaml), which may send every day of the week: see CAMPAIGN_FILE.
CAMPAIGN = "solar-q4-demo"
TWILIO_CAMPAIGN = "solar-q4-twilio-demo"  # the same, its texts carried by Twilio
PERSON = "dana"  # the OS user the demo's person replies as (the actor is cli:dana)
DEMO_USER = "demo@pgflow.local"


@dataclasses.dataclass(frozen=True)
class Options:
    keep_running: bool = False
    port: int = 0  # the web server's; 0: a free one


class Story:
    """The demo itself: set-up, the six leads, the checks, the summary."""

    def __init__(self, display: Display, options: Options) -> None:
        self.display = display
        self.options = options
        self.given_url = given_url()  # DATABASE_URL; empty: the local cluster
        self.url = ""
        self.conn: psycopg.Connection[Any] | None = None
        self.stage = Stage(options.port)
        self.started = time.monotonic()
        self.run_started = dt.datetime.now(dt.UTC)
        self.leads: list[Lead] = []
        self.line = ""
        self.twilio_line = ""
        self.watch: Timeline | None = None
        self.model = os.environ.get("PGFLOW_LLM_MODEL", "").strip() or None

    # --- the whole run -------------------------------------------------------------------

    def run(self) -> list[str]:
        """The story; returns what did not go as it should (empty: all well). With a real
        model the outcomes are its judgment: the caller may treat them as notes."""
        try:
            self.set_up()
            self.play()
            return self.finish()
        finally:
            if not self.options.keep_running:
                self.tear_down()

    def tear_down(self) -> None:
        self.stage.stop()
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @property
    def db(self) -> psycopg.Connection[Any]:
        assert self.conn is not None
        return self.conn

    @property
    def tl(self) -> Timeline:
        assert self.watch is not None
        return self.watch

    # --- set-up ----------------------------------------------------------------------------

    def set_up(self) -> None:
        if self.given_url:
            self.display.step("the database: DATABASE_URL")
        else:
            where = state_dir(os.environ)
            self.display.step(f"starting the local database ({shown(DB_SCRIPT)}, {where})")
        self.url = self.given_url or start_local()
        applied = migrations.migrate(self.url)
        self.display.step(f"schema current ({len(applied)} migration(s) applied now)")
        self.conn = db.connect(self.url, application="demo")
        # one statement (one SQL function): atomic on the autocommit connection
        db.apply_campaigns(campaigns.load(CAMPAIGN_FILE).doc).run(self.db)
        self.display.step(f"campaigns applied from {shown(CAMPAIGN_FILE)}")
        self.display.step(f"the story runs on {CAMPAIGN}: the example's solar-q4, sending any day")
        row = demo_db.campaign(CAMPAIGN).run(self.db)
        if row is None:
            raise DemoError(f"campaign {CAMPAIGN} is missing from {shown(CAMPAIGN_FILE)}")
        self.line = str(row["from_number"])
        twilio = demo_db.campaign(TWILIO_CAMPAIGN).run(self.db)
        if twilio is None:
            raise DemoError(f"campaign {TWILIO_CAMPAIGN} is missing from {shown(CAMPAIGN_FILE)}")
        self.twilio_line = str(twilio["from_number"])
        self.display.step(f"Jo's campaign, {TWILIO_CAMPAIGN}, is the same on transport: twilio")
        self.leads = choose_leads(Window.of(row), self.db)
        self.watch = Timeline(self.display, self.db, self.leads, self.started, self.stage.check)
        logs = run_dir()
        self.stage.start(self.url, logs, twilio_numbers=[self.twilio_line])
        agent = f"the model {self.model}" if self.model else "the offline agent"
        self.display.step(
            f"sandbox Retell and Twilio on {self.stage.sandbox_url}, web on "
            f"{self.stage.web_url}, a worker; {agent}"
        )
        self.display.step(f"logs in {logs}")

    # --- the story ---------------------------------------------------------------------------

    def play(self) -> None:
        by = {lead.key: lead for lead in self.leads}
        self.tl.note("six leads arrive on POST /webhooks/leads")
        for lead in self.leads:
            self.arrive(lead)
        self.tl.wait(
            lambda s: all(
                s[by[k].contact_id]["sent"] >= 1 for k in ("sam", "pat", "lee", "ari", "jo")
            ),
            "step 1 for the five leads in their daytime",
        )
        self.tl.note("the leads answer (the sandbox plays their phones)")
        self.say(by["pat"], "STOP")
        self.say(by["kim"], "Hi - can I talk to a real person about this?")
        self.say(by["sam"], "Yes! How much does it cost?")
        self.say(by["ari"], "Maybe. What's involved?")
        self.tl.wait(
            lambda s: (
                s[by["pat"].contact_id]["conversion_status"] == "discarded"
                and s[by["kim"].contact_id]["conversion_status"] == "escalated"
                and all(s[by[k].contact_id]["pending"] == 0 for k in ("pat", "kim"))
                and all(s[by[k].contact_id]["agent_sent"] >= 1 for k in ("sam", "ari"))
            ),
            "the opt-out, the escalation and the agent's first replies",
        )
        self.say(by["sam"], "I own my home and the bill is about $200 a month")
        self.say(by["ari"], "I own it, but I'm just looking for now")
        self.tl.wait(
            lambda s: all(
                s[by[k].contact_id]["agent_sent"] >= 2 and s[by[k].contact_id]["pending"] == 0
                for k in ("sam", "ari")
            ),
            "the agent's second replies",
        )
        self.person_answers(by["jo"])
        self.tl.note("Sam books on the calendar: POST /webhooks/events")
        booked = self.stage.http.post(
            f"{self.stage.web_url}/webhooks/events",
            json={
                "type": "appointment_booked",
                "phone": by["sam"].phone,
                "data": {"note": "booked a 10-minute call from the calendar link"},
            },
            headers={"Authorization": f"Bearer {EVENTS_TOKEN}"},
        )
        if booked.status_code != 200:
            raise DemoError(f"the booking event was refused: {booked.status_code} {booked.text}")
        self.tl.wait(lambda s: s[by["sam"].contact_id]["conversion_status"] == "success", "success")
        self.move_clock(by["lee"], by["ari"])

    def arrive(self, lead: Lead) -> None:
        response = self.stage.http.post(
            f"{self.stage.web_url}/webhooks/leads",
            json={
                "campaign": TWILIO_CAMPAIGN if lead.twilio else CAMPAIGN,
                "phone": lead.phone,
                "first_name": lead.name,
                "timezone": lead.zone,
                "source": "demo",
                "consent": {"text": "I agree to receive texts from SunCo.", "source": "demo form"},
            },
            headers={"Authorization": f"Bearer {LEAD_TOKEN}"},
        )
        if response.status_code != 201:
            raise DemoError(f"lead {lead.name} was refused: {response.status_code} {response.text}")
        lead.contact_id = int(response.json()["contact_id"])
        local_time = dt.datetime.now(zoneinfo.ZoneInfo(lead.zone))
        self.display.lead(
            self.tl.elapsed(),
            lead,
            f"arrives (201), {lead.zone}, {local_time:%a %H:%M} there",
            "bold",
        )
        state = self.tl.state()[lead.contact_id]
        due = state["next_message_at"]
        if state["sent"] + state["pending"] == 0 and due is not None:
            opens = due.astimezone(zoneinfo.ZoneInfo(lead.zone))
            self.display.lead(
                self.tl.elapsed(),
                lead,
                f"night in {lead.zone}: step 1 deferred to {opens:%a %H:%M} there, not sent",
                "yellow",
            )

    def say(self, lead: Lead, text: str) -> None:
        assert self.stage.sandbox is not None
        line = self.twilio_line if lead.twilio else self.line
        result = self.stage.sandbox.say(lead.phone, line, text)
        if result["result"] != "delivered":
            raise DemoError(f"the sandbox dropped {lead.name}'s text: {result}")
        self.tl.pump()

    def person_answers(self, jo: Lead) -> None:
        """Jo is on Twilio: the carrier's receipt; Jo asks for a person; a person answers from
        the CLI (the text goes out as written, its receipt comes back); Jo's answer reaches
        the person and the agent stays quiet; the person settles it (success)."""
        jo_id = jo.contact_id
        self.tl.wait(lambda s: s[jo_id]["delivered"] >= 1, "Twilio's receipt for Jo's step 1")
        self.say(jo, "Can I talk to a real person instead?")
        self.tl.wait(
            lambda s: s[jo_id]["conversion_status"] == "escalated" and s[jo_id]["pending"] == 0,
            "Jo's escalation: the lead waits for a person",
        )
        text = "Hi Jo, this is Dana from SunCo. I can call you today at 3pm - does that work?"
        self.tl.note(f"a person answers from the CLI: pgflow conversations reply {jo.masked} ...")
        said = self.stage.run_cli(["conversations", "reply", jo.phone, text], PERSON)
        self.tl.note(said)
        self.tl.wait(lambda s: s[jo_id]["person_delivered"] >= 1, "the person's text delivered")
        self.say(jo, "Perfect, 3pm works. Thanks Dana!")
        self.tl.wait(
            lambda s: s[jo_id]["answers_waiting"] == 0,
            "Jo's answer recorded for the person; the agent stays quiet",
        )
        self.tl.note("the person settles it from the CLI: pgflow conversations set-outcome")
        said = self.stage.run_cli(
            [
                "conversations",
                "set-outcome",
                jo.phone,
                "success",
                "--reason",
                "Dana booked a call for 3pm by text",
            ],
            PERSON,
        )
        self.tl.note(said)
        self.tl.wait(lambda s: s[jo_id]["conversion_status"] == "success", "Jo's outcome")

    def move_clock(self, lee: Lead, ari: Lead) -> None:
        """Days pass in seconds: pgflow.tick() runs at injected times. A day on, Lee's step 2
        is due and Ari's conversation has been quiet past the silence timeout; then Lee's
        step 3; then Lee's reply timeout."""
        clock = Clock(self.db, self.tl)
        self.tl.note("the clock moves forward: a day passes")
        clock.advance_to_step(lee, 2)
        self.tl.wait(
            lambda s: (
                s[ari.contact_id]["status"] == "ended"
                or s[ari.contact_id]["review_reason"] is not None
            ),
            "Ari's classification (quiet past the silence timeout)",
        )
        self.tl.note("the clock moves forward: three more days")
        clock.advance_to_step(lee, 3)
        deadline = self.tl.state()[lee.contact_id]["reply_deadline_at"]
        if deadline is None:
            raise DemoError("Lee's conversation has no reply deadline after the last step")
        clock.tick(deadline + dt.timedelta(minutes=1), "Lee's reply timeout passes")
        self.tl.wait(
            lambda s: s[lee.contact_id]["conversion_status"] == "no_response", "no_response"
        )

    # --- the end ----------------------------------------------------------------------------------

    def finish(self) -> list[str]:
        state = self.tl.state()
        self.display.summary(self.leads, state)
        funnel = db.funnel(None, self.run_started).run(self.db)
        self.display.funnel([f for f in funnel if f["campaign"] in (CAMPAIGN, TWILIO_CAMPAIGN)])
        problems = self.check(state)
        sign_in = self.console_user() if self.options.keep_running else None
        self.display.pointers(self.pointers(sign_in))
        return problems

    def console_user(self) -> tuple[str, str]:
        """A console admin for this demo, with a fresh password (printed, never stored)."""
        password = "demo-" + secrets.token_urlsafe(9)
        hashed = passwords.hash_password(password)
        try:
            db.add_console_user(DEMO_USER, "admin", hashed, "demo").run(self.db)
        except errors.Conflict:
            db.change_console_user(DEMO_USER, "password", "demo", hashed).run(self.db)
        return DEMO_USER, password

    def pointers(self, sign_in: tuple[str, str] | None = None) -> list[str]:
        lines = []
        if sign_in is not None:
            lines.append(
                f"console: {self.stage.web_url}/console/  sign in as {sign_in[0]}"
                f" with password {sign_in[1]}"
            )
        if not self.given_url:
            lines.append(f"{'export DATABASE_URL=' + self.url:<50} # the local database")
        lines += [
            f"{'pgflow conversations show ' + repr(self.leads[0].phone):<50} # Sam's transcript",
            f"{'pgflow report --campaign ' + CAMPAIGN:<50} # the funnel",
            f"{'pgflow report --campaign ' + TWILIO_CAMPAIGN:<50} # with Twilio's receipts",
            f"{'pgflow conversations show ' + repr(self.leads[-1].phone):<50} # Jo and the person",
            f"{'pgflow conversations list':<50} # live conversations",
            f"{'pgflow conversations review':<50} # outcomes waiting for a person",
            f"{'pgflow status':<50} # health at a glance",
        ]
        if self.options.keep_running:
            lines += [
                f"curl {self.stage.web_url}/metrics | grep pgflow_campaign",
                f"curl -X POST {self.stage.web_url}/webhooks/leads -H 'Authorization: Bearer "
                f'{LEAD_TOKEN}\' -d \'{{"campaign": "{CAMPAIGN}", "phone": "(415) 555-0199",'
                ' "first_name": "You"}\'',
                f"PGFLOW_SMS_TRANSPORT=sandbox RETELL_BASE_URL={self.stage.sandbox_url} "
                "pgflow sandbox say '(415) 555-0199' 'hi!'",
            ]
        else:
            lines.append(f"{'pgflow demo --keep-running':<50} # leave it up, with curl examples")
        if not self.given_url:
            lines.append(f"{stop_command():<50} # stop the local database")
        return lines

    def check(self, state: State) -> list[str]:
        problems = []
        for lead in self.leads:
            got = state[lead.contact_id]["conversion_status"] or "(not ended)"
            if got != lead.expected:
                problems.append(f"{lead.name}: expected {lead.expected}, got {got}")
        for lead in self.leads:
            row = state[lead.contact_id]
            if lead.twilio and row["person_delivered"] < 1:
                problems.append(f"{lead.name}: the person's text was not delivered")
            if row["agent_after_person"]:
                problems.append(f"{lead.name}: the agent texted while a person held the lead")
        return problems

    def keep_running(self) -> None:
        """Until SIGINT or SIGTERM: the server, the worker and the sandbox stay up."""
        try:
            self.stage.hold()
        finally:
            self.tear_down()

"""`pgflow demo`: the whole story on local defaults, through the real parts.

A local database (scripts/db.sh, as the tests use; or DATABASE_URL), the migrations and the
example campaigns; the sandbox transport in this process (Retell's API on 127.0.0.1, real
signed webhooks); `pgflow serve` and `pgflow worker` as child processes on free ports; the
offline agent unless PGFLOW_LLM_MODEL names a model. Five leads arrive by webhook:

  Sam  replies; the drip stops; the agent talks until a booking arrives on /webhooks/events
  Pat  texts STOP: one confirmation, then silence
  Lee  never answers: steps 2 and 3 go out and then no_response (the clock is moved forward,
       not waited for)
  Kim  it is night where Kim is: step 1 waits for the window; Kim asks for a person anyway
  Ari  interested, books nothing: qualified by classification after the conversation goes quiet

Retell's first answer is a 500, so one send is retried before the story's eyes. What the
story needs from the database it reads through pgflow.db; what it shows is printed through
a `Display` (the CLI's, with rich)."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime as dt
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import psycopg

from pgflow import campaigns, db, migrations, phones
from pgflow.config import SANDBOX_API_KEY
from pgflow.errors import PgflowError
from pgflow.sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parent.parent
DB_SCRIPT = ROOT / "scripts" / "db.sh"
EXAMPLES = ROOT / "examples"
EXAMPLE_CAMPAIGN = "solar-q4"
# The story runs on a copy of the example campaign that may send every day of the week:
# the example leaves Sundays out, and on a Sunday no time zone on earth has its window open
# for hours, so the demo could not show a lead answered at once. Quiet hours still hold.
CAMPAIGN = "solar-q4-demo"
EVERY_DAY = [1, 2, 3, 4, 5, 6, 7]
LEAD_TOKEN = "demo-lead-token"  # noqa: S105 - the local demo's own servers only
EVENTS_TOKEN = "demo-events-token"  # noqa: S105
WAIT = 30.0  # seconds any one beat of the story may take
AREA_CODES = ("212", "312", "415", "512", "617", "702", "718", "917", "305", "404", "206")
DAY_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
)
NIGHT_ZONES = (
    "Asia/Tokyo",
    "Australia/Sydney",
    "Europe/London",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Asia/Kolkata",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Dubai",
)


class DemoError(PgflowError):
    code = "demo"


class Display(Protocol):
    def step(self, text: str) -> None: ...

    def lead(self, elapsed: float, who: Lead, text: str, style: str = "") -> None: ...

    def note(self, elapsed: float, text: str) -> None: ...

    def summary(self, leads: list[Lead], state: dict[int, dict[str, Any]]) -> None: ...

    def funnel(self, funnel: list[dict[str, Any]]) -> None: ...

    def pointers(self, lines: list[str]) -> None: ...


@dataclasses.dataclass
class Lead:
    key: str
    name: str
    role: str
    expected: str
    zone: str
    phone: str = ""
    contact_id: int = 0

    @property
    def masked(self) -> str:
        return phones.mask(self.phone)


@dataclasses.dataclass(frozen=True)
class Options:
    keep_running: bool = False
    port: int = 0  # the web server's; 0: a free one
    sandbox_port: int = 0


class Child:
    """A `pgflow` command in a child process, its output in a log file; it dies with us."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pgflow.cli.main", *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the demo dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def demo_copy(doc: dict[str, Any]) -> dict[str, Any]:
    """A campaign file's document with the demo's copy of the example campaign added."""
    items = list(doc.get("campaigns") or [])
    for item in items:
        if item.get("slug") == EXAMPLE_CAMPAIGN:
            copy = {**item, "slug": CAMPAIGN, "name": f"{item['name']} (demo)"}
            items.append({**copy, "window_days": EVERY_DAY})
            break
    return {**doc, "campaigns": items}


def database_url() -> str:
    """DATABASE_URL, else the local cluster of scripts/db.sh (started, installed if needed)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    if not DB_SCRIPT.exists():
        raise DemoError("set DATABASE_URL (scripts/db.sh, which starts a local one, is not here)")
    out = subprocess.run([str(DB_SCRIPT), "up"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise DemoError(f"the local database did not start: {out.stderr.strip()[-500:]}")
    return out.stdout.strip().splitlines()[-1]


class Story:
    """The demo itself: set-up, the five leads, the checks, the summary."""

    def __init__(self, display: Display, options: Options) -> None:
        self.display = display
        self.options = options
        self.url = ""
        self.conn: psycopg.Connection[Any] | None = None
        self.children: list[Child] = []
        self.sandbox: Sandbox | None = None
        self.web_url = ""
        self.http = httpx.Client(timeout=15)
        self.started = time.monotonic()
        self.run_started = dt.datetime.now(dt.UTC)
        self.leads: list[Lead] = []
        self.seen_event = 0
        self.seen_alert = 0
        self.line = ""
        self.window: dict[str, Any] = {}
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
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.http.close()

    @property
    def db(self) -> psycopg.Connection[Any]:
        assert self.conn is not None
        return self.conn

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- set-up ----------------------------------------------------------------------------

    def set_up(self) -> None:
        self.display.step("starting the local database (scripts/db.sh)")
        self.url = database_url()
        applied = migrations.migrate(self.url)
        self.display.step(f"schema current ({len(applied)} migration(s) applied now)")
        self.conn = db.connect(self.url, application="demo")
        for path in sorted(EXAMPLES.glob("*.yaml")):
            doc = demo_copy(campaigns.load(path).doc)
            with db.connect(self.url, autocommit=False, application="demo") as conn:
                db.apply_campaigns(doc).run(conn)
                conn.commit()
            self.display.step(f"campaigns applied from {path.relative_to(ROOT)}")
        self.display.step(f"the story runs on {CAMPAIGN}: {EXAMPLE_CAMPAIGN}, sending any day")
        self.window = self.campaign_window()
        self.choose_leads()
        run_dir = self.run_dir()
        web_port = self.options.port or free_port()
        self.web_url = f"http://127.0.0.1:{web_port}"
        self.sandbox = Sandbox(
            SANDBOX_API_KEY,
            port=self.options.sandbox_port,
            webhook_url=f"{self.web_url}/webhooks/retell",
            webhook_retry_delay=0.5,
        ).start()
        self.sandbox.script(500)  # Retell's first answer fails: one send is retried
        env = self.child_env()
        self.children.append(
            Child("serve", ["serve", "--port", str(web_port)], env, run_dir / "serve.log")
        )
        self.children.append(
            Child(
                "worker",
                ["worker", "--poll", "0.5", "--retry-base", "1", "--concurrency", "10"],
                env,
                run_dir / "worker.log",
            )
        )
        self.wait_ready(run_dir)
        agent = f"the model {self.model}" if self.model else "the offline agent"
        self.display.step(
            f"sandbox Retell on {self.sandbox.url}, web on {self.web_url}, a worker; {agent}"
        )
        self.display.step(f"logs in {run_dir}")

    def campaign_window(self) -> dict[str, Any]:
        row = db.campaign(CAMPAIGN).run(self.db)
        if row is None:
            raise DemoError(f"campaign {EXAMPLE_CAMPAIGN} is missing from examples/")
        self.line = str(row["from_number"])
        return {
            "start": row["window_start"],
            "end": row["window_end"],
            "days": list(row["window_days"]),
            "silence": row["silence_timeout"],
        }

    def local_fit(self, zone: str, *, night: bool) -> bool:
        try:
            local = dt.datetime.now(zoneinfo.ZoneInfo(zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return False
        start = dt.datetime.combine(local.date(), self.window["start"], local.tzinfo)
        end = dt.datetime.combine(local.date(), self.window["end"], local.tzinfo)
        if night:
            return local < start - dt.timedelta(hours=2) or local > end + dt.timedelta(hours=1)
        in_days = local.isoweekday() in self.window["days"]
        return in_days and start + dt.timedelta(minutes=5) <= local <= end - dt.timedelta(hours=1)

    def choose_leads(self) -> None:
        everywhere = sorted(zoneinfo.available_timezones())
        day = next((z for z in (*DAY_ZONES, *everywhere) if self.local_fit(z, night=False)), None)
        night = next(
            (z for z in (*NIGHT_ZONES, *everywhere) if self.local_fit(z, night=True)), None
        )
        if day is None or night is None:
            raise DemoError("no time zone is inside (or outside) the send window right now")
        self.leads = [
            Lead("sam", "Sam", "replies, talks, books", "success", day),
            Lead("pat", "Pat", "texts STOP", "discarded", day),
            Lead("lee", "Lee", "never answers", "no_response", day),
            Lead("kim", "Kim", "night there; asks for a person", "escalated", night),
            Lead("ari", "Ari", "interested, books nothing", "qualified", day),
        ]
        candidates = [f"+1{a}55501{n:02d}" for a in AREA_CODES for n in range(100)]
        random.shuffle(candidates)
        free = db.unused_phones(candidates).run(self.db)
        if len(free) < len(self.leads):
            raise DemoError("no unused demo numbers left (+1 NXX 555-01xx)")
        for lead, phone in zip(self.leads, free, strict=False):
            lead.phone = phone

    def run_dir(self) -> Path:
        base = ROOT / ".pgflow" if (ROOT / ".pgflow").exists() else Path(tempfile.gettempdir())
        path = base / "demo" / time.strftime("%Y%m%d-%H%M%S")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def child_env(self) -> dict[str, str]:
        assert self.sandbox is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGFLOW_", "RETELL_"))}
        env.update(
            DATABASE_URL=self.url,
            PGFLOW_SMS_TRANSPORT="sandbox",
            RETELL_BASE_URL=self.sandbox.url,
            RETELL_API_KEY=SANDBOX_API_KEY,
            PGFLOW_LEAD_TOKEN=LEAD_TOKEN,
            PGFLOW_EVENTS_TOKEN=EVENTS_TOKEN,
            PGFLOW_LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        for name in ("PGFLOW_LLM_MODEL", "PGFLOW_LLM_API_BASE"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        return env

    def wait_ready(self, run_dir: Path) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            dead = [c for c in self.children if not c.alive()]
            if dead:
                tail = dead[0].log.read_text()[-800:]
                raise DemoError(f"pgflow {dead[0].name} exited; its log ends:\n{tail}")
            worker_up = "worker.started" in (run_dir / "worker.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if worker_up and self.http.get(f"{self.web_url}/readyz").status_code == 200:
                    return
            time.sleep(0.1)
        raise DemoError("the web server or the worker did not start within 30 s")

    # --- the story ---------------------------------------------------------------------------

    def play(self) -> None:
        by = {lead.key: lead for lead in self.leads}
        self.display.note(self.elapsed(), "five leads arrive on POST /webhooks/leads")
        for lead in self.leads:
            self.arrive(lead)
        self.wait(
            lambda s: all(s[by[k].contact_id]["sent"] >= 1 for k in ("sam", "pat", "lee", "ari")),
            "step 1 for the four leads in their daytime",
        )
        self.display.note(self.elapsed(), "the leads answer (the sandbox plays their phones)")
        self.say(by["pat"], "STOP")
        self.say(by["kim"], "Hi - can I talk to a real person about this?")
        self.say(by["sam"], "Yes! How much does it cost?")
        self.say(by["ari"], "Maybe. What's involved?")
        self.wait(
            lambda s: (
                s[by["pat"].contact_id]["conversion_status"] == "discarded"
                and s[by["kim"].contact_id]["conversion_status"] == "escalated"
                and all(s[by[k].contact_id]["pending"] == 0 for k in ("pat", "kim"))
                and self.agent_replies(by["sam"]) >= 1
                and self.agent_replies(by["ari"]) >= 1
            ),
            "the opt-out, the escalation and the agent's first replies",
        )
        self.say(by["sam"], "I own my home and the bill is about $200 a month")
        self.say(by["ari"], "I own it, but I'm just looking for now")
        self.wait(
            lambda s: (
                self.agent_replies(by["sam"]) >= 2
                and self.agent_replies(by["ari"]) >= 2
                and s[by["sam"].contact_id]["pending"] == 0
                and s[by["ari"].contact_id]["pending"] == 0
            ),
            "the agent's second replies",
        )
        self.display.note(self.elapsed(), "Sam books on the calendar: POST /webhooks/events")
        booked = self.http.post(
            f"{self.web_url}/webhooks/events",
            json={
                "type": "appointment_booked",
                "phone": by["sam"].phone,
                "data": {"note": "booked a 10-minute call from the calendar link"},
            },
            headers={"Authorization": f"Bearer {EVENTS_TOKEN}"},
        )
        if booked.status_code != 200:
            raise DemoError(f"the booking event was refused: {booked.status_code} {booked.text}")
        self.wait(lambda s: s[by["sam"].contact_id]["conversion_status"] == "success", "success")
        self.move_clock(by["lee"], by["ari"])

    def arrive(self, lead: Lead) -> None:
        response = self.http.post(
            f"{self.web_url}/webhooks/leads",
            json={
                "campaign": CAMPAIGN,
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
        local = dt.datetime.now(zoneinfo.ZoneInfo(lead.zone))
        self.display.lead(
            self.elapsed(), lead, f"arrives (201), {lead.zone}, {local:%a %H:%M} there", "bold"
        )
        state = self.state()[lead.contact_id]
        due = state["next_message_at"]
        if state["sent"] + state["pending"] == 0 and due is not None:
            opens = due.astimezone(zoneinfo.ZoneInfo(lead.zone))
            self.display.lead(
                self.elapsed(),
                lead,
                f"night in {lead.zone}: step 1 deferred to {opens:%a %H:%M} there, not sent",
                "yellow",
            )

    def say(self, lead: Lead, text: str) -> None:
        assert self.sandbox is not None
        result = self.sandbox.say(lead.phone, self.line, text)
        if result["result"] != "delivered":
            raise DemoError(f"the sandbox dropped {lead.name}'s text: {result}")
        self.pump()

    def agent_replies(self, lead: Lead) -> int:
        return int(self.state()[lead.contact_id]["agent_sent"])

    def move_clock(self, lee: Lead, ari: Lead) -> None:
        """Days pass in seconds: pgflow.tick() runs at injected times. A day on, Lee's step 2
        is due and Ari's conversation has been quiet past the silence timeout; then Lee's
        step 3; then Lee's reply timeout."""
        self.display.note(self.elapsed(), "the clock moves forward: a day passes")
        self.advance_to_step(lee, 2)
        self.wait(
            lambda s: (
                s[ari.contact_id]["status"] == "ended"
                or s[ari.contact_id]["review_reason"] is not None
            ),
            "Ari's classification (quiet past the silence timeout)",
        )
        self.display.note(self.elapsed(), "the clock moves forward: three more days")
        self.advance_to_step(lee, 3)
        deadline = self.state()[lee.contact_id]["reply_deadline_at"]
        if deadline is None:
            raise DemoError("Lee's conversation has no reply deadline after the last step")
        self.tick(deadline + dt.timedelta(minutes=1), "Lee's reply timeout passes")
        self.wait(lambda s: s[lee.contact_id]["conversion_status"] == "no_response", "no_response")

    def advance_to_step(self, lee: Lead, step: int) -> None:
        """Tick at the step's due time; a due time outside the window (a Sunday, a night)
        moves it to the next opening, so tick again there, until the step is made."""
        sent_before = self.state()[lee.contact_id]["sent"]
        for _ in range(5):
            state = self.state()[lee.contact_id]
            if state["pending"] or state["sent"] > sent_before:
                break
            due = state["next_message_at"]
            if due is None:
                raise DemoError(f"Lee has no step {step} to send")
            self.tick(due + dt.timedelta(minutes=1), f"Lee's step {step} due")
        self.wait(
            lambda s: s[lee.contact_id]["sent"] > sent_before, f"Lee's step {step} to be sent"
        )

    def tick(self, when: dt.datetime, why: str) -> None:
        """pgflow.tick() at an injected time (retried while pg_cron's own tick holds the lock)."""
        for _ in range(100):
            result = db.tick(when).run(self.db)
            if not result.get("skipped"):
                self.display.note(self.elapsed(), f"tick at {when:%a %d %b %H:%M} UTC ({why})")
                return
            time.sleep(0.1)
        raise DemoError("the tick stayed locked by another tick (pg_cron)")

    # --- watching ------------------------------------------------------------------------------

    def state(self) -> dict[int, dict[str, Any]]:
        rows = db.demo_state([lead.contact_id for lead in self.leads if lead.contact_id]).run(
            self.db
        )
        return {int(r["contact_id"]): r for r in rows}

    def wait(self, condition: Callable[[dict[int, dict[str, Any]]], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            self.pump()
            if condition(self.state()):
                self.pump()
                return
            if time.monotonic() > deadline:
                raise DemoError(f"waited {WAIT:.0f} s for {what}; see the logs")
            for child in self.children:
                if not child.alive():
                    raise DemoError(f"pgflow {child.name} exited during the demo ({child.log})")
            time.sleep(0.15)

    def pump(self) -> None:
        """Print what happened since the last look."""
        contacts = [lead.contact_id for lead in self.leads if lead.contact_id]
        if not contacts:
            return
        by_contact = {lead.contact_id: lead for lead in self.leads}
        rows = db.timeline(contacts, self.seen_event, self.seen_alert).run(self.db)
        for row in rows:
            if row["source"] == "alert":
                self.seen_alert = max(self.seen_alert, int(row["id"]))
            else:
                self.seen_event = max(self.seen_event, int(row["id"]))
            text = describe(row)
            lead = by_contact.get(row["contact_id"])
            if text and lead is not None:
                self.display.lead(self.elapsed(), lead, text[0], text[1])

    # --- the end ----------------------------------------------------------------------------------

    def finish(self) -> list[str]:
        state = self.state()
        self.display.summary(self.leads, state)
        self.display.funnel(db.funnel(CAMPAIGN, self.run_started).run(self.db))
        problems = self.check(state)
        pointers = [
            f"{'pgflow conversations show ' + repr(self.leads[0].phone):<50} # Sam's transcript",
            f"{'pgflow report --campaign ' + CAMPAIGN:<50} # the funnel",
            f"{'pgflow conversations list':<50} # live conversations",
            f"{'pgflow conversations review':<50} # outcomes waiting for a person",
            f"{'pgflow status':<50} # health at a glance",
        ]
        if self.options.keep_running:
            pointers += [
                f"curl {self.web_url}/metrics | grep pgflow_campaign",
                f"curl -X POST {self.web_url}/webhooks/leads -H 'Authorization: Bearer "
                f'{LEAD_TOKEN}\' -d \'{{"campaign": "{CAMPAIGN}", "phone": "(415) 555-0199",'
                ' "first_name": "You"}\'',
                f"PGFLOW_SMS_TRANSPORT=sandbox RETELL_BASE_URL={self.sandbox_url()} "
                "pgflow sandbox say '(415) 555-0199' 'hi!'",
            ]
        else:
            pointers.append(f"{'pgflow demo --keep-running':<50} # leave it up, with curl examples")
        self.display.pointers(pointers)
        return problems

    def sandbox_url(self) -> str:
        return self.sandbox.url if self.sandbox is not None else ""

    def check(self, state: dict[int, dict[str, Any]]) -> list[str]:
        problems = []
        for lead in self.leads:
            got = state[lead.contact_id]["conversion_status"] or "(not ended)"
            if got != lead.expected:
                problems.append(f"{lead.name}: expected {lead.expected}, got {got}")
        return problems

    def keep_running(self) -> None:
        """Until SIGINT or SIGTERM: the server, the worker and the sandbox stay up."""
        done = threading.Event()
        previous = {
            s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            while not done.wait(0.5):
                for child in self.children:
                    if not child.alive():
                        raise DemoError(f"pgflow {child.name} exited ({child.log})")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.tear_down()


def describe(row: dict[str, Any]) -> tuple[str, str] | None:
    """One timeline line (and its style) for an event, or None for noise."""
    entity, old, new = row["entity"], row["from_status"], row["to_status"]
    reason = row["reason"] or ""
    if entity == "alert":
        return f"alert: {reason}", "magenta"
    if entity == "contact":
        return (f"opted out ({reason})", "red") if new == "opted_out" else ("resubscribed", "green")
    if entity == "enrollment":
        if new == "paused":
            return "drip paused: the lead replied", "cyan"
        if new in ("opted_out", "stopped", "completed") and old:
            return f"drip {new} ({reason})", "dim"
        return None
    if entity == "conversation":
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
    who = {"campaign": f"step {row['step_position']}", "agent": "agent", "system": "system"}.get(
        kind, kind
    )
    if old is None and new == "queued":
        return (
            (f'-> {who} queued: "{body}"', "")
            if kind != "agent"
            else (f'-> agent writes: "{body}"', "")
        )
    if new == "sent":
        attempt = f" on attempt {row['attempts']}" if (row["attempts"] or 1) > 1 else ""
        return f"-> {who} sent{attempt}", "green"
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

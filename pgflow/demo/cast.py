"""The cast: six leads (Jo on the Twilio campaign), each with a role and the outcome it
should end in, a time zone where it is day inside the campaign's send window right now
(night, for Kim), and a phone number no contact has yet (+1 NXX 555-01xx: fictional
numbers)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import zoneinfo
from typing import Any

import psycopg

from pgflow import phones
from pgflow.db import demo as demo_db
from pgflow.demo.local import DemoError

# no area code of a state with rules of its own (FL, TX, ...): their hours are narrower than
# the demo's window, and the story times each beat by that window alone
AREA_CODES = ("212", "312", "415", "617", "702", "718", "917", "404", "206", "646", "347")
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


@dataclasses.dataclass
class Lead:
    key: str
    name: str
    role: str
    expected: str
    zone: str
    phone: str = ""
    contact_id: int = 0
    twilio: bool = False  # on the campaign whose texts Twilio carries

    @property
    def masked(self) -> str:
        return phones.mask(self.phone)


@dataclasses.dataclass(frozen=True)
class Window:
    """The campaign's send window, in each lead's own time zone."""

    start: dt.time
    end: dt.time
    days: list[int]

    @classmethod
    def of(cls, campaign: dict[str, Any]) -> Window:
        """From the campaign's row."""
        return cls(campaign["window_start"], campaign["window_end"], list(campaign["window_days"]))

    def fits(self, zone: str, *, night: bool) -> bool:
        """Day: well inside the window there (an hour to spare); night: well outside it."""
        try:
            local = dt.datetime.now(zoneinfo.ZoneInfo(zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return False
        start = dt.datetime.combine(local.date(), self.start, local.tzinfo)
        end = dt.datetime.combine(local.date(), self.end, local.tzinfo)
        if night:
            return local < start - dt.timedelta(hours=2) or local > end + dt.timedelta(hours=1)
        in_days = local.isoweekday() in self.days
        return in_days and start + dt.timedelta(minutes=5) <= local <= end - dt.timedelta(hours=1)


def choose_leads(window: Window, conn: psycopg.Connection[Any]) -> list[Lead]:
    """The six leads, in the order they arrive, each with a zone and an unused number."""
    everywhere = sorted(zoneinfo.available_timezones())
    day = next((z for z in (*DAY_ZONES, *everywhere) if window.fits(z, night=False)), None)
    night = next((z for z in (*NIGHT_ZONES, *everywhere) if window.fits(z, night=True)), None)
    if day is None or night is None:
        raise DemoError("no time zone is inside (or outside) the send window right now")
    leads = [
        Lead("sam", "Sam", "replies, talks, books", "success", day),
        Lead("pat", "Pat", "texts STOP", "discarded", day),
        Lead("lee", "Lee", "never answers", "no_response", day),
        Lead("kim", "Kim", "night there; asks for a person", "escalated", night),
        Lead("ari", "Ari", "interested, books nothing", "qualified", day),
        Lead("jo", "Jo", "on Twilio; a person answers, books", "success", day, twilio=True),
    ]
    candidates = [f"+1{a}55501{n:02d}" for a in AREA_CODES for n in range(100)]
    random.shuffle(candidates)
    free = demo_db.unused_phones(candidates).run(conn)
    if len(free) < len(leads):
        raise DemoError("no unused demo numbers left (+1 NXX 555-01xx)")
    for lead, phone in zip(leads, free, strict=False):
        lead.phone = phone
    return leads

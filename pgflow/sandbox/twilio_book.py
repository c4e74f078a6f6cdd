"""What the sandbox's Twilio face remembers: Message resources (ours and the lead's),
IncomingPhoneNumber resources, which lines are Twilio's, the opted-out (line, lead) pairs
and the scripted outcomes and refusals; plus Twilio's error JSON, dates and SIDs.

Shapes follow Twilio's REST API 2010-04-01 (snake_case JSON, RFC 2822 dates, counts as
strings), as the official SDK reads them."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import email.utils
import itertools
import secrets
import threading
from typing import Any
from urllib.parse import urlencode

API_VERSION = "2010-04-01"

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
KEYWORDS = {
    **dict.fromkeys(OPT_OUT, "STOP"),
    **dict.fromkeys(OPT_IN, "START"),
    **dict.fromkeys(HELP, "HELP"),
}  # a text of one keyword -> Twilio's OptOutType
# Twilio's default answers to the keywords (Advanced Opt-Out on, nothing customised).
AUTO_REPLIES = {
    "STOP": "You have successfully been unsubscribed. You will not receive any more messages "
    "from this number. Reply START to resubscribe.",
    "START": "You have successfully been re-subscribed to messages from this number. "
    "Reply HELP for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
    "HELP": "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}

ERRORS = {
    20001: "Invalid parameter",
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "The 'To' number is not a valid phone number.",
    21212: "The 'From' number is not a valid phone number, shortcode, or alphanumeric sender ID.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid 'StatusCallback'",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21624: "Invalid validity period value",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    30034: "Message from an unregistered number",
}
OUTCOMES = ("delivered", "sent", "undelivered", "failed")
DEFAULT_ERROR = {"undelivered": 30003, "failed": 30008}


def twilio_error(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    """Twilio's error JSON (the legacy shape the SDK and our client read)."""
    return {
        "code": code,
        "message": message or ERRORS.get(code, f"Error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioRefusal(Exception):
    """A request refused with Twilio's error JSON."""

    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = twilio_error(status, code, message)


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(when: dt.datetime | None) -> str | None:
    """`Thu, 24 Aug 2023 05:01:45 +0000`, as Twilio writes dates."""
    return None if when is None else email.utils.format_datetime(when.replace(microsecond=0))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class Sms:
    """One Message resource: ours (outbound-api) or the lead's (inbound)."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    direction: str
    status: str
    segments: int
    seq: int
    status_callback: str | None = None
    outcome: tuple[str, int | None] = ("delivered", None)
    error_code: int | None = None
    created: dt.datetime = dataclasses.field(default_factory=utcnow)
    updated: dt.datetime = dataclasses.field(default_factory=utcnow)
    sent: dt.datetime | None = None

    def resource(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.created),
            "date_sent": rfc2822(self.sent),
            "date_updated": rfc2822(self.updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": None if self.error_code is None else ERRORS.get(self.error_code),
            "from": self.from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(self.segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }

    def steps(self) -> list[tuple[str, int | None]]:
        """The statuses it goes through after `queued`, each with its error code."""
        final, code = self.outcome
        if final == "failed":
            return [("failed", code)]
        return [("sent", None)] if final == "sent" else [("sent", None), (final, code)]


def number_resource(account_sid: str, number: str) -> dict[str, Any]:
    """A new IncomingPhoneNumber resource: SMS and voice capable, nothing configured."""
    sid = new_sid("PN")
    now = rfc2822(utcnow())
    digits = number.removeprefix("+1")
    friendly = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}" if len(digits) == 10 else number
    return {
        "account_sid": account_sid,
        "address_requirements": "none",
        "api_version": API_VERSION,
        "capabilities": {"fax": False, "mms": True, "sms": True, "voice": True},
        "date_created": now,
        "date_updated": now,
        "friendly_name": friendly,
        "origin": "twilio",
        "phone_number": number,
        "sid": sid,
        "sms_application_sid": "",
        "sms_fallback_method": "POST",
        "sms_fallback_url": "",
        "sms_method": "POST",
        "sms_url": "",
        "status": "in-use",
        "status_callback": "",
        "status_callback_method": "POST",
        "uri": f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json",
        "voice_method": "POST",
        "voice_url": "",
    }


class TwilioBook:
    """The Twilio face's memory, behind one lock (see the module docstring)."""

    def __init__(self, account_sid: str, lines: list[str] | None = None) -> None:
        self.account_sid = account_sid
        self.lock = threading.RLock()
        self.messages: dict[str, Sms] = {}
        self.numbers: dict[str, dict[str, Any]] = {}  # E.164 -> IncomingPhoneNumber
        self.lines: set[str] = set(lines or [])  # our numbers whose texts Twilio carries
        self.opted_out: set[tuple[str, str]] = set()  # (line, lead)
        self.outcomes: dict[str, tuple[str, int | None]] = {}  # lead -> how texts end
        self.refusals: dict[str, tuple[int, int]] = {}  # To -> (HTTP status, code)
        self._seq = itertools.count(1)
        for line in self.lines:
            self.number(line)

    def clear(self) -> None:
        """Forget messages, opt-outs and scripts (the numbers and lines stay)."""
        with self.lock:
            self.messages.clear()
            self.opted_out.clear()
            self.outcomes.clear()
            self.refusals.clear()

    def add(self, **fields: Any) -> Sms:
        with self.lock:
            sms = Sms(
                sid=new_sid("SM"), account_sid=self.account_sid, seq=next(self._seq), **fields
            )
            self.messages[sms.sid] = sms
            return sms

    def advance(self, sid: str, status: str, code: int | None) -> tuple[Sms | None, str | None]:
        """Message `sid` moves to `status`; returns a copy and its StatusCallback URL."""
        with self.lock:
            sms = self.messages.get(sid)
            if sms is None:  # forgotten by a reset meanwhile
                return None, None
            sms.status, sms.updated = status, utcnow()
            sms.sent = sms.sent or sms.updated
            if code is not None:
                sms.error_code = code
            return copy.copy(sms), sms.status_callback

    def number(self, number: str) -> dict[str, Any]:
        """The IncomingPhoneNumber resource of one of our numbers (made on first use)."""
        with self.lock:
            if number not in self.numbers:
                self.numbers[number] = number_resource(self.account_sid, number)
            return self.numbers[number]

    def sms_url(self, line: str) -> str | None:
        """Where texts to `line` are POSTed, when its SmsUrl was set."""
        with self.lock:
            url = self.numbers.get(line, {}).get("sms_url")
        return str(url) if url else None


def phone_filter(value: str) -> str:
    """A phone filter as sent: a `+` left unencoded in a query arrives as a space."""
    value = value.strip()
    return f"+{value}" if value[:1].isdigit() else value


def page_of(
    key: str, route: str, filters: dict[str, str], query: dict[str, str], found: list[Any]
) -> dict[str, Any]:
    """One page of a Twilio list (PageSize 1..1000, default 50; Page from 0)."""
    try:
        size, page = int(query.get("PageSize") or 50), int(query.get("Page") or 0)
    except ValueError:
        raise TwilioRefusal(400, 20001, "Invalid PageSize or Page") from None
    if not 1 <= size <= 1000 or page < 0:
        raise TwilioRefusal(400, 20001, "Invalid PageSize or Page")
    start = page * size
    records = found[start : start + size]

    def uri(number: int) -> str:
        return f"{route}?{urlencode({**filters, 'PageSize': size, 'Page': number})}"

    return {
        key: records,
        "end": start + max(len(records) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if start + size < len(found) else None,
        "page": page,
        "page_size": size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": uri(page),
    }

"""The fake Twilio of the tests: a real HTTP server on 127.0.0.1 speaking Twilio's
Programmable Messaging REST API (2010-04-01) as the official `twilio` SDK calls it, and
posting status callbacks and inbound-message webhooks signed like Twilio's.

In a test:

    with FakeTwilio(inbound_url=app_url + "/twilio/inbound") as fake:
        client = fake.client(timeout=1.0)           # a twilio.rest.Client aimed at the fake
        fake.outcome(LEAD, ("undelivered", 30006))  # per recipient; default "delivered"
        fake.script(429, "timeout")                 # the next creates: a 429, then a lost answer
        msg = client.messages.create(to=LEAD, from_=LINE, body="hi", status_callback=url)
        fake.wait_for_callbacks(2)                  # sent, then undelivered (ErrorCode=30006)
        fake.text_in(LEAD, LINE, "STOP")            # signed inbound webhook; LEAD now 21610

What it does like Twilio (see /work/shared/notes/twilio.md, section B):
- Basic auth `AccountSid:AuthToken` (or an API key from `api_keys`), else 401/20003.
- Create answers 201 with the Message resource (exactly the keys `MessageInstance` reads),
  status `queued`, or `accepted` with a MessagingServiceSid (then `from` is null and
  `num_segments` "0" until a sender is assigned). Errors are Twilio's legacy error JSON:
  21604 no To, 21603 no From/MessagingServiceSid, 21602 no Body, 21211 bad To, 21212 bad
  From, 21617 body over 1600 chars, 21624 ValidityPeriod outside 1..36000, 21609 bad
  StatusCallback, 21610 unsubscribed To, and Twilio's magic test numbers (+15005550001..9).
- No callback for the initial status. Then, in a background thread, one message at a time:
  `sent` -> `delivered` (or the recipient's outcome); a Messaging Service message first
  goes `queued` (with a callback). `failed` skips `sent`. `date_sent` is set when the
  message leaves the queue. Callbacks carry MessageSid, SmsSid, AccountSid, From, To,
  ApiVersion, MessageStatus, SmsStatus (+ ErrorCode, MessagingServiceSid), the
  X-Twilio-Signature header and an I-Twilio-Idempotency-Token that repeats of one event
  share; a connection failure is retried once (Twilio's default), an HTTP error is not.
- List filters To, From, DateSent, DateSent<, DateSent> (GMT, day granularity, inclusive;
  a message not yet sent has no date_sent and matches no DateSent filter), newest first,
  PageSize/Page/PageToken paging with next_page_uri.
- IncomingPhoneNumbers: the account's numbers (`add_number`, each with its sms_url,
  sms_method, ...) listed with the PhoneNumber filter (a part of a number matches, `*` is
  any digit, as Twilio documents) and FriendlyName, PageSize/Page paging; one fetched or
  updated by its PN sid (form fields SmsUrl, SmsMethod, StatusCallback, VoiceUrl, ...: a
  bad URL is 400/21502, a method not GET/POST 400/20001; an empty value clears a URL).
  Every key `IncomingPhoneNumberInstance` reads is there, unset URLs as "" like Twilio.
- An inbound STOP/STOPALL/UNSUBSCRIBE/CANCEL/END/QUIT (`text_in`) unsubscribes the sender
  (later sends to it get 21610); START/YES/UNSTOP resubscribes. The unsubscribed list is
  per recipient, whatever the sender (Twilio scopes it per sender or Messaging Service).

Faults (`script`): an int status (429 -> 20429, 500 -> 20500, ...: nothing is created),
`(status, code)` (a Twilio error with that code), "drop" (the connection closes, nothing
created), "timeout" (the message IS created and proceeds, the answer stalls until the
client gives up or `stall_seconds`, then the connection closes), "lost" (created, the
connection closes at once).
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import dataclasses
import datetime as dt
import email.utils
import math
import queue
import re
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from pgflow.sandbox.http import Handler, Server

__all__ = [
    "API_VERSION",
    "SIGNATURE_HEADER",
    "Callback",
    "FakeTwilio",
    "Fault",
    "Outcome",
    "TwilioRequest",
    "twilio_error",
]

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
USER_AGENT = "TwilioProxy/1.1"
MAX_BODY = 1600
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})

# "delivered" | "sent" | "queued" (never leaves the queue) | ("undelivered", 30006) | ...
Outcome = str | tuple[str, int]
# 429 | 500 | (400, 21614) | "timeout" | "drop" | "lost"
Fault = int | str | tuple[int, int]

FINAL_STATUSES = frozenset({"queued", "sent", "delivered", "undelivered", "failed"})
DEFAULT_ERROR = {"undelivered": 30003, "failed": 30008}

ERROR_MESSAGES: dict[int, str] = {
    20001: "Invalid parameter",
    20003: "Authenticate",
    20004: "Method not allowed",
    20403: "Forbidden",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21212: "The 'From' number {from_} is not a valid phone number, shortcode, or "
    "alphanumeric sender ID.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
    "'To' number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21606: "The From phone number {from_} is not a valid, SMS-capable inbound phone number or "
    "short code for your account.",
    21609: "Invalid 'StatusCallback'",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone "
    "number: {from_} via SMS.",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21502: "Invalid callback url",
    21624: "Invalid validity period value",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    30034: "Message from an unregistered number",
}

# A scripted error status -> Twilio's code for it.
STATUS_CODES = {
    400: 20001,
    401: 20003,
    403: 20403,
    404: 20404,
    405: 20004,
    429: 20429,
    500: 20500,
    503: 20503,
}

# Twilio's magic numbers for test credentials (twilio.com/docs/iam/test-credentials).
MAGIC_TO = {
    "+15005550001": 21211,
    "+15005550002": 21612,
    "+15005550003": 21408,
    "+15005550004": 21610,
    "+15005550009": 21614,
}
MAGIC_FROM = {"+15005550001": 21212, "+15005550007": 21606, "+15005550008": 21611}

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
SHORT_CODE = re.compile(r"^\d{5,6}$")
CHANNEL = re.compile(r"^[a-z]+:")  # whatsapp:+1..., messenger:...
MESSAGES_ROUTE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
MESSAGE_ROUTE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$")
NUMBERS_ROUTE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/IncomingPhoneNumbers\.json$")
NUMBER_ROUTE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/IncomingPhoneNumbers/([^/]+)\.json$")
# The update fields of an IncomingPhoneNumber the fake keeps -> the resource's key.
NUMBER_URLS = {
    "SmsUrl": "sms_url",
    "SmsFallbackUrl": "sms_fallback_url",
    "StatusCallback": "status_callback",
    "VoiceUrl": "voice_url",
    "VoiceFallbackUrl": "voice_fallback_url",
}
NUMBER_METHODS = {
    "SmsMethod": "sms_method",
    "SmsFallbackMethod": "sms_fallback_method",
    "StatusCallbackMethod": "status_callback_method",
    "VoiceMethod": "voice_method",
    "VoiceFallbackMethod": "voice_fallback_method",
}
NUMBER_TEXTS = {
    "FriendlyName": "friendly_name",
    "SmsApplicationSid": "sms_application_sid",
    "VoiceApplicationSid": "voice_application_sid",
}

GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


def twilio_error(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    """Twilio's (legacy) error JSON, the shape the SDK turns into TwilioRestException."""
    return {
        "code": code,
        "message": message or ERROR_MESSAGES.get(code, f"Error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def segments(body: str) -> int:
    """SMS segments of `body`: GSM-7 (160 alone, 153 a part; extension characters count
    twice) or else UCS-2 (70 alone, 67 a part, in UTF-16 code units)."""
    if all(c in GSM7 or c in GSM7_EXTENDED for c in body):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in body)
        single, part = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


def rfc2822(when: dt.datetime | None) -> str | None:
    """`Thu, 24 Aug 2023 05:01:45 +0000`, as Twilio writes dates."""
    if when is None:
        return None
    return email.utils.format_datetime(when.astimezone(dt.UTC).replace(microsecond=0))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def normalize_outcome(outcome: Outcome) -> tuple[str, int | None]:
    status, code = (outcome, None) if isinstance(outcome, str) else outcome
    if status not in FINAL_STATUSES:
        raise ValueError(f"unknown outcome {outcome!r}; one of {sorted(FINAL_STATUSES)}")
    if status in DEFAULT_ERROR:
        return status, code if code is not None else DEFAULT_ERROR[status]
    if code is not None:
        raise ValueError(f"outcome {status!r} takes no error code")
    return status, None


def parse_day(value: str) -> dt.date:
    """A DateSent filter value: `YYYY-MM-DD` or an ISO timestamp (what the SDK sends for a
    date or datetime); only its GMT day counts."""
    text = value.strip()
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.date()


@dataclasses.dataclass(frozen=True)
class TwilioRequest:
    """One request as the fake received it. `path` has no query; `query` and `form` keep
    the first value of each name (`form_items` keeps all); header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    form_items: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic()


@dataclasses.dataclass(frozen=True)
class Callback:
    """One webhook POST the fake made (each attempt and each repeat is one)."""

    url: str
    params: dict[str, str]
    signature: str
    status: int | None  # the receiver's HTTP status; None when the connection failed
    error: str | None
    token: str  # I-Twilio-Idempotency-Token: the same for repeats of one event
    attempt: int  # 0, then 1 for the retry after a connection failure
    response_body: str
    sent_at: float  # time.monotonic()


@dataclasses.dataclass
class _Message:
    sid: str
    account_sid: str
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None
    status: str
    direction: str
    num_segments: int
    num_media: int
    created_at: dt.datetime
    updated_at: dt.datetime
    sent_at: dt.datetime | None
    status_callback: str | None
    validity_period: int | None
    outcome: tuple[str, int | None]
    seq: int
    error_code: int | None = None
    price: str | None = None

    def resource(self) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.created_at),
            "date_sent": rfc2822(self.sent_at),
            "date_updated": rfc2822(self.updated_at),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": (
                None if self.error_code is None else ERROR_MESSAGES.get(self.error_code)
            ),
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(self.num_media),
            "num_segments": str(self.num_segments),
            "price": self.price,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": f"{base}/Media.json",
                "feedback": f"{base}/Feedback.json",
            },
            "to": self.to,
            "uri": f"{base}.json",
        }


@dataclasses.dataclass
class _Number:
    """One IncomingPhoneNumber; `settings` holds its resource keys that an update changes."""

    sid: str
    account_sid: str
    phone_number: str
    settings: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime
    seq: int

    def resource(self) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": {"fax": False, "mms": True, "sms": True, "voice": True},
            "date_created": rfc2822(self.created_at),
            "date_updated": rfc2822(self.updated_at),
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": self.phone_number,
            "sid": self.sid,
            "status": "in-use",
            "subresource_uris": {
                "assigned_add_ons": f"{base}/AssignedAddOns.json",
            },
            "trunk_sid": None,
            "type": "local",
            "uri": f"{base}.json",
            "voice_caller_id_lookup": False,
            "voice_receive_mode": "voice",
            **self.settings,
        }


class _Refused(Exception):
    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.body = twilio_error(status, code, message)
        self.status = status


class FakeTwilio:
    """A Twilio look-alike on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str = "test-token",  # noqa: S107 (a test double's default)
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        inbound_url: str | None = None,
        messaging_service_sid: str | None = None,
        service_number: str = "+15005550006",
        api_keys: dict[str, str] | None = None,
        stall_seconds: float = 5.0,
        callback_timeout: float = 5.0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.account_sid = account_sid or new_sid("AC")
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self.inbound_url = inbound_url
        self.messaging_service_sid = messaging_service_sid  # put in inbound webhooks
        self.service_number = service_number  # the sender a Messaging Service assigns
        self.api_keys = dict(api_keys or {})  # SK... -> secret, also accepted as auth
        self.stall_seconds = stall_seconds
        self.callback_timeout = callback_timeout
        self.clock = clock or utcnow
        # behaviour switches, read as each message progresses
        self.default_outcome: Outcome = "delivered"
        self.callbacks = True  # False: statuses still change, no callback is posted
        self.callback_order: Literal["in_order", "reversed"] = "in_order"
        self.repeat_callbacks = 1  # each callback posted this many times
        self.callback_retries = 1  # retries after a connection failure (Twilio: 1)

        self._cond = threading.Condition()
        self._requests: list[TwilioRequest] = []
        self._messages: dict[str, _Message] = {}
        self._numbers: dict[str, _Number] = {}  # sid -> number
        self._callbacks: list[Callback] = []
        self._inbound: list[Callback] = []
        self._outcomes: dict[str, tuple[str, int | None]] = {}
        self._unsubscribed: set[str] = set()
        self._script: collections.deque[Fault] = collections.deque()
        self._seq = 0
        self._busy = 0
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._carrier: threading.Thread | None = None
        self._http: httpx.Client | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the fake Twilio is already started")
        self._stopping.clear()
        self._queue = queue.Queue()  # nothing left over from an earlier run
        self._busy = 0
        self._http = httpx.Client(timeout=self.callback_timeout)
        self._server = Server((self.host, self.port), self._serve)
        self.port = self._server.port
        self._server.start()
        self._carrier = threading.Thread(target=self._run, name="fake-twilio", daemon=True)
        self._carrier.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._queue.put(None)
        if self._carrier is not None:
            self._carrier.join(timeout=5)
            self._carrier = None
        self._server.stop()
        self._server = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`: what replaces `https://api.twilio.com`."""
        if self._server is None:
            raise RuntimeError("the fake Twilio is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def messages_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def client(self, *, timeout: float | None = None) -> Client:
        """A `twilio.rest.Client` for this account whose Api domain is the fake (the SDK
        waits forever by default: pass `timeout` for the "timeout" fault)."""
        client = Client(
            self.account_sid, self.auth_token, http_client=TwilioHttpClient(timeout=timeout)
        )
        client.edge = client.region = None  # TWILIO_EDGE/REGION would rewrite our host
        client.api.base_url = self.url
        return client

    # --- scripting ------------------------------------------------------------------------

    def outcome(self, to: str, outcome: Outcome) -> None:
        """How messages to `to` end: "delivered", "sent" (no receipt ever), "queued" (never
        sent), ("undelivered", 30006), ("failed", 30007)."""
        normalized = normalize_outcome(outcome)
        with self._cond:
            self._outcomes[to] = normalized

    def unsubscribe(self, to: str) -> None:
        """Creates to `to` answer 400/21610 from now on."""
        with self._cond:
            self._unsubscribed.add(to)

    def resubscribe(self, to: str) -> None:
        with self._cond:
            self._unsubscribed.discard(to)

    @property
    def unsubscribed(self) -> set[str]:
        with self._cond:
            return set(self._unsubscribed)

    def add_number(
        self,
        phone_number: str,
        *,
        sms_url: str = "",
        sms_method: str = "POST",
        friendly_name: str | None = None,
        **settings: str,
    ) -> str:
        """Put `phone_number` (E.164) in the account, its texts going to `sms_url` ("" for
        none, as Twilio writes it); other resource keys by name (status_callback=...,
        sms_application_sid=...). Returns its sid (PN...)."""
        if not E164.match(phone_number):
            raise ValueError(f"{phone_number!r} is not an E.164 number")
        known = {*NUMBER_URLS.values(), *NUMBER_METHODS.values(), *NUMBER_TEXTS.values()}
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"not an IncomingPhoneNumber setting: {sorted(unknown)}")
        now = self.clock()
        values = dict.fromkeys((*NUMBER_URLS.values(), *NUMBER_TEXTS.values()), "")
        values.update(dict.fromkeys(NUMBER_METHODS.values(), "POST"))
        values["friendly_name"] = friendly_name or phone_number
        values.update(settings, sms_url=sms_url, sms_method=sms_method)
        with self._cond:
            if any(n.phone_number == phone_number for n in self._numbers.values()):
                raise ValueError(f"{phone_number} is already in the account")
            self._seq += 1
            number = _Number(
                new_sid("PN"), self.account_sid, phone_number, values, now, now, self._seq
            )
            self._numbers[number.sid] = number
        return number.sid

    def number(self, phone_number: str) -> dict[str, Any]:
        """The account's IncomingPhoneNumber resource for `phone_number`, as the API shows it."""
        with self._cond:
            for number in self._numbers.values():
                if number.phone_number == phone_number:
                    return number.resource()
        raise KeyError(phone_number)

    @property
    def numbers(self) -> dict[str, dict[str, Any]]:
        """phone number -> its IncomingPhoneNumber resource, in the order they were added."""
        with self._cond:
            return {n.phone_number: n.resource() for n in self._numbers.values()}

    def number_requests(self, method: str | None = None) -> list[TwilioRequest]:
        """Every request to IncomingPhoneNumbers (list, fetch, update); `method`: only those."""
        return [
            r
            for r in self.requests
            if (NUMBERS_ROUTE.match(r.path) or NUMBER_ROUTE.match(r.path))
            and (method is None or r.method == method)
        ]

    def script(self, *faults: Fault) -> None:
        """Queue answers for the next message creates, used in order (see module doc)."""
        for fault in faults:
            if isinstance(fault, str) and fault not in ("timeout", "drop", "lost"):
                raise ValueError(f"unknown fault {fault!r}")
            if isinstance(fault, int) and not 400 <= fault < 600:
                raise ValueError(f"a scripted status is an error status, not {fault}")
        with self._cond:
            self._script.extend(faults)

    def reset(self) -> None:
        """Forget requests, messages, callbacks, outcomes, unsubscribes and the script (the
        account's numbers stay, as its API keys do)."""
        with self._cond:
            self._requests.clear()
            self._messages.clear()
            self._callbacks.clear()
            self._inbound.clear()
            self._outcomes.clear()
            self._unsubscribed.clear()
            self._script.clear()

    # --- inspection -----------------------------------------------------------------------

    @property
    def requests(self) -> list[TwilioRequest]:
        with self._cond:
            return list(self._requests)

    def create_requests(self) -> list[TwilioRequest]:
        """Every POST to Messages.json, whatever the answer was."""
        return [r for r in self.requests if r.method == "POST" and MESSAGES_ROUTE.match(r.path)]

    @property
    def messages(self) -> dict[str, dict[str, Any]]:
        """sid -> the Message resource as the API shows it now, oldest first (inbound
        messages from `text_in` too)."""
        with self._cond:
            return {sid: m.resource() for sid, m in self._messages.items()}

    def message(self, sid: str) -> dict[str, Any]:
        with self._cond:
            return self._messages[sid].resource()

    @property
    def callbacks_sent(self) -> list[Callback]:
        """Status callbacks posted, in the order they were posted."""
        with self._cond:
            return list(self._callbacks)

    @property
    def inbound_sent(self) -> list[Callback]:
        with self._cond:
            return list(self._inbound)

    def _wait(self, ready: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
        with self._cond:
            if not self._cond.wait_for(ready, timeout=timeout):
                raise AssertionError(f"fake Twilio: {what()} within {timeout}s")

    def wait_for_requests(
        self, n: int, timeout: float = 5.0, *, path: str | None = None
    ) -> list[TwilioRequest]:
        def matching() -> list[TwilioRequest]:
            return [r for r in self._requests if path is None or r.path == path]

        self._wait(
            lambda: len(matching()) >= n,
            timeout,
            lambda: (
                f"expected {n} request(s) to {path or 'any path'}, got "
                f"{[f'{r.method} {r.path}' for r in self._requests]}"
            ),
        )
        with self._cond:
            return matching()

    def wait_for_messages(
        self, n: int, timeout: float = 5.0, *, to: str | None = None
    ) -> list[dict[str, Any]]:
        """Block until at least `n` outbound messages (to `to`, if given) exist."""

        def matching() -> list[_Message]:
            return [
                m
                for m in self._messages.values()
                if m.direction == "outbound-api" and (to is None or m.to == to)
            ]

        self._wait(
            lambda: len(matching()) >= n,
            timeout,
            lambda: f"expected {n} message(s), got {len(matching())}",
        )
        with self._cond:
            return [m.resource() for m in matching()]

    def wait_for_callbacks(
        self, n: int, timeout: float = 5.0, *, sid: str | None = None
    ) -> list[Callback]:
        """Block until at least `n` status callbacks (for `sid`, if given) were posted."""

        def matching() -> list[Callback]:
            return [c for c in self._callbacks if sid is None or c.params["MessageSid"] == sid]

        self._wait(
            lambda: len(matching()) >= n,
            timeout,
            lambda: (
                f"expected {n} callback(s), got "
                f"{[(c.params['MessageSid'], c.params['MessageStatus']) for c in self._callbacks]}"
            ),
        )
        with self._cond:
            return matching()

    def wait_for_status(self, sid: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        """Block until message `sid` has `status`; return its resource."""
        self._wait(
            lambda: sid in self._messages and self._messages[sid].status == status,
            timeout,
            lambda: (
                f"message {sid} never reached {status!r} "
                f"(is {self._messages[sid].status if sid in self._messages else 'unknown'!r})"
            ),
        )
        return self.message(sid)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until every created message progressed and its callbacks were posted."""
        self._wait(lambda: self._busy == 0, timeout, lambda: f"{self._busy} message(s) busy")

    # --- webhooks (Twilio -> us) ----------------------------------------------------------

    def sign(self, url: str, params: dict[str, str], token: str | None = None) -> str:
        """X-Twilio-Signature for a POST of `params` to `url`, as Twilio computes it."""
        validator = RequestValidator(self.auth_token if token is None else token)
        return str(validator.compute_signature(url, params))

    def text_in(
        self,
        from_: str,
        to: str,
        body: str,
        opt_out_type: str | None = None,
        *,
        url: str | None = None,
        extra: dict[str, str] | None = None,
        signature: str | None = None,
    ) -> tuple[int, str]:
        """A lead texts `to`: the inbound message is stored and its webhook POSTed, signed,
        to `url` (default `inbound_url`) now; returns the receiver's (status, body). A
        single opt-out keyword unsubscribes `from_` (an opt-in one resubscribes), as Twilio's
        default handling does. `signature` replaces the computed one (bad-signature tests)."""
        target = url or self.inbound_url
        if target is None:
            raise RuntimeError("no inbound_url: set fake.inbound_url or pass url=")
        now = self.clock()
        keyword = body.strip().upper()
        with self._cond:
            self._seq += 1
            message = _Message(
                sid=new_sid("SM"),
                account_sid=self.account_sid,
                to=to,
                from_=from_,
                body=body,
                messaging_service_sid=self.messaging_service_sid,
                status="received",
                direction="inbound",
                num_segments=segments(body),
                num_media=0,
                created_at=now,
                updated_at=now,
                sent_at=now,
                status_callback=None,
                validity_period=None,
                outcome=("delivered", None),
                seq=self._seq,
            )
            self._messages[message.sid] = message
            if keyword in OPT_OUT_KEYWORDS:
                self._unsubscribed.add(from_)
            elif keyword in OPT_IN_KEYWORDS:
                self._unsubscribed.discard(from_)
        params = {
            "SmsMessageSid": message.sid,
            "NumMedia": "0",
            "SmsSid": message.sid,
            "SmsStatus": "received",
            "Body": body,
            "To": to,
            "NumSegments": str(message.num_segments),
            "MessageSid": message.sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        if self.messaging_service_sid:
            params["MessagingServiceSid"] = self.messaging_service_sid
        if opt_out_type is not None:
            params["OptOutType"] = opt_out_type
        params.update(extra or {})
        with httpx.Client(timeout=self.callback_timeout) as client:
            sent = self._post(client, target, params, new_sid(""), self._inbound, signature)
        return (sent[-1].status or 0), sent[-1].response_body

    # --- the HTTP side --------------------------------------------------------------------

    def _serve(self, handler: Handler) -> None:
        request = self._record(handler)
        try:
            self._route(handler, request)
        except _Refused as refusal:
            headers = {}
            if refusal.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            handler.respond(refusal.status, refusal.body, headers)

    def _record(self, handler: Handler) -> TwilioRequest:
        raw = handler.read_body()
        parts = urlsplit(handler.path)
        content_type = handler.headers.get("content-type", "")
        form_items = (
            parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            if raw and content_type.startswith("application/x-www-form-urlencoded")
            else []
        )
        form: dict[str, str] = {}
        for name, value in form_items:
            form.setdefault(name, value)
        query: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(name, value)
        request = TwilioRequest(
            method=handler.command,
            path=parts.path,
            query=query,
            form=form,
            form_items=form_items,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=raw,
            received_at=time.monotonic(),
        )
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
        return request

    def _authenticate(self, request: TwilioRequest) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        known = {self.account_sid: self.auth_token, **self.api_keys}
        if scheme.lower() != "basic" or not user or known.get(user) != password:
            raise _Refused(401, 20003)

    def _route(self, handler: Handler, request: TwilioRequest) -> None:
        self._authenticate(request)
        if NUMBERS_ROUTE.match(request.path) or NUMBER_ROUTE.match(request.path):
            self._route_numbers(handler, request)
            return
        many, one = MESSAGES_ROUTE.match(request.path), MESSAGE_ROUTE.match(request.path)
        route = many or one
        if route is None or route.group(1) != self.account_sid:
            raise _Refused(404, 20404, ERROR_MESSAGES[20404].format(path=request.path))
        if many and request.method == "POST":
            self._create(handler, request)
        elif many and request.method == "GET":
            handler.respond(200, self._list(request))
        elif one and request.method == "GET":
            with self._cond:
                message = self._messages.get(one.group(2))
                resource = message.resource() if message is not None else None
            if resource is None:
                raise _Refused(404, 20404, ERROR_MESSAGES[20404].format(path=request.path))
            handler.respond(200, resource)
        else:
            raise _Refused(405, 20004)

    def _route_numbers(self, handler: Handler, request: TwilioRequest) -> None:
        many, one = NUMBERS_ROUTE.match(request.path), NUMBER_ROUTE.match(request.path)
        route = many or one
        if route is None or route.group(1) != self.account_sid:
            raise _Refused(404, 20404, ERROR_MESSAGES[20404].format(path=request.path))
        if many and request.method == "GET":
            handler.respond(200, self._list_numbers(request))
            return
        if one is None or request.method not in ("GET", "POST"):
            raise _Refused(405, 20004)
        with self._cond:
            number = self._numbers.get(one.group(2))
            if number is None:
                raise _Refused(404, 20404, ERROR_MESSAGES[20404].format(path=request.path))
            if request.method == "POST":
                self._update_number(number, request.form)
            resource = number.resource()
        handler.respond(200, resource)

    def _update_number(self, number: _Number, form: dict[str, str]) -> None:
        """Validate an update like Twilio, then apply all of it (or nothing)."""
        changed: dict[str, str] = {}
        for field, key in NUMBER_URLS.items():
            if field in form:
                value = form[field].strip()
                parts = urlsplit(value)
                if value and (parts.scheme not in ("http", "https") or not parts.hostname):
                    raise _Refused(400, 21502, f"{ERROR_MESSAGES[21502]}: {field}")
                changed[key] = value
        for field, key in NUMBER_METHODS.items():
            if field in form:
                method = form[field].strip().upper()
                if method not in ("GET", "POST"):
                    raise _Refused(400, 20001, f"Invalid parameter: {field}")
                changed[key] = method
        for field, key in NUMBER_TEXTS.items():
            if field in form:
                changed[key] = form[field]
        number.settings.update(changed)
        number.updated_at = self.clock()
        self._cond.notify_all()

    def _list_numbers(self, request: TwilioRequest) -> dict[str, Any]:
        query = request.query
        try:
            size = int(query.get("PageSize") or DEFAULT_PAGE_SIZE)
            page = int(query.get("Page") or 0)
        except ValueError as exc:
            raise _Refused(400, 20001, f"Invalid parameter: {exc}") from None
        if not 1 <= size <= MAX_PAGE_SIZE or page < 0:
            raise _Refused(400, 20001, "Invalid PageSize or Page")
        filters = {k: query[k] for k in ("PhoneNumber", "FriendlyName") if query.get(k)}
        # a part of a number matches, `*` is any digit; "+" and spaces are not digits
        digits = re.sub(r"[^0-9*]", "", filters.get("PhoneNumber", ""))
        pattern = re.compile(re.escape(digits).replace(r"\*", "[0-9]"))

        def keep(n: _Number) -> bool:
            return ("PhoneNumber" not in filters or bool(pattern.search(n.phone_number))) and (
                "FriendlyName" not in filters
                or n.settings["friendly_name"] == filters["FriendlyName"]
            )

        with self._cond:
            found = sorted((n for n in self._numbers.values() if keep(n)), key=lambda n: n.seq)
            start = page * size
            records = [n.resource() for n in found[start : start + size]]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers.json"

        def uri(page_no: int) -> str:
            return f"{base}?{urlencode({**filters, 'PageSize': str(size), 'Page': str(page_no)})}"

        return {
            "end": start + max(len(records) - 1, 0),
            "first_page_uri": uri(0),
            "incoming_phone_numbers": records,
            "next_page_uri": uri(page + 1) if start + size < len(found) else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": uri(page),
        }

    def _create(self, handler: Handler, request: TwilioRequest) -> None:
        with self._cond:
            fault = self._script.popleft() if self._script else None
        if fault == "drop":
            handler.drop()
            return
        if isinstance(fault, int):
            raise _Refused(fault, STATUS_CODES.get(fault, 20000 + fault))
        if isinstance(fault, tuple):
            raise _Refused(*fault)
        message = self._take(request.form, request.form_items)
        if fault in ("timeout", "lost"):
            self._enqueue(message.sid)
            if fault == "timeout":
                self._stall(handler)
            handler.drop()
            return
        with self._cond:
            resource = message.resource()
            self._busy += 1  # before answering: wait_idle() after create() must wait
        try:
            handler.respond(201, resource)
        finally:
            self._queue.put(message.sid)  # after it: no callback before the answer

    def _take(self, form: dict[str, str], items: list[tuple[str, str]]) -> _Message:
        """Validate a create like Twilio and store the message (queued or accepted)."""
        to = form.get("To", "").strip()
        from_ = form.get("From", "").strip() or None
        service = form.get("MessagingServiceSid", "").strip() or None
        body = form.get("Body", "")
        media = [v for k, v in items if k == "MediaUrl"]
        callback = form.get("StatusCallback", "").strip() or None
        if not to:
            raise _Refused(400, 21604)
        if from_ is None and service is None:
            raise _Refused(400, 21603)
        if not body and not media and not form.get("ContentSid"):
            raise _Refused(400, 21602)
        bare_to = CHANNEL.sub("", to)
        if not E164.match(bare_to):
            raise _Refused(400, 21211, ERROR_MESSAGES[21211].format(to=to))
        if bare_to in MAGIC_TO and MAGIC_TO[bare_to] != 21610:
            code = MAGIC_TO[bare_to]
            raise _Refused(400, code, ERROR_MESSAGES[code].format(to=to, from_=from_))
        if from_ is not None:
            bare_from = CHANNEL.sub("", from_)
            if not (
                E164.match(bare_from) or SHORT_CODE.match(bare_from) or ALPHA_SENDER.match(from_)
            ):
                raise _Refused(400, 21212, ERROR_MESSAGES[21212].format(from_=from_))
            if bare_from in MAGIC_FROM:
                code = MAGIC_FROM[bare_from]
                raise _Refused(400, code, ERROR_MESSAGES[code].format(to=to, from_=from_))
        if len(body) > MAX_BODY:
            raise _Refused(400, 21617)
        validity: int | None = None
        if "ValidityPeriod" in form:
            try:
                validity = int(form["ValidityPeriod"])
            except ValueError:
                validity = 0
            if not 1 <= validity <= 36000:
                raise _Refused(400, 21624)
        if callback is not None:
            parts = urlsplit(callback)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _Refused(400, 21609)
            if "_" in parts.hostname or len(callback) > 4000:
                raise _Refused(400, 21609)
        now = self.clock()
        with self._cond:
            if bare_to in self._unsubscribed or MAGIC_TO.get(bare_to) == 21610:
                raise _Refused(400, 21610)
            outcome = self._outcomes.get(to) or normalize_outcome(self.default_outcome)
            self._seq += 1
            message = _Message(
                sid=new_sid("SM"),
                account_sid=self.account_sid,
                to=to,
                from_=from_,  # with a Messaging Service and no From: null until sent
                body=body,
                messaging_service_sid=service,
                status="accepted" if service else "queued",
                direction="outbound-api",
                num_segments=0 if service else segments(body),
                num_media=len(media),
                created_at=now,
                updated_at=now,
                sent_at=None,
                status_callback=callback,
                validity_period=validity,
                outcome=outcome,
                seq=self._seq,
            )
            self._messages[message.sid] = message
            self._cond.notify_all()
        return message

    def _stall(self, handler: Handler) -> None:
        """Hold the answer until the client hangs up, `stall_seconds` pass, or we stop."""
        deadline = time.monotonic() + self.stall_seconds
        conn = handler.connection
        while time.monotonic() < deadline and not self._stopping.is_set():
            with contextlib.suppress(OSError, ValueError):
                readable, _, _ = select.select([conn], [], [], 0.05)
                if readable and conn.recv(1, socket.MSG_PEEK) == b"":
                    return  # the client gave up (its timeout)

    def _list(self, request: TwilioRequest) -> dict[str, Any]:
        query = request.query
        names = ("To", "From", "DateSent", "DateSent<", "DateSent>")
        filters = {k: query[k] for k in names if query.get(k)}
        try:
            exact = parse_day(filters["DateSent"]) if "DateSent" in filters else None
            before = parse_day(filters["DateSent<"]) if "DateSent<" in filters else None
            after = parse_day(filters["DateSent>"]) if "DateSent>" in filters else None
            size = int(query.get("PageSize") or DEFAULT_PAGE_SIZE)
            page = int(query.get("Page") or 0)
        except (KeyError, ValueError) as exc:
            raise _Refused(400, 20001, f"Invalid parameter: {exc}") from None
        if not 1 <= size <= MAX_PAGE_SIZE or page < 0:
            raise _Refused(400, 20001, "Invalid PageSize or Page")

        def keep(m: _Message) -> bool:
            day = m.sent_at.astimezone(dt.UTC).date() if m.sent_at is not None else None
            dated = exact is not None or before is not None or after is not None
            return (
                ("To" not in filters or m.to == filters["To"])
                and ("From" not in filters or m.from_ == filters["From"])
                and (not dated or day is not None)
                and (exact is None or day == exact)
                and (before is None or (day is not None and day <= before))
                and (after is None or (day is not None and day >= after))
            )

        with self._cond:
            found = sorted(
                (m for m in self._messages.values() if keep(m)),
                key=lambda m: (m.created_at, m.seq),
                reverse=True,
            )
            token = query.get("PageToken", "")
            sids = [m.sid for m in found]
            if token.startswith("PA") and token[2:] in sids:
                start = sids.index(token[2:]) + 1
            else:
                start = page * size
            chosen = found[start : start + size]
            records = [m.resource() for m in chosen]
        base = self.messages_path

        def uri(page_no: int, page_token: str | None = None) -> str:
            params = {**filters, "PageSize": str(size), "Page": str(page_no)}
            if page_token:
                params["PageToken"] = page_token
            return f"{base}?{urlencode(params)}"

        more = start + size < len(found)
        return {
            "end": start + max(len(records) - 1, 0),
            "first_page_uri": uri(0),
            "messages": records,
            "next_page_uri": uri(page + 1, "PA" + chosen[-1].sid) if more and chosen else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": uri(page, token or None),
        }

    # --- the carrier: status changes and callbacks ----------------------------------------

    def _enqueue(self, sid: str) -> None:
        with self._cond:
            self._busy += 1
        self._queue.put(sid)

    def _run(self) -> None:
        while True:
            sid = self._queue.get()
            if sid is None or self._stopping.is_set():
                return
            try:
                self._progress(sid)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _steps(self, message: _Message) -> list[tuple[str, int | None]]:
        final, code = message.outcome
        if final == "queued":
            return []
        steps: list[tuple[str, int | None]] = []
        if message.messaging_service_sid:
            steps.append(("queued", None))
        if final == "failed":
            return [*steps, ("failed", code)]
        steps.append(("sent", None))
        if final != "sent":
            steps.append((final, code))
        return steps

    def _apply(self, sid: str, status: str, code: int | None) -> tuple[str | None, dict[str, str]]:
        """Move message `sid` to `status`; return its callback URL and params."""
        now = self.clock()
        with self._cond:
            m = self._messages.get(sid)
            if m is None:  # reset() meanwhile
                return None, {}
            if m.messaging_service_sid and m.from_ is None:
                m.from_ = self.service_number
                m.num_segments = segments(m.body)
            m.status = status
            m.updated_at = now
            if status != "queued" and m.sent_at is None:
                m.sent_at = now
            if status == "sent" and m.price is None:
                m.price = f"-{0.0079 * m.num_segments:.5f}"
            if code is not None:
                m.error_code = code
            self._cond.notify_all()
            params = {
                "SmsSid": m.sid,
                "SmsStatus": status,
                "MessageStatus": status,
                "To": m.to,
                "MessageSid": m.sid,
                "AccountSid": m.account_sid,
                "From": m.from_ or "",
                "ApiVersion": API_VERSION,
            }
            if m.messaging_service_sid:
                params["MessagingServiceSid"] = m.messaging_service_sid
            if code is not None:
                params["ErrorCode"] = str(code)
            return m.status_callback, params

    def _progress(self, sid: str) -> None:
        held: list[tuple[str, dict[str, str], str]] = []
        with self._cond:
            message = self._messages.get(sid)
            steps = self._steps(message) if message is not None else []
        for status, code in steps:
            if self._stopping.is_set():
                return
            url, params = self._apply(sid, status, code)
            if url is None or not self.callbacks:
                continue
            event = (url, params, new_sid(""))
            if self.callback_order == "reversed":
                held.append(event)
            else:
                self._callback(*event)
        for event in reversed(held):
            self._callback(*event)

    def _callback(self, url: str, params: dict[str, str], token: str) -> None:
        for _ in range(max(1, self.repeat_callbacks)):
            if self._stopping.is_set():
                return
            with self._cond:
                client = self._http
            if client is None:
                return
            self._post(client, url, params, token, self._callbacks)

    def _post(
        self,
        client: httpx.Client,
        url: str,
        params: dict[str, str],
        token: str,
        record: list[Callback],
        signature: str | None = None,
    ) -> list[Callback]:
        """POST a signed form (one retry after a connection failure); record each try."""
        url = url.split("#", 1)[0]
        signed = self.sign(url, params) if signature is None else signature
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signed,
            IDEMPOTENCY_HEADER: token,
        }
        posts: list[Callback] = []
        for attempt in range(1 + max(0, self.callback_retries)):
            status: int | None = None
            error: str | None = None
            text = ""
            try:
                response = client.post(url, content=urlencode(params), headers=headers)
                status, text = response.status_code, response.text
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            post = Callback(
                url, dict(params), signed, status, error, token, attempt, text, time.monotonic()
            )
            posts.append(post)
            with self._cond:
                record.append(post)
                self._cond.notify_all()
            if status is not None or self._stopping.is_set():
                break
        return posts

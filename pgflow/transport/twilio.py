"""Twilio Programmable Messaging: texts that are exactly ours, with delivery receipts.

One POST per message (`Messages.json`), with a `StatusCallback` that carries our message id
(a Twilio message has no metadata of its own) and a `ValidityPeriod`, so a text Twilio could
not hand to the carrier in time is dropped instead of arriving hours late.

What may be sent again, and when:
- 429 and error 20429 are never processed (Twilio says so): retry after a backoff;
- a timeout, a dropped connection or a 5xx are ambiguous: the message may exist. The caller
  reconciles with `find_sent` (To, From, body, since) before anything is sent again;
- any other 4xx is permanent, with Twilio's error code and its class (`error_class`);
  401/403 (a bad Account SID or token) also need a person (`alert`).

Twilio's codes are "subject to change" (its own words): the raw code is kept
(`twilio_code`); what a code means for a lead or a campaign is decided in one place, the SQL
function pgflow.carrier_error_class (sql/functions/twilio.sql). Messages never contain the
auth token or a full phone number. `verify_signature` checks X-Twilio-Signature with the
`twilio` package's validator.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote, urlencode

import httpx
from twilio.request_validator import RequestValidator

from pgflow import __version__
from pgflow.transport.base import TransportError, json_object, parse_retry_after, scrub

__all__ = [
    "DEFAULT_BASE_URL",
    "INBOUND_PATH",
    "MAX_VALIDITY_SECONDS",
    "TwilioClient",
    "TwilioError",
    "TwilioMessage",
    "TwilioNumber",
    "verify_signature",
]

DEFAULT_BASE_URL: Final = "https://api.twilio.com"
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=15.0, write=5.0, pool=5.0)
SIGNATURE_HEADER: Final = "x-twilio-signature"
MAX_VALIDITY_SECONDS: Final = 36_000  # Twilio's own limit (and default): 10 hours
MAX_BODY_CHARS: Final = 1_600
INBOUND_PATH: Final = "/webhooks/twilio/inbound"


_SID = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$")


class TwilioError(TransportError):
    """A Twilio call failed (see `TransportError`); `twilio_code` is Twilio's error code
    when it gave one, and `ambiguous` says the message may exist although we got no answer
    (reconcile before sending again)."""

    code = "twilio"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None,
        retryable: bool,
        alert: bool = False,
        retry_after: float | None = None,
        twilio_code: int | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            retryable=retryable,
            alert=alert,
            retry_after=retry_after,
        )
        self.twilio_code = twilio_code
        self.ambiguous = ambiguous


@dataclasses.dataclass(frozen=True)
class TwilioMessage:
    """The fields of a Message resource we use."""

    sid: str
    status: str
    to: str | None
    from_: str | None
    body: str | None
    date_created: dt.datetime | None
    error_code: int | None
    num_segments: int | None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> TwilioMessage | None:
        sid = data.get("sid")
        if not isinstance(sid, str) or not _SID.match(sid):
            return None
        return cls(
            sid=sid,
            status=str(data.get("status") or ""),
            to=_text(data.get("to")),
            from_=_text(data.get("from")),
            body=_text(data.get("body")),
            date_created=_rfc2822(data.get("date_created")),
            error_code=_int(data.get("error_code")),
            num_segments=_int(data.get("num_segments")),
        )


@dataclasses.dataclass(frozen=True)
class TwilioNumber:
    """Where an IncomingPhoneNumber's texts go (an unset value, "" or null, is None). Its
    `status_callback` is for voice calls: a text's status goes to the send's StatusCallback.
    An `sms_application_sid` overrides the sms_* URLs."""

    sid: str
    phone_number: str
    sms_url: str | None
    sms_method: str | None
    sms_application_sid: str | None
    status_callback: str | None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> TwilioNumber | None:
        sid, number = _text(data.get("sid")) or "", _text(data.get("phone_number"))
        if not (_SID.match(sid) and sid.startswith("PN") and number):
            return None
        fields = ("sms_url", "sms_method", "sms_application_sid", "status_callback")
        return cls(sid, number, *(_text(data.get(name)) or None for name in fields))


class TwilioClient:
    """Twilio's Messages API over one pooled `httpx.AsyncClient` (HTTP Basic auth with the
    Account SID and auth token); use `async with` or `aclose()`."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        public_url: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("the Account SID and the auth token must not be empty")
        if not public_url.startswith(("http://", "https://")):
            raise ValueError("public_url must be the http(s) URL Twilio calls us back on")
        self.name = "twilio"
        self.accepts_text = True
        self.account_sid = account_sid
        self._token = auth_token
        self.public_url = public_url.rstrip("/")
        self.base_url = base_url.rstrip("/")
        self._messages = f"/2010-04-01/Accounts/{quote(account_sid, safe='')}/Messages"
        self._numbers = f"/2010-04-01/Accounts/{quote(account_sid, safe='')}/IncomingPhoneNumbers"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=(account_sid, auth_token),
            headers={"Accept": "application/json", "User-Agent": f"pgflow-sms/{__version__}"},
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"TwilioClient(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def status_callback(self, message_id: int) -> str:
        """Where Twilio reports this message's status: our public URL, with our id."""
        return f"{self.public_url}/webhooks/twilio/status?{urlencode({'message_id': message_id})}"

    @property
    def inbound_url(self) -> str:
        """Where Twilio posts the texts our numbers receive (each number's SmsUrl)."""
        return f"{self.public_url}{INBOUND_PATH}"

    async def send(
        self,
        *,
        to: str,
        body: str,
        message_id: int,
        validity_seconds: int,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
    ) -> TwilioMessage:
        """One text, exactly `body`, from a number or a Messaging Service."""
        if (from_ is None) == (messaging_service_sid is None):
            raise ValueError("send from a number or a Messaging Service: exactly one")
        if not body.strip():
            raise ValueError("body must not be empty")
        form = {
            "To": to,
            "Body": body[:MAX_BODY_CHARS],
            "StatusCallback": self.status_callback(message_id),
            "ValidityPeriod": str(max(1, min(MAX_VALIDITY_SECONDS, int(validity_seconds)))),
        }
        if from_ is not None:
            form["From"] = from_
        else:
            form["MessagingServiceSid"] = str(messaging_service_sid)
        phones = tuple(p for p in (to, from_) if p)
        response = await self._request("POST", f"{self._messages}.json", "send", phones, form)
        message = TwilioMessage.parse(json_object(response) or {})
        if message is None:
            raise TwilioError(
                f"Twilio send: HTTP {response.status_code}: malformed response (no sid)",
                status_code=response.status_code,
                retryable=False,
                ambiguous=True,
            )
        return message

    async def find_sent(
        self, *, to: str, from_: str | None, body: str, since: dt.datetime
    ) -> TwilioMessage | None:
        """After a send that got no answer: the message it may have created, found among
        the newest messages from `from_` to `to` by its body and creation time (a minute's
        slack for clocks); None when there is none."""
        params = {"To": to, "PageSize": "50"}
        if from_:
            params["From"] = from_
        response = await self._request(
            "GET", f"{self._messages}.json", "list", (to, from_ or ""), None, params
        )
        data = json_object(response) or {}
        items = data.get("messages")
        floor = since - dt.timedelta(minutes=1)
        for item in items if isinstance(items, list) else []:
            message = TwilioMessage.parse(item) if isinstance(item, dict) else None
            if (
                message is not None
                and message.body == body[:MAX_BODY_CHARS]
                and (message.date_created is None or message.date_created >= floor)
            ):
                return message
        return None

    async def fetch(self, sid: str) -> TwilioMessage:
        """One message by its SID (the sweeper asks about messages with no final status)."""
        if not _SID.match(sid):
            raise ValueError("not a message SID")
        response = await self._request("GET", f"{self._messages}/{sid}.json", "fetch", (), None)
        message = TwilioMessage.parse(json_object(response) or {})
        if message is None:
            raise TwilioError(
                f"Twilio fetch: HTTP {response.status_code}: malformed response",
                status_code=response.status_code,
                retryable=False,
            )
        return message

    async def find_number(self, phone_number: str) -> TwilioNumber | None:
        """This account's number `phone_number` (E.164); None when it has no such number.
        Twilio's PhoneNumber filter also matches parts of numbers: only the exact one counts."""
        params = {"PhoneNumber": phone_number, "PageSize": "50"}
        response = await self._request(
            "GET", f"{self._numbers}.json", "number lookup", (phone_number,), None, params
        )
        items = (json_object(response) or {}).get("incoming_phone_numbers")
        if not isinstance(items, list):
            raise _malformed("number lookup", response)
        found = [TwilioNumber.parse(item) for item in items if isinstance(item, dict)]
        return next((n for n in found if n and n.phone_number == phone_number), None)

    async def set_number_sms_url(
        self, sid: str, sms_url: str, method: str = "POST"
    ) -> TwilioNumber:
        """Point number `sid` (PN...)'s incoming texts at `sms_url`: nothing else changes."""
        if not (_SID.match(sid) and sid.startswith("PN")):
            raise ValueError("not a phone number SID (PN...)")
        form = {"SmsUrl": sms_url, "SmsMethod": method}
        response = await self._request(
            "POST", f"{self._numbers}/{sid}.json", "number update", (), form
        )
        number = TwilioNumber.parse(json_object(response) or {})
        if number is None:
            raise _malformed("number update", response)
        return number

    async def _request(
        self,
        method: str,
        path: str,
        operation: str,
        phones: tuple[str, ...],
        form: dict[str, str] | None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One HTTP call; every failure becomes a classified TwilioError."""
        try:
            response = await self._http.request(method, path, data=form, params=params)
        except httpx.TransportError as exc:
            # A create may have reached Twilio: ambiguous (reconcile before sending again).
            raise TwilioError(
                self._scrub(f"Twilio {operation}: {type(exc).__name__}: {exc}", phones),
                status_code=None,
                retryable=True,
                ambiguous=method == "POST",
            ) from exc
        if response.is_success:
            return response
        status = response.status_code
        data = json_object(response) or {}
        code = _int(data.get("code"))
        detail = " ".join(str(data.get("message") or data.get("detail") or "").split())[:300]
        message = f"Twilio {operation}: HTTP {status}" + (f" error {code}" if code else "")
        if detail:
            message = f"{message}: {detail}"
        never_processed = status == 429 or code == 20429
        raise TwilioError(
            self._scrub(message, phones),
            status_code=status,
            retryable=never_processed or status >= 500,
            alert=status in (401, 403),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            twilio_code=code,
            ambiguous=method == "POST" and status >= 500,
        )

    def _scrub(self, message: str, phones: tuple[str, ...]) -> str:
        return scrub(message, self._token, phones)


def verify_signature(
    auth_token: str, url: str, params: Mapping[str, str | list[str]], signature: str | None
) -> bool:
    """X-Twilio-Signature over the URL Twilio called and every form field (Twilio adds
    fields without notice: all of them count). `url` is the public URL, query included."""
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def _malformed(operation: str, response: httpx.Response) -> TwilioError:
    return TwilioError(
        f"Twilio {operation}: HTTP {response.status_code}: malformed response",
        status_code=response.status_code,
        retryable=False,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _rfc2822(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

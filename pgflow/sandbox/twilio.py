"""Twilio's Programmable Messaging API as the sandbox serves it, beside Retell's on the same
server, so `pgflow.transport.twilio.TwilioClient` works against it unchanged:

- `POST /2010-04-01/Accounts/{AC}/Messages.json` (To, From, Body, StatusCallback,
  ValidityPeriod; no MessagingServiceSid): 201 with the Message resource, `queued`; the
  text lands on the lead's phone, then `sent` and `delivered` (or the scripted outcome)
  are POSTed, signed, to its StatusCallback (`twilio_hooks`);
- `GET .../Messages.json` (To, From, PageSize, Page; newest first), `GET .../Messages/{SM}.json`;
- `GET .../IncomingPhoneNumbers.json` (PhoneNumber, PageSize, Page): the sandbox's numbers;
  `GET`/`POST .../IncomingPhoneNumbers/{PN}.json` (SmsUrl, SmsMethod, StatusCallback, ...);
- `POST /sandbox/twilio/script` (JSON, the sandbox's own): how texts to a number end
  (`{"to", "outcome", "error_code"}`), or that creates to it are refused
  (`{"to", "refuse": code, "status": 400}`), or neither (`{"to", "clear": true}`).

Every call needs HTTP Basic auth with the Account SID and auth token (else 401/20003).
The lead's texts to a Twilio line (`say`) are POSTed to the line's SmsUrl, by default
`{public url}/webhooks/twilio/inbound`, with Twilio's opt-out handling (Advanced Opt-Out):
STOP-type keywords block the (line, lead) pair (later creates: 400/21610), START-type ones
lift it, HELP/INFO is answered; each keyword gets Twilio's auto-reply and `OptOutType`."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pgflow.agent import segments
from pgflow.sandbox.chats import E164, ChatBook, PhoneText, now_ms
from pgflow.sandbox.http import Handler, RecordedRequest, Recorder, Refusal, route_of
from pgflow.sandbox.twilio_book import (
    API_VERSION,
    AUTO_REPLIES,
    DEFAULT_ERROR,
    KEYWORDS,
    OUTCOMES,
    TwilioBook,
    TwilioRefusal,
    page_of,
    phone_filter,
    rfc2822,
    utcnow,
)
from pgflow.sandbox.twilio_hooks import TwilioHooks

ROUTE = re.compile(
    rf"^/{API_VERSION}/Accounts/([^/]+)/(Messages|IncomingPhoneNumbers)(?:/([^/]+))?\.json$"
)
SCRIPT_PATH = "/sandbox/twilio/script"
INBOUND_PATH = "/webhooks/twilio/inbound"
MAX_BODY = 1600
NUMBER_FIELDS = {
    "FriendlyName": "friendly_name",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsFallbackMethod": "sms_fallback_method",
    "SmsApplicationSid": "sms_application_sid",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
}


class TwilioApi:
    """Answers the Twilio requests a `Server` hands it; `say` plays the lead."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        chats: ChatBook,
        recorder: Recorder,
        public_url: Callable[[], str | None],
        lines: list[str] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.chats = chats  # the phones, shared with the Retell side
        self.recorder = recorder
        self.public_url = public_url
        self.book = TwilioBook(account_sid, lines)
        self.hooks = TwilioHooks(self.book, auth_token)

    @staticmethod
    def handles(path: str) -> bool:
        route = route_of(path)
        return route.startswith(f"/{API_VERSION}/") or route == SCRIPT_PATH

    def __call__(self, handler: Handler) -> None:
        request = self.recorder.record(handler)
        try:
            self._authenticate(request)
            status, body = self._route(request)
        except TwilioRefusal as refusal:
            headers = (
                {"WWW-Authenticate": 'Basic realm="Twilio API"'} if refusal.status == 401 else {}
            )
            handler.respond(refusal.status, refusal.body, headers)
            return
        try:
            handler.respond(status, body)
        finally:  # a message created goes on even when its answer is lost
            if status == 201:
                self.hooks.progress(str(body["sid"]))

    # --- scripting and inspection ---------------------------------------------------------

    def outcome(self, to: str, status: str = "delivered", error_code: int | None = None) -> None:
        """How texts to `to` end: "delivered", "sent" (no receipt), ("undelivered", 30006),
        ("failed", 30008). An undelivered or failed text never reaches the phone."""
        if status not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if status in DEFAULT_ERROR:
            error_code = error_code or DEFAULT_ERROR[status]
        elif error_code is not None:
            raise ValueError(f"a {status!r} text has no error code")
        with self.book.lock:
            self.book.outcomes[to] = (status, error_code)

    def refuse(self, to: str, code: int | None, status: int = 400) -> None:
        """Creates to `to` answer `status` with Twilio error `code` (None: no longer)."""
        with self.book.lock:
            if code is None:
                self.book.refusals.pop(to, None)
            else:
                self.book.refusals[to] = (status, code)

    def add_line(self, line: str) -> None:
        """Make `line` a Twilio line: the lead's texts to it take the Twilio path."""
        with self.book.lock:
            self.book.lines.add(line)
            self.book.number(line)

    def is_line(self, line: str) -> bool:
        with self.book.lock:
            return line in self.book.lines

    def messages(self) -> list[dict[str, Any]]:
        """Every Message resource, oldest first (the lead's texts too)."""
        with self.book.lock:
            return [m.resource() for m in self.book.messages.values()]

    def reset(self) -> None:
        self.book.clear()
        self.hooks.clear()

    # --- the lead's side ------------------------------------------------------------------

    def say(self, lead: str, line: str, text: str) -> dict[str, Any]:
        """The lead texts our Twilio number `line`: Twilio's keyword handling, then the
        signed inbound webhook (its answer's status is all that counts)."""
        if not E164.match(lead) or not E164.match(line):
            raise Refusal(400, "from_number and to_number must be E.164 phone numbers")
        kind = KEYWORDS.get(text.strip().upper())  # only a text of one keyword counts
        with self.book.lock:
            sms = self.book.add(
                to=line,
                from_=lead,
                body=text,
                direction="inbound",
                status="received",
                segments=segments(text),
            )
            sms.sent = sms.created
            if kind == "STOP":
                self.book.opted_out.add((line, lead))
            elif kind == "START":
                self.book.opted_out.discard((line, lead))
            self.book.number(line)
        self.chats.to_phone(
            PhoneText("from_lead", text, line, None, now_ms(), None, "twilio", sms.sid), lead
        )
        if kind is not None:
            reply = PhoneText(
                "to_lead", AUTO_REPLIES[kind], line, None, now_ms(), "auto-reply", "twilio"
            )
            self.chats.to_phone(reply, lead)
        params = {
            "SmsMessageSid": sms.sid,
            "NumMedia": "0",
            "SmsSid": sms.sid,
            "SmsStatus": "received",
            "Body": text,
            "To": line,
            "NumSegments": str(sms.segments),
            "MessageSid": sms.sid,
            "AccountSid": self.account_sid,
            "From": lead,
            "ApiVersion": API_VERSION,
        }
        if kind is not None:
            params["OptOutType"] = kind
        public = self.public_url()
        url = self.book.sms_url(line) or (f"{public}{INBOUND_PATH}" if public else None)
        post = self.hooks.post("inbound", url, params) if url else None
        return {
            "result": "delivered" if post is not None and post.ok else "failed",
            "chat_id": None,
            "transport": "twilio",
            "message_sid": sms.sid,
            "opt_out_type": kind,
            "webhook_status": post.status if post is not None else None,
        }

    # --- the API --------------------------------------------------------------------------

    def _authenticate(self, request: RecordedRequest) -> None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        given, wanted = f"{user}:{password}".encode(), f"{self.account_sid}:{self.auth_token}"
        if scheme.lower() != "basic" or not hmac.compare_digest(given, wanted.encode()):
            raise TwilioRefusal(401, 20003)

    def _route(self, request: RecordedRequest) -> tuple[int, Any]:
        method, route = request.method, route_of(request.path)
        query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if route == SCRIPT_PATH and method == "POST":
            return 200, self._script(request.json)
        match = ROUTE.match(route)
        if match is None or match.group(1) != self.account_sid:
            raise TwilioRefusal(404, 20404, f"The requested resource {route} was not found")
        kind, sid = match.group(2), match.group(3)
        if kind == "Messages" and sid is None and method == "POST":
            return 201, self._create(form)
        if kind == "Messages" and method == "GET":
            return 200, self._message(sid, route) if sid else self._list(route, query)
        if kind == "IncomingPhoneNumbers" and sid is None and method == "GET":
            return 200, self._numbers(route, query)
        if kind == "IncomingPhoneNumbers" and sid is not None and method in ("GET", "POST"):
            return 200, self._number(sid, route, form if method == "POST" else {})
        raise TwilioRefusal(405, 20004)

    def _create(self, form: dict[str, str]) -> dict[str, Any]:
        to, from_ = form.get("To", "").strip(), form.get("From", "").strip()
        body, callback = form.get("Body", ""), form.get("StatusCallback", "").strip() or None
        if form.get("MessagingServiceSid"):
            raise TwilioRefusal(400, 20001, "The sandbox sends from a number, not a service")
        for missing, code in ((to, 21604), (from_, 21603), (body, 21602)):
            if not missing:
                raise TwilioRefusal(400, code)
        for number, code in ((to, 21211), (from_, 21212)):
            if not E164.match(number):
                raise TwilioRefusal(400, code)
        if len(body) > MAX_BODY:
            raise TwilioRefusal(400, 21617)
        validity = form.get("ValidityPeriod", "36000").strip()
        if not validity.isdigit() or not 1 <= int(validity) <= 36_000:
            raise TwilioRefusal(400, 21624)
        if callback is not None:
            parts = urlsplit(callback)
            if parts.scheme not in ("http", "https") or not parts.hostname or "_" in parts.hostname:
                raise TwilioRefusal(400, 21609)
        with self.book.lock:
            refusal = self.book.refusals.get(to)
            if refusal is not None:
                raise TwilioRefusal(*refusal)
            if (from_, to) in self.book.opted_out:
                raise TwilioRefusal(400, 21610)
            outcome = self.book.outcomes.get(to, ("delivered", None))
            sms = self.book.add(
                to=to,
                from_=from_,
                body=body,
                direction="outbound-api",
                status="queued",
                segments=segments(body),
                status_callback=callback,
                outcome=outcome,
            )
            resource = sms.resource()
        self.add_line(from_)
        if outcome[0] not in ("undelivered", "failed"):
            text = PhoneText("to_lead", body, from_, None, now_ms(), None, "twilio", sms.sid)
            self.chats.to_phone(text, to)
        return resource

    def _message(self, sid: str, route: str) -> dict[str, Any]:
        with self.book.lock:
            sms = self.book.messages.get(sid)
            if sms is None:
                raise TwilioRefusal(404, 20404, f"The requested resource {route} was not found")
            return sms.resource()

    def _list(self, route: str, query: dict[str, str]) -> dict[str, Any]:
        filters = {k: phone_filter(query[k]) for k in ("To", "From") if query.get(k)}
        with self.book.lock:
            found = [
                m.resource()
                for m in sorted(self.book.messages.values(), key=lambda m: m.seq, reverse=True)
                if filters.get("To", m.to) == m.to and filters.get("From", m.from_) == m.from_
            ]
        return page_of("messages", route, filters, query, found)

    def _numbers(self, route: str, query: dict[str, str]) -> dict[str, Any]:
        wanted = re.sub(r"\D", "", query.get("PhoneNumber", ""))
        with self.chats.lock:
            known = set(self.chats.numbers)
        with self.book.lock:
            known |= self.book.lines | set(self.book.numbers)
            found = [
                dict(self.book.number(n)) for n in sorted(known) if wanted in re.sub(r"\D", "", n)
            ]
        filters = {"PhoneNumber": query["PhoneNumber"]} if query.get("PhoneNumber") else {}
        return page_of("incoming_phone_numbers", route, filters, query, found)

    def _number(self, sid: str, route: str, form: dict[str, str]) -> dict[str, Any]:
        with self.book.lock:
            number = next((n for n in self.book.numbers.values() if n["sid"] == sid), None)
            if number is None:
                raise TwilioRefusal(404, 20404, f"The requested resource {route} was not found")
            changes = {NUMBER_FIELDS[k]: v.strip() for k, v in form.items() if k in NUMBER_FIELDS}
            for key, value in changes.items():
                if key.endswith("_method") and value.upper() not in ("GET", "POST"):
                    raise TwilioRefusal(400, 20001, f"{key} must be GET or POST")
                url = key.endswith(("_url", "callback")) and value
                if url and urlsplit(value).scheme not in ("http", "https"):
                    raise TwilioRefusal(400, 20001, f"{key} must be an http(s) URL")
            if changes.get("sms_method", "POST").upper() != "POST":
                raise TwilioRefusal(400, 20001, "The sandbox POSTs texts: SmsMethod must be POST")
            if changes:
                number.update(
                    {k: v.upper() if k.endswith("_method") else v for k, v in changes.items()}
                )
                number["date_updated"] = rfc2822(utcnow())
            if number["sms_url"]:
                self.book.lines.add(str(number["phone_number"]))
            return dict(number)

    def _script(self, payload: Any) -> dict[str, Any]:
        body = payload if isinstance(payload, dict) else {}
        to = body.get("to")
        if not isinstance(to, str) or not E164.match(to):
            raise TwilioRefusal(400, 20001, "to must be an E.164 phone number")
        try:
            if body.get("clear") is True:
                self.outcome(to)
                self.refuse(to, None)
            if body.get("outcome") is not None:
                code = body.get("error_code")
                self.outcome(to, str(body["outcome"]), int(code) if code is not None else None)
            if body.get("refuse") is not None:
                self.refuse(to, int(body["refuse"]), int(body.get("status") or 400))
        except (TypeError, ValueError) as exc:
            raise TwilioRefusal(400, 20001, str(exc)) from None
        with self.book.lock:
            outcome = self.book.outcomes.get(to, ("delivered", None))
            refusal = self.book.refusals.get(to)
        return {
            "to": to,
            "outcome": outcome[0],
            "error_code": outcome[1],
            "refuse": refusal[1] if refusal else None,
            "status": refusal[0] if refusal else None,
        }

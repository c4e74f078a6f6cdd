"""Twilio's webhooks from the sandbox: status callbacks and inbound texts, as signed forms.

Each message we send moves `sent` then `delivered` (or its scripted outcome) in one
background thread, messages one at a time in the order they were created, each status
POSTed to the message's StatusCallback. The lead's texts are POSTed at once (the caller
waits for the answer's status; its TwiML is ignored). Every POST carries
X-Twilio-Signature (`RequestValidator(auth token).compute_signature(url, params)` over the
exact URL, query included) and is tried once more when it could not connect, Twilio's
default; an HTTP error is final. Every try is kept in `posts`."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from pgflow.sandbox.twilio_book import API_VERSION, TwilioBook

SIGNATURE_HEADER = "X-Twilio-Signature"
USER_AGENT = "TwilioProxy/1.1"
DEFAULT_TIMEOUT = 15.0  # Twilio's read timeout for webhooks


@dataclasses.dataclass(frozen=True)
class HookPost:
    """One POST the sandbox made as Twilio: `kind` "status" or "inbound"."""

    kind: str
    url: str
    params: dict[str, str]
    signature: str
    status: int | None  # the receiver's HTTP status; None when it could not connect
    error: str | None
    attempt: int  # 0, then 1 for the retry after a connection failure
    sent_at: float  # time.monotonic()

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class TwilioHooks:
    """Posts status callbacks (in order, from one thread) and inbound texts (at once)."""

    def __init__(
        self, book: TwilioBook, auth_token: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.book = book
        self.auth_token = auth_token
        self.timeout = timeout
        self.retries = 1
        self._cond = threading.Condition()
        self._posts: list[HookPost] = []
        self._busy = 0
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._run, name="sandbox-twilio", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    # --- what was posted ------------------------------------------------------------------

    def posts(self, kind: str | None = None) -> list[HookPost]:
        with self._cond:
            return [p for p in self._posts if kind is None or p.kind == kind]

    def clear(self) -> None:
        with self._cond:
            self._posts.clear()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every message sent so far went through its statuses."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._busy == 0, timeout):
                raise TimeoutError(f"{self._busy} Twilio message(s) still progressing")

    # --- sending --------------------------------------------------------------------------

    def sign(self, url: str, params: dict[str, str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    def progress(self, sid: str) -> None:
        """Queue message `sid`'s statuses (after its create was answered)."""
        with self._cond:
            self._busy += 1
        self._queue.put(sid)

    def post(self, kind: str, url: str, params: dict[str, str]) -> HookPost:
        """POST `params` as a signed form to `url`; the last try is returned."""
        url = url.split("#", 1)[0]  # Twilio's connection overrides are not part of the URL
        signature = self.sign(url, params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature,
        }
        post: HookPost | None = None
        for attempt in range(1 + self.retries):
            status: int | None = None
            error: str | None = None
            try:
                with httpx.Client(timeout=self.timeout) as client:
                    status = client.post(
                        url, content=urlencode(params), headers=headers
                    ).status_code
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            post = HookPost(
                kind, url, dict(params), signature, status, error, attempt, time.monotonic()
            )
            with self._cond:
                self._posts.append(post)
                self._cond.notify_all()
            if status is not None or self._stop.is_set():
                break
        assert post is not None
        return post

    # --- the carrier ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            sid = self._queue.get()
            if sid is None or self._stop.is_set():
                return
            try:
                self._statuses(sid)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _statuses(self, sid: str) -> None:
        with self.book.lock:
            sms = self.book.messages.get(sid)
            steps = sms.steps() if sms is not None else []
        for status, code in steps:
            if self._stop.is_set():
                return
            moved, url = self.book.advance(sid, status, code)
            if moved is None or not url:
                continue
            params = {
                "SmsSid": moved.sid,
                "SmsStatus": status,
                "MessageStatus": status,
                "To": moved.to,
                "MessageSid": moved.sid,
                "AccountSid": moved.account_sid,
                "From": moved.from_,
                "ApiVersion": API_VERSION,
            }
            if code is not None:
                params["ErrorCode"] = str(code)
            self.post("status", url, params)

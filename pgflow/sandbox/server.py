"""The sandbox: a real HTTP server on 127.0.0.1 that speaks Retell's API and Twilio's
Messaging API, so the real clients, webhooks and signatures run without either. `pgflow
demo` and `pgflow sandbox serve` run it with PGFLOW_SMS_TRANSPORT=sandbox; the tests' fake
Retell is this server.

`Sandbox` puts the parts together and is what the demo, the CLI and the tests hold:
`http` (the server, every request recorded), `api` (Retell's endpoints and the sandbox's
own), `faults` (scripted failures of create-sms-chat), `lead` (the chats as they happen:
the lead's texts and ours), `chats` (what the sandbox remembers, the phones too) and
`webhooks` (chat events to `webhook_url`, signed with the API key, like Retell's); and
`twilio` (Twilio's endpoints, callbacks to `public_url`, signed with the auth token).

Credentials: Retell's key is `api_key`; Twilio's Account SID defaults to
SANDBOX_TWILIO_ACCOUNT_SID and its auth token to `api_key` (what the settings default to
in sandbox mode); `public_url` (where `pgflow serve` listens, for Twilio's inbound
webhooks) defaults to the origin of `webhook_url`."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from pgflow.config import SANDBOX_TWILIO_ACCOUNT_SID
from pgflow.sandbox.api import RetellApi, is_create
from pgflow.sandbox.chats import ChatBook
from pgflow.sandbox.faults import Script, Step
from pgflow.sandbox.http import Handler, RecordedRequest, Recorder, Server
from pgflow.sandbox.lead import LiveChats, Responder
from pgflow.sandbox.twilio import TwilioApi
from pgflow.sandbox.webhooks import Delivery, WebhookSender


class Sandbox:
    """A Retell and Twilio look-alike on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        api_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        log_path: Path | str | None = None,
        webhook_attempts: int = 3,
        webhook_retry_delay: float = 1.0,
        numbers: list[str] | None = None,
        responder: Responder | None = None,
        unique_ids: bool = True,
        twilio_account_sid: str = SANDBOX_TWILIO_ACCOUNT_SID,
        twilio_auth_token: str | None = None,
        public_url: str | None = None,
        twilio_numbers: list[str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.log_path = Path(log_path) if log_path is not None else None
        self.book = ChatBook(secrets.token_hex(4) if unique_ids else "")
        self.webhooks = WebhookSender(
            webhook_url, api_key, attempts=webhook_attempts, retry_delay=webhook_retry_delay
        )
        for number in numbers or []:
            self.book.add_number(number)
        self.live = LiveChats(self.book, self.webhooks, responder)
        self.faults = Script()
        self.recorder = Recorder(self.log_path)
        self._public_url = public_url.rstrip("/") if public_url else None
        self.twilio = TwilioApi(
            twilio_account_sid,
            twilio_auth_token or api_key,
            self.book,
            self.recorder,
            lambda: self.public_url,
            twilio_numbers,
        )
        self._stopping = threading.Event()  # wakes handlers sleeping in a scripted delay
        self._api = RetellApi(
            api_key, self.live, self.faults, self.recorder, self._stopping, say=self.say
        )
        self._server: Server | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the sandbox is already started")
        self._stopping.clear()
        self._server = Server((self.host, self.port), self._serve)
        self.port = self._server.port
        self._server.start()
        self.webhooks.start()
        self.twilio.hooks.start()
        return self

    def _serve(self, handler: Handler) -> None:
        (self.twilio if self.twilio.handles(handler.path) else self._api)(handler)

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self.webhooks.stop()
        self.twilio.hooks.stop()
        self._server.stop()
        self._server = None

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
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str | None:
        return self.webhooks.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.webhooks.url = url

    @property
    def public_url(self) -> str | None:
        """Where `pgflow serve` listens, for Twilio's inbound webhooks (default: the origin
        of `webhook_url`); a Twilio line's own SmsUrl wins."""
        if self._public_url is not None:
            return self._public_url
        parts = urlsplit(self.webhooks.url or "")
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None

    @public_url.setter
    def public_url(self, url: str | None) -> None:
        self._public_url = url.rstrip("/") if url else None

    @property
    def responder(self) -> Responder | None:
        return self.live.responder

    @responder.setter
    def responder(self, responder: Responder | None) -> None:
        self.live.responder = responder

    # --- faults ---------------------------------------------------------------------------

    def script(self, *steps: int | Step) -> None:
        """Queue answers for the next create-sms-chat requests, consumed in order."""
        self.faults.add(*steps)

    def set_default(self, step: int | Step | None) -> None:
        """How create-sms-chat answers once the script is exhausted (None: normally)."""
        self.faults.set_default(step)

    def reset(self) -> None:
        """Forget requests, chats, phones, the script and the default; Twilio's messages,
        callbacks, opt-outs and scripted outcomes (numbers and lines stay)."""
        self.recorder.clear()
        self.faults.clear()
        self.book.clear()
        self.twilio.reset()

    # --- inspection -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.recorder.requests

    def sms_requests(self) -> list[RecordedRequest]:
        """Every `POST /create-sms-chat` received, whatever the answer was."""
        return [r for r in self.recorder.requests if is_create(r.method, r.path)]

    @property
    def chats(self) -> dict[str, dict[str, Any]]:
        with self.book.lock:
            return {chat_id: chat.public() for chat_id, chat in self.book.chats.items()}

    def phone(self, number: str) -> list[dict[str, Any]]:
        """What a lead's phone received and sent, in order."""
        return self.book.phone(number)

    def wait_for_requests(
        self, n: int, timeout: float = 5.0, *, path: str | None = None
    ) -> list[RecordedRequest]:
        """Block until at least `n` requests (to `path`, if given) arrived; return them."""
        return self.recorder.wait_for(n, timeout, path, f"sandbox at {self.host}:{self.port}")

    # --- webhooks (Retell -> us) ----------------------------------------------------------

    def signed_webhook(
        self,
        payload: dict[str, Any],
        *,
        timestamp_ms: int | None = None,
        api_key: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers of a webhook as Retell would sign it."""
        body = self.webhooks.body(payload)
        return body, self.webhooks.headers(body, timestamp_ms, api_key)

    def post_webhook(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        timestamp_ms: int | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """POST a signed webhook now (sync); `headers` override the signed ones."""
        import httpx

        body, signed = self.signed_webhook(payload, timestamp_ms=timestamp_ms, api_key=api_key)
        signed.update(headers or {})
        with httpx.Client(timeout=timeout) as client:
            return client.post(url, content=body, headers=signed)

    def deliveries(self, event: str | None = None) -> list[Delivery]:
        return [d for d in self.webhooks.deliveries if event is None or d.event == event]

    # --- the chats ------------------------------------------------------------------------

    def say(self, lead: str, line: str, text: str) -> dict[str, Any]:
        """The lead texts one of our numbers: through Twilio when it is a Twilio line (see
        `TwilioApi.say`), else into Retell's chats (see `LiveChats.say`)."""
        if self.twilio.is_line(line):
            return self.twilio.say(lead, line, text)
        return self.live.say(lead, line, text)

    def post_agent_message(self, chat_id: str, content: str, message_id: str | None) -> str:
        """Our agent's text into a live chat (what Retell does not allow, the sandbox does)."""
        return self.live.post_agent_message(chat_id, content, message_id)

    def end_chat(self, chat_id: str) -> bool:
        return self.live.end_chat(chat_id)


def serve_forever(sandbox: Sandbox, *, announce: Callable[[str], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT (the main thread's signals), announcing the URL first."""
    import signal

    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with sandbox:
            (announce or (lambda url: print(f"READY {url}", flush=True)))(sandbox.url)
            while not done.wait(1.0):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

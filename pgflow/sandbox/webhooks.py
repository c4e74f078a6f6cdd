"""Webhooks from the sandbox to our `/webhooks/retell`, signed and retried like Retell's.

Chat events go out in order from one thread (10 s timeout, up to 3 attempts); a
chat_inbound is a synchronous call whose answer the sandbox needs. Every delivery is kept
(its payload, the raw body, each attempt's status), so tests can send one again, send it
several times, or hold a batch and release it in another order."""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpx

from pgflow.transport.retell import SIGNATURE_HEADER, sign

DEFAULT_ATTEMPTS = 3
DEFAULT_TIMEOUT = 10.0


@dataclasses.dataclass
class Delivery:
    event: str
    payload: dict[str, Any]
    attempts: list[str] = dataclasses.field(default_factory=list)  # "200", "503", "error: ..."
    answer: Any = None

    @property
    def delivered(self) -> bool:
        return any(a.startswith("2") for a in self.attempts)


class WebhookSender:
    """Posts signed webhooks to one URL: chat events in order, chat_inbound at once."""

    def __init__(
        self,
        url: str | None,
        api_key: str,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delay: float = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.deliveries: list[Delivery] = []
        self._lock = threading.Condition()
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._held: list[Delivery] | None = None
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    # --- sending -------------------------------------------------------------------------------

    def body(self, payload: dict[str, Any]) -> bytes:
        return json.dumps(payload, separators=(",", ":")).encode()

    def headers(
        self, body: bytes, timestamp_ms: int | None = None, api_key: str | None = None
    ) -> dict[str, str]:
        """Retell's headers for `body`, signed with our key (or `api_key`, when given)."""
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        key = self.api_key if api_key is None else api_key
        return {"content-type": "application/json", SIGNATURE_HEADER: sign(body, key, stamp)}

    def send(self, payload: dict[str, Any]) -> Delivery:
        """Queue a chat event (delivered in order, retried); held while `hold()` is on."""
        delivery = Delivery(str(payload.get("event")), payload)
        with self._lock:
            self.deliveries.append(delivery)
            if self._held is not None:
                self._held.append(delivery)
                return delivery
            self._busy += 1
        self._queue.put(delivery)
        return delivery

    def call(self, payload: dict[str, Any]) -> Any:
        """Deliver now and return the JSON answer (None when every attempt failed)."""
        delivery = Delivery(str(payload.get("event")), payload)
        with self._lock:
            self.deliveries.append(delivery)
        self._deliver(delivery)
        return delivery.answer

    def hold(self) -> None:
        """Keep chat events instead of sending them, until `release()`."""
        with self._lock:
            if self._held is None:
                self._held = []

    def release(self, order: Iterable[int] | None = None, times: int = 1) -> list[Delivery]:
        """Send the held events: in `order` (indexes into the held list; repeats allowed),
        each `times` times. Returns the held deliveries."""
        with self._lock:
            held, self._held = self._held or [], None
        picks = list(range(len(held))) if order is None else list(order)
        for index in picks:
            for _ in range(times):
                self._resend(held[index])
        return held

    def redeliver(self, delivery: Delivery, times: int = 1) -> None:
        for _ in range(times):
            self._resend(delivery)

    def _resend(self, delivery: Delivery) -> None:
        with self._lock:
            self._busy += 1
        self._queue.put(delivery)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every queued event was delivered or given up."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._busy == 0, timeout):
                raise TimeoutError(f"{self._busy} webhook(s) still being delivered")

    # --- the delivery thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            delivery = self._queue.get()
            if delivery is None:
                break
            try:
                self._deliver(delivery)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()

    def _deliver(self, delivery: Delivery) -> None:
        url = self.url  # it may be changed (or cleared) while a delivery is under way
        if url is None:
            delivery.attempts.append("skipped: no webhook url")
            return
        body = self.body(delivery.payload)
        for attempt in range(self.attempts):
            if attempt and self._stop.wait(self.retry_delay * 2 ** (attempt - 1)):
                return
            try:
                with httpx.Client(timeout=self.timeout) as client:
                    response = client.post(url, content=body, headers=self.headers(body))
            except httpx.HTTPError as exc:
                delivery.attempts.append(f"error: {type(exc).__name__}")
                continue
            delivery.attempts.append(str(response.status_code))
            if response.is_success:
                try:
                    delivery.answer = response.json()
                except ValueError:
                    delivery.answer = None
                return
            if 400 <= response.status_code < 500 and response.status_code != 429:
                return  # a refusal is final; only failures are retried

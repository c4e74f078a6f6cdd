"""The SMS transport interface the worker sends through.

A transport starts chats (an outbound SMS whose text is exactly ours), reads and ends
them, and, where it accepts arbitrary text into a live chat (`accepts_text`, the local
sandbox), posts the agent's replies. Retell (`pgflow.transport.retell`) is the first
implementation; every failure is a `TransportError` classified for the worker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
import math
import re
import time
from typing import Any, Protocol, TypedDict, Unpack

import httpx

from pgflow.errors import PgflowError
from pgflow.phones import mask

_PHONE_LIKE = re.compile(r"\+?\d{7,15}")


class TransportError(PgflowError):
    """A transport call failed; `retryable` and `alert` tell the caller what to do next.

    - `retryable`: 429, 5xx, timeouts and transport failures (try again, with backoff;
      `retry_after` carries the server's `Retry-After` in seconds when it sent one);
    - permanent: any other 4xx and a malformed success response (dead-letter at once);
    - `alert`: a refusal that needs a human (a bad key, an unpaid account)."""

    code = "transport"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None,
        retryable: bool,
        alert: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retryable = retryable
        self.alert = alert
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"retryable={self.retryable!r}, alert={self.alert!r}, "
            f"retry_after={self.retry_after!r})"
        )


@dataclasses.dataclass(frozen=True)
class SendResult:
    """A chat the transport accepted: its id, the agent that carries it, the HTTP status."""

    chat_id: str
    agent_id: str | None
    status_code: int


class NewChat(TypedDict):
    """What starts a chat (`create_sms_chat`'s keywords): our number, the lead's, the exact
    first text, an agent overriding the number's own (or None), metadata, dynamic variables."""

    from_number: str
    to_number: str
    body: str
    agent_id: str | None
    metadata: dict[str, str]
    dynamic_variables: dict[str, str]


class SmsTransport(Protocol):
    """What the worker needs from an SMS provider."""

    name: str
    accepts_text: bool

    async def create_sms_chat(self, **chat: Unpack[NewChat]) -> SendResult:
        """Start a chat whose first message is exactly `body`."""
        ...

    async def get_chat(self, chat_id: str) -> dict[str, Any]:
        """The chat object (status, transcript, metadata)."""
        ...

    async def end_chat(self, chat_id: str) -> None:
        """End an ongoing chat."""
        ...

    async def find_sent(
        self, *, to_number: str, since: dt.datetime, message_id: int
    ) -> SendResult | None:
        """The chat a send of ours started, found by the metadata we gave it (our message
        id) among the lead's chats since `since`; None when there is none."""
        ...

    async def post_message(self, chat_id: str, body: str, message_id: str) -> str:
        """Our text into a live chat, where `accepts_text`; its message id in the chat."""
        ...

    async def aclose(self) -> None: ...


# --- what every transport's HTTP client shares ----------------------------------------------


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The response's JSON object, or None (not JSON, or not an object)."""
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def scrub(message: str, secret: str, phones: tuple[str, ...]) -> str:
    """A message with the secret and every phone number (given or phone-like) masked."""
    message = message.replace(secret, "***")
    for phone in phones:
        if phone:
            message = message.replace(phone, mask(phone))
    return _PHONE_LIKE.sub(lambda m: mask(m.group(0)), message)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds to wait (delta-seconds or an HTTP date); None if absent."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)

"""Retell AI: the first SMS transport (chats), and Retell's webhook signatures.

Sending uses the exact-text design (see the README and sql docs): a Retell chat agent whose
`begin_message` is `{{sms_body}}` sends whatever we pass as the dynamic variable `sms_body`,
so every send carries our rendered text in `retell_llm_dynamic_variables.sms_body`.

Errors are one type, `RetellError` (a `TransportError`): 429, 5xx, timeouts and transport
failures are retryable; any other 4xx and a malformed success response are permanent;
401 (bad key) and 402 (payment) also need a human (`alert`). Messages never contain the
API key or a full phone number.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import ssl
import time
from types import TracebackType
from typing import Any, Final, Self, Unpack
from urllib.parse import quote

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from pgflow import __version__
from pgflow.transport.base import (
    NewChat,
    SendResult,
    TransportError,
    json_object,
    parse_retry_after,
    scrub,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "RetellClient",
    "RetellError",
    "SendResult",
    "sign",
    "verify_signature",
]

DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=15.0, write=5.0, pool=5.0)
SIGNATURE_HEADER: Final = "x-retell-signature"
SIGNATURE_TOLERANCE_MS: Final = 300_000
MAX_MESSAGE_CHARS: Final = 500

ALERT_STATUSES: Final = frozenset({401, 402})

_SIGNATURE_PART = re.compile(r"^(v|d)=(.*)$")
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


class RetellError(TransportError):
    """A Retell call failed (see `TransportError` for the classification)."""

    code = "retell"


class RetellClient:
    """Retell's REST API over one pooled `httpx.AsyncClient`; use `async with` or `aclose()`.

    An `SmsTransport` whose chats Retell's own LLM carries on (`accepts_text` is False).

    The client is httpx; its default transport is aiohttp's connection pool (httpx-aiohttp),
    which measured about 4x the requests per second of httpcore's on the same server, with
    the same timeouts, limits and exceptions."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: httpx.Timeout | None = None,
        limits: httpx.Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = "retell"
        self.accepts_text = False
        if not api_key:
            raise ValueError("api_key must not be empty")
        if not base_url:
            raise ValueError("base_url must not be empty")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        limits = limits or httpx.Limits(max_connections=50, max_keepalive_connections=50)
        if transport is None:
            transport = AiohttpTransport(verify=_ssl_context(), limits=limits)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"pgflow-sms/{__version__}",
            },
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            follow_redirects=False,
            limits=limits,
            verify=_ssl_context(),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"RetellClient(base_url={self.base_url!r})"

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

    async def create_sms_chat(self, **chat: Unpack[NewChat]) -> SendResult:
        """Start an SMS chat whose first message is exactly `body`.

        `body` travels as the dynamic variable `sms_body` (it wins over a caller's
        `sms_body`); `agent_id`, when given, overrides the number's outbound agent."""
        body, agent_id = chat["body"], chat["agent_id"]
        if not body.strip():
            raise ValueError("body must not be empty: Retell would send '{{sms_body}}' literally")
        payload: dict[str, Any] = {
            "from_number": chat["from_number"],
            "to_number": chat["to_number"],
        }
        if agent_id is not None:
            payload["override_agent_id"] = agent_id
        payload["metadata"] = dict(chat["metadata"])
        payload["retell_llm_dynamic_variables"] = {**chat["dynamic_variables"], "sms_body": body}
        phones = (chat["from_number"], chat["to_number"])
        response = await self._request(
            "POST", "/create-sms-chat", "create-sms-chat", phones, payload
        )
        data = json_object(response)
        chat_id = data.get("chat_id") if data is not None else None
        if data is None or not isinstance(chat_id, str) or not chat_id:
            raise _malformed(response, "create-sms-chat", "no chat_id")
        returned_agent = data.get("agent_id")
        return SendResult(
            chat_id=chat_id,
            agent_id=returned_agent if isinstance(returned_agent, str) else agent_id,
            status_code=response.status_code,
        )

    async def end_chat(self, chat_id: str) -> None:
        """End an ongoing chat (`PATCH /end-chat/{chat_id}`)."""
        await self._request("PATCH", f"/end-chat/{_path_id(chat_id)}", "end-chat", (), None)

    async def find_sent(
        self, *, to_number: str, since: dt.datetime, message_id: int
    ) -> SendResult | None:
        """After a send cut off between Retell's answer and our record: the lead's SMS chats
        that began since the attempt (a minute's slack for clocks), newest first
        (`POST /v3/list-chats`), searched for the metadata we sent with it."""
        since_ms = int(since.timestamp() * 1000) - 60_000
        payload = {
            "filter_criteria": {
                "user_number": {"op": "eq", "type": "string", "value": to_number},
                "chat_type": {"op": "in", "value": ["sms_chat"]},
                "start_timestamp": {"op": "ge", "type": "number", "value": since_ms},
            },
            "sort_order": "descending",
            "limit": 50,
        }
        response = await self._request(
            "POST", "/v3/list-chats", "list-chats", (to_number,), payload
        )
        data = json_object(response)
        items = data.get("items") if data is not None else None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("chat_id"), str):
                continue
            metadata = item.get("metadata")
            if isinstance(metadata, dict) and metadata.get("pgflow_message_id") == str(message_id):
                agent = item.get("agent_id")
                return SendResult(
                    chat_id=item["chat_id"],
                    agent_id=agent if isinstance(agent, str) else None,
                    status_code=response.status_code,
                )
        return None

    async def post_message(self, chat_id: str, body: str, message_id: str) -> str:
        """Retell takes no text into a chat: its own LLM writes the replies."""
        raise RetellError(
            "Retell cannot post our text into a chat (its LLM answers the lead)",
            status_code=None,
            retryable=False,
        )

    async def get_chat(self, chat_id: str) -> dict[str, Any]:
        """The chat object (`GET /get-chat/{chat_id}`): status, messages, metadata, ..."""
        response = await self._request(
            "GET", f"/get-chat/{_path_id(chat_id)}", "get-chat", (), None
        )
        data = json_object(response)
        if data is None:
            raise _malformed(response, "get-chat", "not a JSON object")
        return data

    async def call_json(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Any Retell endpoint that answers a JSON object (None for 204): what
        `pgflow retell setup` uses for LLMs, chat agents and phone numbers."""
        response = await self._request(method, path, path.strip("/").split("/")[0], (), payload)
        if response.status_code == 204 or not response.content:
            return None
        data = json_object(response)
        if data is None:
            raise _malformed(response, path)
        return data

    async def _request(
        self,
        method: str,
        path: str,
        operation: str,
        phones: tuple[str, ...],
        payload: dict[str, Any] | None,
    ) -> httpx.Response:
        """One HTTP call; every failure becomes a classified RetellError."""
        try:
            response = await self._http.request(method, path, json=payload)
        except httpx.TimeoutException as exc:
            if _not_really_a_timeout(exc):
                raise RetellError(
                    self._scrub(
                        f"Retell {operation}: transport error "
                        f"({type(exc.__cause__).__name__}: {exc})",
                        phones,
                    ),
                    status_code=None,
                    retryable=True,
                ) from exc
            raise RetellError(
                self._scrub(f"Retell {operation}: timed out ({type(exc).__name__})", phones),
                status_code=None,
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:
            raise RetellError(
                self._scrub(
                    f"Retell {operation}: transport error ({type(exc).__name__}: {exc})", phones
                ),
                status_code=None,
                retryable=True,
            ) from exc
        if response.is_success:
            return response
        status = response.status_code
        detail = _error_detail(response)
        message = f"Retell {operation}: HTTP {status} {response.reason_phrase}".rstrip()
        if detail:
            message = f"{message}: {detail}"
        raise RetellError(
            self._scrub(message, phones),
            status_code=status,
            retryable=status == 429 or 500 <= status <= 599,
            alert=status in ALERT_STATUSES,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    def _scrub(self, message: str, phones: tuple[str, ...]) -> str:
        """Remove the API key and any phone number from a message."""
        return scrub(message, self._api_key, phones)


def _not_really_a_timeout(exc: httpx.TimeoutException) -> bool:
    """httpx-aiohttp maps every aiohttp connection error (a dropped connection too) to
    httpx.ConnectTimeout; tell those apart so the recorded error says what happened."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientError) and not isinstance(cause, TimeoutError)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process (building one loads the CA bundle: ~50 ms)."""
    return httpx.create_ssl_context()


def _path_id(chat_id: str) -> str:
    if not chat_id:
        raise ValueError("chat_id must not be empty")
    return quote(chat_id, safe="")


def _malformed(response: httpx.Response, operation: str, why: str = "") -> RetellError:
    """A success answer we cannot use: permanent (the same call would get the same)."""
    return RetellError(
        f"Retell {operation}: HTTP {response.status_code}: malformed response"
        + (f" ({why})" if why else ""),
        status_code=response.status_code,
        retryable=False,
    )


def _error_detail(response: httpx.Response) -> str:
    """Retell's `{"status": "error", "message": ...}` message, at most 500 chars."""
    data = json_object(response)
    if data is None:
        return ""
    detail = data.get("message")
    if detail is None:
        detail = data.get("error")
    if detail is None:
        return ""
    text = " ".join(str(detail).split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def sign(body: bytes, api_key: str, timestamp_ms: int) -> str:
    """The `x-retell-signature` value Retell sends: `v=<ms>,d=<hex HMAC-SHA256>`.

    `d = HMAC-SHA256(key=api_key, msg=raw body + str(timestamp_ms))`, lowercase hex."""
    digest = hmac.new(
        api_key.encode(), body + str(timestamp_ms).encode(), hashlib.sha256
    ).hexdigest()
    return f"v={timestamp_ms},d={digest}"


def verify_signature(
    body: bytes,
    header: str | None,
    api_key: str,
    *,
    now_ms: int | None = None,
    tolerance_ms: int = SIGNATURE_TOLERANCE_MS,
) -> bool:
    """True when `header` signs exactly `body` with `api_key` within ±tolerance of now.

    False (never an exception) on a missing or garbled header, an empty key, a timestamp
    too far from `now_ms` (default: the current time) or a digest that does not match."""
    if not header or not api_key:
        return False
    parts: dict[str, str] = {}
    for raw in header.split(","):
        match = _SIGNATURE_PART.match(raw.strip())
        if match is None or match.group(1) in parts:
            return False
        parts[match.group(1)] = match.group(2).strip()
    stamp, digest = parts.get("v"), parts.get("d")
    if stamp is None or digest is None:
        return False
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 16:
        return False
    if _HEX_DIGEST.match(digest) is None:
        return False
    timestamp_ms = int(stamp)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - timestamp_ms) > tolerance_ms:
        return False
    expected = sign(body, api_key, timestamp_ms).partition(",d=")[2]
    return hmac.compare_digest(expected.encode(), digest.lower().encode())

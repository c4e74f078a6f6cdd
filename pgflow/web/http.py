"""HTTP plumbing shared by the webhooks: bounded body reads, JSON, what jsonb can hold,
error responses, and the answers to a failed SQL call."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qs

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse

from pgflow import db, errors, logs
from pgflow.intake import NUL_TEXT

log = logging.getLogger("pgflow.web")
T = TypeVar("T")


class BodyError(Exception):
    """A request refused for its body: HTTP status, our error code, a detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


async def read_limited(request: Request, limit: int) -> tuple[bytes, bool]:
    """The body, or its first `limit` bytes and True when it is longer than that.

    Content-Length is believed when it says too large (only a prefix is read, to keep);
    otherwise the bytes are counted as they arrive, so a chunked body cannot slip past."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    buf = bytearray()
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            buf += chunk
            if len(buf) > limit:
                too_large = True
                break
    return bytes(buf[:limit]), too_large


def parse_json(body: bytes) -> Any:
    """The JSON value of a UTF-8 body (a leading BOM tolerated); else BodyError 400."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, "malformed_json", f"the body is not UTF-8 ({exc.reason})") from None
    try:
        value = json.loads(text.removeprefix("\ufeff"), parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BodyError(
            400,
            "malformed_json",
            f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except RecursionError:
        raise BodyError(
            400, "malformed_json", f"the body is nested deeper than {MAX_DEPTH} levels"
        ) from None
    except ValueError as exc:
        detail = str(exc)
        if "integer string conversion" in detail:
            detail = "a number has more than 4300 digits"
        raise BodyError(400, "malformed_json", f"the body is not JSON: {detail}") from None
    check_depth(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_TEXT = "text must be Unicode: an unpaired surrogate (\\ud800-\\udfff) is not"
INFINITE_TEXT = "numbers must be within range (1e400 is not a number we can keep)"


def _walk(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value of a JSON document with its depth (no recursion: any depth is safe)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def check_depth(value: Any) -> None:
    """BodyError 400 for a document nested deeper than MAX_DEPTH (no webhook of ours needs
    it, and the database driver's encoder would run out of stack on it)."""
    if any(depth > MAX_DEPTH for _, depth in _walk(value)):
        raise BodyError(400, "malformed_json", f"the body is nested deeper than {MAX_DEPTH} levels")


def unstorable(value: Any) -> str | None:
    """Why PostgreSQL's jsonb cannot hold this document, in our words, or None."""
    for item, _ in _walk(value):
        if isinstance(item, str):
            if "\x00" in item:
                return NUL_TEXT
            if _SURROGATE.search(item):
                return SURROGATE_TEXT
        elif isinstance(item, float) and not math.isfinite(item):
            return INFINITE_TEXT
    return None


def storable_json(value: Any) -> Any:
    """The JSON document with what jsonb cannot hold replaced: NUL and unpaired surrogates
    by U+FFFD, numbers out of range by null (a provider's event is kept, not refused).
    (A raw body for a text column: `pgflow.intake.storable_body`.)"""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable_json(k): storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(v) for v in value]
    return value


def error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Every refusal has this shape: {"error": code, "detail": text}."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def unavailable() -> JSONResponse:
    """The database is not reachable: nothing was recorded, the sender should retry."""
    return error(503, "database_unavailable", "the database is unavailable; retry later")


CANNOT_STORE = "a value in the body cannot be stored (a time or a number out of range)"


async def record(call: db.Call[T], pool: AsyncConnectionPool[Any], source: str) -> T | JSONResponse:
    """A webhook's one SQL call, or the refusal every webhook gives when it fails: 503
    when the database is unavailable (nothing was recorded: the sender retries), 400 for a
    value it refuses. `source` names the log events (`<source>.unavailable`, ...)."""
    try:
        return await call.arun_in(pool)
    except db.UNAVAILABLE as exc:  # includes the pool's PoolTimeout/PoolClosed
        logs.event(log, f"{source}.unavailable", logging.ERROR, error=type(exc).__name__)
        return unavailable()
    except errors.InvalidInput as exc:
        return error(400, "invalid_payload", str(exc))
    except psycopg.DataError as exc:
        logs.event(log, f"{source}.unstorable", logging.WARNING, error=errors.first_line(exc))
        return error(400, "invalid_payload", CANNOT_STORE)


def client_host(request: Request) -> str:
    return request.client.host if request.client else "-"


FORM_LIMIT = 64 * 1024


class FormError(Exception):
    pass


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body, every value of each field; FormError when too large or not
    a form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("the form was not sent as a form")
    body, too_large = await read_limited(request, FORM_LIMIT)
    if too_large:
        raise FormError("the form is too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError("the form could not be read") from exc

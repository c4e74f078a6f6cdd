"""HTTP plumbing shared by the webhooks: bounded body reads, JSON, error responses."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


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
        return json.loads(text.removeprefix("\ufeff"), parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BodyError(
            400,
            "malformed_json",
            f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise BodyError(400, "malformed_json", f"the body is not JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Every refusal has this shape: {"error": code, "detail": text}."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def unavailable() -> JSONResponse:
    """The database is not reachable: nothing was recorded, the sender should retry."""
    return error(503, "database_unavailable", "the database is unavailable; retry later")


def client_host(request: Request) -> str:
    return request.client.host if request.client else "-"

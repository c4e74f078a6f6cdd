"""Bearer tokens, compared in constant time; each webhook source has its own token."""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from pgflow import logs
from pgflow.web.http import client_host, error

log = logging.getLogger("pgflow.web")


def bearer_refusal(header: str | None, token: str | None) -> str | None:
    """Why a request is refused (for the log), or None when it carries `token`."""
    if token is None:
        return "no_token_configured"
    if header is None:
        return "missing_token"
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return "not_bearer"
    # Starlette decodes headers as latin-1: encoding back gives the bytes as sent.
    if not hmac.compare_digest(given.strip().encode("latin-1"), token.encode("utf-8")):
        return "wrong_token"
    return None


def refuse_without(token: str | None, request: Request, source: str) -> JSONResponse | None:
    """None when the request carries `token`; else the 401, logged as
    `<source>.unauthorized` with the reason and the client."""
    reason = bearer_refusal(request.headers.get("authorization"), token)
    if reason is None:
        return None
    logs.event(
        log, f"{source}.unauthorized", logging.WARNING, reason=reason, client=client_host(request)
    )
    return unauthorized()


def unauthorized() -> JSONResponse:
    return error(
        401,
        "unauthorized",
        "a valid Authorization: Bearer token is required",
        headers={"WWW-Authenticate": "Bearer"},
    )

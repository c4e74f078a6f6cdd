"""Twilio's webhooks, each with X-Twilio-Signature checked against the public URL Twilio
called (PGFLOW_PUBLIC_URL + path + query) over every form field; a bad or missing signature,
or a server without TWILIO_AUTH_TOKEN and PGFLOW_PUBLIC_URL, is 403 and writes nothing but a
log line.

- POST /webhooks/twilio/status?message_id=N: a delivery receipt (204).
- POST /webhooks/twilio/inbound: a lead's text (an empty TwiML `<Response/>`: our answers,
  the agent's or a person's, go out through the Messages API like every other text)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pgflow import db, logs
from pgflow.transport.twilio import SIGNATURE_HEADER, verify_signature
from pgflow.web.context import Web
from pgflow.web.http import FormError, read_form

log = logging.getLogger("pgflow.web")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _forbidden(reason: str) -> Response:
    return JSONResponse({"error": "forbidden", "detail": reason}, status_code=403)


def _unavailable() -> Response:
    logs.event(log, "twilio.unavailable", logging.ERROR)
    return JSONResponse(
        {"error": "database_unavailable"}, status_code=503, headers={"Retry-After": "5"}
    )


async def _signed_form(web: Web, request: Request) -> dict[str, str] | Response:
    """The form of a request Twilio signed (one value per field), or the answer refusing it."""
    token, public = web.settings.twilio_auth_token, web.settings.public_url
    if not token or not public:
        logs.event(
            log,
            "twilio.unconfigured",
            logging.ERROR,
            detail="TWILIO_AUTH_TOKEN and PGFLOW_PUBLIC_URL are needed to check signatures",
        )
        return _forbidden("this server cannot check Twilio's signatures")
    try:
        fields = await read_form(request)
    except FormError as exc:
        return JSONResponse({"error": "invalid_payload", "detail": str(exc)}, status_code=400)
    params = {k: v if len(v) > 1 else v[0] for k, v in fields.items()}
    url = public + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not verify_signature(token, url, params, request.headers.get(SIGNATURE_HEADER)):
        logs.event(log, "twilio.unauthorized", logging.WARNING, path=request.url.path)
        return _forbidden("bad or missing X-Twilio-Signature")
    return {k: v[0] for k, v in fields.items()}


async def post_status(web: Web, request: Request) -> Response:
    payload = await _signed_form(web, request)
    if isinstance(payload, Response):
        return payload
    message_id = request.query_params.get("message_id", "")
    if not message_id.isdigit() or len(message_id) > 18:
        return JSONResponse({"error": "invalid_payload", "detail": "message_id"}, status_code=400)
    try:
        result = await db.record_twilio_status(int(message_id), payload, web.now()).arun_in(
            web.pool
        )
    except db.UNAVAILABLE:
        return _unavailable()
    logs.event(
        log,
        "twilio.status",
        message_id=int(message_id),
        result=result.get("result"),
        status=payload.get("MessageStatus"),
        error_code=payload.get("ErrorCode"),
    )
    return Response(status_code=204)


async def post_inbound(web: Web, request: Request) -> Response:
    payload = await _signed_form(web, request)
    if isinstance(payload, Response):
        return payload
    try:
        result: dict[str, Any] = await db.record_twilio_inbound(payload, web.now()).arun_in(
            web.pool
        )
    except db.UNAVAILABLE:
        return _unavailable()  # logged loudly: Twilio does not retry a 503 by default
    logs.event(
        log,
        "twilio.inbound",
        result=result.get("result"),
        effect=result.get("effect"),
        conversation_id=result.get("conversation_id"),
        opt_out_type=payload.get("OptOutType"),
    )
    if result.get("result") == "invalid":
        return JSONResponse({"error": "invalid_payload", "detail": result.get("detail")}, 400)
    return Response(EMPTY_TWIML, media_type="text/xml")

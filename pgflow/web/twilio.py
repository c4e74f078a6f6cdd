"""POST /webhooks/twilio/status: Twilio's delivery receipts, X-Twilio-Signature checked
against the public URL Twilio called (PGFLOW_PUBLIC_URL + path + query) over every form
field; a bad or missing signature, or a server without TWILIO_AUTH_TOKEN and
PGFLOW_PUBLIC_URL, is 403 and writes nothing but a log line."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pgflow import db, logs
from pgflow.transport.twilio import SIGNATURE_HEADER, verify_signature
from pgflow.web.context import Web
from pgflow.web.http import FormError, read_form

log = logging.getLogger("pgflow.web")


def _forbidden(reason: str) -> Response:
    return JSONResponse({"error": "forbidden", "detail": reason}, status_code=403)


async def post_status(web: Web, request: Request) -> Response:
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
    message_id = request.query_params.get("message_id", "")
    if not message_id.isdigit() or len(message_id) > 18:
        return JSONResponse({"error": "invalid_payload", "detail": "message_id"}, status_code=400)
    payload = {k: v[0] for k, v in fields.items()}
    try:
        result = await db.record_twilio_status(int(message_id), payload, web.now()).arun_in(
            web.pool
        )
    except db.UNAVAILABLE:
        logs.event(log, "twilio.unavailable", logging.ERROR)
        return JSONResponse(
            {"error": "database_unavailable"}, status_code=503, headers={"Retry-After": "5"}
        )
    logs.event(
        log,
        "twilio.status",
        message_id=int(message_id),
        result=result.get("result"),
        status=payload.get("MessageStatus"),
        error_code=payload.get("ErrorCode"),
    )
    return Response(status_code=204)

"""POST /webhooks/retell: Retell's webhooks (chat_inbound, chat_started, transcript_updated,
chat_ended, chat_analyzed, and the older sms_inbound), one `pgflow.record_retell_event()`
call each.

The `x-retell-signature` is verified on the raw body before anything is parsed: a missing,
wrong or older than 5 minutes signature is 401 and writes nothing but a log line. Every
signed delivery is recorded once (Retell retries: a repeat changes nothing and gets the
first answer). chat_inbound is answered with the agent, its prompt as dynamic variables
and our ids as metadata, or a reject; anything else with `{"result": ...}`."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from pgflow import db, logs
from pgflow.transport.retell import SIGNATURE_HEADER, verify_signature
from pgflow.web.context import Web
from pgflow.web.http import (
    BodyError,
    client_host,
    error,
    parse_json,
    read_limited,
    record,
    storable_json,
    unstorable,
)

log = logging.getLogger("pgflow.web")

# chat_ended and chat_analyzed repeat the whole transcript: room for long conversations.
RETELL_BODY_LIMIT = 1024 * 1024


async def post_retell(web: Web, request: Request) -> Response:
    try:
        body, too_large = await read_limited(request, RETELL_BODY_LIMIT)
    except ClientDisconnect:
        return Response(status_code=400)
    if too_large:
        logs.event(log, "retell.too_large", logging.WARNING, client=client_host(request))
        return error(413, "payload_too_large", f"the body is larger than {RETELL_BODY_LIMIT} bytes")
    key = web.settings.retell_api_key
    if key is None or not verify_signature(body, request.headers.get(SIGNATURE_HEADER), key):
        logs.event(
            log,
            "retell.unauthorized",
            logging.WARNING,
            reason="no_key_configured" if key is None else "bad_signature",
            client=client_host(request),
        )
        return error(401, "unauthorized", "a valid x-retell-signature is required")
    try:
        payload = parse_json(body)
    except BodyError as refused:
        logs.event(log, "retell.malformed", logging.WARNING, detail=refused.detail)
        return error(refused.status, refused.code, refused.detail)
    if not isinstance(payload, dict):
        logs.event(log, "retell.malformed", logging.WARNING, detail="not a JSON object")
        return error(400, "invalid_payload", "the body must be a JSON object")
    if unstorable(payload) is not None:  # a NUL in a lead's text: keep the event, not the NUL
        payload = storable_json(payload)
    call = db.record_retell_event(payload, web.settings.sandbox, web.now())
    result = await record(call, web.pool, "retell")  # unavailable: Retell retries
    if isinstance(result, Response):
        return result
    _log(payload, result)
    answer: Any = result.get("response")
    if isinstance(answer, dict):
        return JSONResponse(answer)
    return JSONResponse({"result": result.get("result")})


def _log(payload: dict[str, Any], result: dict[str, Any]) -> None:
    outcome = str(result.get("result"))
    level = logging.WARNING if outcome in ("unknown_chat", "malformed", "ignored") else logging.INFO
    logs.event(
        log,
        "retell.webhook",
        level,
        event=str(payload.get("event"))[:40],
        result=outcome,
        conversation_id=result.get("conversation_id"),
        inbound=result.get("inbound"),
        delivery_id=result.get("delivery_id"),
    )

"""POST /webhooks/events: business events from a CRM or a booking tool, one
`pgflow.record_business_event()` call each.

`Authorization: Bearer $PGFLOW_EVENTS_TOKEN`, compared in constant time (the lead
webhook's token is not accepted here). Body: `{"phone" | "conversation_id", "type":
"appointment_booked" | "human_takeover" | "disqualified", "at"?, "data"?, "id"?}`.
200 applied (or a repeat of one), 404 unknown phone or conversation (recorded), 422 an
event we cannot apply (recorded), 400/401/413 as the lead webhook."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from pgflow import db, logs, phones
from pgflow.web.auth import refuse_without
from pgflow.web.context import Web
from pgflow.web.http import BodyError, error, parse_json, read_limited, record, unstorable

log = logging.getLogger("pgflow.web")

EVENTS_BODY_LIMIT = 64 * 1024
STATUS = {
    "applied": 200,
    "duplicate": 200,
    "unknown_phone": 404,
    "unknown_conversation": 404,
    "invalid": 422,
}


async def post_event(web: Web, request: Request) -> Response:
    denied = refuse_without(web.settings.events_token, request, "event")
    if denied is not None:
        return denied
    try:
        body, too_large = await read_limited(request, EVENTS_BODY_LIMIT)
    except ClientDisconnect:
        return Response(status_code=400)
    if too_large:
        return error(413, "payload_too_large", f"the body is larger than {EVENTS_BODY_LIMIT} bytes")
    try:
        payload = parse_json(body)
    except BodyError as refused:
        return error(refused.status, refused.code, refused.detail)
    if not isinstance(payload, dict):
        return error(400, "invalid_payload", "the body must be a JSON object")
    problem = unstorable(payload)
    if problem is not None:
        return error(400, "invalid_payload", problem)
    phone = None
    if isinstance(payload.get("phone"), str):
        phone = phones.normalize(payload["phone"]).e164
    result = await record(db.record_business_event(payload, phone, web.now()), web.pool, "event")
    if isinstance(result, Response):
        return result
    outcome = str(result.get("result"))
    status = STATUS.get(outcome, 422)
    logs.event(
        log,
        "event.recorded",
        logging.INFO if status == 200 else logging.WARNING,
        type=str(payload.get("type"))[:40],
        result=outcome,
        conversation_id=result.get("conversation_id"),
        phone=phones.mask(phone) if phone else "-",
    )
    if status != 200:
        return error(status, outcome, str(result.get("detail") or outcome))
    return JSONResponse(
        {k: result.get(k) for k in ("result", "conversation_id", "outcome", "change")},
        status_code=200,
    )

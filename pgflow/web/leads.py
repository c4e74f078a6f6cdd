"""POST /webhooks/leads: one lead, one `pgflow.ingest_lead()` call.

`Authorization: Bearer $PGFLOW_LEAD_TOKEN`; a missing or wrong token, or none configured,
is 401 and writes nothing. The body is read up to 64 KiB (413 beyond, recorded); it must
be UTF-8 JSON, whatever the Content-Type says. Every lead past the token check leaves a
row in `pgflow.lead_events`. 201 created, 200 already_enrolled / suppressed; refusals are
`{"error", "detail"}` (README, "HTTP")."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from pgflow import db, intake, logs
from pgflow.web.auth import refuse_without
from pgflow.web.context import Web
from pgflow.web.http import BodyError, error, parse_json, read_limited, unavailable, unstorable

log = logging.getLogger("pgflow.web")

LEAD_BODY_LIMIT = 64 * 1024
ACCEPTED = {"created": 201, "already_enrolled": 200, "suppressed": 200}
REJECTED_STATUS = {"unknown_campaign": 404, "malformed_json": 400, "payload_too_large": 413}


async def post_lead(web: Web, request: Request) -> Response:
    denied = refuse_without(web.settings.lead_token, request, "lead")
    if denied is not None:
        return denied
    try:
        return await _lead(web, request)
    except ClientDisconnect:
        logs.event(log, "lead.client_disconnected", logging.WARNING)
        return Response(status_code=400)
    except db.UNAVAILABLE as exc:
        # Includes the pool's PoolTimeout/PoolClosed. Nothing was recorded: retry later.
        logs.event(log, "lead.unavailable", logging.ERROR, error=type(exc).__name__)
        return unavailable()


async def _lead(web: Web, request: Request) -> Response:
    now = web.now()
    body, too_large = await read_limited(request, LEAD_BODY_LIMIT)
    try:
        if too_large:
            raise BodyError(
                413, "payload_too_large", f"the body is larger than {LEAD_BODY_LIMIT} bytes"
            )
        payload = parse_json(body)
    except BodyError as refused:
        call = db.reject_lead(intake.storable_body(body), refused.code, refused.detail, None, now)
        result = await call.arun_in(web.pool)
        return _rejected(result, refused.status, phone="-", campaign=None)

    problem = unstorable(payload)
    if problem is not None:
        call = db.reject_lead(intake.storable_body(body), "invalid_payload", problem, None, now)
        result = await call.arun_in(web.pool)
        return _rejected(result, 422, phone="-", campaign=None)

    lead = intake.prepare(payload, body, now=now)
    campaign = payload.get("campaign") if isinstance(payload, dict) else None
    campaign = campaign[:100] if isinstance(campaign, str) else None
    started = time.perf_counter()
    async with web.pool.connection() as conn:
        result = await intake.ingest_async(conn, lead)
    status = str(result.get("status"))
    web.metrics.ingest_seconds.labels(status).observe(time.perf_counter() - started)
    if status in ACCEPTED:
        logs.event(
            log,
            "lead.ingested",
            status=status,
            contact_id=result.get("contact_id"),
            enrollment_id=result.get("enrollment_id"),
            campaign=campaign or "-",
            phone=lead.phone,
        )
        answer = {k: result.get(k) for k in ("contact_id", "enrollment_id", "status")}
        return JSONResponse(answer, status_code=ACCEPTED[status])
    code = str(result.get("error") or "rejected")
    return _rejected(result, REJECTED_STATUS.get(code, 422), phone=lead.phone, campaign=campaign)


def _rejected(
    result: dict[str, Any], http_status: int, *, phone: str, campaign: str | None
) -> Response:
    code = str(result.get("error") or "rejected")
    detail = str(result.get("detail") or "")
    logs.event(
        log,
        "lead.rejected",
        error=code,
        detail=detail,
        http_status=http_status,
        lead_event_id=result.get("lead_event_id"),
        campaign=campaign or "-",
        phone=phone,
    )
    return error(http_status, code, detail)

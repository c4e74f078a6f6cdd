"""The check_receipt job (queued by the tick's sweeper): a Twilio text still without a final
status hours after it was sent (its callback lost after Twilio's one retry) is fetched from
Twilio and its status recorded like a callback (pgflow.record_twilio_status: once per
status, only forward)."""

from __future__ import annotations

import logging

from pgflow import db, logs
from pgflow.jobs.context import JobContext
from pgflow.transport import TransportError

log = logging.getLogger("pgflow.jobs.check_receipt")


async def check_receipt(ctx: JobContext, message_id: int, attempts: int = 0) -> str:
    target = await db.receipt_to_check(message_id).arun_in(ctx.pool)
    if target is None:
        return "skip"  # a receipt came meanwhile
    if ctx.twilio is None:
        logs.event(log, "receipt.no_twilio", logging.WARNING, message_id=message_id)
        return "no_twilio"
    try:
        message = await ctx.twilio.fetch(str(target["sid"]))
    except TransportError as exc:
        if exc.status_code == 404:
            logs.event(log, "receipt.unknown_sid", logging.WARNING, message_id=message_id)
            return "unknown"
        ctx.retry_or_give_up(
            log,
            "receipt.check_failed",
            attempts,
            "receipt check failed",
            cause=exc,
            retryable=exc.retryable,
            message_id=message_id,
            status=exc.status_code,
        )
        return "failed"
    payload = {"MessageSid": message.sid, "MessageStatus": message.status, "Source": "sweeper"}
    if message.error_code is not None:
        payload["ErrorCode"] = str(message.error_code)
    recorded = await db.record_twilio_status(message_id, payload, ctx.clock()).arun_in(ctx.pool)
    logs.event(
        log,
        "receipt.checked",
        message_id=message_id,
        status=message.status,
        result=recorded.get("result"),
    )
    return str(recorded.get("result"))

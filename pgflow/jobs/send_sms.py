"""The send_sms job: claim (send-time re-check) -> call the transport -> record, no transaction
held across the HTTP call. Every outcome is recorded by one SQL call."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

from pgqueuer.domain.errors import RetryRequested
from psycopg_pool import AsyncConnectionPool

from pgflow import db, logs, phones
from pgflow.transport import SmsTransport, TransportError

log = logging.getLogger("pgflow.jobs.send_sms")

Clock = Callable[[], dt.datetime | None]


@dataclasses.dataclass
class SendContext:
    pool: AsyncConnectionPool[Any]
    transport: SmsTransport
    worker_id: uuid.UUID
    retry_base_seconds: float = 30.0
    clock: Clock = lambda: None  # None: the database's now()


async def send_sms(ctx: SendContext, message_id: int) -> str:
    """Run one send_sms job; returns the final action (for logs and tests)."""
    claim = await db.claim_send(message_id, ctx.worker_id, ctx.clock()).arun_in(ctx.pool)
    action = claim["action"]
    if action == "defer":
        delay = float(claim["delay_seconds"])
        logs.event(
            log,
            "sms.deferred",
            message_id=message_id,
            reason=claim["reason"],
            delay_s=round(delay, 1),
        )
        raise RetryRequested(delay=dt.timedelta(seconds=delay), reason=claim["reason"])
    if action != "send":
        logs.event(log, f"sms.{action}", message_id=message_id, reason=claim.get("reason"))
        return str(action)

    attempt = int(claim["attempt"])
    if claim.get("previous_chat_id"):
        await _end_previous_chat(ctx, claim["previous_chat_id"], message_id)
    result: dict[str, Any]
    try:
        sent = await ctx.transport.create_sms_chat(
            from_number=claim["from_number"],
            to_number=claim["to_number"],
            body=claim["body"],
            agent_id=claim.get("retell_agent_id"),
            metadata=claim["metadata"],
            dynamic_variables=claim["variables"],
        )
        result = {
            "ok": True,
            "chat_id": sent.chat_id,
            "agent_id": sent.agent_id,
            "status_code": sent.status_code,
        }
    except TransportError as exc:
        result = {
            "ok": False,
            "retryable": exc.retryable,
            "alert": exc.alert,
            "status_code": exc.status_code,
            "error": exc.message,
            "retry_after": exc.retry_after,
        }
    except Exception as exc:  # a bug of ours must not lose the message: retry, then dead-letter
        log.exception("event=sms.unexpected_error message_id=%s", message_id)
        result = {
            "ok": False,
            "retryable": True,
            "alert": False,
            "status_code": None,
            "error": f"unexpected {type(exc).__name__}: {exc}"[:500],
        }

    record = db.record_send(message_id, attempt, result, ctx.retry_base_seconds, ctx.clock())
    outcome = await record.arun_in(ctx.pool)
    recorded = outcome["action"]
    fields: dict[str, Any] = {
        "message_id": message_id,
        "attempt": attempt,
        "to": phones.mask(claim["to_number"]),
    }
    if recorded == "sent":
        logs.event(log, "sms.sent", **fields, chat_id=result.get("chat_id"))
    elif recorded == "retry":
        delay = float(outcome["delay_seconds"])
        logs.event(
            log,
            "sms.retry",
            logging.WARNING,
            **fields,
            status=result.get("status_code"),
            delay_s=round(delay, 1),
            error=result.get("error"),
        )
        raise RetryRequested(delay=dt.timedelta(seconds=delay), reason=str(result.get("error")))
    elif recorded == "dead_letter":
        logs.event(
            log,
            "sms.dead_letter",
            logging.ERROR,
            **fields,
            status=result.get("status_code"),
            error=result.get("error"),
        )
    else:
        logs.event(log, "sms.stale_result", logging.WARNING, **fields)
    return str(recorded)


async def _end_previous_chat(ctx: SendContext, chat_id: str, message_id: int) -> None:
    """Best effort: close the lead's previous Retell chat before starting the next one."""
    try:
        await ctx.transport.end_chat(chat_id)
    except TransportError as exc:
        logs.event(
            log,
            "sms.end_previous_chat_failed",
            logging.INFO,
            message_id=message_id,
            status=exc.status_code,
        )

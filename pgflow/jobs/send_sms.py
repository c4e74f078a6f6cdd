"""The send_sms job: claim (send-time re-check) -> call the transport -> record, no transaction
held across the HTTP call. Every outcome is recorded by one SQL call.

Before a drip step, while the conversation's last chat may be ongoing, the chat is read
(GET /get-chat) and recorded, so a reply that no webhook reported stops the step."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pgqueuer.domain.errors import RetryRequested

from pgflow import db, logs, phones
from pgflow.jobs import send_twilio
from pgflow.jobs.batch import Attempt
from pgflow.jobs.context import JobContext
from pgflow.transport import SendResult, TransportError

log = logging.getLogger("pgflow.jobs.send_sms")

CHAT_CHECK_RETRY_SECONDS = 60.0


async def send_sms(ctx: JobContext, message_id: int) -> str:
    """Run one send_sms job; returns the final action (for logs and tests)."""
    claim = await ctx.claims(message_id)
    if claim["action"] == "reconcile":
        reclaimed = await _reconcile(ctx, claim, message_id)
        if reclaimed is None:
            return "sent"
        claim = reclaimed
    if claim["action"] == "check_chat":
        checked = await _check_chat(ctx, str(claim["chat_id"]), message_id)
        again = db.claim_message(message_id, ctx.worker_id, checked, ctx.clock())
        claim = await again.arun_in(ctx.pool)
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
    via = _transport(claim)
    result: dict[str, Any]
    try:
        if via == "twilio":
            result = await send_twilio.deliver(ctx, claim, message_id)
        else:
            result = _retell_sent(await _deliver(ctx, claim, message_id))
    except TransportError as exc:
        result = {
            "ok": False,
            "transport": via,
            "retryable": exc.retryable,
            "alert": exc.alert,
            "status_code": exc.status_code,
            "error": exc.message,
            "retry_after": exc.retry_after,
            "carrier_error_code": send_twilio.carrier_code(exc),
        }
        if send_twilio.lost(exc):  # the provider may have it: look before sending again
            found = await _find_lost_answer(ctx, claim, message_id)
            if found is not None:  # it took the text; only its answer was lost
                result = found
    except Exception as exc:  # a bug of ours must not lose the message: retry, then dead-letter
        log.exception("event=sms.unexpected_error message_id=%s", message_id)
        result = {
            "ok": False,
            "transport": via,
            "retryable": True,
            "alert": False,
            "status_code": None,
            "error": f"unexpected {type(exc).__name__}: {exc}"[:500],
        }

    outcome = await ctx.records(Attempt(message_id, attempt, result))
    recorded = outcome["action"]
    fields: dict[str, Any] = {
        "message_id": message_id,
        "attempt": attempt,
        "kind": claim.get("kind"),
        "to": phones.mask(claim["to_number"]),
    }
    if recorded == "sent":
        logs.event(
            log,
            "sms.sent",
            **fields,
            transport=via,
            chat_id=result.get("chat_id"),
            sid=result.get("provider_message_id"),
        )
        if _ends_chat(ctx, claim) and result.get("chat_id"):
            await _end_chat(ctx, str(result["chat_id"]), message_id)
    elif recorded == "failed":  # the carrier refused the number: it acted (record_send)
        logs.event(
            log,
            "sms.refused",
            logging.WARNING,
            **fields,
            code=result.get("carrier_error_code"),
            error_class=outcome.get("class"),
        )
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


def _transport(claim: dict[str, Any]) -> str:
    """The transport of the claim's line: retell (or the sandbox) unless it says twilio."""
    return "twilio" if claim.get("transport") == "twilio" else "retell"


def _retell_sent(sent: SendResult) -> dict[str, Any]:
    return {
        "ok": True,
        "transport": "retell",
        "chat_id": sent.chat_id,
        "agent_id": sent.agent_id,
        "status_code": sent.status_code,
    }


def _ends_chat(ctx: JobContext, claim: dict[str, Any]) -> bool:
    """End the chat a send started: after an opt-out confirmation (nothing may follow it),
    and after a text written while a person holds the lead where the provider's own LLM
    would answer in that chat (Retell): the lead's answer then comes as a new chat, which
    is refused while the person holds it (docs/console.md)."""
    if _transport(claim) == "twilio":  # Twilio has no chats
        return False
    if claim.get("end_chat_after"):
        return True
    return bool(claim.get("held")) and not ctx.transport.accepts_text


async def _deliver(ctx: JobContext, claim: dict[str, Any], message_id: int) -> SendResult:
    """Into the live chat where the transport takes our text (an agent's or a person's reply
    in the sandbox); else a new chat whose first message is the text, the previous one ended."""
    chat_id = claim.get("chat_id")
    if (
        claim.get("kind") in ("agent", "human")
        and ctx.transport.accepts_text
        and chat_id
        and claim.get("chat_status") != "ended"
    ):
        try:
            await ctx.transport.post_message(chat_id, claim["body"], claim["chat_message_id"])
            return SendResult(chat_id=chat_id, agent_id=None, status_code=200)
        except TransportError as exc:
            if exc.status_code not in (404, 409):  # gone or ended: start a new chat instead
                raise
    if claim.get("previous_chat_id"):
        await _end_previous_chat(ctx, claim["previous_chat_id"], message_id)
    return await ctx.transport.create_sms_chat(
        from_number=claim["from_number"],
        to_number=claim["to_number"],
        body=claim["body"],
        agent_id=claim.get("retell_agent_id"),
        metadata=claim["metadata"],
        dynamic_variables=claim["variables"],
    )


async def _find_lost_answer(
    ctx: JobContext, claim: dict[str, Any], message_id: int
) -> dict[str, Any] | None:
    """After a send that got no answer (a timeout, a dropped connection, Twilio's 5xx), what
    it may have created: found, the send is recorded as sent instead of tried again. Retell
    unreachable: the send is tried again (the documented window). Twilio unreachable: the
    text stays `sending`, and its next claim reconciles before anything is sent."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    try:
        found = await _lookup(ctx, claim, message_id, since)
    except TransportError as exc:
        if _transport(claim) == "twilio":
            raise _read_failed("sms.unverified", "send unverified", message_id, exc) from exc
        return None
    if found is not None:
        logs.event(
            log,
            "sms.answer_lost",
            message_id=message_id,
            chat_id=found.get("chat_id"),
            sid=found.get("provider_message_id"),
        )
    return found


async def _lookup(
    ctx: JobContext, claim: dict[str, Any], message_id: int, since: dt.datetime
) -> dict[str, Any] | None:
    """record_send's result for the text the provider has from this send, else None."""
    if _transport(claim) == "twilio":
        return await send_twilio.find(ctx, claim, since)
    found = await ctx.transport.find_sent(
        to_number=claim["to_number"], since=since, message_id=message_id
    )
    return None if found is None else _retell_sent(found)


async def _reconcile(
    ctx: JobContext, claim: dict[str, Any], message_id: int
) -> dict[str, Any] | None:
    """A send cut off mid-way (its worker died): if Retell has the chat it started, record it
    sent (None: done, nothing sent twice); else release the attempt and claim again."""
    attempt = int(claim["attempt"])
    try:
        found = await _lookup(ctx, claim, message_id, dt.datetime.fromisoformat(claim["since"]))
    except TransportError as exc:
        raise _read_failed("sms.reconcile_failed", "reconcile failed", message_id, exc) from exc
    if found is not None:
        outcome = await ctx.records(Attempt(message_id, attempt, found))
        logs.event(
            log,
            "sms.reconciled",
            message_id=message_id,
            attempt=attempt,
            chat_id=found.get("chat_id"),
            sid=found.get("provider_message_id"),
            recorded=outcome["action"],
        )
        if _ends_chat(ctx, claim) and outcome["action"] == "sent" and found.get("chat_id"):
            await _end_chat(ctx, str(found["chat_id"]), message_id)
        return None
    released = await db.release_interrupted(message_id, attempt, ctx.clock()).arun_in(ctx.pool)
    logs.event(
        log,
        "sms.interrupted",
        logging.WARNING,
        message_id=message_id,
        attempt=attempt,
        result=released["action"],
    )
    if released["action"] == "dead_letter":
        return {"action": "dead_letter", "reason": "interrupted"}
    again: dict[str, Any] = await db.claim_message(
        message_id, ctx.worker_id, None, ctx.clock()
    ).arun_in(ctx.pool)
    return again


async def _check_chat(ctx: JobContext, chat_id: str, message_id: int) -> str:
    """Read the conversation's chat and record it (a reply there engages the conversation);
    the chat id, for the second claim. Retry later when the chat cannot be read."""
    try:
        chat = await ctx.transport.get_chat(chat_id)
    except TransportError as exc:
        if exc.status_code == 404:
            await db.mark_chat_ended(chat_id, ctx.clock()).arun_in(ctx.pool)
            return chat_id
        raise _read_failed("sms.chat_check_failed", "chat check failed", message_id, exc) from exc
    record = db.record_chat(chat, "get_chat", ctx.transport.accepts_text, ctx.clock())
    recorded = await record.arun_in(ctx.pool)
    logs.event(
        log,
        "sms.chat_checked",
        message_id=message_id,
        chat_id=chat_id,
        new_replies=recorded.get("inbound", 0),
    )
    return chat_id


def _read_failed(event: str, reason: str, message_id: int, exc: TransportError) -> RetryRequested:
    """The provider's side could not be read: logged, and the retry (a minute on) to raise."""
    logs.event(
        log,
        event,
        logging.WARNING,
        message_id=message_id,
        status=exc.status_code,
        error=exc.message,
    )
    return RetryRequested(delay=dt.timedelta(seconds=CHAT_CHECK_RETRY_SECONDS), reason=reason)


async def _end_chat(ctx: JobContext, chat_id: str, message_id: int) -> None:
    """After an opt-out confirmation: nothing may follow it in that chat."""
    if await _try_end_chat(ctx, chat_id, message_id, "sms.end_chat_failed", logging.WARNING):
        await db.mark_chat_ended(chat_id, ctx.clock()).arun_in(ctx.pool)


async def _end_previous_chat(ctx: JobContext, chat_id: str, message_id: int) -> None:
    """Best effort: close the lead's previous Retell chat before starting the next one."""
    await _try_end_chat(ctx, chat_id, message_id, "sms.end_previous_chat_failed", logging.INFO)


async def _try_end_chat(
    ctx: JobContext, chat_id: str, message_id: int, failed: str, level: int
) -> bool:
    """End the chat; a refusal is logged as `failed` at `level` (False), never raised."""
    try:
        await ctx.transport.end_chat(chat_id)
    except TransportError as exc:
        logs.event(log, failed, level, message_id=message_id, status=exc.status_code)
        return False
    return True

"""The end_chat job: end a conversation's provider chat (after an opt-out or a takeover),
so the provider's agent says nothing more there."""

from __future__ import annotations

import logging

from pgflow import db, logs
from pgflow.jobs.context import JobContext, retry_later
from pgflow.transport import TransportError

log = logging.getLogger("pgflow.jobs.end_chat")


async def end_chat(ctx: JobContext, conversation_id: int, attempts: int = 0) -> str:
    chat_id = await db.chat_to_end(conversation_id).arun_in(ctx.pool)
    if chat_id is None:
        return "skip"
    try:
        await ctx.transport.end_chat(chat_id)
    except TransportError as exc:
        if exc.status_code != 404:  # 404: the chat is gone, which is what we wanted
            logs.event(
                log,
                "chat.end_failed",
                logging.WARNING,
                conversation_id=conversation_id,
                chat_id=chat_id,
                status=exc.status_code,
                attempt=attempts + 1,
            )
            if exc.retryable and attempts + 1 < ctx.max_job_attempts:
                raise retry_later(attempts, ctx.job_retry_base, "end-chat failed") from exc
            return "failed"
    await db.mark_chat_ended(chat_id, ctx.clock()).arun_in(ctx.pool)
    logs.event(log, "chat.ended", conversation_id=conversation_id, chat_id=chat_id)
    return "ended"

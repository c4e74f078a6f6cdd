"""The end_chat job: end a conversation's provider chat (after an opt-out or a takeover),
so the provider's agent says nothing more there."""

from __future__ import annotations

import logging

from pgflow import db, logs
from pgflow.jobs.context import JobContext
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
            ctx.retry_or_give_up(
                log,
                "chat.end_failed",
                attempts,
                "end-chat failed",
                cause=exc,
                retryable=exc.retryable,
                conversation_id=conversation_id,
                chat_id=chat_id,
                status=exc.status_code,
            )
            return "failed"
    await db.mark_chat_ended(chat_id, ctx.clock()).arun_in(ctx.pool)
    logs.event(log, "chat.ended", conversation_id=conversation_id, chat_id=chat_id)
    return "ended"

"""The agent_reply job (where the transport takes our text: the sandbox): the agent answers
the lead's latest text, from its prompt and the transcript, and the reply is recorded and
queued in one call. The job runs after the agent's debounce, so a burst of texts gets one
answer; SQL refuses the turn when the lead opted out, a person took over, the conversation
ended, a later text is waiting, or the agent's turns are used up. The agent's action
(`booked`, `handoff`, `end`) gives the conversation its outcome or asks for one."""

from __future__ import annotations

import datetime as dt
import logging

from pgqueuer.domain.errors import RetryRequested

from pgflow import db, logs
from pgflow.agent import AgentError, ReplyRequest
from pgflow.jobs.context import JobContext

log = logging.getLogger("pgflow.jobs.agent_reply")


async def agent_reply(ctx: JobContext, trigger_id: int, attempts: int = 0) -> str:
    turn = await db.agent_turn(trigger_id, ctx.clock()).arun_in(ctx.pool)
    if not turn["answer"]:
        if turn.get("retry_seconds") and attempts < 30:
            raise RetryRequested(
                delay=dt.timedelta(seconds=float(turn["retry_seconds"])), reason=turn["reason"]
            )
        logs.event(log, "agent.skip", message_id=trigger_id, reason=turn["reason"])
        return "skip"
    request = ReplyRequest.from_turn(turn)
    try:
        reply = await ctx.agent.reply(request)
    except AgentError as exc:
        ctx.retry_or_give_up(
            log,
            "agent.failed",
            attempts,
            "the agent could not answer",
            cause=exc,
            message_id=trigger_id,
            agent=ctx.agent.name,
            error=str(exc),
        )
        return "failed"
    call = db.record_agent_reply(trigger_id, reply.text, reply.action, reply.reason, ctx.clock())
    recorded = await call.arun_in(ctx.pool)
    logs.event(
        log,
        "agent.replied" if recorded["result"] == "queued" else "agent.stale",
        message_id=trigger_id,
        conversation_id=turn["conversation_id"],
        action=reply.action,
        reply_id=recorded.get("message_id"),
        reason=recorded.get("reason"),
    )
    return str(recorded["result"])

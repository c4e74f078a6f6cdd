"""The classify_outcome job: the outcome of a conversation that went quiet, whose chat
ended, or that the agent closed. The rules go first (in SQL: no reply is no_response, an
opt-out is discarded); then the agent (an LLM with a strict JSON schema, or the offline
rules) judges the transcript against the campaign's goal. An answer that cannot be had is
retried, then the conversation goes to a person's review: an outcome is never guessed."""

from __future__ import annotations

import logging
from typing import Any

from pgflow import db, logs
from pgflow.agent import AgentError, ClassifyRequest
from pgflow.jobs.context import JobContext

log = logging.getLogger("pgflow.jobs.classify_outcome")


async def classify_outcome(ctx: JobContext, conversation_id: int, attempts: int = 0) -> str:
    question = await db.outcome_question(conversation_id, ctx.clock()).arun_in(ctx.pool)
    if not question["classify"]:
        logs.event(
            log, "outcome.skip", conversation_id=conversation_id, reason=question.get("reason")
        )
        return "skip"
    try:
        verdict = await ctx.agent.classify(ClassifyRequest.from_question(question))
    except AgentError as exc:
        ctx.retry_or_give_up(
            log,
            "outcome.classify_failed",
            attempts,
            "the classification failed",
            cause=exc,
            conversation_id=conversation_id,
            error=str(exc),
        )
        failed = db.record_classification(
            conversation_id,
            question["transcript_hash"],
            None,
            None,
            None,
            None,
            error=f"{attempts + 1} attempts: {exc}"[:500],
            now=ctx.clock(),
        )
        await failed.arun_in(ctx.pool)
        logs.event(log, "outcome.review", logging.WARNING, conversation_id=conversation_id)
        return "review"
    result: dict[str, Any] = await db.record_classification(
        conversation_id,
        question["transcript_hash"],
        verdict.status,
        verdict.reason,
        verdict.confidence,
        verdict.model,
        now=ctx.clock(),
        source="rule" if ctx.agent.name == "offline" else "llm",
    ).arun_in(ctx.pool)
    logs.event(
        log,
        "outcome.classified",
        conversation_id=conversation_id,
        status=verdict.status,
        confidence=verdict.confidence,
        result=result["result"],
        judge=ctx.agent.name,
    )
    return str(result["result"])

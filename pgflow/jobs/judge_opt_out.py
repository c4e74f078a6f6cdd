"""The judge_opt_out job: a lead's text that the opt-out rules left ambiguous ("stop by at
3?") is judged by the language model where one is configured; without one the rules'
verdict stands (not an opt-out). The first judgment recorded stands."""

from __future__ import annotations

import logging

from pgflow import db, logs
from pgflow.agent import AgentError
from pgflow.jobs.context import JobContext

log = logging.getLogger("pgflow.jobs.judge_opt_out")


async def judge_opt_out(ctx: JobContext, message_id: int, attempts: int = 0) -> str:
    question = await db.opt_out_question(message_id).arun_in(ctx.pool)
    if question is None:
        return "skip"
    try:
        verdict = await ctx.agent.judge_opt_out(str(question["text"]))
    except AgentError as exc:
        ctx.retry_or_give_up(
            log,
            "opt_out.judge_failed",
            attempts,
            "the opt-out judgment failed",
            cause=exc,
            message_id=message_id,
            error=str(exc),
        )
        verdict = False  # the rules' verdict stands
    result = await db.record_opt_out_judgment(message_id, verdict, ctx.clock()).arun_in(ctx.pool)
    logs.event(
        log,
        "opt_out.judged",
        message_id=message_id,
        opt_out=verdict,
        judge=ctx.agent.name,
        result=result["result"],
    )
    return str(result["result"])

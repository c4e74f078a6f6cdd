"""Which job runs for which pgqueuer entrypoint, and what a job cut off by a lost database
does (it is tried again later, not held as failed)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pgqueuer.core.qm import QueueManager
from pgqueuer.domain.errors import RetryRequested
from pgqueuer.domain.models import Job
from psycopg_pool import AsyncConnectionPool

from pgflow import db, logs
from pgflow.errors import first_line
from pgflow.jobs.agent_reply import agent_reply
from pgflow.jobs.check_receipt import check_receipt
from pgflow.jobs.classify_outcome import classify_outcome
from pgflow.jobs.context import JobContext, backoff
from pgflow.jobs.deliver_alert import deliver_alert
from pgflow.jobs.dispatch import dispatch_steps
from pgflow.jobs.end_chat import end_chat
from pgflow.jobs.judge_opt_out import judge_opt_out
from pgflow.jobs.send_sms import send_sms

log = logging.getLogger("pgflow.worker")


def job_id(job: Job) -> int:
    payload = json.loads(job.payload or b"{}")
    return int(payload["id"])


def register(
    qm: QueueManager,
    ctx: JobContext,
    pool: AsyncConnectionPool[Any],
    http: httpx.AsyncClient,
    alert_url: str | None,
) -> None:
    jobs: dict[str, Callable[[Job], Awaitable[Any]]] = {
        "send_sms": lambda job: send_sms(ctx, job_id(job)),
        "deliver_alert": lambda job: deliver_alert(ctx, http, alert_url, job_id(job), job.attempts),
        "end_chat": lambda job: end_chat(ctx, job_id(job), job.attempts),
        "agent_reply": lambda job: agent_reply(ctx, job_id(job), job.attempts),
        "judge_opt_out": lambda job: judge_opt_out(ctx, job_id(job), job.attempts),
        "classify_outcome": lambda job: classify_outcome(ctx, job_id(job), job.attempts),
        "check_receipt": lambda job: check_receipt(ctx, job_id(job), job.attempts),
        "dispatch_steps": lambda job: dispatch_steps(ctx, job_id(job)),
    }
    for name, run in jobs.items():
        qm.entrypoint(name, on_failure="hold")(surviving_the_database(run))


def surviving_the_database(
    run: Callable[[Job], Awaitable[Any]],
) -> Callable[[Job], Awaitable[None]]:
    """A job cut off by a lost database is tried again later, not held as failed: its
    message or conversation is still waiting for it (a job that fails for a reason of its
    own is held, and the tick queues its message again)."""

    async def job(job: Job) -> None:
        try:
            await run(job)
        except db.UNAVAILABLE as exc:
            delay = backoff(job.attempts + 1, base=1.0)
            logs.event(
                log,
                "job.database_lost",
                logging.WARNING,
                entrypoint=job.entrypoint,
                job_id=job.id,
                error=first_line(exc),
                retry_in_s=round(delay, 1),
            )
            raise RetryRequested(
                delay=dt.timedelta(seconds=delay), reason="database unavailable"
            ) from exc

    return job

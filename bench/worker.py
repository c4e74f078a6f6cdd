"""Worker throughput: messages/s from queued to `sent` against the fake Retell, next to
pgqueuer's own no-op jobs/s measured in the same run on the same database.

    .venv/bin/python -m bench.worker [--messages 3000] [--concurrency 20]

Goal: send throughput >= 0.5 x pgqueuer's no-op throughput."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time

import psycopg
from pgqueuer.adapters.persistence.qb import (
    QueryBuilderEnvironment,
    QueryQueueBuilder,
    QuerySchedulerBuilder,
)
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.core.qm import QueueManager
from pgqueuer.domain.models import Job
from pgqueuer.domain.types import QueueExecutionMode
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bench.common import fresh_database, record
from pgflow.worker import _QueueDriver, queue_settings
from tests.factories import campaign_doc
from tests.fake_retell import FakeRetell
from tests.processes import WorkerProcess, wait_until


def make_messages(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select pgflow.apply_campaigns(%s)",
            [Jsonb(campaign_doc(window_start="00:00", window_end="24:00", daily_cap=50))],
        )
        conn.execute(
            "insert into pgflow.contacts (phone, first_name, timezone)"
            " select '+1212' || lpad(g::text, 7, '0'), 'Lead' || g, 'America/New_York'"
            " from generate_series(1, %s) g",
            [n],
        )
        conn.execute(
            "insert into pgflow.enrollments (contact_id, campaign_id, next_step, next_message_at)"
            " select id, (select id from pgflow.campaigns), 1, now() from pgflow.contacts"
        )
        done = 0
        while done < n:
            row = conn.execute("select pgflow.tick(now(), 1000)").fetchone()
            assert row is not None
            done += int(row[0]["sent"])
        queued = conn.execute("select count(*) from pgflow.pgqueuer").fetchone()
        assert queued is not None
        assert queued[0] == n


def send_throughput(url: str, n: int, concurrency: int) -> dict[str, float]:
    with FakeRetell(api_key="bench-key") as fake:
        t0 = time.perf_counter()
        worker = WorkerProcess(
            url,
            fake.url,
            fake.api_key,
            "--concurrency",
            str(concurrency),
            "--poll",
            "1",
            "--log-level",
            "WARNING",
        )
        with psycopg.connect(url, autocommit=True) as conn:

            def sent() -> bool:
                row = conn.execute(
                    "select count(*) from pgflow.messages where delivery_status = 'sent'"
                ).fetchone()
                return row is not None and row[0] == n

            wait_until(sent, timeout=600, what="all sent")
            row = conn.execute(
                "select extract(epoch from max(sent_at) - min(sent_at)),"
                " extract(epoch from max(sent_at) - min(created_at))"
                " from pgflow.messages"
            ).fetchone()
        wall = time.perf_counter() - t0
        worker.terminate()
        worker.stop()
    assert row is not None
    span = float(row[0])
    return {
        "messages": n,
        "seconds_first_to_last_sent": round(span, 2),
        "messages_per_s": round(n / span, 1),
        "wall_s_including_startup": round(wall, 2),
        "fake_requests": len(fake.sms_requests()),
    }


async def noop_throughput(url: str, n: int, concurrency: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into pgflow.pgqueuer (priority, entrypoint, payload, status)"
            " select 0, 'noop', null, 'queued' from generate_series(1, %s)",
            [n],
        )
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url, min_size=2, max_size=concurrency + 3, kwargs={"autocommit": True}, open=False
    )
    await pool.open()
    listen = await psycopg.AsyncConnection.connect(url, autocommit=True)
    qs = queue_settings()
    qm = QueueManager(
        Queries(
            _QueueDriver(listen, pool),
            qbe=QueryBuilderEnvironment(qs),
            qbq=QueryQueueBuilder(qs),
            qbs=QuerySchedulerBuilder(qs),
        )
    )

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    t0 = time.perf_counter()
    await qm.run(
        dequeue_timeout=dt.timedelta(seconds=1),
        batch_size=10,
        max_concurrent_tasks=max(concurrency, 20),
        mode=QueueExecutionMode.drain,
    )
    span = time.perf_counter() - t0
    await pool.close()
    await listen.close()
    return {"jobs": n, "seconds": round(span, 2), "jobs_per_s": round(n / span, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    url = fresh_database("pgflow_bench_worker")
    make_messages(url, args.messages)
    sends = send_throughput(url, args.messages, args.concurrency)
    noop = asyncio.run(noop_throughput(url, args.messages, args.concurrency))
    ratio = sends["messages_per_s"] / noop["jobs_per_s"]
    record(
        "worker",
        {
            "send": sends,
            "pgqueuer_noop": noop,
            "ratio": round(ratio, 2),
            "concurrency": args.concurrency,
            "goal": "ratio >= 0.5",
        },
    )


if __name__ == "__main__":
    main()

"""A backlog of due later steps, dispatched: 100,000 due among 1,000,000 active enrollments,
from the tick to the last message queued, next to ONE bare set-based statement making the
same writes for the same 100,000 in the same run.

    .venv/bin/python -m bench.dispatch [--size 1000000] [--due 100000] [--lanes 1,2]
                                       [--reuse] [--quick]

The data set is bench.tick's (contacts in New York, one campaign and the state rules'
hours open all day, every
enrollment at step 2, `due` of them due a minute ago). It is built once; each measurement
runs on a fresh copy (CREATE DATABASE ... TEMPLATE), so every run starts from the same
state:

- engine, per lane count: `pgflow.tick()` (its own batch; a full one queues one
  dispatch_steps job per lane), then the dispatch_steps job of each lane
  (pgflow/jobs/dispatch.py, the code the worker runs for that entrypoint), all lanes at
  once in this process on one pool, until every lane is drained. Reported: seconds from
  the tick's start to the last batch committed, and steps queued per second. No send job
  runs meanwhile (the queued send_sms jobs wait): this is the dispatch alone.
- bare: bench/queries.py `bare_dispatch` for all `due` in one statement and one
  transaction (conversations, messages with rendered bodies and segments, enrollments
  advanced, send_sms jobs, every trigger firing), with none of the engine's checks.

Goal: every due step queued within 60 s."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
import uuid
from typing import Any

import psycopg

from bench import queries
from bench.common import fresh_database, record
from bench.tick import populate, reusable
from pgflow import db
from pgflow.jobs.context import JobContext
from pgflow.jobs.dispatch import dispatch_steps
from pgflow.transport.retell import RetellClient
from tests.conftest import any_hour, project_url, with_database

COPY = "pgflow_bench_dispatch_run"


def fresh_copy(template: str, lanes: int) -> str:
    """A copy of the built data set, with pgflow.dispatch_lanes set for its sessions."""
    server = project_url()
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        queries.drop_database(COPY).run(conn)
        queries.copy_database(COPY, template).run(conn)
        queries.set_dispatch_lanes(COPY, lanes).run(conn)
    url = with_database(server, COPY)
    with psycopg.connect(url, autocommit=True) as conn:
        any_hour(url)  # the rules' hours too: any hour of the run
        for table in ("enrollments", "contacts"):
            queries.vacuum_analyze(table).run(conn)
    return url


def queued(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return queries.step_2_queued().run(conn)


async def engine(url: str, lanes: int) -> dict[str, Any]:
    pool = db.async_pool(url, application="bench-dispatch", max_size=lanes + 1)
    await pool.open()
    retell = RetellClient("unused", "http://127.0.0.1:9")  # nothing is sent here
    try:
        ctx = JobContext(pool, retell, uuid.uuid4(), 30.0)
        t0 = time.perf_counter()
        ticked = await db.tick().arun_in(pool)
        tick_s = time.perf_counter() - t0
        sent = await asyncio.gather(*(dispatch_steps(ctx, lane) for lane in range(lanes)))
        seconds = time.perf_counter() - t0
    finally:
        await retell.aclose()
        await pool.close()
    return {
        "lanes": lanes,
        "seconds": round(seconds, 2),
        "tick_s": round(tick_s, 2),
        "tick_sent": ticked["sent"],
        "dispatch_jobs": ticked.get("dispatch_jobs"),
        "lane_sent": sent,
    }


def bare(url: str, due: int) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        counts = queries.bare_dispatch(dt.datetime.now(dt.UTC), due).run(conn)
        conn.commit()
        seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--lanes", default="1,2")
    parser.add_argument("--reuse", action="store_true", help="keep a database already built")
    parser.add_argument("--quick", action="store_true", help="100k enrollments, 10k due")
    args = parser.parse_args()
    size, due = (100_000, 10_000) if args.quick else (args.size, args.due)
    name = f"pgflow_bench_dispatch_{size}_{due}"
    url = reusable(name, size, due) if args.reuse else None
    build_s = None
    if url is None:
        url = fresh_database(name)
        build_s = round(populate(url, size, due), 1)

    runs: list[dict[str, Any]] = []
    for lanes in [int(n) for n in args.lanes.split(",")]:
        copy = fresh_copy(name, lanes)
        result = asyncio.run(engine(copy, lanes))
        result["queued"] = queued(copy)
        assert result["queued"] == {"messages": due, "send_jobs": due, "advanced": due}, result
        result["steps_per_s"] = round(due / result["seconds"], 1)
        runs.append(result)
        print(f"engine, {lanes} lane(s): {due:,} queued in {result['seconds']} s", flush=True)
    copy = fresh_copy(name, 1)
    reference = bare(copy, due)
    assert reference["counts"]["messages"] == due, reference
    reference["steps_per_s"] = round(due / reference["seconds"], 1)
    print(f"bare statement: {due:,} in {reference['seconds']} s", flush=True)
    with psycopg.connect(with_database(project_url(), "postgres"), autocommit=True) as conn:
        queries.drop_database(COPY).run(conn)

    best = min(runs, key=lambda r: r["seconds"])
    record(
        "dispatch" + ("_quick" if args.quick else ""),
        {
            "active_enrollments": size,
            "due": due,
            "build_s": build_s,
            "engine": runs,
            "bare": reference,
            "best": {
                "lanes": best["lanes"],
                "seconds": best["seconds"],
                "ratio_bare_to_engine": round(reference["seconds"] / best["seconds"], 2),
            },
            "goal": "every due step queued within 60 s",
            "met": best["seconds"] <= 60,
        },
    )


if __name__ == "__main__":
    main()

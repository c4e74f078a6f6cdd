"""Worker throughput: messages/s from queued to `sent` by real `pgflow worker` processes
against the fast fake Retell (bench/fast_retell.py, a subprocess), next to references
measured in the same run:

- pgqueuer's own no-op jobs/s on the same database (same driver, same queue settings);
- the fake Retell's create-sms-chat requests/s ALONE (so the fake is not what is measured);
- 1 worker process vs 2 (the same number of messages, each on a fresh database), the pair
  repeated `--repeat` times (medians reported: the machine is shared and noisy).

Every run checks that all messages end `sent` and that the fake received exactly one
create-sms-chat per message id (no duplicate sends). Peak RSS (VmHWM) and CPU seconds of
each worker, of the fake and of the database's backends are reported, with a sampled
profile of the database's active backends (pg_stat_activity: wait events, statements). A
worker that dies is restarted (as systemd would) and the death reported; the medians use
the runs without one. Duplicate or missing sends make the benchmark exit 1.

    .venv/bin/python -m bench.worker [--messages 3000] [--concurrency 20] [--poll 0.2]
                                     [--workers 1,2] [--repeat 3] [--quick]

Goal: send throughput >= 0.5 x pgqueuer's no-op throughput."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from typing import Any

import psycopg
import uvloop
from pgqueuer.adapters.persistence.qb import (
    QueryBuilderEnvironment,
    QueryQueueBuilder,
    QuerySchedulerBuilder,
)
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.core.qm import QueueManager
from pgqueuer.domain.models import Job
from pgqueuer.domain.types import QueueExecutionMode
from psycopg_pool import AsyncConnectionPool

from bench import queries
from bench.common import (
    ActivitySampler,
    DatabaseCpu,
    ReadyProcess,
    cpu_seconds,
    fresh_database,
    peak_rss_mb,
    record,
)
from bench.fake_retell_speed import API_KEY, hammer
from bench.fast_retell import fake_get, fake_reset
from pgflow import db
from pgflow.worker import _QueueDriver, queue_settings
from tests.factories import campaign_doc
from tests.processes import WorkerProcess

SEND_TIMEOUT_S = 300.0


def make_messages(url: str, n: int) -> None:
    """n contacts enrolled with their first step due, ticked: n queued send_sms jobs."""
    doc = campaign_doc(window_start="00:00", window_end="24:00", daily_cap=50)
    with psycopg.connect(url, autocommit=True) as conn:
        db.apply_campaigns(doc).run(conn)
        queries.insert_contacts(n).run(conn)
        queries.enroll_every_contact().run(conn)
        done = 0
        while done < n:  # at a given time, so the tick raises no alert (no worker runs yet)
            done += int(db.tick(dt.datetime.now(dt.UTC), 1000).run(conn)["sent"])
        queued = queries.jobs().run(conn)
        assert queued == n, (queued, n)
        queries.vacuum_analyze().run(conn)


MAX_RESTARTS = 3


def start_worker(url: str, fake_url: str, concurrency: int, poll: float) -> WorkerProcess:
    return WorkerProcess(
        url,
        fake_url,
        API_KEY,
        "--concurrency",
        str(concurrency),
        "--poll",
        str(poll),
        "--log-level",
        "WARNING",
    )


def last_error(output: str) -> str:
    """The exception a dead worker ended with (its traceback's last line)."""
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def send_throughput(
    url: str, fake: ReadyProcess, n: int, workers: int, concurrency: int, poll: float
) -> dict[str, Any]:
    """Start `workers` worker processes on n queued messages; wait until all are sent.

    A worker that exits is restarted at once (systemd restarts it: deploy/, Restart=always)
    and the death is reported, up to MAX_RESTARTS times."""
    fake_reset(fake.url)
    db_cpu = DatabaseCpu(url)
    pg_cpu0, fake_cpu0 = db_cpu.seconds(), fake.cpu_seconds()
    t0 = time.perf_counter()
    procs = [start_worker(url, fake.url, concurrency, poll) for _ in range(workers)]
    deaths: list[dict[str, Any]] = []
    per_worker: list[dict[str, Any]] = []
    sampler = ActivitySampler(url)
    try:
        with sampler, psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + SEND_TIMEOUT_S
            while True:
                sent = queries.sent_messages().run(conn)
                if sent == n:
                    break
                for i, p in enumerate(procs):
                    code = p.proc.poll()
                    if code is None:
                        continue
                    p.stop()
                    deaths.append(
                        {
                            "pid": p.proc.pid,
                            "exit_code": code,
                            "after_s": round(time.perf_counter() - t0, 2),
                            "sent_so_far": sent,
                            "error": last_error(p.output()),
                        }
                    )
                    print(f"worker {p.proc.pid} died: {deaths[-1]}", flush=True)
                    if len(deaths) > MAX_RESTARTS:
                        raise RuntimeError("workers keep dying:\n" + p.output()[-3000:])
                    procs[i] = start_worker(url, fake.url, concurrency, poll)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {sent} of {n} sent after {SEND_TIMEOUT_S} s")
                time.sleep(0.05)
            wall = time.perf_counter() - t0
            pg_cpu = db_cpu.seconds() - pg_cpu0
            fake_cpu = fake.cpu_seconds() - fake_cpu0
            for p in procs:  # before stopping them: their peak so far is their peak
                per_worker.append(
                    {
                        "pid": p.proc.pid,
                        "peak_rss_mb": peak_rss_mb(p.proc.pid),
                        "cpu_s": round(cpu_seconds(p.proc.pid), 2),
                    }
                )
            span = queries.send_span().run(conn)
            by_pid = queries.attempts_by_worker_pid().run(conn)
            attempts = queries.attempts().run(conn)
    finally:
        for p in procs:
            try:
                p.terminate()
            finally:
                p.stop()
    for entry in per_worker:
        entry["messages_attempted"] = int(by_pid.get(entry["pid"], 0))
    stats = fake_get(fake.url, "/_bench/stats")
    # no duplicate sends: one create-sms-chat per message id, n distinct ids, n in all
    problems = []
    if stats["duplicates"]:
        problems.append(f"duplicate sends: {stats['duplicates']}")
    if stats["creates"] != n or stats["distinct_messages"] != n:
        problems.append(f"{stats['creates']} create-sms-chat for {n} messages: {stats}")
    if stats["without_message_id"]:
        problems.append(f"{stats['without_message_id']} create-sms-chat without a message id")
    return {
        "workers": workers,
        "messages": n,
        "seconds_first_to_last_sent": round(span, 2),
        "messages_per_s": round(n / span, 1),
        "wall_s_including_startup": round(wall, 2),
        "attempts": attempts,
        "fake_creates": stats["creates"],
        "fake_distinct_message_ids": stats["distinct_messages"],
        "duplicate_sends": len(stats["duplicates"]),
        "worker_deaths": deaths,
        "problems": problems,
        "per_worker": per_worker,
        "database_activity": sampler.summary(),
        "cpu_s_during_run": {
            "workers": round(sum(w["cpu_s"] for w in per_worker), 2),  # live ones
            "postgres": round(pg_cpu, 2),
            "fake_retell": round(fake_cpu, 2),
            "wall_s": round(wall, 2),
            "cores": 2,
        },
    }


async def noop_throughput(url: str, n: int, concurrency: int) -> dict[str, Any]:
    """pgqueuer draining n no-op jobs with the worker's driver and settings, in-process."""
    with psycopg.connect(url, autocommit=True) as conn:
        queries.insert_noop_jobs(n).run(conn)
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url, min_size=2, max_size=concurrency + 3, kwargs={"autocommit": True}, open=False
    )
    await pool.open()
    listen = await psycopg.AsyncConnection.connect(url, autocommit=True)
    qs = queue_settings()
    qm = QueueManager(
        Queries(
            _QueueDriver(listen, pool, on_lost=lambda: None),
            qbe=QueryBuilderEnvironment(qs),
            qbq=QueryQueueBuilder(qs),
            qbs=QuerySchedulerBuilder(qs),
        )
    )

    ran: list[float] = []

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        ran.append(time.perf_counter())

    t0 = time.perf_counter()
    await qm.run(
        dequeue_timeout=dt.timedelta(seconds=1),
        batch_size=10,
        max_concurrent_tasks=max(concurrency, 20),
        mode=QueueExecutionMode.drain,
    )
    wall = time.perf_counter() - t0
    await pool.close()
    await listen.close()
    assert len(ran) == n, (len(ran), n)
    span = max(ran) - min(ran)
    return {
        "jobs": n,
        # first to last job run, as the sends are timed (first to last sent_at)
        "seconds_first_to_last": round(span, 2),
        "jobs_per_s": round(n / span, 1),
        # including pgqueuer's start-up and the drain's final empty dequeue
        "seconds_wall": round(wall, 2),
        "jobs_per_s_wall": round(n / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--workers", default="1,2", help="worker process counts to compare")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the worker counts")
    parser.add_argument("--fake-seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="500 messages, one round")
    args = parser.parse_args()
    n = 500 if args.quick else args.messages
    repeat = 1 if args.quick else args.repeat
    fake_seconds = 1.0 if args.quick else args.fake_seconds
    counts = [int(c) for c in args.workers.split(",")]

    runs: list[dict[str, Any]] = []
    with ReadyProcess("bench.fast_retell", "--port", "0", "--api-key", API_KEY) as fake:
        # the fake alone, hammered by as many connections as all workers together open
        clients = args.concurrency * max(counts)
        fake_alone = uvloop.run(hammer(fake.url, clients, fake_seconds, fake.pid))
        for round_ in range(repeat):
            for workers in counts:
                url = fresh_database(f"pgflow_bench_worker_{workers}")
                make_messages(url, n)
                sends = send_throughput(url, fake, n, workers, args.concurrency, args.poll)
                noop = asyncio.run(noop_throughput(url, n, args.concurrency))
                sends["round"] = round_ + 1
                sends["pgqueuer_noop"] = noop
                sends["ratio_to_noop"] = round(sends["messages_per_s"] / noop["jobs_per_s"], 2)
                sends["fake_alone_to_send_rate"] = round(
                    fake_alone["requests_per_s"] / sends["messages_per_s"], 1
                )
                print(
                    f"round {round_ + 1}, {workers} worker(s): {sends['messages_per_s']} msg/s,"
                    f" no-op {noop['jobs_per_s']} jobs/s",
                    flush=True,
                )
                runs.append(sends)
        fake_peak = fake.peak_rss_mb()
    fake_alone["peak_rss_mb_end_of_run"] = fake_peak

    def chosen(workers: int) -> list[dict[str, Any]]:
        """The runs of this many workers where none died (all of them if each had a death)."""
        mine = [r for r in runs if r["workers"] == workers]
        return [r for r in mine if not r["worker_deaths"]] or mine

    def median(workers: int, key: str) -> float:
        return round(float(statistics.median(r[key] for r in chosen(workers))), 2)

    by_count = {
        str(w): {
            "messages_per_s": median(w, "messages_per_s"),
            "ratio_to_noop": median(w, "ratio_to_noop"),
            "noop_jobs_per_s": round(
                float(statistics.median(r["pgqueuer_noop"]["jobs_per_s"] for r in chosen(w))),
                1,
            ),
            "peak_rss_mb_per_worker": max(
                e["peak_rss_mb"] for r in runs if r["workers"] == w for e in r["per_worker"]
            ),
            "runs_used": len(chosen(w)),
            "runs_with_a_worker_death": sum(
                1 for r in runs if r["workers"] == w and r["worker_deaths"]
            ),
        }
        for w in counts
    }
    first = by_count[str(counts[0])]
    result: dict[str, Any] = {
        "messages": n,
        "concurrency": args.concurrency,
        "poll_s": args.poll,
        "rounds": repeat,
        "fake_retell_alone": fake_alone,
        "fake_alone_to_send_rate": round(fake_alone["requests_per_s"] / first["messages_per_s"], 1),
        # medians over the rounds without a worker death, per number of worker processes
        "by_workers": by_count,
        # the headline figures: one worker against its own references (medians)
        "send": {"messages": n, "messages_per_s": first["messages_per_s"]},
        "pgqueuer_noop": {"jobs": n, "jobs_per_s": first["noop_jobs_per_s"]},
        "ratio": first["ratio_to_noop"],
        "goal": "ratio >= 0.5",
        "runs": runs,
    }
    if len(counts) >= 2:
        last = by_count[str(counts[-1])]
        result["scaling"] = {
            "workers": counts,
            "messages_per_s": [by_count[str(w)]["messages_per_s"] for w in counts],
            "ratio_last_to_first": round(last["messages_per_s"] / first["messages_per_s"], 2),
            "per_round": [
                round(
                    next(r for r in runs if r["round"] == k and r["workers"] == counts[-1])[
                        "messages_per_s"
                    ]
                    / next(r for r in runs if r["round"] == k and r["workers"] == counts[0])[
                        "messages_per_s"
                    ],
                    2,
                )
                for k in range(1, repeat + 1)
            ],
        }
    result["worker_deaths"] = [
        {"round": r["round"], "workers": r["workers"], **d}
        for r in runs
        for d in r["worker_deaths"]
    ]
    result["problems"] = [
        f"round {r['round']}, {r['workers']} worker(s): {p}" for r in runs for p in r["problems"]
    ]
    record("worker" + ("_quick" if args.quick else ""), result)
    if result["problems"]:
        raise SystemExit("problems: " + "; ".join(result["problems"]))


if __name__ == "__main__":
    main()

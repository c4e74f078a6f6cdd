"""Worker throughput: messages/s from queued to `sent` by real `pgflow worker` processes
against the fast fake Retell (bench/fast_retell.py, a subprocess), beside two references
measured in the same run, on the same database, each in a process of its own:

- (a) pgqueuer's no-op job: jobs/s of a job that does nothing, drained with the worker's own
  pool, driver, queue settings, batch size and jobs in flight (pgflow.worker);
- (b) the bare-HTTP job: the same, but each job makes the create-sms-chat call a send makes
  and nothing else (the same RetellClient, timeout and connection limits as the worker; the
  request a real send made, replayed with the job's id) to the same fake: the floor any
  sender pays. Run just before and just after the full send (each on an empty queue), their
  mean is the reference: the shared machine's load drifts within a round;
- (c) the full send: claim_messages -> create-sms-chat -> record_sends, by `pgflow worker`.

Also: the fake's create-sms-chat requests/s ALONE (so the fake is not what is measured), and
1 worker process vs 2 (the same number of messages, each on a fresh database), the set
repeated `--repeat` times (medians reported: the machine is shared and noisy).

Every run checks that all messages end `sent` and that the fake received exactly one
create-sms-chat per message id (no duplicate sends), from the worker and from the bare
sender. Peak RSS (VmHWM) and CPU seconds of each worker, of the fake and of the database's
backends are reported, with a sampled profile of the database's active backends
(pg_stat_activity: wait events, statements). A worker that dies is restarted (as systemd
would) and the death reported; the medians use the runs without one. Duplicate or missing
sends make the benchmark exit 1.

    .venv/bin/python -m bench.worker [--messages 3000] [--concurrency 20] [--poll 0.2]
                                     [--workers 1,2] [--repeat 3] [--quick]

Goals: full send >= 0.7 x the bare-HTTP job rate; worker peak RSS < 150 MB."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
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

from bench import queries
from bench.common import (
    ActivitySampler,
    DatabaseCpu,
    ReadyProcess,
    cpu_seconds,
    drop_database,
    fresh_database,
    peak_rss_mb,
    record,
)
from bench.fake_retell_speed import API_KEY, hammer
from bench.fast_retell import fake_get, fake_reset
from pgflow import db
from pgflow.jobs.entrypoints import job_id
from pgflow.transport.retell import RetellClient
from pgflow.worker import (
    WorkerOptions,
    _QueueDriver,
    http_settings,
    queue_batch,
    queue_settings,
    worker_pool,
)
from tests.conftest import any_hour
from tests.factories import campaign_doc
from tests.processes import WorkerProcess

SEND_TIMEOUT_S = 300.0


def make_messages(url: str, n: int) -> None:
    """n contacts enrolled with their first step due, ticked: n queued send_sms jobs."""
    doc = campaign_doc(window_start="00:00", window_end="24:00", daily_cap=50)
    with psycopg.connect(url, autocommit=True) as conn:
        db.apply_campaigns(doc).run(conn)
        any_hour(url)  # the rules' hours too: any hour of the run
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

    def steady_cpu() -> tuple[float, float, float]:
        """CPU seconds so far: the workers (alive), the database's backends, the fake."""
        alive = sum(cpu_seconds(p.proc.pid) for p in procs if p.proc.poll() is None)
        return alive, db_cpu.seconds(), fake.cpu_seconds()

    first: tuple[int, tuple[float, float, float]] | None = None
    try:
        with sampler, psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + SEND_TIMEOUT_S
            while True:
                sent = queries.sent_messages().run(conn)
                if first is None and sent > 0:
                    first = (sent, steady_cpu())
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
            last = steady_cpu()
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
        # from the first message sent to the last (start-up left out), per message
        "cpu_ms_per_message_steady": (
            {
                name: round((b - a) * 1000 / (n - first[0]), 3)
                for name, a, b in zip(
                    ("workers", "postgres", "fake_retell"), first[1], last, strict=True
                )
            }
            if first is not None and n > first[0] and not deaths
            else None
        ),
        "cpu_s_during_run": {
            "workers": round(sum(w["cpu_s"] for w in per_worker), 2),  # live ones
            "postgres": round(pg_cpu, 2),
            "fake_retell": round(fake_cpu, 2),
            "wall_s": round(wall, 2),
            "cores": 2,
        },
    }


REFERENCES = ("noop", "bare_http")


async def reference_throughput(
    kind: str, url: str, fake_url: str, n: int, concurrency: int, request: dict[str, Any]
) -> dict[str, Any]:
    """n queued jobs of `kind` drained by pgqueuer with the worker's own pool, driver, queue
    settings, batch size and jobs in flight (pgflow.worker), in this process (uvloop, as
    `pgflow worker`). `noop` does nothing; `bare_http` makes the send's create-sms-chat call
    and nothing else: the same RetellClient with the worker's timeout and connection limits,
    the request the full send made (`request`, as the fake received it) with the job's id in
    its numbers and metadata, so the fake counts each one."""
    with psycopg.connect(url, autocommit=True) as conn:
        queries.insert_id_jobs(kind, n).run(conn)
    options = WorkerOptions(concurrency=concurrency)
    pool = worker_pool(url, options)
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
    timeout, limits = http_settings(options)
    client = RetellClient(API_KEY, fake_url or "http://unused", timeout=timeout, limits=limits)
    variables = {k: str(v) for k, v in request.get("retell_llm_dynamic_variables", {}).items()}
    body = variables.pop("sms_body", "Hi there")
    agent_id = request.get("override_agent_id")
    from_number = str(request.get("from_number", "+14155550100"))
    ran: list[float] = []

    @qm.entrypoint("noop", on_failure="hold")
    async def noop(job: Job) -> None:
        ran.append(time.perf_counter())

    @qm.entrypoint("bare_http", on_failure="hold")
    async def bare_http(job: Job) -> None:
        i = job_id(job)
        ids = str(i)
        await client.create_sms_chat(
            from_number=from_number,
            to_number=f"+1212{i:07d}",
            body=body,
            agent_id=agent_id,
            metadata={
                "pgflow_message_id": ids,
                "pgflow_conversation_id": ids,
                "pgflow_contact_id": ids,
            },
            dynamic_variables=variables,
        )
        ran.append(time.perf_counter())

    batch, in_flight = queue_batch(options)
    database = DatabaseCpu(url)  # the pool's and the listener's backends, from here on
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await qm.run(
        dequeue_timeout=dt.timedelta(seconds=1),
        mode=QueueExecutionMode.drain,
        batch_size=batch,
        max_concurrent_tasks=in_flight,
    )
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    database_cpu = database.seconds()
    await client.aclose()
    await pool.close()
    await listen.close()
    assert len(ran) == n, (len(ran), n)
    span = max(ran) - min(ran)
    return {
        "jobs": n,
        # first to last job done, as the sends are timed (first to last sent_at)
        "seconds_first_to_last": round(span, 2),
        "jobs_per_s": round(n / span, 1),
        # including pgqueuer's start-up and the drain's final empty dequeue
        "seconds_wall": round(wall, 2),
        "jobs_per_s_wall": round(n / wall, 1),
        "process_cpu_ms_per_job": round(cpu * 1000 / n, 3),
        "postgres_cpu_ms_per_job": round(database_cpu * 1000 / n, 3),
        "peak_rss_mb": peak_rss_mb(os.getpid()),
    }


async def noop_throughput(url: str, n: int, concurrency: int) -> dict[str, Any]:
    """The no-op reference in this process (bench/load.py's)."""
    return await reference_throughput("noop", url, "", n, concurrency, {})


def reference(
    kind: str, url: str, fake_url: str, n: int, concurrency: int, request: dict[str, Any]
) -> dict[str, Any]:
    """reference_throughput in a process of its own, as the worker runs in its own."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.worker",
            "--reference",
            kind,
            "--url",
            url,
            "--fake-url",
            fake_url,
            "--messages",
            str(n),
            "--concurrency",
            str(concurrency),
            "--request",
            json.dumps(request),
        ],
        capture_output=True,
        text=True,
        timeout=SEND_TIMEOUT_S,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"the {kind} reference failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")


def bare_http_checked(
    url: str, fake: ReadyProcess, n: int, concurrency: int, request: dict[str, Any]
) -> dict[str, Any]:
    """The bare-HTTP reference, and what the fake received from it (n distinct creates)."""
    fake_reset(fake.url)
    fake_cpu0 = fake.cpu_seconds()
    result = reference("bare_http", url, fake.url, n, concurrency, request)
    result["fake_cpu_s"] = round(fake.cpu_seconds() - fake_cpu0, 2)
    stats = fake_get(fake.url, "/_bench/stats")
    if stats["creates"] != n or stats["distinct_messages"] != n:
        result["problems"] = [f"{stats['creates']} create-sms-chat for {n} bare jobs: {stats}"]
    return result


def sample_request(fake: ReadyProcess, concurrency: int, poll: float) -> dict[str, Any]:
    """The create-sms-chat body a real send makes: one message sent by `pgflow worker` from a
    scratch database, as the fake received it."""
    url = fresh_database("pgflow_bench_worker_sample")
    make_messages(url, 1)
    fake_reset(fake.url)
    worker = start_worker(url, fake.url, concurrency, poll)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while queries.sent_messages().run(conn) < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sample message was not sent:\n" + worker.output())
                time.sleep(0.05)
    finally:
        try:
            worker.terminate()
        finally:
            worker.stop()
    drop_database("pgflow_bench_worker_sample")
    request: dict[str, Any] = fake_get(fake.url, "/_bench/sample")
    return request


def reference_main(args: argparse.Namespace) -> None:
    """`--reference KIND`: one reference run, its result as a `RESULT {json}` line."""
    request = json.loads(args.request or "{}")
    result = uvloop.run(
        reference_throughput(
            args.reference, args.url, args.fake_url, args.messages, args.concurrency, request
        )
    )
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--workers", default="1,2", help="worker process counts to compare")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the worker counts")
    parser.add_argument("--fake-seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="500 messages, one round, 1 worker")
    # one reference run in this process (what the benchmark starts for each reference)
    parser.add_argument("--reference", choices=REFERENCES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--fake-url", help=argparse.SUPPRESS)
    parser.add_argument("--request", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        reference_main(args)
        return
    n = 500 if args.quick else args.messages
    repeat = 1 if args.quick else args.repeat
    fake_seconds = 1.0 if args.quick else args.fake_seconds
    counts = [1] if args.quick else [int(c) for c in args.workers.split(",")]

    runs: list[dict[str, Any]] = []
    with ReadyProcess("bench.fast_retell", "--port", "0", "--api-key", API_KEY) as fake:
        # the fake alone, hammered by as many connections as all workers together open
        clients = args.concurrency * max(counts)
        fake_alone = uvloop.run(hammer(fake.url, clients, fake_seconds, fake.pid))
        # the request a send makes, replayed by the bare sender
        request = sample_request(fake, args.concurrency, args.poll)
        for round_ in range(repeat):
            for workers in counts:
                url = fresh_database(f"pgflow_bench_worker_{workers}")
                # the bare sender just before and just after the full send (the machine's
                # load drifts: their mean is the reference), each on an empty queue
                before = bare_http_checked(url, fake, n, args.concurrency, request)
                make_messages(url, n)
                sends = send_throughput(url, fake, n, workers, args.concurrency, args.poll)
                after = bare_http_checked(url, fake, n, args.concurrency, request)
                noop = reference("noop", url, fake.url, n, args.concurrency, request)
                bare = {
                    "jobs": n,
                    "jobs_per_s": round((before["jobs_per_s"] + after["jobs_per_s"]) / 2, 1),
                    "before_the_send": before,
                    "after_the_send": after,
                }
                sends["round"] = round_ + 1
                sends["bare_http"] = bare
                sends["pgqueuer_noop"] = noop
                sends["problems"] += before.pop("problems", []) + after.pop("problems", [])
                sends["ratio_to_bare_http"] = round(sends["messages_per_s"] / bare["jobs_per_s"], 2)
                sends["ratio_to_noop"] = round(sends["messages_per_s"] / noop["jobs_per_s"], 2)
                sends["fake_alone_to_send_rate"] = round(
                    fake_alone["requests_per_s"] / sends["messages_per_s"], 1
                )
                print(
                    f"round {round_ + 1}, {workers} worker(s): full send"
                    f" {sends['messages_per_s']} msg/s, bare HTTP {bare['jobs_per_s']} jobs/s,"
                    f" no-op {noop['jobs_per_s']} jobs/s; full/bare"
                    f" {sends['ratio_to_bare_http']}, full/no-op {sends['ratio_to_noop']};"
                    f" worker RSS {max(w['peak_rss_mb'] for w in sends['per_worker'])} MB",
                    flush=True,
                )
                runs.append(sends)
        fake_peak = fake.peak_rss_mb()
    fake_alone["peak_rss_mb_end_of_run"] = fake_peak

    def chosen(workers: int) -> list[dict[str, Any]]:
        """The runs of this many workers where none died (all of them if each had a death)."""
        mine = [r for r in runs if r["workers"] == workers]
        return [r for r in mine if not r["worker_deaths"]] or mine

    def median(workers: int, key: str, ref: str | None = None) -> float:
        values = (r[ref][key] if ref else r[key] for r in chosen(workers))
        return round(float(statistics.median(values)), 2)

    by_count = {
        str(w): {
            "messages_per_s": median(w, "messages_per_s"),
            "bare_http_jobs_per_s": median(w, "jobs_per_s", "bare_http"),
            "noop_jobs_per_s": median(w, "jobs_per_s", "pgqueuer_noop"),
            "ratio_to_bare_http": median(w, "ratio_to_bare_http"),
            "ratio_to_noop": median(w, "ratio_to_noop"),
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
        "bare_http": {"jobs": n, "jobs_per_s": first["bare_http_jobs_per_s"]},
        "pgqueuer_noop": {"jobs": n, "jobs_per_s": first["noop_jobs_per_s"]},
        "ratio_to_bare_http": first["ratio_to_bare_http"],
        "ratio": first["ratio_to_noop"],
        "peak_rss_mb": first["peak_rss_mb_per_worker"],
        "goal": "full send >= 0.7 x bare HTTP job; worker peak RSS < 150 MB",
        "goal_met": first["ratio_to_bare_http"] >= 0.7 and first["peak_rss_mb_per_worker"] < 150,
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

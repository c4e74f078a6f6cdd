"""Where a send's time goes: the worker run in this process under cProfile, against the fast
fake Retell (another process), on queued step-1 messages.

    .venv/bin/python -m bench.profile_send [--messages 2000] [--concurrency 20]

Reports, per message: the worker's CPU by package (pgqueuer, psycopg, httpx, logging, the
event loop, pgflow itself), the database's transactions and CPU, each SQL function's time
(track_functions = all: total and self, so the cost of a trigger or a helper shows apart),
and the messages/s of the run next to pgqueuer's own no-op jobs/s on the same database (the
reference). Writes bench/results/profile_send.json."""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import datetime as dt
import logging
import os
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import uvloop

from bench import queries
from bench.common import fresh_database, record
from pgflow import db, logs
from pgflow.config import Settings
from pgflow.worker import Worker, WorkerOptions
from tests.factories import campaign_doc

DATABASE = "pgflow_bench_profile"
BUCKETS = (
    ("pgqueuer", "/pgqueuer/"),
    ("psycopg", "/psycopg"),
    ("httpx", "/httpx/"),
    ("httpcore", "/httpcore/"),
    ("anyio/h11/ssl", "/anyio/"),
    ("anyio/h11/ssl", "/h11/"),
    ("logging", "/logging/"),
    ("json", "/json/"),
    ("asyncio", "/asyncio/"),
    ("pgflow", "/pgflow/"),
)


def bucket(filename: str) -> str:
    for name, marker in BUCKETS:
        if marker in filename:
            return name
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (select, socket, ...)"
    return "other"


def populate(url: str, n: int) -> None:
    doc = campaign_doc(window_start="00:00", window_end="24:00", daily_cap=50)
    with psycopg.connect(url, autocommit=True) as conn:
        db.apply_campaigns(doc).run(conn)
        queries.insert_contacts(n).run(conn)
        queries.enroll_every_contact().run(conn)
        # at a given time, so the tick raises no alert (no worker runs yet)
        while db.tick(dt.datetime.now(dt.UTC), 1000).run(conn).get("sent") != 0:
            pass
        queries.vacuum_analyze().run(conn)


def postgres_cpu_seconds() -> float:
    """User + system CPU of every postgres process of this machine (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if comm != "postgres":
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total / tick


def db_counters(conn: psycopg.Connection[Any]) -> tuple[int, dict[str, tuple[int, float, float]]]:
    queries.clear_stats_snapshot().run(conn)
    return queries.transactions().run(conn), queries.function_stats().run(conn)


async def run_worker(url: str, retell_url: str, n: int, concurrency: int) -> float:
    settings = Settings.from_env(
        {
            "DATABASE_URL": url,
            "RETELL_API_KEY": "bench-key",
            "RETELL_BASE_URL": retell_url,
            "PGFLOW_LOG_FORMAT": "json",
        }
    )
    stopping = asyncio.Event()
    worker = Worker(settings, WorkerOptions(concurrency=concurrency, poll_seconds=0.2), stopping)
    serve = asyncio.create_task(worker.serve())
    started = time.perf_counter()
    sent = queries.sent_messages()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while await sent.arun(conn) < n:
            await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    worker.stop()
    await serve
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    # INFO JSON logs as in production (one line a send), written to /dev/null
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(logs.JsonFormatter(["bench-key"]))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    url = fresh_database(DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        queries.track_all_functions(DATABASE).run(conn)
    populate(url, args.messages)
    fake = subprocess.Popen(
        [sys.executable, "-m", "bench.fast_retell", "--port", "0", "--api-key", "bench-key"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        ready = fake.stdout.readline().split()
        retell_url = ready[1]
        with psycopg.connect(url, autocommit=True) as conn:
            xacts0, funcs0 = db_counters(conn)
            pg0 = postgres_cpu_seconds()
            cpu0 = time.process_time()
            profile = cProfile.Profile()
            profile.enable()
            elapsed = uvloop.run(run_worker(url, retell_url, args.messages, args.concurrency))
            profile.disable()
            cpu = time.process_time() - cpu0
            pg = postgres_cpu_seconds() - pg0
            xacts1, funcs1 = db_counters(conn)
    finally:
        fake.send_signal(signal.SIGTERM)
        fake.wait(10)
    n = args.messages
    stats = pstats.Stats(profile)
    by_bucket: dict[str, float] = collections.defaultdict(float)
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_bucket[bucket(filename)] += tottime
    profiled = sum(by_bucket.values())
    functions = {}
    for name, (calls, total, self_time) in funcs1.items():
        before = funcs0.get(name, (0, 0.0, 0.0))
        if calls - before[0] <= 0:
            continue
        functions[name] = {
            "calls_per_message": round((calls - before[0]) / n, 2),
            "total_ms_per_message": round((total - before[1]) / n, 3),
            "self_ms_per_message": round((self_time - before[2]) / n, 3),
        }
    top = dict(sorted(functions.items(), key=lambda kv: -kv[1]["self_ms_per_message"])[:15])
    result = {
        "label": args.label,
        "messages": n,
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(n / elapsed, 1),
        "worker_cpu_ms_per_message": round(cpu * 1000 / n, 3),
        "worker_cpu_by_package_ms_per_message (profiled, inflated by cProfile)": {
            k: round(v * 1000 / n, 3) for k, v in sorted(by_bucket.items(), key=lambda kv: -kv[1])
        },
        "profiled_ms_per_message": round(profiled * 1000 / n, 3),
        "postgres_cpu_ms_per_message": round(pg * 1000 / n, 3),
        "db_transactions_per_message": round((xacts1 - xacts0) / n, 2),
        "sql_functions_by_self_time": top,
    }
    stats.sort_stats("tottime").print_stats(25)
    record(f"profile_send{('_' + args.label) if args.label else ''}", result)


if __name__ == "__main__":
    main()

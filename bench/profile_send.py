"""Where a send's time goes: the worker run in this process under cProfile, against the fast
fake Retell (another process), on queued step-1 messages.

    .venv/bin/python -m bench.profile_send [--messages 2000] [--concurrency 20]

Reports, per message: the worker's CPU by package (pgqueuer, psycopg, httpx, logging, the
event loop, pgflow itself), the database's transactions and CPU, each SQL function's time
(track_functions = all: total and self, so the cost of a trigger or a helper shows apart),
and the messages/s of the run next to pgqueuer's own no-op jobs/s on the same database (the
reference). Writes bench/results/profile_send.json.

    .venv/bin/python -m bench.profile_send --spy [--messages 3000] [--log-level WARNING]

profiles a real `pgflow worker` process instead (py-spy, `pip install py-spy` in .venv),
beside the bare-HTTP reference job of bench.worker sampled the same way, with the CPU per
message of the worker, the database's backends and the fake from the first message sent to
the last, and the SQL functions' times; writes bench/results/profile_send_spy.json."""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import datetime as dt
import json
import logging
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import uvloop

from bench import queries
from bench.common import (
    DatabaseCpu,
    ReadyProcess,
    cpu_seconds,
    fresh_database,
    peak_rss_mb,
    record,
)
from bench.fake_retell_speed import API_KEY
from bench.fast_retell import fake_get, fake_reset
from bench.worker import make_messages
from pgflow import db, logs
from pgflow.config import Settings
from pgflow.worker import Worker, WorkerOptions
from tests.conftest import any_hour
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
        any_hour(url)  # the rules' hours too: any hour of the run
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


# --spy: where the time of a real `pgflow worker` goes, sampled by py-spy (only the samples
# where the thread holds the GIL: Python's own CPU, not its waits), beside the bare-HTTP
# reference job (bench/worker.py) sampled the same way; the stacks are put in these
# buckets (the first that matches a frame of the stack), the rest by the file of the leaf.
SPY_BUCKETS = (
    ("start-up (imports, migrations check)", ("<frozen importlib", "check_startable")),
    ("claim: claim_messages call (pool, psycopg, JSON)", ("_claim_many", "_claim_one (pgflow")),
    ("record: record_sends call (pool, psycopg, JSON)", ("_record_many", "_record_one (pgflow")),
    ("create-sms-chat (httpx, aiohttp, JSON)", ("create_sms_chat",)),
    ("pgqueuer dequeue", ("fetch_jobs",)),
    ("pgqueuer completion, log, heartbeat", ("buffers.py", "heartbeat.py", "flush_jobs")),
    ("pgflow send_sms and the coalescer (own frames)", ("send_sms.py", "jobs/batch.py")),
)
SPY_RATE = 250


def spy_buckets(path: Path, n: int) -> dict[str, Any]:
    """py-spy's raw stacks at `path` as ms of GIL-holding CPU per message, by bucket."""
    counts: dict[str, int] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        name = next(
            (b for b, keys in SPY_BUCKETS if any(k in f for f in frames for k in keys)), None
        )
        if name is None:
            leaf = frames[-1].rpartition(" (")[2].split(":")[0]
            name = "other: " + (leaf.split("site-packages/")[-1] or "native")
        counts[name] += int(samples)
    ms = {k: round(v * 1000 / SPY_RATE / n, 3) for k, v in counts.items()}
    startup = ms.pop(SPY_BUCKETS[0][0], 0.0)
    top = dict(sorted(ms.items(), key=lambda kv: -kv[1])[:14])
    return {
        "ms_per_message_steady": round(sum(ms.values()), 3),
        "start_up_ms_per_message": startup,
        "by_bucket_ms_per_message": top,
    }


def spy_record(out: Path, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            *("record", "--gil", "-r", str(SPY_RATE), "-f", "raw", "-o", str(out), "--"),
            *command,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def spy_main(args: argparse.Namespace) -> None:
    """The real worker and the bare-HTTP job under py-spy, the database's functions counted."""
    n = args.messages
    url = fresh_database(DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        queries.track_all_functions(DATABASE).run(conn)
    make_messages(url, n)
    work = Path(tempfile.mkdtemp(prefix="pgflow-spy-"))
    with ReadyProcess("bench.fast_retell", "--port", "0", "--api-key", API_KEY) as fake:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "RETELL_BASE_URL": fake.url,
            "RETELL_API_KEY": API_KEY,
        }
        pgflow = str(Path(sys.executable).with_name("pgflow"))
        spy = spy_record(
            work / "full.txt",
            [
                pgflow,
                *("worker", "--concurrency", str(args.concurrency), "--poll", "0.2"),
                *("--log-level", args.log_level),
            ],
            env,
        )
        database = DatabaseCpu(url)
        with psycopg.connect(url, autocommit=True) as conn:
            xacts0, funcs0 = db_counters(conn)
            while queries.sent_messages().run(conn) < 1:
                time.sleep(0.005)
            worker = int(
                subprocess.run(
                    ["pgrep", "-P", str(spy.pid)], capture_output=True, text=True, check=True
                ).stdout.split()[0]
            )
            cpu0 = (cpu_seconds(worker), database.seconds(), fake.cpu_seconds())
            while queries.sent_messages().run(conn) < n:
                time.sleep(0.02)
            cpu1 = (cpu_seconds(worker), database.seconds(), fake.cpu_seconds())
            span = queries.send_span().run(conn)
            xacts1, funcs1 = db_counters(conn)
        rss = peak_rss_mb(worker)
        os.kill(worker, signal.SIGTERM)
        spy.wait(60)
        request = fake_get(fake.url, "/_bench/sample")
        fake_reset(fake.url)
        bare_spy = spy_record(
            work / "bare.txt",
            [
                sys.executable,
                *("-m", "bench.worker", "--reference", "bare_http", "--url", url),
                *("--fake-url", fake.url, "--messages", str(n)),
                *("--concurrency", str(args.concurrency), "--request", json.dumps(request)),
            ],
            env,
        )
        bare_spy.wait(300)  # the reference runs in its own process, as in bench.worker
    functions = function_deltas(funcs0, funcs1, n)
    per = n - 1  # CPU from the first message sent to the last
    result = {
        "label": args.label,
        "messages": n,
        "concurrency": args.concurrency,
        "worker_log_level": args.log_level,
        "full_send_messages_per_s": round(n / span, 1),
        "full_send_cpu_ms_per_message": {
            "worker": round((cpu1[0] - cpu0[0]) * 1000 / per, 3),
            "postgres (the database's backends)": round((cpu1[1] - cpu0[1]) * 1000 / per, 3),
            "fake retell": round((cpu1[2] - cpu0[2]) * 1000 / per, 3),
        },
        "full_send_worker_peak_rss_mb": rss,
        "db_transactions_per_message": round((xacts1 - xacts0) / n, 2),
        "full_send_worker_py_spy": spy_buckets(work / "full.txt", n),
        "bare_http_worker_py_spy": spy_buckets(work / "bare.txt", n),
        # track_functions = all: each call's own timing inflates the small ones
        "sql_functions_by_self_time": functions,
    }
    shutil.rmtree(work, ignore_errors=True)
    record(f"profile_send_spy{('_' + args.label) if args.label else ''}", result)
    print(json.dumps(result, indent=2))


def function_deltas(
    before: dict[str, tuple[int, float, float]], after: dict[str, tuple[int, float, float]], n: int
) -> dict[str, dict[str, float]]:
    """Per SQL function between two snapshots: calls, total and self ms per message."""
    functions = {}
    for name, (calls, total, self_time) in after.items():
        was = before.get(name, (0, 0.0, 0.0))
        if calls - was[0] <= 0:
            continue
        functions[name] = {
            "calls_per_message": round((calls - was[0]) / n, 2),
            "total_ms_per_message": round((total - was[1]) / n, 3),
            "self_ms_per_message": round((self_time - was[2]) / n, 3),
        }
    return dict(sorted(functions.items(), key=lambda kv: -kv[1]["self_ms_per_message"])[:15])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--spy",
        action="store_true",
        help="profile a real `pgflow worker` and the bare-HTTP job with py-spy instead",
    )
    parser.add_argument("--log-level", default="WARNING", help="the worker's, with --spy")
    args = parser.parse_args()
    if args.spy:
        spy_main(args)
        return
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

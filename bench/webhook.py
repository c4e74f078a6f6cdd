"""The lead webhook end to end, each figure next to a reference from the same run.

    .venv/bin/python -m bench.webhook [--seconds 5] [--rounds 2] [--clients 16]
                                      [--rate 100] [--paced 20] [--backlog 2000] [--quick]

1. Intake: `pgflow serve`'s app (bench/intake_server.py: create_app + uvicorn as the CLI runs
   it, in a subprocess) takes `--clients` concurrent keep-alive clients POSTing distinct
   leads to /webhooks/leads (one pgflow.ingest_lead() call each) for `--seconds`, then the
   same clients POSTing the same bodies to /bench/select1 (one `select 1` through the same
   pool and middleware), and the same leads through a real `pgflow serve` process on the same
   database (to show the bench server is equivalent), `--rounds` times in alternating order.
   Reported: leads/s, select1/s, their ratio, pgflow serve's leads/s and its ratio, and the
   CPU utilisation of the server and of the database's backends during each measurement.
2. Speed to lead: a fresh database and server, a real `pgflow worker` (--concurrency 20
   --poll 0.2) against the fast fake Retell, busy draining a backlog of `--backlog` queued
   drip messages that a feeder keeps topped up; leads at a steady `--rate`/s for `--paced`
   seconds. Reported: p50/p95/p99 ms from the POST to the fake receiving that lead's
   create-sms-chat, the POSTs' own response times, the stages from the database's clock
   (queued -> claimed -> sent), how busy the queue was, duplicates.
Peak RSS (VmHWM) of each server process and of the worker, read before they stop."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import statistics
import threading
import time
from typing import Any

import aiohttp
import httpx
import psycopg
import uvloop

from bench import queries
from bench.common import (
    DatabaseCpu,
    ReadyProcess,
    cpu_seconds,
    fresh_database,
    peak_rss_mb,
    percentiles,
    record,
)
from bench.fake_retell_speed import API_KEY
from bench.fast_retell import fake_get
from bench.intake_server import SELECT1_PATH
from pgflow import db
from tests.conftest import any_hour
from tests.factories import campaign_doc
from tests.processes import ServeProcess, WorkerProcess, free_port

TOKEN = "bench-token"
CAMPAIGN = "bench"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
PACED_BASE = 5_000_000  # the paced leads' numbers: +1212 5xxxxxx


def phone(i: int, base: int) -> str:
    return f"+1212{base + i:07d}"


PACED_PREFIX = phone(0, PACED_BASE)[:-6]  # +12125: what every paced lead's number starts with


def lead_body(i: int, base: int) -> bytes:
    return json.dumps(
        {"campaign": CAMPAIGN, "phone": phone(i, base), "first_name": f"Lead{i}"}
    ).encode()


def prepare(name: str) -> str:
    url = fresh_database(name)
    doc = campaign_doc(CAMPAIGN, window_start="00:00", window_end="24:00", daily_cap=50)
    with psycopg.connect(url, autocommit=True) as conn:
        db.apply_campaigns(doc).run(conn)
        any_hour(url)  # the rules' hours too: any hour of the run
    return url


def start_server(url: str) -> ReadyProcess:
    return ReadyProcess(
        "bench.intake_server",
        "--port",
        str(free_port()),
        "--log-level",
        "WARNING",
        env={"DATABASE_URL": url, "PGFLOW_LEAD_TOKEN": TOKEN},
    )


# --- 1. intake --------------------------------------------------------------------------------


async def load(
    base_url: str, path: str, seconds: float, clients: int, numbers: itertools.count[int]
) -> dict[str, Any]:
    """`clients` keep-alive connections POSTing distinct lead bodies to `path`."""
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector) as http:

        async def client(deadline: float) -> None:
            while time.perf_counter() < deadline:
                body = lead_body(next(numbers), 2_000_000)
                async with http.post(path, data=body, headers=HEADERS) as r:
                    await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client(t0 + seconds) for _ in range(clients)))
        span = time.perf_counter() - t0
    total = sum(statuses.values())
    return {
        "requests": total,
        "seconds": round(span, 2),
        "per_s": round(total / span, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def measured(
    server_pid: int,
    db_cpu: DatabaseCpu,
    base_url: str,
    path: str,
    seconds: float,
    clients: int,
    numbers: itertools.count[int],
) -> dict[str, Any]:
    cpu0, pg0 = cpu_seconds(server_pid), db_cpu.seconds()
    result = uvloop.run(load(base_url, path, seconds, clients, numbers))
    result["server_cpu_utilisation"] = round(
        (cpu_seconds(server_pid) - cpu0) / result["seconds"], 2
    )
    result["postgres_cpu_utilisation"] = round((db_cpu.seconds() - pg0) / result["seconds"], 2)
    return result


def intake(seconds: float, rounds: int, clients: int, serve_check: bool) -> dict[str, Any]:
    """Rounds of: leads and select1 through the bench server, then (serve_check) leads through
    a real `pgflow serve` process on the same database, both servers up the whole time."""
    url = prepare("pgflow_bench_webhook")
    db_cpu = DatabaseCpu(url)
    numbers = itertools.count()
    leads: list[dict[str, Any]] = []
    select1: list[dict[str, Any]] = []
    real: list[dict[str, Any]] = []
    serve: ServeProcess | None = None
    with start_server(url) as server:
        try:
            if serve_check:
                serve = ServeProcess(
                    url, "--log-level", "WARNING", env={"PGFLOW_LEAD_TOKEN": TOKEN}
                )
                wait_http_ok(serve.url + "/healthz", serve)
            # warm-up: connections, the pools, the plans
            targets = [server.url] + ([serve.url] if serve is not None else [])
            for target in targets:
                uvloop.run(load(target, "/webhooks/leads", 0.5, clients, numbers))
            uvloop.run(load(server.url, SELECT1_PATH, 0.5, clients, numbers))
            for k in range(rounds):
                # the order alternates round by round: neither server always goes first
                steps = (
                    ["leads", "select1", "serve"] if k % 2 == 0 else ["serve", "select1", "leads"]
                )
                for step in steps:
                    if step == "leads":
                        leads.append(
                            measured(
                                server.pid,
                                db_cpu,
                                server.url,
                                "/webhooks/leads",
                                seconds,
                                clients,
                                numbers,
                            )
                        )
                    elif step == "select1":
                        select1.append(
                            measured(
                                server.pid,
                                db_cpu,
                                server.url,
                                SELECT1_PATH,
                                seconds,
                                clients,
                                numbers,
                            )
                        )
                    elif serve is not None:
                        real.append(
                            measured(
                                serve.proc.pid,
                                db_cpu,
                                serve.url,
                                "/webhooks/leads",
                                seconds,
                                clients,
                                numbers,
                            )
                        )
            server_rss = server.peak_rss_mb()
            serve_rss = peak_rss_mb(serve.proc.pid) if serve is not None else None
        finally:
            if serve is not None:
                serve.terminate()
                serve.stop()
    for r in leads + real:
        assert set(r["statuses"]) == {"201"}, r["statuses"]
    for r in select1:
        assert set(r["statuses"]) == {"200"}, r["statuses"]

    def rate(runs: list[dict[str, Any]]) -> float:
        return float(sum(r["requests"] for r in runs)) / float(sum(r["seconds"] for r in runs))

    leads_per_s, select1_per_s = rate(leads), rate(select1)
    result: dict[str, Any] = {
        "clients": clients,
        "leads_per_s": round(leads_per_s, 1),
        "select1_per_s": round(select1_per_s, 1),
        "ratio_leads_to_select1": round(leads_per_s / select1_per_s, 2),
        "rounds": [
            {"leads": a, "select1": b} | ({"pgflow_serve_leads": real[i]} if real else {})
            for i, (a, b) in enumerate(zip(leads, select1, strict=True))
        ],
        "server_peak_rss_mb": server_rss,
    }
    if real:
        result["pgflow_serve_leads_per_s"] = round(rate(real), 1)
        result["ratio_pgflow_serve_to_bench_server"] = round(rate(real) / leads_per_s, 2)
        result["pgflow_serve_peak_rss_mb"] = serve_rss
    return result


def wait_http_ok(url: str, process: ServeProcess, timeout: float = 20.0) -> None:
    """Poll until the server answers 200 (`pgflow serve` logs nothing at WARNING)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered:\n" + process.output()[-3000:])
        time.sleep(0.1)


# --- 2. speed to lead ---------------------------------------------------------------------------


def add_backlog_enrollments(url: str, n: int) -> None:
    """n contacts with their first drip step due now (dispatched by the feeder)."""
    with psycopg.connect(url, autocommit=True) as conn:
        queries.insert_contacts(n, prefix="+1213", first_name="Back").run(conn)
        queries.enroll_every_contact(due_in=-dt.timedelta(minutes=1)).run(conn)
        queries.vacuum_analyze().run(conn)


class Feeder:
    """Keeps at least `backlog` drip messages queued (priority 0, as the tick queues them),
    dispatching due enrollments like the tick does, every 0.2 s, on its own connection."""

    def __init__(self, url: str, backlog: int) -> None:
        self.url = url
        self.backlog = backlog
        self.depths: list[int] = []
        self.dispatched = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def fill(self, conn: psycopg.Connection[Any]) -> int:
        depth = queries.queued_drip_jobs().run(conn)
        if depth < self.backlog:
            made = queries.dispatch_due_enrollments(self.backlog - depth).run(conn)
            self.dispatched += int(made["sent"])
        return depth

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopping.wait(0.2):
                self.depths.append(self.fill(conn))

    def stop(self) -> dict[str, Any]:
        self.stopping.set()
        self.thread.join(10)
        depths = self.depths or [0]
        return {
            "backlog_target": self.backlog,
            "queue_depth_min": min(depths),
            "queue_depth_median": statistics.median(depths),
            "queue_depth_max": max(depths),
            "samples": len(self.depths),
            "topped_up": self.dispatched,
        }


async def paced(base_url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Leads at a steady rate; when each POST was sent and how long it took."""
    n = int(rate * seconds)
    sent_at: dict[str, float] = {}
    response_ms: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector) as http:

        async def post(i: int) -> None:
            number = phone(i, PACED_BASE)
            t = time.monotonic()
            sent_at[number] = t
            async with http.post(
                "/webhooks/leads", data=lead_body(i, PACED_BASE), headers=HEADERS
            ) as r:
                await r.read()
            response_ms.append((time.monotonic() - t) * 1000)
            statuses[r.status] = statuses.get(r.status, 0) + 1

        start = time.monotonic()
        tasks = []
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        span = time.monotonic() - start
    return {
        "sent_at": sent_at,
        "leads": n,
        "achieved_rate_per_s": round(n / span, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "response_ms": percentiles(response_ms, 50, 95, 99),
    }


def lead_stages(url: str) -> dict[str, dict[str, float]]:
    """Where the paced leads' time went, from the database's own timestamps: message
    created (the ingest's transaction) -> its send claimed (queue wait) -> recorded sent."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = queries.lead_stages_ms(PACED_PREFIX).run(conn)
    return {
        "queued_to_claimed": percentiles([queued for queued, _ in rows], 50, 95, 99),
        "claimed_to_sent": percentiles([s for _, s in rows if s is not None], 50, 95, 99),
    }


def speed_to_lead(
    rate: float, seconds: float, backlog: int, concurrency: int, poll: float
) -> dict[str, Any]:
    url = prepare("pgflow_bench_webhook_stl")
    # enough due enrollments to keep `backlog` queued for the whole run at up to 1,000 msg/s
    add_backlog_enrollments(url, backlog + int(1000 * (seconds + 10)))
    feeder = Feeder(url, backlog)
    with psycopg.connect(url, autocommit=True) as conn:
        feeder.fill(conn)
    with (
        ReadyProcess("bench.fast_retell", "--port", "0", "--api-key", API_KEY) as fake,
        start_server(url) as server,
    ):
        worker = WorkerProcess(
            url,
            fake.url,
            API_KEY,
            "--concurrency",
            str(concurrency),
            "--poll",
            str(poll),
            "--log-level",
            "WARNING",
        )
        try:
            deadline = time.monotonic() + 30
            while fake_get(fake.url, "/_bench/stats")["creates"] < 50:  # the worker is busy
                if worker.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the worker did not start:\n" + worker.output()[-3000:])
                time.sleep(0.05)
            before = fake_get(fake.url, "/_bench/stats")["creates"]
            feeder.thread.start()
            leads = uvloop.run(paced(server.url, rate, seconds))
            during = fake_get(fake.url, "/_bench/stats")["creates"] - before
            queue = feeder.stop()
            numbers: dict[str, float] = leads.pop("sent_at")
            deadline = time.monotonic() + 60
            while True:
                received: dict[str, float] = fake_get(fake.url, "/_bench/received")
                missing = [n for n in numbers if n not in received]
                if not missing:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(missing)} leads never reached the fake")
                time.sleep(0.2)
            worker_rss = peak_rss_mb(worker.proc.pid)
            server_rss = server.peak_rss_mb()
            stats = fake_get(fake.url, "/_bench/stats")
        finally:
            try:
                worker.terminate()
            finally:
                worker.stop()
    stages = lead_stages(url)
    latencies = [(received[n] - t) * 1000 for n, t in numbers.items()]
    assert leads["statuses"] == {"201": leads["leads"]}, leads["statuses"]
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        **leads,
        "latency_ms": percentiles(latencies, 50, 95, 99) | {"max": round(max(latencies), 1)},
        "stages_ms": stages,
        "worker_sends_during_window": during,
        "worker_sends_per_s_during_window": round(during / seconds, 1),
        "queue": queue,
        "duplicate_sends": len(stats["duplicates"]),
        "worker_peak_rss_mb": worker_rss,
        "server_peak_rss_mb": server_rss,
        "worker": {"concurrency": concurrency, "poll_s": poll},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="per intake measurement")
    parser.add_argument("--rounds", type=int, default=2, help="leads/select1 alternations")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100, help="speed to lead: leads/s")
    parser.add_argument("--paced", type=float, default=20, help="speed to lead: seconds")
    parser.add_argument("--backlog", type=int, default=2000, help="queued drip messages")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--no-serve-check", action="store_true")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.paced, args.backlog = 1.5, 1, 4, 500

    intake_result = intake(args.seconds, args.rounds, args.clients, not args.no_serve_check)
    stl = speed_to_lead(args.rate, args.paced, args.backlog, args.concurrency, args.poll)
    record(
        "webhook" + ("_quick" if args.quick else ""),
        {
            "intake": intake_result,
            "speed_to_lead": stl,
            "web_peak_rss_mb": max(intake_result["server_peak_rss_mb"], stl["server_peak_rss_mb"]),
            "goal": "speed_to_lead p95 < 50 ms",
        },
    )


if __name__ == "__main__":
    main()

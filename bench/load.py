"""A by-hand load run of the whole product on loopback, bounded, each figure next to a
reference measured in the same run.

    .venv/bin/python -m bench.load [--leads 10000] [--workers 2] [--reply-fraction 0.1]
                                   [--clients 16] [--concurrency 20] [--poll 0.2]
                                   [--keep] [--quick]

One fresh database (bench.common.fresh_database), one campaign (send window open all day,
step 1 at once, step 2 a day later), a real `pgflow serve`, `--workers` real `pgflow worker`
processes against the fast fake Retell (bench/fast_retell.py), and the bench intake server
(bench/intake_server.py) for the `select 1` reference only. Then:

1. `--leads` distinct leads POSTed by `--clients` keep-alive clients to `pgflow serve`'s
   POST /webhooks/leads while the workers send their step 1; as soon as the step 1 of a
   chosen lead (`--reply-fraction` of them) is sent, a signed Retell `transcript_updated`
   with a user text is POSTed to POST /webhooks/retell of the same server.
2. Once every step 1 is sent and every reply recorded, `db.tick(now + 2 days)` queues
   step 2 (for the leads that did not reply); the workers drain it.
3. References: the bench server's /bench/select1 endpoint (one `select 1` through the same
   pool and middleware) for `--clients` clients, before and after the lead intake, as
   bench/webhook.py measures it; pgqueuer's no-op jobs/s on the same database with the
   worker's driver (bench/worker.py's noop_throughput), after the workers stopped.

Reported: leads/s accepted, replies/s, SMS/s sent (first to last sent_at: step 1 during the
intake, step 2 as a backlog drain), p50/p95/p99 lead -> SMS latency measured two ways (the
lead POST's start to the fake receiving its create-sms-chat, on the benchmark's monotonic
clock; and the message's created_at to its sent_at on the database's clock), peak RSS
(VmHWM) of each worker, of `pgflow serve`, and the sampled peak of the PostgreSQL backends
of the database (sum of VmRSS and of RssAnon over the backends, max VmHWM of one), and the
counts that must be 0: leads lost (accepted without contact, enrollment or step 1 message),
duplicate sends (more than one create-sms-chat per message id, or more than one campaign
message per (contact, step)), drip steps after a reply (campaign messages created or sent
after the conversation's first inbound message). Any of them not 0 (or a lead refused, a
send that never happens) exits 1. --quick: 500 leads, writes bench/results/load_quick.json.
The database is dropped at the end unless --keep."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import uvloop

from bench import queries
from bench.common import (
    ActivitySampler,
    DatabaseCpu,
    DatabaseSampler,
    ReadyProcess,
    cpu_seconds,
    drop_database,
    fresh_database,
    peak_rss_mb,
    percentiles,
    record,
)
from bench.fake_retell_speed import API_KEY
from bench.fast_retell import fake_get
from bench.intake_server import SELECT1_PATH
from bench.webhook import (
    CAMPAIGN,
    HEADERS,
    TOKEN,
    lead_body,
    measured,
    phone,
    start_server,
    wait_http_ok,
)
from bench.worker import last_error, noop_throughput, start_worker
from pgflow import db
from pgflow.transport.retell import SIGNATURE_HEADER, sign
from tests.chat_payloads import chat, event
from tests.conftest import any_hour
from tests.factories import campaign_doc
from tests.processes import ServeProcess, WorkerProcess

DATABASE = "pgflow_bench_load"
BASE = 3_000_000  # the leads' numbers: +1212 3xxxxxx (distinct from the select1 bodies')
REPLY_TEXT = "yes, tell me more"
SELECT1_SECONDS = 3.0
SEND_TIMEOUT_S = 120.0


def prepare() -> str:
    url = fresh_database(DATABASE)
    doc = campaign_doc(
        CAMPAIGN,
        window_start="00:00",
        window_end="24:00",
        daily_cap=50,
        steps=[
            {"delay": "0 seconds", "body": "Hi {{first_name}}, it's Ava from SunCo!"},
            {"delay": "1 day", "body": "Hi {{first_name}}, still interested?"},
        ],
    )
    with psycopg.connect(url, autocommit=True) as conn:
        db.apply_campaigns(doc).run(conn)
        any_hour(url)  # the rules' hours too: any hour of the run
    return url


# --- memory of the PostgreSQL backends ----------------------------------------------------------


def _status_kb(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            found[key] = int(rest.split()[0])
    return found


class BackendMemory(DatabaseSampler):
    """Every 0.5 s, the database's backends' memory from /proc: the peak over the samples of
    their summed VmRSS (shared buffers they touched counted once per backend: an upper
    bound) and of their summed RssAnon (private memory), and the largest VmHWM of one."""

    def __init__(self, url: str, interval: float = 0.5) -> None:
        super().__init__(url, interval)
        self.backends_max = 0
        self.rss_sum_kb_max = 0
        self.anon_sum_kb_max = 0
        self.hwm_kb_max = 0
        self.unreadable = 0

    def sample(self, conn: psycopg.Connection[Any]) -> None:
        pids = queries.backend_pids().run(conn)
        rss = anon = 0
        for pid in pids:
            try:
                kb = _status_kb(pid)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                self.unreadable += 1
                continue
            rss += kb.get("VmRSS", 0)
            anon += kb.get("RssAnon", 0)
            self.hwm_kb_max = max(self.hwm_kb_max, kb.get("VmHWM", 0))
        self.backends_max = max(self.backends_max, len(pids))
        self.rss_sum_kb_max = max(self.rss_sum_kb_max, rss)
        self.anon_sum_kb_max = max(self.anon_sum_kb_max, anon)

    def summary(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "interval_s": self.interval,
            "backends_max": self.backends_max,
            "sum_vmrss_mb_peak": round(self.rss_sum_kb_max / 1024, 1),
            "sum_rssanon_mb_peak": round(self.anon_sum_kb_max / 1024, 1),
            "max_backend_vmhwm_mb": round(self.hwm_kb_max / 1024, 1),
            "unreadable_samples": self.unreadable,
        }


# --- 1. leads and replies -----------------------------------------------------------------------


class Replier:
    """Sends the chosen leads' replies as soon as their step 1 is recorded sent."""

    def __init__(self, url: str, chosen: set[str]) -> None:
        self.url = url
        self.waiting = set(chosen)
        self.statuses: dict[int, int] = {}
        self.first = 0.0
        self.last = 0.0

    async def run(self, http: aiohttp.ClientSession, intake_done: asyncio.Event) -> None:
        deadline = None
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while self.waiting:
                rows = await queries.first_steps_sent_to(list(self.waiting)).arun(conn)
                for k in range(0, len(rows), 8):  # 8 at a time
                    await asyncio.gather(*(self.post(http, r) for r in rows[k : k + 8]))
                for r in rows:
                    self.waiting.discard(r["phone"])
                if intake_done.is_set() and deadline is None:
                    deadline = time.monotonic() + SEND_TIMEOUT_S
                if deadline is not None and time.monotonic() > deadline:
                    raise RuntimeError(f"{len(self.waiting)} chosen leads' step 1 never sent")
                await asyncio.sleep(0.3)

    async def post(self, http: aiohttp.ClientSession, sent: dict[str, Any]) -> None:
        """The lead's reply to its sent step 1 (a row of queries.first_steps_sent_to)."""
        now_ms = int(time.time() * 1000)
        payload = event(
            "transcript_updated",
            chat(
                sent["chat_id"] or f"missing_{sent['id']}",
                [("agent", sent["body"]), ("user", REPLY_TEXT)],
                conversation_id=sent["conversation_id"],
                message_id=sent["id"],
                start_ms=now_ms - 1000,  # the user's text at now
            ),
        )
        raw = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(raw, API_KEY, now_ms),
        }
        self.first = self.first or time.monotonic()
        async with http.post("/webhooks/retell", data=raw, headers=headers) as r:
            await r.read()
        self.last = time.monotonic()
        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1


async def intake(url: str, base_url: str, n: int, clients: int, every: int) -> dict[str, Any]:
    """n leads by `clients` keep-alive clients; the replies alongside."""
    started: dict[str, float] = {}
    accepted: list[str] = []
    statuses: dict[int, int] = {}
    chosen = {phone(i, BASE) for i in range(0, n, every)} if every else set()
    replier = Replier(url, chosen)
    numbers = iter(range(n))
    done = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=clients + 8)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector) as http:

        async def client() -> None:
            for i in numbers:
                number = phone(i, BASE)
                started[number] = time.monotonic()
                async with http.post(
                    "/webhooks/leads", data=lead_body(i, BASE), headers=HEADERS
                ) as r:
                    await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status in (200, 201):
                    accepted.append(number)

        replies = asyncio.create_task(replier.run(http, done))
        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        span = time.monotonic() - t0
        done.set()
        await replies
    accepted_set = set(accepted)
    return {
        "started": {k: v for k, v in started.items() if k in accepted_set},
        "accepted": accepted,
        "chosen": chosen,
        "leads": n,
        "seconds": round(span, 2),
        "accepted_per_s": round(len(accepted) / span, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "replies": {
            "chosen": len(chosen),
            "statuses": {str(k): v for k, v in sorted(replier.statuses.items())},
            "seconds_first_to_last": round(replier.last - replier.first, 2),
            "per_s": round(
                sum(replier.statuses.values()) / max(replier.last - replier.first, 1e-9), 1
            ),
        },
    }


# --- waiting and counting -----------------------------------------------------------------------


def wait_sent(
    conn: psycopg.Connection[Any], step: int, expected: int, workers: list[WorkerProcess]
) -> None:
    deadline = time.monotonic() + SEND_TIMEOUT_S
    while True:
        sent = queries.campaign_step_sent(step).run(conn)
        if sent >= expected:
            return
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"a worker died: {last_error(w.output())}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"step {step}: {sent} of {expected} sent after {SEND_TIMEOUT_S} s")
        time.sleep(0.2)


def send_span(conn: psycopg.Connection[Any], step: int) -> dict[str, Any]:
    count, span = queries.campaign_step_span(step).run(conn)
    return {
        "messages": count,
        "seconds_first_to_last_sent": round(span, 2),
        "messages_per_s": round(count / span, 1) if span else None,
    }


def db_latencies(conn: psycopg.Connection[Any]) -> dict[str, float]:
    return percentiles(queries.first_step_latencies_ms().run(conn), 50, 95, 99)


def zero_counts(
    conn: psycopg.Connection[Any], accepted: list[str], stats: dict[str, Any]
) -> dict[str, Any]:
    lost = queries.leads_lost(accepted).run(conn)
    per_step = queries.contact_steps_made_twice().run(conn)
    after_reply = queries.drip_after_reply().run(conn)
    return {
        # no step 1 message (which covers no contact / no enrollment)
        "leads_lost": lost["no_first_message"],
        "leads_lost_detail": lost,
        "duplicate_sends": len(stats["duplicates"]) + per_step,
        "duplicate_sends_detail": {
            "message_ids_created_twice_at_fake": len(stats["duplicates"]),
            "contact_steps_with_two_messages": per_step,
        },
        "drip_after_reply": after_reply["created"] + after_reply["sent"],
        "drip_after_reply_detail": {
            "created_after_first_inbound": after_reply["created"],
            "sent_after_first_inbound": after_reply["sent"],
        },
    }


# --- the run ------------------------------------------------------------------------------------


def select1(server: ReadyProcess, db_cpu: DatabaseCpu, clients: int, seconds: float) -> Any:
    numbers = itertools.count(10_000_000)
    return measured(server.pid, db_cpu, server.url, SELECT1_PATH, seconds, clients, numbers)


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = prepare()
    every = round(1 / args.reply_fraction) if args.reply_fraction > 0 else 0
    env = {"PGFLOW_LEAD_TOKEN": TOKEN, "RETELL_API_KEY": API_KEY}
    t_start = time.monotonic()
    with (
        ReadyProcess("bench.fast_retell", "--port", "0", "--api-key", API_KEY) as fake,
        start_server(url) as bench_server,
    ):
        env["RETELL_BASE_URL"] = fake.url
        serve = ServeProcess(url, "--log-level", "WARNING", env=env)
        workers: list[WorkerProcess] = []
        try:
            wait_http_ok(serve.url + "/healthz", serve)
            workers = [
                start_worker(url, fake.url, args.concurrency, args.poll)
                for _ in range(args.workers)
            ]
            db_cpu = DatabaseCpu(url)
            # warm-up of the reference server: connections, pool, plans
            select1(bench_server, db_cpu, args.clients, 0.5)
            ref_before = select1(bench_server, db_cpu, args.clients, SELECT1_SECONDS)
            with (
                BackendMemory(url) as memory,
                ActivitySampler(url, interval=0.5) as activity,
                psycopg.connect(url, autocommit=True) as conn,
            ):
                serve_cpu0, pg_cpu0 = cpu_seconds(serve.proc.pid), db_cpu.seconds()
                leads = uvloop.run(intake(url, serve.url, args.leads, args.clients, every))
                serve_cpu = cpu_seconds(serve.proc.pid) - serve_cpu0
                pg_cpu = db_cpu.seconds() - pg_cpu0
                accepted: list[str] = leads.pop("accepted")
                started: dict[str, float] = leads.pop("started")
                chosen: set[str] = leads.pop("chosen")
                wait_sent(conn, 1, len(accepted), workers)
                ref_after = select1(bench_server, db_cpu, args.clients, SELECT1_SECONDS)
                received: dict[str, float] = fake_get(fake.url, "/_bench/received")
                latencies = [(received[p] - t) * 1000 for p, t in started.items() if p in received]
                replied = queries.replied_conversations().run(conn)
                # step 2: due in a day, for those who did not reply
                queued = 0
                while True:
                    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
                    got = db.tick(later, 1000).run(conn)
                    if not got["sent"]:
                        break
                    queued += int(got["sent"])
                step2_expected = len(accepted) - len(chosen & set(accepted))
                wait_sent(conn, 2, min(queued, step2_expected), workers)
                time.sleep(1.0)  # anything else the workers would still send
                by_pid = queries.attempts_by_worker_pid().run(conn)
                per_worker: list[dict[str, Any]] = [
                    {
                        "pid": w.proc.pid,
                        "peak_rss_mb": peak_rss_mb(w.proc.pid),
                        "cpu_s": cpu_seconds(w.proc.pid),
                        "messages_attempted": int(by_pid.get(w.proc.pid, 0)),
                    }
                    for w in workers
                ]
                serve_rss = peak_rss_mb(serve.proc.pid)
                stats = fake_get(fake.url, "/_bench/stats")
                step1, step2 = send_span(conn, 1), send_span(conn, 2)
                stl_db = db_latencies(conn)
                sent_total = queries.outbound_sent_or_delivered().run(conn)
                counts = zero_counts(conn, accepted, stats)
                queue_left = queries.jobs_by_entrypoint_and_status().run(conn)
        finally:
            for w in workers:
                try:
                    w.terminate()
                finally:
                    w.stop()
            try:
                serve.terminate()
            finally:
                serve.stop()
    noop = asyncio.run(noop_throughput(url, max(step2["messages"], 500), args.concurrency))
    wall = time.monotonic() - t_start
    if not args.keep:
        drop_database(DATABASE)

    ref_rate = (ref_before["requests"] + ref_after["requests"]) / (
        ref_before["seconds"] + ref_after["seconds"]
    )
    problems: list[str] = []
    if set(leads["statuses"]) - {"200", "201"}:
        problems.append(f"lead POSTs refused: {leads['statuses']}")
    if set(leads["replies"]["statuses"]) - {"200"}:
        problems.append(f"reply POSTs refused: {leads['replies']['statuses']}")
    if replied != len(chosen):
        problems.append(f"{replied} conversations with an inbound text for {len(chosen)} replies")
    if queued != step2_expected:
        problems.append(f"tick queued {queued} step 2 messages, {step2_expected} expected")
    if stats["creates"] != sent_total or stats["without_message_id"]:
        problems.append(f"{stats['creates']} create-sms-chat for {sent_total} sent: {stats}")
    if len(latencies) != len(accepted):
        problems.append(f"{len(accepted) - len(latencies)} accepted leads never reached the fake")
    for key in ("leads_lost", "duplicate_sends", "drip_after_reply"):
        if counts[key]:
            problems.append(f"{key}: {counts[key]} ({counts[key + '_detail']})")

    for entry in per_worker:
        entry["cpu_s"] = round(entry["cpu_s"], 2)
    return {
        "leads": args.leads,
        "workers": args.workers,
        "clients": args.clients,
        "reply_fraction": args.reply_fraction,
        "worker": {"concurrency": args.concurrency, "poll_s": args.poll},
        "intake": leads
        | {
            "serve_cpu_utilisation": round(serve_cpu / leads["seconds"], 2),
            "postgres_cpu_utilisation": round(pg_cpu / leads["seconds"], 2),
        },
        "select1_reference": {
            "per_s": round(ref_rate, 1),
            "before_intake": ref_before,
            "after_step1_sent": ref_after,
        },
        "ratio_leads_to_select1": round(leads["accepted_per_s"] / ref_rate, 2),
        "ratio_replies_to_select1": round(leads["replies"]["per_s"] / ref_rate, 2),
        "step1_sends": step1,
        "step2_sends": step2 | {"queued_by_tick": queued, "expected": step2_expected},
        "ratio_step1_sends_to_leads": round(
            (step1["messages_per_s"] or 0) / leads["accepted_per_s"], 2
        ),
        "pgqueuer_noop": noop,
        "ratio_step2_sends_to_noop": round((step2["messages_per_s"] or 0) / noop["jobs_per_s"], 2),
        "ratio_step1_sends_to_noop": round((step1["messages_per_s"] or 0) / noop["jobs_per_s"], 2),
        "latency_ms_post_to_fake": percentiles(latencies, 50, 95, 99)
        | {"max": round(max(latencies), 1) if latencies else None},
        "latency_ms_created_to_sent_db_clock": stl_db,
        "replied_conversations": replied,
        "fake": {k: v for k, v in stats.items() if k != "duplicates"},
        "queue_at_end": queue_left,
        "per_worker": per_worker,
        "worker_peak_rss_mb": max(w["peak_rss_mb"] for w in per_worker),
        "serve_peak_rss_mb": serve_rss,
        "postgres_backends_memory": memory.summary(),
        "database_activity": activity.summary(),
        **counts,
        "wall_s": round(wall, 1),
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reply-fraction", type=float, default=0.1)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--quick", action="store_true", help="500 leads")
    args = parser.parse_args()
    if args.quick:
        args.leads = 500
    result = run(args)
    record("load" + ("_quick" if args.quick else ""), result)
    if result["problems"]:
        raise SystemExit("problems: " + "; ".join(result["problems"]))


if __name__ == "__main__":
    main()

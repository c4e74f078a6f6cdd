"""The lead webhook end to end: `pgflow serve` + `pgflow worker` as real processes, the
fake Retell, leads over HTTP.

    .venv/bin/python -m bench.webhook [--seconds 10] [--clients 16] [--rate 20] [--paced 15]

1. leads/s: `--clients` concurrent clients POST distinct leads for `--seconds`.
2. speed to lead: leads at `--rate` per second for `--paced` seconds; latency from the POST
   to the fake Retell receiving that lead's first SMS request (p50/p95; goal p95 < 300 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from bench.common import fresh_database, record
from tests.factories import campaign_doc
from tests.fake_retell import FakeRetell
from tests.processes import ServeProcess, WorkerProcess

TOKEN = "bench-token"


def phone(i: int, base: int) -> str:
    return f"+1212{base + i:07d}"


async def throughput(port: int, seconds: float, clients: int) -> dict[str, Any]:
    counter = iter(range(10**6))
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            r = await http.post(
                "/webhooks/leads",
                headers=headers,
                json={"campaign": "bench", "phone": phone(i, 2_000_000), "first_name": f"Lead{i}"},
            )
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        timeout=30,
        limits=httpx.Limits(max_connections=clients),
    ) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        span = time.perf_counter() - t0
    total = sum(statuses.values())
    return {
        "leads": total,
        "seconds": round(span, 2),
        "leads_per_s": round(total / span, 1),
        "clients": clients,
        "statuses": statuses,
    }


async def paced(port: int, fake: FakeRetell, rate: float, seconds: float) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    n = int(rate * seconds)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        start = time.monotonic()
        tasks = []
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            number = phone(i, 5_000_000)
            sent_at[number] = time.monotonic()
            tasks.append(
                asyncio.create_task(
                    http.post(
                        "/webhooks/leads",
                        headers=headers,
                        json={"campaign": "bench", "phone": number, "first_name": f"Paced{i}"},
                    )
                )
            )
        responses = await asyncio.gather(*tasks)
    assert all(r.status_code == 201 for r in responses), {r.status_code for r in responses}
    requests = fake.wait_for_requests(n, timeout=60)
    latencies = sorted(
        (r.received_at - sent_at[r.json["to_number"]]) * 1000
        for r in requests
        if r.json and r.json.get("to_number") in sent_at
    )
    q = statistics.quantiles(latencies, n=100)
    return {
        "leads": n,
        "rate_per_s": rate,
        "latency_ms_p50": round(q[49], 1),
        "latency_ms_p95": round(q[94], 1),
        "latency_ms_max": round(latencies[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--paced", type=float, default=15)
    args = parser.parse_args()

    url = fresh_database("pgflow_bench_webhook")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select pgflow.apply_campaigns(%s)",
            [Jsonb(campaign_doc("bench", window_start="00:00", window_end="24:00"))],
        )
    server = ServeProcess(url, "--log-level", "INFO", env={"PGFLOW_LEAD_TOKEN": TOKEN}).started()
    port = server.port
    try:
        # 1. intake alone (no worker): what the webhook + ingest_lead sustain
        intake = asyncio.run(throughput(port, args.seconds, args.clients))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("delete from pgflow.pgqueuer")
        # 2. speed to lead with the worker running
        with FakeRetell(api_key="bench-key") as fake:
            worker = WorkerProcess(
                url, fake.url, fake.api_key, "--log-level", "INFO", "--poll", "5"
            ).started()
            try:
                latency = asyncio.run(paced(port, fake, args.rate, args.paced))
            finally:
                worker.terminate()
                worker.stop()
    finally:
        server.terminate()
        server.stop()
    record(
        "webhook",
        {"intake": intake, "speed_to_lead": latency, "goal": "speed_to_lead p95 < 300 ms"},
    )


if __name__ == "__main__":
    main()

"""How many create-sms-chat requests/s a fake Retell answers ALONE: the tests' stdlib fake
(pgflow.sandbox, `python -m tests.fake_retell`) and the benchmarks' aiohttp fake
(`python -m bench.fast_retell`), each in a subprocess of its own, measured the same way in
the same run: `--clients` concurrent keep-alive aiohttp clients POST the body the worker
sends (from/to numbers, override_agent_id, metadata with our ids, dynamic variables with
the text) for `--seconds`.

    .venv/bin/python -m bench.fake_retell_speed [--seconds 5] [--clients 20] [--quick]

The fake must answer several times the worker's send rate (~400-800 msg/s), or the worker
benchmark measures the fake. The client is one Python process too (uvloop + aiohttp): the
server's CPU utilisation says which side was the limit (near 100 %: the server)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp
import uvloop

from bench.common import ReadyProcess, cpu_seconds, record

API_KEY = "bench-key"
FROM_NUMBER = "+14155550100"


def create_body(i: int) -> bytes:
    """What pgflow's RetellClient posts for a drip step (pgflow.claim_message's fields)."""
    return json.dumps(
        {
            "from_number": FROM_NUMBER,
            "to_number": f"+1212{i % 10_000_000:07d}",
            "override_agent_id": "agent_0123456789abcdef0123456789",
            "metadata": {
                "pgflow_message_id": str(i),
                "pgflow_conversation_id": str(i),
                "pgflow_contact_id": str(i),
            },
            "retell_llm_dynamic_variables": {
                "agent_prompt": "You are Ava. Be brief.",
                "first_name": f"Lead{i}",
                "campaign_name": "Campaign solar",
                "sms_body": f"Hi Lead{i}, it's Ava from SunCo!",
            },
        }
    ).encode()


async def hammer(
    url: str, clients: int, seconds: float, server_pid: int | None = None, api_key: str = API_KEY
) -> dict[str, Any]:
    """`clients` keep-alive connections POSTing create-sms-chat for `seconds`; requests/s,
    statuses, and the server's CPU utilisation over the run when its pid is given."""
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": "pgflow-bench",
    }
    counter = itertools.count(1)
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(base_url=url, connector=connector, headers=headers) as http:

        async def client(deadline: float, counted: bool) -> None:
            while time.perf_counter() < deadline:
                async with http.post("/create-sms-chat", data=create_body(next(counter))) as r:
                    await r.read()
                if counted:
                    statuses[r.status] = statuses.get(r.status, 0) + 1

        # warm up: open the connections (and let the server start its threads) first
        warm = time.perf_counter() + min(0.5, seconds / 4)
        await asyncio.gather(*(client(warm, False) for _ in range(clients)))
        server_cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
        client_cpu0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(t0 + seconds, True) for _ in range(clients)))
        span = time.perf_counter() - t0
        client_cpu = time.process_time() - client_cpu0
        server_cpu = cpu_seconds(server_pid) - server_cpu0 if server_pid else None
    total = sum(statuses.values())
    result: dict[str, Any] = {
        "requests": total,
        "seconds": round(span, 2),
        "requests_per_s": round(total / span, 1),
        "clients": clients,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "client_cpu_utilisation": round(client_cpu / span, 2),
    }
    if server_cpu is not None:
        result["server_cpu_utilisation"] = round(server_cpu / span, 2)
        # what one fully busy core of the server would answer (the client may be the limit)
        result["requests_per_server_cpu_s"] = round(total / max(server_cpu, 1e-9), 1)
    return result


def measure(module: str, clients: int, seconds: float) -> dict[str, Any]:
    """Start the fake `module` in a subprocess and hammer it."""
    with ReadyProcess(module, "--port", "0", "--api-key", API_KEY) as fake:
        result = uvloop.run(hammer(fake.url, clients, seconds, fake.pid))
        result["peak_rss_mb"] = fake.peak_rss_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="1.5 s per fake (smoke run)")
    args = parser.parse_args()
    seconds = 1.5 if args.quick else args.seconds

    stdlib = measure("tests.fake_retell", args.clients, seconds)
    fast = measure("bench.fast_retell", args.clients, seconds)
    for name, result in (("stdlib", stdlib), ("fast", fast)):
        assert set(result["statuses"]) == {"200"}, (name, result["statuses"])
    record(
        "fake_retell_speed" + ("_quick" if args.quick else ""),
        {
            "stdlib_fake": {"module": "tests.fake_retell", **stdlib},
            "fast_fake": {"module": "bench.fast_retell", **fast},
            "ratio_fast_to_stdlib": round(fast["requests_per_s"] / stdlib["requests_per_s"], 2),
            "goal": "several times the worker's send rate (~400-800 msg/s)",
        },
    )


if __name__ == "__main__":
    main()

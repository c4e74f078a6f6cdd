"""Tick time at 10k and at 1M active enrollments with the same number (1,000) due.

    .venv/bin/python -m bench.tick [--sizes 10000,1000000] [--due 1000] [--runs 5]

Each run ticks inside a transaction that is rolled back, so every run sees the same state.
Goal: tick(1M) / tick(10k) <= 1.5 (the due scan is indexed, not a scan of all enrollments)."""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import psycopg
from psycopg.types.json import Jsonb

from bench.common import fresh_database, record
from tests.factories import campaign_doc


def populate(url: str, size: int, due: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select pgflow.apply_campaigns(%s)",
            [Jsonb(campaign_doc(window_start="00:00", window_end="24:00"))],
        )
        campaign = conn.execute("select id from pgflow.campaigns").fetchone()
        assert campaign is not None
        t0 = time.perf_counter()
        conn.execute("alter table pgflow.enrollments disable trigger enrollments_log_transition")
        conn.execute(
            """
            insert into pgflow.contacts (phone, first_name, timezone)
            select '+1212' || lpad(g::text, 7, '0'), 'Lead' || g, 'America/New_York'
              from generate_series(1, %(size)s) g
            """,
            {"size": size},
        )
        conn.execute(
            """
            insert into pgflow.enrollments (contact_id, campaign_id, status, next_step,
                                            next_message_at, enrolled_at)
            select c.id, %(campaign)s, 'active', 2,
                   case when c.id <= %(due)s then now() - interval '1 minute'
                        else now() + interval '1 day' + (c.id %% 10000) * interval '1 minute' end,
                   now()
              from pgflow.contacts c
            """,
            {"campaign": campaign[0], "due": due},
        )
        conn.execute("alter table pgflow.enrollments enable trigger enrollments_log_transition")
        conn.execute("vacuum analyze pgflow.contacts")
        conn.execute("vacuum analyze pgflow.enrollments")
        print(f"populated {size:,} enrollments in {time.perf_counter() - t0:.1f} s")


def time_ticks(url: str, runs: int) -> tuple[list[float], dict[str, object]]:
    times: list[float] = []
    result: dict[str, object] = {}
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(url) as conn:
        for _ in range(runs):
            t0 = time.perf_counter()
            row = conn.execute("select pgflow.tick(%s)", [now]).fetchone()
            times.append(time.perf_counter() - t0)
            assert row is not None
            result = row[0]
            conn.rollback()
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        url = fresh_database(f"pgflow_bench_tick_{size}")
        populate(url, size, args.due)
        times, last = time_ticks(url, args.runs)
        assert last["sent"] == args.due, last
        rows.append(
            {
                "active_enrollments": size,
                "due": args.due,
                "tick_ms_median": round(statistics.median(times) * 1000, 1),
                "tick_ms_min": round(min(times) * 1000, 1),
                "tick_result": last,
            }
        )
    ratio = float(rows[-1]["tick_ms_median"]) / float(rows[0]["tick_ms_median"])
    record(
        "tick", {"runs": rows, "ratio_largest_to_smallest": round(ratio, 2), "goal": "ratio <= 1.5"}
    )


if __name__ == "__main__":
    main()

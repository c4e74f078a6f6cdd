"""The console's inbox, `pgflow.inbox()`, with 100,000 conversations, next to a bare select
of the same page in the same run.

    .venv/bin/python -m bench.inbox [--conversations 100000] [--runs 200] [--keep] [--quick]

A scratch database migrated to head (`pgflow_bench_inbox`, dropped at the end unless
--keep) gets, set-based (bench/queries.py), one contact, one enrollment and one conversation
per lead, in 3 campaigns: ~60% ended (no_response 30%, unqualified 20%, qualified 20%,
success, discarded, escalated 10% each), ~25% open, ~15% engaged with the lead's last text
in the last 5 days (3/5 of them in the inbox's 3-day window), 1 in 500 with a review asked
for (review_reason, review_requested_at), 1 in 1,000 contacts held by a person (half of
them engaged, half ended escalated), 1 in 25 opted out; 1-4 messages per conversation
(campaign steps, the lead's texts, the agent's replies). Then VACUUM ANALYZE.

Each case is `db.inbox(filters, after, 50, now)`, timed from the client (the call, the
answer's JSON read); after `--warmup` rounds, `--runs` rounds each call every case once, in
turn, on one connection (as a pooled web connection serves mixed pages):

- first_page: no filter;
- page_5: the 5th page, through the cursor the 4 pages before it returned (at 100,000,
  ~300 conversations need a person: pages 1-6 are bucket 1);
- campaign: filter by one campaign;
- ended_qualified: state=ended, outcome=qualified;
- q_digits: q='555' (part of a phone number);
- q_name: q='okaf' (part of a last name, 1 in 50 contacts: past the function's 1,000 cap);
- page_in_bucket_2 / page_in_bucket_3: a cursor deep in the recent engaged conversations
  (last text 1 day ago) / in the rest (the 20% mark of the activity order).

The reference, in the same rotation: `select id from pgflow.conversations order by
greatest(last_inbound_at, last_outbound_at, created_at) desc, id desc limit 50`. Reported per
case: p50/p95/p99 ms and p95 / the reference's p95. Goal: p95 < 200 ms at 100,000 for every
case. The slowest case (by p95) is then run once more on the same connection with
auto_explain (ANALYZE, BUFFERS, nested statements) to show the plans inside the function."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench import queries
from bench.common import drop_database, fresh_database, percentiles, record
from pgflow import db
from tests.factories import campaign_doc

NAME = "pgflow_bench_inbox"
PAGE = 50
GOAL_MS = 200.0
REFERENCE = "reference_bare_select"
SLUGS = ("solar", "roofing", "hvac")
DESCRIPTIONS = {
    "first_page": "first page, no filter",
    "page_5": "page 5 via the cursor",
    "campaign": "filter campaign=roofing",
    "ended_qualified": "filter state=ended, outcome=qualified",
    "q_digits": "search q='555' (phone digits)",
    "q_name": "search q='okaf' (name fragment)",
    "page_in_bucket_2": "cursor in bucket 2 (engaged, last text 1 day ago)",
    "page_in_bucket_3": "cursor in bucket 3 (20% down the activity order)",
    REFERENCE: "bare select of 50 ids by last activity (reference)",
}


def populate(url: str, n: int, now: dt.datetime) -> dict[str, Any]:
    doc: dict[str, Any] = {"agents": [], "campaigns": []}
    for i, slug in enumerate(SLUGS):
        one = campaign_doc(slug, from_number=f"+1415555010{i}")
        doc["agents"] = one["agents"]
        doc["campaigns"] += one["campaigns"]
    with psycopg.connect(url, autocommit=True) as conn:
        db.apply_campaigns(doc).run(conn)
        t0 = time.perf_counter()
        tables = ("conversations", "enrollments", "messages")
        for table in tables:
            queries.set_transition_log_of(table, False).run(conn)
        queries.insert_inbox_contacts(n, now).run(conn)
        made = queries.insert_inbox_conversations(queries.campaign_ids().run(conn), now).run(conn)
        for table in tables:
            queries.set_transition_log_of(table, True).run(conn)
        queries.vacuum_analyze().run(conn)
        seconds = time.perf_counter() - t0
        data_set = queries.inbox_data_set(now).run(conn)
    print(f"populated {n:,} conversations in {seconds:.1f} s: {made}", flush=True)
    return {"build_s": round(seconds, 1), "data_set": data_set}


def inbox(filters: dict[str, Any], after: dict[str, Any] | None, now: dt.datetime) -> db.Call[Any]:
    return db.inbox(filters, after, PAGE, now)


def cases(conn: psycopg.Connection[Any], n: int, now: dt.datetime) -> dict[str, db.Call[Any]]:
    """The calls to time, in the order they are called each round; the reference last."""
    after = None
    for _ in range(4):
        page = inbox({}, after, now).run(conn)
        assert len(page["rows"]) == PAGE, page
        assert page["next"], page
        after = page["next"]
    at, last = queries.activity_cursor(n // 5).run(conn)
    bucket_2 = {"bucket": 2, "at": (now - dt.timedelta(days=1)).isoformat(), "id": 2**62}
    return {
        "first_page": inbox({}, None, now),
        "page_5": inbox({}, after, now),
        "campaign": inbox({"campaign": "roofing"}, None, now),
        "ended_qualified": inbox({"state": "ended", "outcome": "qualified"}, None, now),
        "q_digits": inbox({"q": "555"}, None, now),
        "q_name": inbox({"q": "okaf"}, None, now),
        "page_in_bucket_2": inbox({}, bucket_2, now),
        "page_in_bucket_3": inbox({}, {"bucket": 3, "at": at.isoformat(), "id": last}, now),
        REFERENCE: queries.inbox_reference_page(PAGE),
    }


CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "campaign": lambda r: r["campaign"] == "roofing",
    "ended_qualified": lambda r: r["status"] == "ended" and r["conversion_status"] == "qualified",
    "q_digits": lambda r: "555" in r["phone"],
    "q_name": lambda r: "okaf" in f"{r['first_name']} {r['last_name']}".lower(),
    "page_in_bucket_2": lambda r: r["bucket"] >= 2,
    "page_in_bucket_3": lambda r: r["bucket"] == 3,
}


def check(name: str, answer: Any) -> int:
    """How many rows the answer holds; asserts that they match the case's filter."""
    if name == REFERENCE:
        assert len(answer) == PAGE, answer
        return len(answer)
    rows = answer["rows"]
    assert rows, f"{name}: an empty page"
    ok = CHECKS.get(name)
    assert ok is None or all(ok(r) for r in rows), f"{name}: rows outside the filter"
    return len(rows)


def measure(
    conn: psycopg.Connection[Any], calls: dict[str, db.Call[Any]], runs: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    rows = {name: check(name, call.run(conn)) for name, call in calls.items()}
    for _ in range(warmup):
        for call in calls.values():
            call.run(conn)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call.run(conn)
            times[name].append((time.perf_counter() - t0) * 1000)
    return times, rows


def explain(conn: psycopg.Connection[Any], call: db.Call[Any]) -> list[dict[str, Any]]:
    """The plans (auto_explain: ANALYZE, BUFFERS) of the statements one call runs, the
    function's own included, on this connection as it is (its cached plans)."""
    notices: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(diag.message_primary or "")

    conn.add_notice_handler(keep)
    queries.load_auto_explain().run(conn)
    queries.explain_nested_statements(True).run(conn)
    try:
        call.run(conn)
    finally:
        queries.explain_nested_statements(False).run(conn)
        conn.remove_notice_handler(keep)
    found: list[dict[str, Any]] = []
    for text in notices:
        head = re.match(r"duration: ([\d.]+) ms\s+plan:\s*\n", text)
        if head is None:
            continue
        lines = text[head.end() :].splitlines()
        top = next((i for i, line in enumerate(lines) if "(cost=" in line), len(lines))
        query = " ".join(lines[:top]).removeprefix("Query Text:")
        found.append(
            {
                "ms": float(head.group(1)),
                "query": re.sub(r"\s+", " ", query).strip()[:200],
                "plan": [
                    LONG_ARRAY.sub(r"'{\1,...}'", line) for line in lines[top:] if line.strip()
                ],
            }
        )
    return found


# A long array constant in a plan (the ids of the contacts a search found), cut short.
LONG_ARRAY = re.compile(r"'\{([^,}]*,[^,}]*,[^,}]*),[^}]{40,}\}'")


def summary(name: str, statements: list[dict[str, Any]]) -> None:
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) via auto_explain, slowest case: {name}")
    for st in sorted(statements, key=lambda s: -s["ms"]):
        if st["ms"] < 0.5:
            continue
        print(f"--- {st['ms']:.1f} ms: {st['query'][:100]}")
        for line in st["plan"][:60]:
            print("   " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--quick", action="store_true", help="10,000 conversations")
    args = parser.parse_args()
    n = 10_000 if args.quick else args.conversations
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    url = fresh_database(NAME)
    try:
        built = populate(url, n, now)
        with db.connect(url, application="bench-inbox") as conn:
            calls = cases(conn, n, now)
            times, rows = measure(conn, calls, args.runs, args.warmup)
            figures: dict[str, dict[str, Any]] = {
                name: {
                    "description": DESCRIPTIONS[name],
                    **percentiles(values, 50, 95, 99),
                    "ms_min": round(min(values), 1),
                    "rows": rows[name],
                }
                for name, values in times.items()
            }
            ref_p95 = figures[REFERENCE]["p95"]
            for figure in figures.values():
                figure["ratio_p95_to_reference"] = round(figure["p95"] / ref_p95, 1)
            slowest = max((k for k in figures if k != REFERENCE), key=lambda k: figures[k]["p95"])
            plans = explain(conn, calls[slowest])
    finally:
        if not args.keep:
            drop_database(NAME)

    print(f"\n{n:,} conversations, page {PAGE}, {args.runs} runs per case (ms)")
    print(f"{'case':<22}{'p50':>8}{'p95':>8}{'p99':>8}{'p95/ref':>9}  rows")
    for name, f in figures.items():
        print(
            f"{name:<22}{f['p50']:>8}{f['p95']:>8}{f['p99']:>8}"
            f"{f['ratio_p95_to_reference']:>9}  {f['rows']}"
        )
    summary(slowest, plans)
    worst = figures[slowest]["p95"]
    record(
        "inbox" + ("_quick" if args.quick else ""),
        {
            "conversations": n,
            "page": PAGE,
            "runs": args.runs,
            "warmup_rounds": args.warmup,
            "now": now.isoformat(),
            **built,
            "cases": figures,
            "reference": REFERENCE,
            "slowest": slowest,
            "slowest_p95_ms": worst,
            "goal": f"p95 < {GOAL_MS:.0f} ms for every case at 100,000 conversations",
            "goal_met": worst < GOAL_MS,
            "explain_slowest": plans,
        },
    )


if __name__ == "__main__":
    main()

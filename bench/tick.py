"""The tick's time with 1,000 due enrollments among 10k and among 1M active ones, next to
bare set-based statements doing the same writes on the same data in the same run.

    .venv/bin/python -m bench.tick [--sizes 10000,1000000] [--due 1000] [--runs 5] [--reuse]
                                   [--quick]

Per size, on one database, each run is a transaction rolled back (every run sees the same
state), and the three are interleaved run after run:

- tick: `db.tick(now, due)`, and the same in a session of its own (as pg_cron runs it: a
  new backend per run, PL/pgSQL compiled and plans made anew);
- bare: ONE statement (bench/queries.py) with data-modifying CTEs making what the tick
  makes for the due enrollments (sql/migrations/0006 `_dispatch_steps`, send path): their
  conversations, their campaign messages (body `pgflow.render_template(step,
  _template_values(contact), fallbacks)`, `sms_segments`, `sms_encoding`, dedupe_key
  `step:<enrollment>:<position>`), the enrollments advanced to the next step (next_step,
  next_message_at, last_step_sent_at), and the send_sms jobs in pgflow.pgqueuer as
  `_enqueue` makes them; every trigger fires (the events rows of conversations and
  messages, pgqueuer's NOTIFY trigger);
- bare_checked: the same statement with the tick's per-row checks done set-based too
  (contact opted out, campaign active, live conversation on the line, send window via
  `next_window_open`, the 24 h cap count).

The first run checks that bare made the same rows as the tick (messages, conversations,
enrollments, jobs, events). Reported per size: tick_ms, tick_new_session_ms, bare_ms,
bare_checked_ms (medians), ratio bare/tick, the tick's rows/s; the growth 10k -> 1M of each.
Goal: tick(1M) / tick(10k) <= 1.5 (the due scan is indexed, not a scan of all enrollments)."""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from typing import Any

import psycopg

from bench import queries
from bench.common import fresh_database, record
from pgflow import db
from tests.conftest import any_hour, project_url, with_database
from tests.factories import campaign_doc


def populate(url: str, size: int, due: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        db.apply_campaigns(campaign_doc(window_start="00:00", window_end="24:00")).run(conn)
        any_hour(url)  # the rules' hours too: any hour of the run
        campaign = queries.only_campaign_id().run(conn)
        t0 = time.perf_counter()
        queries.set_transition_log(False).run(conn)
        queries.insert_contacts(size).run(conn)
        queries.enroll_due_or_later(campaign, due).run(conn)
        queries.set_transition_log(True).run(conn)
        queries.vacuum_analyze("contacts").run(conn)
        queries.vacuum_analyze("enrollments").run(conn)
        seconds = time.perf_counter() - t0
        print(f"populated {size:,} enrollments in {seconds:.1f} s", flush=True)
        return seconds


def reusable(name: str, size: int, due: int) -> str | None:
    """The database `name` when it already holds exactly this data set (--reuse)."""
    url = with_database(project_url(), name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            found = queries.tick_data_set().run(conn)
    except psycopg.Error:
        return None
    return url if found == (size, due, 0, 0) else None


def vacuum(url: str) -> None:
    """Clear what earlier rolled-back runs left (dead row versions, index entries)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("enrollments", "conversations", "messages", "events", "pgqueuer"):
            queries.vacuum_analyze(table).run(conn)


def measure(url: str, runs: int, due: int) -> dict[str, Any]:
    vacuum(url)
    now = dt.datetime.now(dt.UTC)
    times: dict[str, list[float]] = {
        "tick": [],
        "tick_new_session": [],
        "bare": [],
        "bare_checked": [],
    }
    digests: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    tick_result: dict[str, Any] = {}
    tick = db.tick(now, due)
    bare = {
        "bare": queries.bare_dispatch(now, due),
        "bare_checked": queries.bare_checked_dispatch(now, due),
    }
    with psycopg.connect(url) as conn:
        for run in range(runs):
            t0 = time.perf_counter()
            tick_result = tick.run(conn)
            times["tick"].append(time.perf_counter() - t0)
            if run == 0:
                digests["tick"] = queries.dispatch_digest(now).run(conn)
            conn.rollback()
            # as pg_cron runs it: in a session of its own (plans and PL/pgSQL compiled anew)
            with psycopg.connect(url) as fresh:
                t0 = time.perf_counter()
                tick.run(fresh)
                times["tick_new_session"].append(time.perf_counter() - t0)
                fresh.rollback()
            for name, statement in bare.items():
                t0 = time.perf_counter()
                counts[name] = statement.run(conn)
                times[name].append(time.perf_counter() - t0)
                if run == 0:
                    digests[name] = queries.dispatch_digest(now).run(conn)
                conn.rollback()
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    same = {
        name: {
            part: digests[name][part] == digests["tick"][part]
            for part in ("messages_and_conversations", "enrollments", "jobs", "events")
        }
        for name in ("bare", "bare_checked")
    }
    return {
        "tick_ms": round(ms["tick"], 1),
        "tick_new_session_ms": round(ms["tick_new_session"], 1),
        "bare_ms": round(ms["bare"], 1),
        "bare_checked_ms": round(ms["bare_checked"], 1),
        "ratio_bare_to_tick": round(ms["bare"] / ms["tick"], 3),
        "ratio_bare_checked_to_tick": round(ms["bare_checked"] / ms["tick"], 3),
        "tick_rows_per_s": round(int(tick_result["sent"]) / (ms["tick"] / 1000), 1),
        "bare_rows_per_s": round(int(counts["bare"]["messages"]) / (ms["bare"] / 1000), 1),
        "tick_ms_min": round(min(times["tick"]) * 1000, 1),
        "bare_ms_min": round(min(times["bare"]) * 1000, 1),
        "runs_ms": {k: [round(t * 1000, 1) for t in v] for k, v in times.items()},
        "tick_result": tick_result,
        "bare_counts": counts["bare"],
        "bare_checked_counts": counts["bare_checked"],
        "same_rows_as_tick": same,
        "events_made": {"tick": digests["tick"]["events"], "bare": digests["bare"]["events"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--reuse", action="store_true", help="keep a database that already holds the data set"
    )
    parser.add_argument("--quick", action="store_true", help="10k and 100k, 3 runs")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs = 3 if args.quick else args.runs

    rows: list[dict[str, Any]] = []
    for size in sizes:
        name = f"pgflow_bench_tick_{size}"
        url = reusable(name, size, args.due) if args.reuse else None
        build_s = None
        if url is None:
            url = fresh_database(name)
            build_s = round(populate(url, size, args.due), 1)
        result = measure(url, runs, args.due)
        assert result["tick_result"]["sent"] == args.due, result["tick_result"]
        assert result["bare_counts"]["messages"] == args.due, result["bare_counts"]
        rows.append({"active_enrollments": size, "due": args.due, "build_s": build_s, **result})
        print(
            f"{size:>9,} active: tick {result['tick_ms']} ms, bare {result['bare_ms']} ms,"
            f" bare_checked {result['bare_checked_ms']} ms",
            flush=True,
        )
    first, last = rows[0], rows[-1]
    record(
        "tick" + ("_quick" if args.quick else ""),
        {
            "runs": rows,
            "growth": {
                "from": first["active_enrollments"],
                "to": last["active_enrollments"],
                "tick": round(last["tick_ms"] / first["tick_ms"], 2),
                "tick_new_session": round(
                    last["tick_new_session_ms"] / first["tick_new_session_ms"], 2
                ),
                "bare": round(last["bare_ms"] / first["bare_ms"], 2),
                "bare_checked": round(last["bare_checked_ms"] / first["bare_checked_ms"], 2),
            },
            "ratio_largest_to_smallest": round(last["tick_ms"] / first["tick_ms"], 2),
            "goal": "ratio <= 1.5",
        },
    )


if __name__ == "__main__":
    main()

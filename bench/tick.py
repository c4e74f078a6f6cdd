"""The tick's time with 1,000 due enrollments among 10k and among 1M active ones, next to
bare set-based statements doing the same writes on the same data in the same run.

    .venv/bin/python -m bench.tick [--sizes 10000,1000000] [--due 1000] [--runs 5] [--reuse]
                                   [--quick]

Per size, on one database, each run is a transaction rolled back (every run sees the same
state), and the three are interleaved run after run:

- tick: `select pgflow.tick(now)`, and the same in a session of its own (as pg_cron runs
  it: a new backend per run, PL/pgSQL compiled and plans made anew);
- bare: ONE statement with data-modifying CTEs making what the tick makes for the due
  enrollments (sql/migrations/0006 `_dispatch_steps`, send path): their conversations,
  their campaign messages (body `pgflow.render_template(step, _template_values(contact),
  fallbacks)`, `sms_segments`, `sms_encoding`, dedupe_key `step:<enrollment>:<position>`),
  the enrollments advanced to the next step (next_step, next_message_at, last_step_sent_at),
  and the send_sms jobs in pgflow.pgqueuer as `_enqueue` makes them; every trigger fires
  (the events rows of conversations and messages, pgqueuer's NOTIFY trigger);
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
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

from bench.common import fresh_database, record
from tests.conftest import project_url, with_database
from tests.factories import campaign_doc

# The due enrollments, in the tick's order, locked as the tick locks them.
_DUE = """
  due as (
    select e.id, e.contact_id, e.campaign_id, e.next_step, e.next_message_at
      from pgflow.enrollments e
     where e.status = 'active' and e.next_message_at <= %(now)s
     order by e.next_message_at
     limit %(batch)s
       for update of e skip locked
  )"""

# What each due enrollment sends: its step rendered, its line, its next step.
_PLAN = """
  plan as (
    select d.id, d.contact_id, d.campaign_id, d.next_message_at, c.agent_id, c.from_number,
           s.position, nx.position as next_position, nx.delay as next_delay,
           pgflow.render_template(s.body, pgflow._template_values(ct), c.fallbacks) as body
      from due d
      join pgflow.campaigns c on c.id = d.campaign_id
      join pgflow.contacts ct on ct.id = d.contact_id
      join pgflow.campaign_steps s on s.campaign_id = d.campaign_id
                                  and s.position = d.next_step
      left join lateral (
        select x.position, x.delay from pgflow.campaign_steps x
         where x.campaign_id = d.campaign_id and x.position > s.position
         order by x.position limit 1) nx on true
  )"""

# The same, with the tick's checks: rows that would be deferred, held or stopped are left
# out (none are in this benchmark's data: the writes are the same).
_PLAN_CHECKED = """
  plan as (
    select d.id, d.contact_id, d.campaign_id, d.next_message_at, c.agent_id, c.from_number,
           s.position, nx.position as next_position, nx.delay as next_delay, live.id as live_id,
           pgflow.render_template(s.body, pgflow._template_values(ct), c.fallbacks) as body
      from due d
      join pgflow.campaigns c on c.id = d.campaign_id
      join pgflow.contacts ct on ct.id = d.contact_id
      join pgflow.campaign_steps s on s.campaign_id = d.campaign_id
                                  and s.position = d.next_step
      left join lateral (
        select x.position, x.delay from pgflow.campaign_steps x
         where x.campaign_id = d.campaign_id and x.position > s.position
         order by x.position limit 1) nx on true
      left join lateral (
        select cv.id, cv.status from pgflow.conversations cv
         where cv.contact_id = d.contact_id and cv.from_number = c.from_number
           and cv.status <> 'ended') live on true
      left join lateral (
        select pg_catalog.count(*) as n from pgflow.messages m
         where m.contact_id = d.contact_id and m.kind = 'campaign'
           and m.created_at > %(now)s - interval '24 hours' and m.created_at <= %(now)s
           and m.delivery_status not in ('suppressed', 'dead_letter', 'failed')) recent on true
     where ct.opted_out_at is null and c.status = 'active'
       and live.status is distinct from 'engaged'
       and pgflow.next_window_open(coalesce(ct.timezone, c.timezone), c.window_start,
                                   c.window_end, c.window_days, %(now)s) <= %(now)s
       and recent.n < c.daily_cap
  )"""

# The writes, as _dispatch_steps and _enqueue make them.
_WRITES = """
  conv as (
    insert into pgflow.conversations
      (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
    select p.contact_id, p.campaign_id, p.agent_id, p.id, p.from_number, %(now)s, %(now)s
      from plan p {conv_filter}
    returning id, enrollment_id
  ), msg as (
    insert into pgflow.messages
      (conversation_id, contact_id, enrollment_id, direction, kind, body, step_position,
       delivery_status, segments, encoding, dedupe_key, created_at, updated_at)
    select {conversation}, p.contact_id, p.id, 'outbound', 'campaign', p.body, p.position,
           'queued', pgflow.sms_segments(p.body), pgflow.sms_encoding(p.body),
           'step:' || p.id || ':' || p.position, %(now)s, %(now)s
      from plan p left join conv cv on cv.enrollment_id = p.id
     order by p.next_message_at, p.id
    on conflict (dedupe_key) do nothing
    returning id
  ), adv as (
    update pgflow.enrollments e
       set next_step = p.next_position, next_message_at = %(now)s + p.next_delay,
           last_step_sent_at = %(now)s, updated_at = %(now)s
      from plan p
     where e.id = p.id and p.next_position is not null
    returning e.id
  ), job as (
    insert into pgflow.pgqueuer (priority, entrypoint, payload, execute_after, dedupe_key, status)
    select 0, 'send_sms',
           pg_catalog.convert_to(pg_catalog.json_build_object('id', id)::text, 'UTF8'),
           pg_catalog.now(), 'send_sms:' || id, 'queued'
      from msg
    on conflict (dedupe_key)
      where ((status = any (array['queued'::pgflow.pgqueuer_status,
                                  'picked'::pgflow.pgqueuer_status]))
             and (dedupe_key is not null))
    do nothing
    returning id
  )
select (select count(*) from conv) as conversations, (select count(*) from msg) as messages,
       (select count(*) from adv) as advanced, (select count(*) from job) as jobs"""

BARE: LiteralString = (
    "with"
    + _DUE
    + ","
    + _PLAN
    + ","
    + _WRITES.replace("{conv_filter}", "").replace("{conversation}", "cv.id")
)
BARE_CHECKED: LiteralString = (
    "with"
    + _DUE
    + ","
    + _PLAN_CHECKED
    + ","
    + _WRITES.replace("{conv_filter}", "where p.live_id is null").replace(
        "{conversation}", "coalesce(p.live_id, cv.id)"
    )
)

# What a dispatch at %(now)s left, independent of ids (sequences are not rolled back).
DIGEST: LiteralString = """
select
  (select pg_catalog.md5(coalesce(pg_catalog.string_agg(pg_catalog.concat_ws('|',
            m.enrollment_id, m.contact_id, m.direction, m.kind, m.body, m.step_position,
            m.delivery_status, m.segments, m.encoding, m.dedupe_key, m.updated_at,
            cv.contact_id, cv.campaign_id, cv.agent_id, cv.enrollment_id, cv.from_number,
            cv.status, cv.reply_deadline_at), ',' order by m.enrollment_id), ''))
     from pgflow.messages m join pgflow.conversations cv on cv.id = m.conversation_id
    where m.created_at = %(now)s) as messages_and_conversations,
  (select pg_catalog.md5(coalesce(pg_catalog.string_agg(pg_catalog.concat_ws('|',
            e.id, e.status, e.next_step, e.next_message_at, e.last_step_sent_at),
            ',' order by e.id), ''))
     from pgflow.enrollments e where e.updated_at = %(now)s) as enrollments,
  (select pg_catalog.md5(coalesce(pg_catalog.string_agg(pg_catalog.concat_ws('|',
            q.priority, q.entrypoint, q.status, m.enrollment_id), ',' order by m.enrollment_id),
            ''))
     from pgflow.pgqueuer q
     join pgflow.messages m
       on m.id = (pg_catalog.convert_from(q.payload, 'UTF8')::json ->> 'id')::bigint
    where q.entrypoint = 'send_sms') as jobs,
  (select pg_catalog.string_agg(entity || ':' || n, ',' order by entity)
     from (select entity, pg_catalog.count(*) as n from pgflow.events
            where occurred_at = %(now)s group by entity) x) as events
"""


def populate(url: str, size: int, due: int) -> float:
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
        seconds = time.perf_counter() - t0
        print(f"populated {size:,} enrollments in {seconds:.1f} s", flush=True)
        return seconds


def reusable(name: str, size: int, due: int) -> str | None:
    """The database `name` when it already holds exactly this data set (--reuse)."""
    url = with_database(project_url(), name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "select count(*), count(*) filter (where next_message_at <= now()),"
                " (select count(*) from pgflow.messages), (select count(*) from pgflow.pgqueuer)"
                " from pgflow.enrollments where status = 'active'"
            ).fetchone()
    except psycopg.Error:
        return None
    return url if row is not None and tuple(row) == (size, due, 0, 0) else None


def timed(conn: psycopg.Connection[Any], query: LiteralString, params: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    conn.execute(query, params).fetchall()
    return time.perf_counter() - t0


def vacuum(url: str) -> None:
    """Clear what earlier rolled-back runs left (dead row versions, index entries)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("enrollments", "conversations", "messages", "events", "pgqueuer"):
            conn.execute(f"vacuum analyze pgflow.{table}")


def measure(url: str, runs: int, due: int) -> dict[str, Any]:
    vacuum(url)
    now = dt.datetime.now(dt.UTC)
    params = {"now": now, "batch": due}
    times: dict[str, list[float]] = {
        "tick": [],
        "tick_new_session": [],
        "bare": [],
        "bare_checked": [],
    }
    digests: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    tick_result: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        for run in range(runs):
            t0 = time.perf_counter()
            row = conn.execute("select pgflow.tick(%(now)s, %(batch)s)", params).fetchone()
            times["tick"].append(time.perf_counter() - t0)
            assert row is not None
            tick_result = row[0]
            if run == 0:
                digests["tick"] = conn.execute(DIGEST, params).fetchone()
            conn.rollback()
            # as pg_cron runs it: in a session of its own (plans and PL/pgSQL compiled anew)
            with psycopg.connect(url) as fresh:
                t0 = time.perf_counter()
                fresh.execute("select pgflow.tick(%(now)s, %(batch)s)", params).fetchone()
                times["tick_new_session"].append(time.perf_counter() - t0)
                fresh.rollback()
            for name, query in (("bare", BARE), ("bare_checked", BARE_CHECKED)):
                t0 = time.perf_counter()
                made = conn.execute(query, params).fetchone()
                times[name].append(time.perf_counter() - t0)
                assert made is not None
                counts[name] = dict(
                    zip(("conversations", "messages", "advanced", "jobs"), made, strict=True)
                )
                if run == 0:
                    digests[name] = conn.execute(DIGEST, params).fetchone()
                conn.rollback()
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    same = {
        name: {
            part: digests[name][i] == digests["tick"][i]
            for i, part in enumerate(
                ("messages_and_conversations", "enrollments", "jobs", "events")
            )
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
        "events_made": {"tick": digests["tick"][3], "bare": digests["bare"][3]},
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

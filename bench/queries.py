"""Every query the benchmarks run, in one place (as procrastinate keeps its queries.sql): the
set-up of their data sets, the counts and timings they read back, the statistics views they
sample, and their scratch databases' administration. Nothing else in bench/ holds SQL text
(tests/test_bench_door.py checks it).

The engine's own SQL functions are not called from here: the benchmarks call them through
the door, `pgflow.db` (`db.tick(...)`, `db.apply_campaigns(...)`). A builder here returns
the door's `db.Call`, run the same way: `.run(conn)` on a sync connection, `await
.arun(conn)` on an async one. Parameters are always passed, so a literal `%` is `%%`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, LiteralString, TypeVar

from psycopg import sql

from pgflow import db

T = TypeVar("T")
Params = dict[str, Any]


def _call(
    query: LiteralString | sql.Composed, params: Params | None, read: Callable[[list[db.Row]], T]
) -> db.Call[T]:
    text = sql.SQL(query) if isinstance(query, str) else query
    return db.Call(text, params or {}, read)


def _rows(rows: list[db.Row]) -> list[db.Row]:
    return rows


def _one(rows: list[db.Row]) -> db.Row:
    assert len(rows) == 1, rows
    return rows[0]


def _int(rows: list[db.Row]) -> int:
    return int(next(iter(_one(rows).values())))


def _nothing(rows: list[db.Row]) -> None:
    return None


# --- scratch databases (run on the server's `postgres` database) -------------------------------


def drop_database(name: str) -> db.Call[None]:
    """Drop the database `name` if it exists, cutting its sessions."""
    return _call(
        sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)),
        None,
        _nothing,
    )


def create_database(name: str) -> db.Call[None]:
    """Create the (empty) database `name`."""
    return _call(sql.SQL("create database {}").format(sql.Identifier(name)), None, _nothing)


def copy_database(name: str, template: str) -> db.Call[None]:
    """Create the database `name` as a copy of `template` (which nobody may be connected to)."""
    return _call(
        sql.SQL("create database {} template {}").format(
            sql.Identifier(name), sql.Identifier(template)
        ),
        None,
        _nothing,
    )


def set_dispatch_lanes(name: str, lanes: int) -> db.Call[None]:
    """The number of dispatch lanes of every new session of the database `name`."""
    return _call(
        sql.SQL("alter database {} set pgflow.dispatch_lanes = {}").format(
            sql.Identifier(name), sql.Literal(str(lanes))
        ),
        None,
        _nothing,
    )


def track_all_functions(name: str) -> db.Call[None]:
    """Make the database `name` count calls and time of every function (pg_stat_user_functions)."""
    return _call(
        sql.SQL("alter database {} set track_functions = 'all'").format(sql.Identifier(name)),
        None,
        _nothing,
    )


def vacuum_analyze(table: str | None = None) -> db.Call[None]:
    """`vacuum analyze` of the table pgflow.<table>, or of the whole database when None."""
    if table is None:
        return _call("vacuum analyze", None, _nothing)
    return _call(
        sql.SQL("vacuum analyze {}").format(sql.Identifier("pgflow", table)), None, _nothing
    )


# --- synthetic data sets ----------------------------------------------------------------------


def insert_contacts(n: int, prefix: str = "+1212", first_name: str = "Lead") -> db.Call[None]:
    """n contacts <prefix><g, 7 digits> named <first_name><g> in New York, g = 1..n."""
    return _call(
        "insert into pgflow.contacts (phone, first_name, timezone)"
        " select %(prefix)s || lpad(g::text, 7, '0'), %(first_name)s || g, 'America/New_York'"
        " from generate_series(1, %(n)s) g",
        {"n": n, "prefix": prefix, "first_name": first_name},
        _nothing,
    )


def enroll_every_contact(due_in: dt.timedelta = dt.timedelta(0)) -> db.Call[None]:
    """Every contact enrolled in the (only) campaign, its step 1 due at now() + due_in."""
    return _call(
        "insert into pgflow.enrollments (contact_id, campaign_id, next_step, next_message_at)"
        " select id, (select id from pgflow.campaigns), 1, now() + %(due_in)s"
        " from pgflow.contacts",
        {"due_in": due_in},
        _nothing,
    )


def enroll_due_or_later(campaign: int, due: int) -> db.Call[None]:
    """Every contact enrolled at step 2: ids up to `due` due a minute ago, the rest later."""
    return _call(
        """
        insert into pgflow.enrollments (contact_id, campaign_id, status, next_step,
                                        next_message_at, enrolled_at)
        select c.id, %(campaign)s, 'active', 2,
               case when c.id <= %(due)s then now() - interval '1 minute'
                    else now() + interval '1 day' + (c.id %% 10000) * interval '1 minute' end,
               now()
          from pgflow.contacts c
        """,
        {"campaign": campaign, "due": due},
        _nothing,
    )


def set_transition_log(enabled: bool) -> db.Call[None]:
    """Enable or disable the triggers that write each enrollment's transition to events."""
    return set_transition_log_of("enrollments", enabled)


def only_campaign_id() -> db.Call[int]:
    """The id of the one campaign of a benchmark's database."""
    return _call("select id from pgflow.campaigns", None, _int)


def insert_id_jobs(entrypoint: str, n: int) -> db.Call[None]:
    """n queued pgqueuer jobs of `entrypoint`, payloads {"id": 1..n} as the engine's jobs."""
    return _call(
        "insert into pgflow.pgqueuer (priority, entrypoint, payload, status)"
        " select 0, %(entrypoint)s, convert_to(json_build_object('id', g)::text, 'UTF8'),"
        " 'queued' from generate_series(1, %(n)s) g",
        {"n": n, "entrypoint": entrypoint},
        _nothing,
    )


def insert_noop_jobs(n: int) -> db.Call[None]:
    """n queued pgqueuer jobs of the entrypoint `noop` (no payload)."""
    return _call(
        "insert into pgflow.pgqueuer (priority, entrypoint, payload, status)"
        " select 0, 'noop', null, 'queued' from generate_series(1, %(n)s)",
        {"n": n},
        _nothing,
    )


def dispatch_due_enrollments(limit: int) -> db.Call[db.Row]:
    """The tick's dispatch of at most `limit` due enrollments, without the tick; its counts."""
    # A stopgap: the engine's pgflow._dispatch_steps(), for want of a door builder (the
    # tick, db.tick(), dispatches batch after batch until none is due, never just `limit`).
    return _call(
        "select pgflow._dispatch_steps(array(select id from pgflow.enrollments"
        " where status = 'active' and next_message_at <= now() order by id limit %(limit)s),"
        " now()) as value",
        {"limit": limit},
        lambda rows: dict(_one(rows)["value"]),
    )


# --- counts -----------------------------------------------------------------------------------


def sent_messages() -> db.Call[int]:
    """How many messages are recorded sent."""
    return _call("select count(*) from pgflow.messages where delivery_status = 'sent'", None, _int)


def outbound_sent_or_delivered() -> db.Call[int]:
    """How many outbound messages are sent or delivered."""
    return _call(
        "select count(*) from pgflow.messages where direction = 'outbound'"
        " and delivery_status in ('sent', 'delivered')",
        None,
        _int,
    )


def campaign_step_sent(step: int) -> db.Call[int]:
    """How many campaign messages of drip step `step` are sent."""
    return _call(
        "select count(*) from pgflow.messages where kind = 'campaign'"
        " and step_position = %(step)s and delivery_status = 'sent'",
        {"step": step},
        _int,
    )


def replied_conversations() -> db.Call[int]:
    """How many conversations hold an inbound message."""
    return _call(
        "select count(distinct conversation_id) from pgflow.messages where direction = 'inbound'",
        None,
        _int,
    )


def jobs() -> db.Call[int]:
    """How many rows the pgqueuer queue holds."""
    return _call("select count(*) from pgflow.pgqueuer", None, _int)


def queued_drip_jobs() -> db.Call[int]:
    """How many send_sms jobs are queued at the drip's priority (0)."""
    return _call(
        "select count(*) from pgflow.pgqueuer"
        " where entrypoint = 'send_sms' and status = 'queued' and priority = 0",
        None,
        _int,
    )


def jobs_by_entrypoint_and_status() -> db.Call[dict[str, int]]:
    """The queue's rows counted per `entrypoint:status`."""
    return _call(
        "select entrypoint || ':' || status as key, count(*) as n from pgflow.pgqueuer group by 1",
        None,
        lambda rows: {str(r["key"]): int(r["n"]) for r in rows},
    )


def attempts() -> db.Call[int]:
    """How many send attempts were made."""
    return _call("select count(*) from pgflow.message_attempts", None, _int)


def attempts_by_worker_pid() -> db.Call[dict[int, int]]:
    """Send attempts counted per worker process id."""
    return _call(
        "select w.pid, count(*) as n from pgflow.message_attempts a"
        " join pgflow.workers w on w.id = a.worker_id group by w.pid",
        None,
        lambda rows: {int(r["pid"]): int(r["n"]) for r in rows},
    )


def tick_data_set() -> db.Call[tuple[int, int, int, int]]:
    """(active enrollments, of them due now, messages, jobs): the tick benchmark's data set."""
    return _call(
        "select count(*) as active, count(*) filter (where next_message_at <= now()) as due,"
        " (select count(*) from pgflow.messages) as messages,"
        " (select count(*) from pgflow.pgqueuer) as jobs"
        " from pgflow.enrollments where status = 'active'",
        None,
        lambda rows: (
            int(_one(rows)["active"]),
            int(rows[0]["due"]),
            int(rows[0]["messages"]),
            int(rows[0]["jobs"]),
        ),
    )


# --- the load run's checks ----------------------------------------------------------------------


def first_steps_sent_to(phones: list[str]) -> db.Call[list[db.Row]]:
    """The sent step-1 messages of these phones: phone, conversation_id, id, chat_id, body."""
    return _call(
        "select c.phone, m.conversation_id, m.id, m.chat_id, m.body"
        " from pgflow.messages m join pgflow.contacts c on c.id = m.contact_id"
        " where m.kind = 'campaign' and m.step_position = 1"
        " and m.delivery_status = 'sent' and c.phone = any(%(phones)s)",
        {"phones": phones},
        _rows,
    )


def campaign_step_span(step: int) -> db.Call[tuple[int, float]]:
    """(sent messages of drip step `step`, seconds from the first sent_at to the last)."""
    return _call(
        "select count(*) as n, extract(epoch from max(sent_at) - min(sent_at)) as span"
        " from pgflow.messages where kind = 'campaign' and step_position = %(step)s"
        " and delivery_status = 'sent'",
        {"step": step},
        lambda rows: (int(_one(rows)["n"]), float(rows[0]["span"] or 0.0)),
    )


def first_step_latencies_ms() -> db.Call[list[float]]:
    """Per sent step-1 message, ms from created_at to sent_at (the database's clock)."""
    return _call(
        "select extract(epoch from sent_at - created_at) * 1000 as ms from pgflow.messages"
        " where kind = 'campaign' and step_position = 1 and sent_at is not null",
        None,
        lambda rows: [float(r["ms"]) for r in rows],
    )


def leads_lost(phones: list[str]) -> db.Call[db.Row]:
    """Of these phones, how many have no contact, no enrollment, no step-1 message."""
    return _call(
        "select count(*) filter (where c.id is null) as no_contact,"
        " count(*) filter (where e.id is null) as no_enrollment,"
        " count(*) filter (where not exists (select 1 from pgflow.messages m"
        "   where m.enrollment_id = e.id and m.kind = 'campaign' and m.step_position = 1))"
        "   as no_first_message"
        " from unnest(%(phones)s::text[]) p(phone)"
        " left join pgflow.contacts c on c.phone = p.phone"
        " left join pgflow.enrollments e on e.contact_id = c.id",
        {"phones": phones},
        lambda rows: {k: int(v) for k, v in _one(rows).items()},
    )


def contact_steps_made_twice() -> db.Call[int]:
    """How many (contact, drip step) pairs have more than one campaign message."""
    return _call(
        "select count(*) from (select 1 from pgflow.messages where kind = 'campaign'"
        " group by contact_id, step_position having count(*) > 1) d",
        None,
        _int,
    )


def drip_after_reply() -> db.Call[db.Row]:
    """Campaign messages created, and sent, after their conversation's first inbound text."""
    return _call(
        "with first_in as (select conversation_id, min(created_at) at"
        "   from pgflow.messages where direction = 'inbound' group by conversation_id)"
        " select count(*) filter (where m.created_at > f.at) as created,"
        "        count(*) filter (where m.sent_at > f.at) as sent"
        " from pgflow.messages m join first_in f using (conversation_id)"
        " where m.kind = 'campaign'",
        None,
        lambda rows: {k: int(v) for k, v in _one(rows).items()},
    )


# --- the worker's and the webhook's timings -------------------------------------------------------


def send_span() -> db.Call[float]:
    """Seconds from the first message's sent_at to the last one's."""
    return _call(
        "select extract(epoch from max(sent_at) - min(sent_at)) as span from pgflow.messages",
        None,
        lambda rows: float(_one(rows)["span"]),
    )


def lead_stages_ms(phone_prefix: str) -> db.Call[list[tuple[float, float | None]]]:
    """Per outbound message to phone_prefix*: ms created -> claimed, claimed -> sent (or None)."""
    return _call(
        "select extract(epoch from a.started_at - m.created_at) * 1000 as queued,"
        " extract(epoch from m.sent_at - a.started_at) * 1000 as sending"
        " from pgflow.messages m"
        " join pgflow.contacts c on c.id = m.contact_id"
        " join pgflow.message_attempts a on a.message_id = m.id and a.attempt = 1"
        " where c.phone like %(pattern)s and m.direction = 'outbound'",
        {"pattern": phone_prefix + "%"},
        lambda rows: [
            (float(r["queued"]), None if r["sending"] is None else float(r["sending"]))
            for r in rows
        ],
    )


def select_one() -> db.Call[None]:
    """`select 1`: the cheapest round trip, the reference next to one SQL function call."""
    return _call("select 1", None, _nothing)


# --- PostgreSQL's statistics views --------------------------------------------------------------


def backend_pids() -> db.Call[list[int]]:
    """The pids of every backend connected to this database (this one's included)."""
    return _call(
        "select pid from pg_stat_activity where datname = current_database()",
        None,
        lambda rows: [int(r["pid"]) for r in rows],
    )


def other_backend_pids() -> db.Call[list[int]]:
    """The pids of the other backends connected to this database."""
    return _call(
        "select pid from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()",
        None,
        lambda rows: [int(r["pid"]) for r in rows],
    )


def active_backends() -> db.Call[list[tuple[str, str]]]:
    """(wait event or CPU, the statement's first 60 characters) of each other active backend."""
    return _call(
        "select coalesce(wait_event_type || ':' || wait_event, 'CPU') as wait,"
        " left(regexp_replace(query, '\\s+', ' ', 'g'), 60) as query"
        " from pg_stat_activity where datname = current_database()"
        " and state = 'active' and pid <> pg_backend_pid()",
        None,
        lambda rows: [(str(r["wait"]), str(r["query"])) for r in rows],
    )


def clear_stats_snapshot() -> db.Call[None]:
    """Drop this transaction's snapshot of the statistics views: the next read is fresh."""
    return _call("select pg_stat_clear_snapshot()", None, _nothing)


def transactions() -> db.Call[int]:
    """Transactions committed and rolled back in this database so far."""
    return _call(
        "select xact_commit + xact_rollback from pg_stat_database"
        " where datname = current_database()",
        None,
        _int,
    )


def function_stats() -> db.Call[dict[str, tuple[int, float, float]]]:
    """Per function (`schema.name`): calls, total ms, self ms (track_functions = all)."""
    return _call(
        "select schemaname, funcname, calls, total_time, self_time from pg_stat_user_functions",
        None,
        lambda rows: {
            f"{r['schemaname']}.{r['funcname']}": (
                int(r["calls"]),
                float(r["total_time"]),
                float(r["self_time"]),
            )
            for r in rows
        },
    )


# --- the tick against bare statements (bench/tick.py) -------------------------------------------

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

_BARE: LiteralString = (
    "with"
    + _DUE
    + ","
    + _PLAN
    + ","
    + _WRITES.replace("{conv_filter}", "").replace("{conversation}", "cv.id")
)
_BARE_CHECKED: LiteralString = (
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
_DIGEST: LiteralString = """
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


def _counts(rows: list[db.Row]) -> dict[str, int]:
    return {k: int(v) for k, v in _one(rows).items()}


def step_2_queued() -> db.Call[dict[str, int]]:
    """What a dispatch of the step-2 backlog made: messages, send jobs, enrollments advanced."""
    return _call(
        "select (select count(*) from pgflow.messages where step_position = 2) as messages,"
        " (select count(*) from pgflow.pgqueuer where entrypoint = 'send_sms') as send_jobs,"
        " (select count(*) from pgflow.enrollments where next_step = 3) as advanced",
        None,
        _counts,
    )


def bare_dispatch(now: dt.datetime, batch: int) -> db.Call[dict[str, int]]:
    """ONE statement writing what the tick writes for `batch` due enrollments; its counts."""
    return _call(_BARE, {"now": now, "batch": batch}, _counts)


def bare_checked_dispatch(now: dt.datetime, batch: int) -> db.Call[dict[str, int]]:
    """bare_dispatch() with the tick's per-row checks done set-based; its counts."""
    return _call(_BARE_CHECKED, {"now": now, "batch": batch}, _counts)


def dispatch_digest(now: dt.datetime) -> db.Call[db.Row]:
    """Hashes of what a dispatch at `now` wrote, independent of ids (not rolled back)."""
    return _call(_DIGEST, {"now": now}, _one)


# --- the inbox against a bare select (bench/inbox.py) -------------------------------------------

# The data set is deterministic: its "random" draws are hashint8extended(g, seed) of each
# contact's number g, masked to 0 .. 2^31 - 1.
_FIRST_NAMES = (
    "'{Ava,Liam,Olivia,Noah,Emma,Oliver,Sophia,Elijah,Isabella,James,Mia,William,Amelia,"
    "Benjamin,Harper,Lucas,Evelyn,Henry,Abigail,Alexander,Emily,Mason,Ella,Michael,Elizabeth,"
    "Ethan,Camila,Daniel,Luna,Jacob,Sofia,Logan,Avery,Jackson,Mila,Levi,Aria,Sebastian,"
    "Scarlett,Mateo}'::text[]"
)
_LAST_NAMES = (
    "'{Smith,Johnson,Williams,Brown,Jones,Garcia,Miller,Davis,Rodriguez,Martinez,Hernandez,"
    "Lopez,Gonzalez,Wilson,Anderson,Thomas,Taylor,Moore,Jackson,Martin,Lee,Perez,Thompson,"
    "White,Harris,Sanchez,Clark,Ramirez,Lewis,Robinson,Walker,Young,Allen,King,Wright,Scott,"
    "Torres,Nguyen,Hill,Flores,Green,Adams,Nelson,Baker,Hall,Rivera,Campbell,Mitchell,Carter,"
    "Okafor}'::text[]"
)

_INBOX_CONTACTS: LiteralString = (
    """
insert into pgflow.contacts (phone, first_name, last_name, email, timezone, opted_out_at,
                             opt_out_source, consent_at, consent_source, held_at, held_by,
                             created_at, updated_at)
select ('{+1212,+1415,+1305}'::text[])[1 + mod(g, 3)] || lpad(g::text, 7, '0'),
       ("""
    + _FIRST_NAMES
    + """)[1 + mod(h.h1, 40)],
       case when mod(h.h2, 10) <> 0 then ("""
    + _LAST_NAMES
    + """)[1 + mod(h.h2 / 10, 50)] end,
       case when mod(h.h1, 4) = 0 then 'lead' || g || '@example.com' end,
       'America/New_York',
       case when mod(g, 25) = 3 then %(now)s - interval '2 days' end,
       case when mod(g, 25) = 3 then 'keyword' end,
       %(now)s - interval '100 days', 'webform',
       case when mod(g, 1000) = 500 then %(now)s - mod(g / 1000, 48) * interval '1 hour' end,
       case when mod(g, 1000) = 500 then 'rep' || mod(g / 1000, 5) || '@example.com' end,
       %(now)s - interval '100 days', %(now)s
  from generate_series(1::bigint, %(n)s::bigint) g
  cross join lateral (select hashint8extended(g, 1) & 2147483647 as h1,
                             hashint8extended(g, 2) & 2147483647 as h2) h
"""
)

# Per contact (one conversation each): its state, outcome, times and message count.
_INBOX_PLAN = """
  camp as (
    select id, agent_id, from_number, row_number() over (order by id) - 1 as k
      from pgflow.campaigns where id = any(%(campaigns)s)
  ), base as (
    select ct.id as contact_id, gg.g, h.*, camp.id as campaign_id, camp.agent_id,
           camp.from_number, ct.held_at is not null as held,
           case when ct.held_at is not null
                  then case when mod(gg.g, 2000) = 500 then 'ended' else 'engaged' end
                when ct.opted_out_at is not null then 'ended'
                when h.r < 600 then 'ended'
                when h.r < 850 then 'open'
                else 'engaged' end as status,
           case when ct.held_at is not null then 'escalated'
                when ct.opted_out_at is not null then 'discarded'
                else ('{no_response,no_response,no_response,no_response,no_response,no_response,'
                      'unqualified,unqualified,unqualified,unqualified,qualified,qualified,'
                      'qualified,qualified,success,success,discarded,discarded,escalated,'
                      'escalated}'::text[])[1 + mod(h.h2, 20)] end as outcome
      from pgflow.contacts ct
      cross join lateral (select right(ct.phone, 7)::bigint as g) gg
      cross join lateral (
        select mod(hashint8extended(gg.g, 11) & 2147483647, 1000) as r,
               hashint8extended(gg.g, 12) & 2147483647 as h2,
               hashint8extended(gg.g, 13) & 2147483647 as h3,
               hashint8extended(gg.g, 14) & 2147483647 as h4,
               hashint8extended(gg.g, 15) & 2147483647 as h5,
               hashint8extended(gg.g, 16) & 2147483647 as h6) h
      join camp on camp.k = mod(gg.g, 3)
  ), dated as (
    select b.*, (b.status = 'engaged' or (b.status = 'ended' and b.outcome <> 'no_response'))
                  as inbound,
           case when b.status = 'engaged'
                  then %(now)s - (60 + mod(b.h3, 5 * 86400)) * interval '1 second'
                  - interval '1 hour' - mod(b.h4, 2 * 86400) * interval '1 second'
                when b.status = 'open'
                  then %(now)s - (60 + mod(b.h3, 90 * 86400)) * interval '1 second'
                else %(now)s - interval '3 days' - mod(b.h3, 90 * 86400) * interval '1 second'
           end as created_at
      from base b
  ), plan as (
    select t.*, greatest(t.last_inbound_at, t.last_outbound_at, t.created_at) as activity_at,
           case when t.status = 'ended'
                  then coalesce(greatest(t.last_inbound_at, t.last_outbound_at), t.created_at)
                       + interval '1 day' end as ended_at,
           (case when t.inbound then 2 else 1 end) + mod(t.h6, 3) as messages
      from (
        select k.*,
               case when k.status = 'engaged'
                      then %(now)s - (60 + mod(k.h3, 5 * 86400)) * interval '1 second'
                    when k.inbound
                      then k.created_at + (60 + mod(k.h4, 86400)) * interval '1 second' end
                 as last_inbound_at,
               case when k.status = 'engaged' and mod(k.g, 3) = 0
                      then %(now)s - (660 + mod(k.h3, 5 * 86400)) * interval '1 second'
                    when k.status = 'engaged'
                      then %(now)s - (40 + mod(k.h3, 5 * 86400)) * interval '1 second'
                    when k.inbound
                      then k.created_at + (80 + mod(k.h4, 86400)) * interval '1 second'
                    else least(k.created_at + mod(k.h4, 2 * 86400) * interval '1 second',
                               %(now)s) end
                 as last_outbound_at
          from dated k) t
  )"""

_INBOX_CONVERSATIONS: LiteralString = (
    "with"
    + _INBOX_PLAN
    + """, enr as (
    insert into pgflow.enrollments (contact_id, campaign_id, status, next_step, next_message_at,
                                    last_step_sent_at, enrolled_at, ended_at, stop_reason,
                                    updated_at)
    select p.contact_id, p.campaign_id,
           case p.status when 'ended' then 'stopped' when 'engaged' then 'paused'
                else 'active' end,
           case when p.status <> 'ended' then 2 end,
           case when p.status = 'open' then %(now)s + interval '30 days' end,
           p.created_at, p.created_at, p.ended_at,
           case when p.status = 'ended' then 'conversation ended' end, %(now)s
      from plan p
    returning id, contact_id
  ), conv as (
    insert into pgflow.conversations
      (contact_id, campaign_id, agent_id, enrollment_id, from_number, status, conversion_status,
       outcome_reason, outcome_source, ended_at, last_inbound_at, last_outbound_at,
       provider_chat_id, reply_deadline_at, created_at, updated_at, chat_status, engaged_at,
       agent_turns, review_reason, review_requested_at)
    select p.contact_id, p.campaign_id, p.agent_id, e.id, p.from_number, p.status,
           case when p.status = 'ended' then p.outcome end,
           case when p.status = 'ended' then 'bench' end,
           case when p.status <> 'ended' then null
                when p.held then 'human'
                when p.outcome = 'no_response' then 'rule'
                else ('{llm,retell,human,webhook,rule}'::text[])[1 + mod(p.h5, 5)] end,
           p.ended_at, p.last_inbound_at, p.last_outbound_at,
           case when p.inbound then 'chat_' || p.g end,
           case when p.status = 'open' and mod(p.h5, 2) = 0
                then p.last_outbound_at + interval '3 days' end,
           p.created_at, coalesce(p.ended_at, p.activity_at),
           case when p.status = 'engaged' then 'ongoing' when p.inbound then 'ended' end,
           case when p.inbound
                then least(p.created_at + interval '30 minutes', p.last_inbound_at) end,
           case when p.inbound then mod(p.h5, 6)::integer else 0 end,
           case when mod(p.g, 500) = 250
                then ('{"lead asked for a person","angry lead","classifier unsure"}'::text[])
                     [1 + mod(p.h5, 3)] end,
           case when mod(p.g, 500) = 250 then least(p.activity_at + interval '1 minute', %(now)s)
           end
      from plan p join enr e on e.contact_id = p.contact_id
     order by p.g
    returning id, contact_id, enrollment_id
  ), msg as (
    insert into pgflow.messages
      (conversation_id, contact_id, enrollment_id, direction, kind, body, step_position,
       delivery_status, sent_at, delivered_at, dedupe_key, created_at, updated_at)
    select cv.id, cv.contact_id, cv.enrollment_id, x.direction, x.kind,
           case x.kind
             when 'campaign' then 'Hi, it''s Ava from SunCo! Step ' || x.step || '.'
             when 'lead' then ('{"Yes, tell me more","How much is it?","Maybe later",'
                               '"Call me tomorrow please","Who is this?"}'::text[])
                              [1 + mod(p.h4 + i, 5)]
             else 'Thanks! Could you tell me a bit more about your roof?' end,
           x.step,
           case x.direction when 'inbound' then 'received' else 'delivered' end,
           case x.direction when 'outbound' then x.at end,
           case x.direction when 'outbound' then x.at + interval '5 seconds' end,
           'bench:' || cv.id || ':' || i, x.at, x.at
      from conv cv
      join plan p on p.contact_id = cv.contact_id
      cross join lateral generate_series(1, p.messages) i
      cross join lateral (
        select case when p.inbound and mod(i, 2) = 0 then 'inbound' else 'outbound' end
                 as direction,
               case when p.inbound and mod(i, 2) = 0 then 'lead'
                    when p.inbound and i > 1 then 'agent'
                    else 'campaign' end as kind,
               case when i = 1 or not p.inbound then i end as step,
               p.created_at + (p.activity_at - p.created_at) * ((i - 1)::float8
                                                                / greatest(p.messages - 1, 1))
                 as at) x
     order by cv.id, i
    returning id
  )
select (select count(*) from enr) as enrollments, (select count(*) from conv) as conversations,
       (select count(*) from msg) as messages"""
)


def insert_inbox_contacts(n: int, now: dt.datetime) -> db.Call[None]:
    """n contacts (+1212/+1415/+1305 then g on 7 digits), 1 in 25 opted out, 1 in 1,000 held."""
    return _call(_INBOX_CONTACTS, {"n": n, "now": now}, _nothing)


def insert_inbox_conversations(campaigns: list[int], now: dt.datetime) -> db.Call[dict[str, int]]:
    """Per contact an enrollment, a conversation in the inbox mix and 1-4 messages; counts."""
    return _call(_INBOX_CONVERSATIONS, {"campaigns": campaigns, "now": now}, _counts)


def set_transition_log_of(table: str, enabled: bool) -> db.Call[None]:
    """Enable or disable both triggers that log pgflow.<table>'s transitions to events."""
    action = sql.SQL("enable" if enabled else "disable")
    return _call(
        sql.SQL("alter table {table} {action} trigger {insert}, {action} trigger {change}").format(
            table=sql.Identifier("pgflow", table),
            action=action,
            insert=sql.Identifier(f"{table}_log_insert"),
            change=sql.Identifier(f"{table}_log_transition"),
        ),
        None,
        _nothing,
    )


def campaign_ids() -> db.Call[list[int]]:
    """The ids of every campaign, in id order."""
    return _call(
        "select id from pgflow.campaigns order by id",
        None,
        lambda rows: [int(r["id"]) for r in rows],
    )


def inbox_data_set(now: dt.datetime) -> db.Call[dict[str, int]]:
    """The inbox data set's counts: conversations by state, review, held, recent engaged."""
    return _call(
        "select count(*) as conversations,"
        " count(*) filter (where status = 'ended') as ended,"
        " count(*) filter (where status = 'open') as open,"
        " count(*) filter (where status = 'engaged') as engaged,"
        " count(*) filter (where status = 'engaged'"
        "   and last_inbound_at >= %(now)s - interval '3 days') as engaged_last_3_days,"
        " count(*) filter (where status = 'ended' and conversion_status = 'qualified')"
        "   as ended_qualified,"
        " count(*) filter (where review_reason is not null) as review_requested,"
        " (select count(*) from pgflow.contacts where held_at is not null) as held_contacts,"
        " (select count(*) from pgflow.contacts) as contacts,"
        " (select count(*) from pgflow.messages) as messages,"
        " (select count(*) from pgflow.campaigns) as campaigns"
        " from pgflow.conversations",
        {"now": now},
        _counts,
    )


def activity_cursor(offset: int) -> db.Call[tuple[dt.datetime, int]]:
    """(last activity, id) of the conversation `offset` rows down the activity order."""
    return _call(
        "select greatest(last_inbound_at, last_outbound_at, created_at) as at, id"
        " from pgflow.conversations"
        " order by greatest(last_inbound_at, last_outbound_at, created_at) desc, id desc"
        " offset %(offset)s limit 1",
        {"offset": offset},
        lambda rows: (_one(rows)["at"], int(rows[0]["id"])),
    )


def inbox_reference_page(limit: int) -> db.Call[list[int]]:
    """The inbox's same-run reference: a bare select of one page of ids by last activity."""
    return _call(
        "select id from pgflow.conversations"
        " order by greatest(last_inbound_at, last_outbound_at, created_at) desc, id desc"
        " limit %(limit)s",
        {"limit": limit},
        lambda rows: [int(r["id"]) for r in rows],
    )


def load_auto_explain() -> db.Call[None]:
    """Load auto_explain into this session (it logs the plans of statements as they run)."""
    return _call("load 'auto_explain'", None, _nothing)


def explain_nested_statements(enabled: bool) -> db.Call[None]:
    """auto_explain of statements >= 1 ms, nested ones too, to this client as NOTICEs; or off."""
    # ANALYZE and BUFFERS, at NOTICE level so that the client receives the plans.
    return _call(
        "select set_config('auto_explain.log_min_duration', %(min)s, false),"
        " set_config('auto_explain.log_analyze', 'on', false),"
        " set_config('auto_explain.log_buffers', 'on', false),"
        " set_config('auto_explain.log_timing', 'on', false),"
        " set_config('auto_explain.log_nested_statements', 'on', false),"
        " set_config('auto_explain.log_level', 'notice', false)",
        {"min": "1" if enabled else "-1"},
        _nothing,
    )


# --- the lead import against a bare COPY (bench/import_leads.py) ------------------------------


def create_plain_leads(columns: list[str]) -> db.Call[None]:
    """A plain table (text columns, no index, no constraint) the bare COPY loads."""
    return _call(
        sql.SQL("create table if not exists public.bench_plain_leads ({})").format(
            sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in columns)
        ),
        None,
        _nothing,
    )


def copy_plain_leads() -> sql.Composed:
    """COPY of the CSV file as it is (header skipped) into the plain table."""
    return sql.SQL("copy {} from stdin (format csv, header true)").format(
        sql.Identifier("public", "bench_plain_leads")
    )


def import_totals() -> db.Call[db.Row]:
    """What an import left: contacts, enrollments, queued messages, send_sms jobs, lead events."""
    return _call(
        "select (select count(*) from pgflow.contacts) as contacts,"
        " (select count(*) from pgflow.enrollments) as enrollments,"
        " (select count(*) from pgflow.messages where delivery_status = 'queued') as queued,"
        " (select count(*) from pgflow.pgqueuer where entrypoint = 'send_sms') as jobs,"
        " (select count(*) from pgflow.lead_events) as lead_events",
        None,
        _one,
    )

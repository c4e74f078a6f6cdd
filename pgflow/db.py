"""The one door from Python to the database.

Every SQL function the engine calls, and every query it runs, is built here and nowhere
else: one typed builder per SQL function returns a `Call`, which runs on a sync connection
(`.run(conn)`) or an async one (`await .arun(conn)`, or `await .arun_in(pool)`). The two
twins share the builder, so the SQL text, the argument order and the way the answer is
read exist once (procrastinate's manager does the same with `*_query_kwargs` helpers).
Database errors that carry our own SQLSTATEs (class PF) become `pgflow.errors` exceptions
here, in one table.

Layout: connection helpers; `Call`; then the builders, grouped by area in the order a lead
travels (intake, campaigns, tick, sending, inbound, outcomes, operations)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, LiteralString, TypeVar, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgflow import errors

T = TypeVar("T")
Row = dict[str, Any]
Now = dt.datetime | None  # the injected clock: None is the database's now()

# Our own SQLSTATEs (class PF), raised by the SQL functions (sql/STATE_MACHINES.md).
SQLSTATE_ERRORS: dict[str, type[errors.PgflowError]] = {
    "PF001": errors.IllegalTransition,
    "PF002": errors.NotFound,
    "PF003": errors.InvalidInput,
    "PF004": errors.Suppressed,
    "PF005": errors.Conflict,
}

APPLICATION_NAME = "pgflow"
# Errors that mean "the database is not there right now" (restart, failover, network).
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)


def connect(url: str, *, autocommit: bool = True, application: str = "") -> psycopg.Connection[Any]:
    """A plain connection; autocommit so every call is its own transaction."""
    return psycopg.connect(url, autocommit=autocommit, application_name=_app_name(application))


def async_pool(
    url: str,
    *,
    application: str,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 10.0,
) -> AsyncConnectionPool[Any]:
    """A pool of autocommit async connections, not yet opened (`await pool.open()`).

    Each connection is checked before it is handed out, so the first request after a
    database restart gets a live connection instead of a dead one."""
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={"autocommit": True, "application_name": _app_name(application)},
        check=AsyncConnectionPool.check_connection,
        name=_app_name(application),
        open=False,
    )


def _app_name(application: str) -> str:
    return f"{APPLICATION_NAME}-{application}" if application else APPLICATION_NAME


def map_error(exc: psycopg.Error) -> Exception:
    """The engine's exception for a database error, or the error itself. A value too large
    for an index or a row (SQLSTATE class 54) is bad input, not a database that is down."""
    if (exc.sqlstate or "").startswith("54"):
        return errors.InvalidInput(
            "a value is too large to store (an identifier or a name of several kilobytes)"
        )
    cls = SQLSTATE_ERRORS.get(exc.sqlstate or "")
    if cls is None:
        return exc
    return cls(exc.diag.message_primary or str(exc))


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise database errors with our own SQLSTATEs as `pgflow.errors` exceptions."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = map_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


# --- Call: one statement, run sync or async -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Call(Generic[T]):
    """One SQL statement with its parameters and the way its answer is read."""

    query: sql.SQL | sql.Composed
    params: Sequence[Any] | dict[str, Any]
    read: Callable[[list[Row]], T]
    # The answer when a table the query reads does not exist (yet): None re-raises.
    absent: Callable[[], T] | None = None

    def run(self, conn: psycopg.Connection[Any]) -> T:
        try:
            with mapped_errors(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self.query, self.params)
                return self.read(cur.fetchall() if cur.description else [])
        except psycopg.errors.UndefinedTable:
            if self.absent is None:
                raise
            return self.absent()

    async def arun(self, conn: psycopg.AsyncConnection[Any]) -> T:
        try:
            with mapped_errors():
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(self.query, self.params)
                    return self.read(await cur.fetchall() if cur.description else [])
        except psycopg.errors.UndefinedTable:
            if self.absent is None:
                raise
            return self.absent()

    async def arun_in(self, pool: AsyncConnectionPool[Any]) -> T:
        async with pool.connection() as conn:
            return await self.arun(conn)


def _scalar(rows: list[Row]) -> Any:
    return next(iter(rows[0].values())) if rows else None


def _function(name: str, *args: Any, **named: Any) -> Call[Any]:
    """`select pgflow.<name>(args..., key => value...)`: its one value (dicts go as jsonb)."""
    parts: list[sql.Composable] = [sql.Placeholder() for _ in args]
    params = [_adapt(a) for a in args]
    for key, value in named.items():
        parts.append(sql.SQL("{} => {}").format(sql.Identifier(key), sql.Placeholder()))
        params.append(_adapt(value))
    query = sql.SQL("select {}({}) as value").format(
        sql.Identifier("pgflow", name), sql.SQL(", ").join(parts)
    )
    return Call(query, params, _scalar)


def _json(name: str, *args: Any, **named: Any) -> Call[Row]:
    """A function that returns one jsonb object."""
    return cast(Call[Row], _function(name, *args, **named))


def _void(name: str, *args: Any, **named: Any) -> Call[None]:
    """A function called for its effect (a transition returns its row: not needed here)."""
    call = _function(name, *args, **named)
    return Call(call.query, call.params, lambda rows: None)


def _json_list(name: str, *args: Any, **named: Any) -> Call[list[Row]]:
    """A function that returns a jsonb array of objects."""
    call = _function(name, *args, **named)
    return Call(call.query, call.params, lambda rows: list(_scalar(rows) or []))


def _rows(text: LiteralString, params: dict[str, Any] | None = None) -> Call[list[Row]]:
    """A named read-only query (its text lives only in this module)."""
    return Call(sql.SQL(text), params or {}, lambda rows: rows)


def _adapt(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict) else value


# --- intake -------------------------------------------------------------------------------


def ingest_lead(payload: Any, edge: dict[str, Any] | None = None, now: Now = None) -> Call[Row]:
    """pgflow.ingest_lead(): one lead in -> {contact_id, enrollment_id, status}
    (created | already_enrolled | suppressed) or {status: rejected, error, detail}."""
    return _json("ingest_lead", Jsonb(payload), now, edge)


def reject_lead(
    raw_body: str, error: str, detail: str, source: str | None = None, now: Now = None
) -> Call[Row]:
    """pgflow.reject_lead(): record a lead body that could not be read at all."""
    return _json("reject_lead", raw_body, error, detail, source, now)


def campaign_refusal(slug: str) -> Call[Row | None]:
    """pgflow.campaign_refusal(): why a campaign takes no leads ({error, detail}) or None."""
    return cast(Call[Row | None], _function("campaign_refusal", slug))


# --- campaigns ----------------------------------------------------------------------------


def apply_campaigns(doc: dict[str, Any], now: Now = None) -> Call[Row]:
    """pgflow.apply_campaigns(): upsert agents and campaigns; what was done per item."""
    return _json("apply_campaigns", doc, now)


# --- the tick and transitions -------------------------------------------------------------


def tick(now: Now = None, batch: int = 1000) -> Call[Row]:
    """pgflow.tick(): dispatch due steps, end unanswered conversations; counts."""
    return _json("tick", now, batch)


def prune(now: Now = None) -> Call[Row]:
    """pgflow.prune(): retention in bounded batches; rows deleted per table."""
    return _json("prune", now)


def pause_enrollment(enrollment_id: int, reason: str | None = None, now: Now = None) -> Call[None]:
    return _void("pause_enrollment", enrollment_id, reason, now)


def resume_enrollment(enrollment_id: int, reason: str | None = None, now: Now = None) -> Call[None]:
    return _void("resume_enrollment", enrollment_id, reason, now)


def complete_enrollment(
    enrollment_id: int, reason: str | None = None, now: Now = None
) -> Call[None]:
    return _void("complete_enrollment", enrollment_id, reason, now)


def stop_enrollment(enrollment_id: int, reason: str, now: Now = None) -> Call[None]:
    return _void("stop_enrollment", enrollment_id, reason, now)


def opt_out_enrollment(
    enrollment_id: int, reason: str | None = None, now: Now = None
) -> Call[None]:
    return _void("opt_out_enrollment", enrollment_id, reason, now)


def engage_conversation(
    conversation_id: int, reason: str | None = None, now: Now = None
) -> Call[None]:
    return _void("engage_conversation", conversation_id, reason, now)


def end_conversation(
    conversation_id: int, status: str, reason: str | None, source: str, now: Now = None
) -> Call[None]:
    """pgflow.end_conversation(): open|engaged -> ended with an outcome (PF001 otherwise)."""
    return _void("end_conversation", conversation_id, status, reason, source, now)


# --- sending ------------------------------------------------------------------------------


def claim_send(message_id: int, worker_id: uuid.UUID | None, now: Now = None) -> Call[Row]:
    """pgflow.claim_send(): the send-time re-check and claim; {action: send|defer|...}."""
    return _json("claim_send", message_id, worker_id, now)


def record_send(
    message_id: int, attempt: int, result: dict[str, Any], retry_base: float, now: Now = None
) -> Call[Row]:
    """pgflow.record_send(): the outcome of one attempt; {action: sent|retry|dead_letter|stale}."""
    return _json("record_send", message_id, attempt, result, retry_base, now)


def claim_messages(
    message_ids: list[int], worker_id: uuid.UUID | None, now: Now = None
) -> Call[list[Row]]:
    """pgflow.claim_messages(): claim_message for each id, in one transaction, answers in order."""
    return _json_list("claim_messages", message_ids, worker_id, now)


def record_sends(items: list[Row], retry_base: float = 30.0, now: Now = None) -> Call[list[Row]]:
    """pgflow.record_sends(): record_send for each {message_id, attempt, result}, in one
    transaction, answers in order."""
    return _json_list("record_sends", Jsonb(items), retry_base, now)


def release_interrupted(message_id: int, attempt: int, now: Now = None) -> Call[Row]:
    """pgflow.release_interrupted(): a cut-off attempt Retell has no chat for waits again;
    {action: released | dead_letter | stale}."""
    return _json("release_interrupted", message_id, attempt, now)


def claim_message(
    message_id: int, worker_id: uuid.UUID | None, checked_chat: str | None = None, now: Now = None
) -> Call[Row]:
    """pgflow.claim_message(): the send-time re-check and claim; {action: send | defer |
    suppressed | skip | dead_letter | check_chat}."""
    return _json("claim_message", message_id, worker_id, checked_chat, now)


def mark_chat_ended(chat_id: str, now: Now = None) -> Call[int]:
    """pgflow.mark_chat_ended(): the chat is over; how many conversations it was current for."""
    return cast(Call[int], _function("mark_chat_ended", chat_id, now))


def chat_to_end(conversation_id: int) -> Call[str | None]:
    """pgflow.chat_to_end(): the conversation's chat while it may be ongoing, else None."""
    return cast(Call[str | None], _function("chat_to_end", conversation_id))


def worker_heartbeat(
    worker_id: uuid.UUID, host: str, pid: int, version: str, stopping: bool = False
) -> Call[None]:
    return _void("worker_heartbeat", worker_id, host, pid, version, stopping)


# --- inbound and the agent ---------------------------------------------------------------


def record_retell_event(
    payload: dict[str, Any], engine_replies: bool = False, now: Now = None
) -> Call[Row]:
    """pgflow.record_retell_event(): one Retell webhook, recorded once and handled;
    {result, response?: what to answer Retell, ...}."""
    return _json("record_retell_event", payload, engine_replies, now)


def record_chat(
    chat: dict[str, Any], event: str = "get_chat", engine_replies: bool = False, now: Now = None
) -> Call[Row]:
    """pgflow.record_chat(): a chat object (e.g. from GET /get-chat) recorded like a webhook."""
    return _json("record_chat", chat, event, engine_replies, now)


def agent_turn(trigger_id: int, now: Now = None) -> Call[Row]:
    """pgflow.agent_turn(): what the agent needs to answer a lead text, or {answer: false}."""
    return _json("agent_turn", trigger_id, now)


def record_agent_reply(
    trigger_id: int,
    body: str,
    action: str = "continue",
    reason: str | None = None,
    now: Now = None,
) -> Call[Row]:
    """pgflow.record_agent_reply(): the reply queued for sending (a `booked` or `handoff`
    action also gives the outcome), or {result: stale}."""
    return _json("record_agent_reply", trigger_id, body, action, reason, now)


def opt_out_question(message_id: int) -> Call[Row | None]:
    """pgflow.opt_out_question(): {message_id, text} while it waits for a judgment."""
    return cast(Call[Row | None], _function("opt_out_question", message_id))


def record_opt_out_judgment(message_id: int, opt_out: bool, now: Now = None) -> Call[Row]:
    return _json("record_opt_out_judgment", message_id, opt_out, now)


def inbound_intent(text: str) -> Call[Row]:
    """pgflow.inbound_intent(): {intent, rule} for a lead's text, by the rules."""
    call = _rows("select intent, rule from pgflow.inbound_intent(%(text)s)", {"text": text})
    return Call(call.query, call.params, lambda rows: rows[0])


def opt_out_contact(
    contact_id: int,
    source: str,
    message_id: int | None = None,
    text: str | None = None,
    now: Now = None,
) -> Call[Row]:
    return _json("opt_out_contact", contact_id, source, message_id, text, now)


def opt_in_contact(
    contact_id: int,
    source: str,
    message_id: int | None = None,
    text: str | None = None,
    now: Now = None,
) -> Call[Row]:
    return _json("opt_in_contact", contact_id, source, message_id, text, now)


def takeover(phone: str, reason: str | None = None, now: Now = None) -> Call[Row]:
    """pgflow.takeover(): a person takes over every live conversation of the contact."""
    return _json("takeover", phone, reason, now)


def live_conversations(limit: int = 200) -> Call[list[Row]]:
    """Rows of the view pgflow.live_conversations, most recent activity first."""
    return _rows(
        "select id, phone, campaign, agent, status, from_number, created_at, engaged_at,"
        " agent_turns, chat_status, last_message_at from pgflow.live_conversations"
        " order by last_message_at desc, id desc limit %(limit)s",
        {"limit": limit},
    )


def retell_setup_inputs() -> Call[list[Row]]:
    """Our sending numbers and the Retell agent ids our agents name, for `retell setup`."""
    return _rows(
        "select 'number' as kind, number as value from pgflow.sending_numbers"
        " union all select distinct 'agent', retell_agent_id from pgflow.agents"
        " where retell_agent_id is not null order by 1, 2"
    )


# --- outcomes -------------------------------------------------------------------------------


def outcome_question(conversation_id: int, now: Now = None) -> Call[Row]:
    """pgflow.outcome_question(): the rules first, else {classify: true, transcript, goal,
    transcript_hash, ...} for the LLM."""
    return _json("outcome_question", conversation_id, now)


def record_classification(
    conversation_id: int,
    transcript_hash: str,
    status: str | None,
    reason: str | None,
    confidence: float | None,
    model: str | None,
    error: str | None = None,
    now: Now = None,
    source: str = "llm",
) -> Call[Row]:
    """pgflow.record_classification(): ended | review | stale | unchanged | kept | changed."""
    return _json(
        "record_classification",
        conversation_id,
        transcript_hash,
        status,
        reason,
        confidence,
        model,
        error,
        now,
        source,
    )


def set_outcome(
    conversation_id: int, status: str, reason: str | None, source: str, now: Now = None
) -> Call[Row]:
    """pgflow.set_outcome(): give an outcome (a person's is never overwritten)."""
    return _json("set_outcome", conversation_id, status, reason, source, now)


def record_business_event(payload: dict[str, Any], phone: str | None, now: Now = None) -> Call[Row]:
    """pgflow.record_business_event(): a booking, takeover or disqualification for a lead;
    {result: applied | duplicate | unknown_phone | unknown_conversation | invalid}."""
    return _json("record_business_event", payload, phone, now)


def funnel(campaign: str | None = None, since: dt.datetime | None = None) -> Call[list[Row]]:
    """pgflow.funnel(): per campaign, the funnel of its leads enrolled since `since`."""
    return _json_list("funnel", campaign, since)


def send_latency(now: Now = None) -> Call[Row]:
    """pgflow.send_latency(): per kind, queued-to-sent seconds over the last hour as
    cumulative buckets [[le, count], ...] with count and sum."""
    return _json("send_latency", dt.timedelta(hours=1), now)


def number_report(now: Now = None) -> Call[list[Row]]:
    """Each sending number: its campaigns, limits and today's (UTC) use."""
    return _rows(
        "select number, campaigns, inbound_agent, per_second, daily_segments, messages_today,"
        " segments_today from pgflow.number_report(%(now)s)",
        {"now": now},
    )


def set_number_limits(number: str, limits: dict[str, Any], now: Now = None) -> Call[Row]:
    """pgflow.set_number_limits(): apply each given limit (None removes it); NotFound."""
    return Call(
        sql.SQL(
            "select number, per_second, daily_segments"
            " from pgflow.set_number_limits(%(number)s, %(limits)s, %(now)s)"
        ),
        {"number": number, "limits": Jsonb(limits), "now": now},
        lambda rows: rows[0],
    )


def review_queue(limit: int = 200) -> Call[list[Row]]:
    """Rows of the view pgflow.review_queue, oldest first (phones unmasked: mask them)."""
    return _rows(
        "select id, phone, campaign, status, conversion_status, outcome_source, review_reason,"
        " review_requested_at, signals from pgflow.review_queue"
        " order by review_requested_at, id limit %(limit)s",
        {"limit": limit},
    )


def live_conversation_of(phone: str) -> Call[int | None]:
    """The contact's conversation an operator means: the live one, else the latest."""
    return Call(
        sql.SQL(
            "select cv.id from pgflow.conversations cv join pgflow.contacts ct"
            " on ct.id = cv.contact_id where ct.phone = %(phone)s"
            " order by (cv.status <> 'ended') desc, cv.id desc limit 1"
        ),
        {"phone": phone},
        lambda rows: int(rows[0]["id"]) if rows else None,
    )


# --- the demo's timeline --------------------------------------------------------------------


def timeline(contacts: list[int], after_event: int, after_alert: int) -> Call[list[Row]]:
    """What happened to these contacts since: state changes (pgflow.events, with the message
    they concern) and alerts about their conversations, in order."""
    return _rows(
        "select 'event' as source, e.id, e.entity, e.from_status, e.to_status, e.reason,"
        " coalesce(m.contact_id, cv.contact_id, en.contact_id, ct.id) as contact_id,"
        " m.id as message_id, m.direction, m.kind, m.body, m.step_position, m.attempts,"
        " m.delivery_error, cv.conversion_status, cv.outcome_source, cv.outcome_reason"
        " from pgflow.events e"
        " left join pgflow.messages m on e.entity = 'message' and m.id = e.entity_id"
        " left join pgflow.conversations cv on e.entity = 'conversation' and cv.id = e.entity_id"
        " left join pgflow.enrollments en on e.entity = 'enrollment' and en.id = e.entity_id"
        " left join pgflow.contacts ct on e.entity = 'contact' and ct.id = e.entity_id"
        " where e.id > %(after_event)s"
        " and coalesce(m.contact_id, cv.contact_id, en.contact_id, ct.id) = any(%(contacts)s)"
        " union all"
        " select 'alert', a.id, 'alert', null, a.kind, a.message, cv.contact_id, null, null,"
        " null, null, null, null, null, null, null, null"
        " from pgflow.alerts a join pgflow.conversations cv"
        " on cv.id = (a.details ->> 'conversation_id')::bigint"
        " where a.id > %(after_alert)s and cv.contact_id = any(%(contacts)s)"
        " order by 1 desc, 2",
        {"contacts": contacts, "after_event": after_event, "after_alert": after_alert},
    )


def demo_state(contacts: list[int]) -> Call[list[Row]]:
    """Per contact: its enrollment, latest conversation, and what was sent, for the demo."""
    return _rows(
        "select ct.id as contact_id, ct.phone, ct.timezone, ct.opted_out_at,"
        " e.status as enrollment, e.next_message_at,"
        " cv.id as conversation_id, cv.status, cv.conversion_status, cv.outcome_source,"
        " cv.outcome_reason, cv.reply_deadline_at, cv.review_reason,"
        " greatest(cv.last_inbound_at, cv.last_outbound_at, cv.engaged_at) as last_activity,"
        " (select count(*) from pgflow.messages m where m.contact_id = ct.id"
        "   and m.direction = 'outbound' and m.delivery_status in ('sent', 'delivered')) as sent,"
        " (select count(*) from pgflow.messages m where m.contact_id = ct.id"
        "   and m.direction = 'outbound'"
        "   and m.delivery_status in ('queued', 'sending')) as pending,"
        " (select count(*) from pgflow.messages m where m.contact_id = ct.id"
        "   and m.kind = 'agent' and m.delivery_status = 'sent') as agent_sent"
        " from pgflow.contacts ct"
        " left join lateral (select * from pgflow.enrollments x where x.contact_id = ct.id"
        "   order by x.id desc limit 1) e on true"
        " left join lateral (select * from pgflow.conversations x where x.contact_id = ct.id"
        "   order by x.id desc limit 1) cv on true"
        " where ct.id = any(%(contacts)s) order by ct.id",
        {"contacts": contacts},
    )


def campaign(slug: str) -> Call[Row | None]:
    """One campaign's row (its window, number, timeouts), or None."""
    call = _rows("select * from pgflow.campaigns where slug = %(slug)s", {"slug": slug})
    return Call(call.query, call.params, lambda rows: rows[0] if rows else None)


def unused_phones(candidates: list[str]) -> Call[list[str]]:
    """The candidate numbers no contact has yet."""
    call = _rows(
        "select c as phone from unnest(%(candidates)s::text[]) c"
        " where not exists (select 1 from pgflow.contacts ct where ct.phone = c)",
        {"candidates": candidates},
    )
    return Call(call.query, call.params, lambda rows: [str(r["phone"]) for r in rows])


# --- alerts -------------------------------------------------------------------------------


def alert(alert_id: int) -> Call[Row | None]:
    """pgflow.alert(): one alert as JSON (None when it is gone)."""
    return cast(Call[Row | None], _function("alert", alert_id))


def watch(source: str, now: Now = None) -> Call[Row]:
    """pgflow.watch(): open and resolve the alerts whose conditions changed."""
    return _json("watch", source, now)


def alert_notice(alert_id: int) -> Call[Row | None]:
    """pgflow.alert_notice(): {notice: opened | resolved, alert} when one is due, else None."""
    return cast(Call[Row | None], _function("alert_notice", alert_id))


def record_alert_notice(
    alert_id: int, notice: str, error: str | None = None, now: Now = None
) -> Call[None]:
    return _void("record_alert_notice", alert_id, notice, error, now)


# --- operations: health, dead letters, reports --------------------------------------------


def health(now: Now = None) -> Call[Row]:
    """pgflow.health(): {"now", "checks": [{name, ok, detail}], "figures": {name: number}}."""
    return _json("health", now)


def server_version() -> Call[str]:
    call = _rows("select current_setting('server_version') as version")
    return Call(call.query, call.params, lambda rows: str(rows[0]["version"]))


def applied_migrations() -> Call[set[str] | None]:
    """Ids of the applied yoyo migrations; None when the database was never migrated.

    Read-only (yoyo's bookkeeping table in schema pgflow), so probes may call it often."""
    return Call(
        sql.SQL("select migration_id from pgflow._yoyo_migration"),
        [],
        lambda rows: {str(r["migration_id"]) for r in rows},
        absent=lambda: None,
    )


def create_schema() -> Call[None]:
    """The schema yoyo keeps its bookkeeping in (it must exist before yoyo connects)."""
    return Call(sql.SQL("create schema if not exists pgflow"), [], lambda rows: None)


def requeue_dead_letters(ids: list[int] | None, campaign: str | None) -> Call[list[Row]]:
    """pgflow.requeue_dead_letters(): one {id, result, detail?} per message asked for."""
    return _json_list("requeue_dead_letters", ids, campaign)


def discard_dead_letters(ids: list[int]) -> Call[list[Row]]:
    return _json_list("discard_dead_letters", ids)


def dead_letters(campaign: str | None, since: dt.datetime | None, limit: int) -> Call[list[Row]]:
    """Rows of the view pgflow.dead_letters, newest first (phones unmasked: mask them)."""
    return _rows(
        "select id, campaign, phone, attempts, delivery_error, failed_at, contact_opted_out,"
        " step_position, body from pgflow.dead_letters"
        " where (%(campaign)s::text is null or campaign = %(campaign)s)"
        " and (%(since)s::timestamptz is null or failed_at >= %(since)s)"
        " order by failed_at desc, id desc limit %(limit)s",
        {"campaign": campaign, "since": since, "limit": limit},
    )


def contact_report(phone: str, limit: int = 200) -> Call[Row | None]:
    """pgflow.contact_report(): one contact's drips, conversations and transcript."""
    return cast(Call[Row | None], _function("contact_report", phone, limit))

"""The demo's own reads: the timeline it prints and the state of its leads."""

from __future__ import annotations

from pgflow.db.core import Call, Row, rows_call


def timeline(contacts: list[int], after_event: int, after_alert: int) -> Call[list[Row]]:
    """What happened to these contacts since: state changes (pgflow.events, with the message
    they concern) and alerts about their conversations, in order."""
    return rows_call(
        "select 'event' as source, e.id, e.entity, e.from_status, e.to_status, e.reason,"
        " coalesce(m.contact_id, cv.contact_id, en.contact_id, ct.id) as contact_id,"
        " m.id as message_id, m.direction, m.kind, m.body, m.step_position, m.attempts,"
        " m.delivery_error, cv.conversion_status, cv.outcome_source, cv.outcome_reason,"
        " (select h.held_at is not null from pgflow.contacts h"
        "  where h.id = coalesce(m.contact_id, cv.contact_id, en.contact_id, ct.id)) as held"
        " from pgflow.events e"
        " left join pgflow.messages m on e.entity = 'message' and m.id = e.entity_id"
        " left join pgflow.conversations cv on e.entity = 'conversation' and cv.id = e.entity_id"
        " left join pgflow.enrollments en on e.entity = 'enrollment' and en.id = e.entity_id"
        " left join pgflow.contacts ct on e.entity = 'contact' and ct.id = e.entity_id"
        " where e.id > %(after_event)s"
        " and coalesce(m.contact_id, cv.contact_id, en.contact_id, ct.id) = any(%(contacts)s)"
        " union all"
        " select 'alert', a.id, 'alert', null, a.kind, a.message, cv.contact_id, null, null,"
        " null, null, null, null, null, null, null, null, null"
        " from pgflow.alerts a join pgflow.conversations cv"
        " on cv.id = (a.details ->> 'conversation_id')::bigint"
        " where a.id > %(after_alert)s and cv.contact_id = any(%(contacts)s)"
        " order by 1 desc, 2",
        {"contacts": contacts, "after_event": after_event, "after_alert": after_alert},
    )


def demo_state(contacts: list[int]) -> Call[list[Row]]:
    """Per contact: its latest enrollment's next send, its latest conversation, and its
    messages counted once (sent, still pending, the agent's sent, delivered by a carrier, a
    person's delivered, the agent's after a person's, the lead's texts whose agent_reply job
    has not run yet), for the demo."""
    return rows_call(
        "select ct.id as contact_id, e.next_message_at,"
        " cv.status, cv.conversion_status, cv.outcome_source, cv.outcome_reason,"
        " cv.reply_deadline_at, cv.review_reason, n.sent, n.pending, n.agent_sent,"
        " n.delivered, n.person_delivered, n.agent_after_person, n.answers_waiting"
        " from pgflow.contacts ct"
        " left join lateral (select x.next_message_at from pgflow.enrollments x"
        "   where x.contact_id = ct.id order by x.id desc limit 1) e on true"
        " left join lateral (select * from pgflow.conversations x where x.contact_id = ct.id"
        "   order by x.id desc limit 1) cv on true"
        " cross join lateral (select"
        "   count(*) filter (where m.direction = 'outbound'"
        "     and m.delivery_status in ('sent', 'delivered')) as sent,"
        "   count(*) filter (where m.direction = 'outbound'"
        "     and m.delivery_status in ('queued', 'sending')) as pending,"
        "   count(*) filter (where m.kind = 'agent'"
        "     and m.delivery_status in ('sent', 'delivered')) as agent_sent,"
        "   count(*) filter (where m.delivery_status = 'delivered') as delivered,"
        "   count(*) filter (where m.kind = 'human'"
        "     and m.delivery_status = 'delivered') as person_delivered,"
        "   count(*) filter (where m.kind = 'agent' and m.id > (select min(h.id)"
        "     from pgflow.messages h where h.contact_id = ct.id and h.kind = 'human'))"
        "     as agent_after_person,"
        "   count(*) filter (where m.direction = 'inbound' and exists (select 1"
        "     from pgflow.pgqueuer q where q.entrypoint = 'agent_reply'"
        "     and convert_from(q.payload, 'UTF8')::jsonb ->> 'id' = m.id::text))"
        "     as answers_waiting"
        "   from pgflow.messages m where m.contact_id = ct.id) n"
        " where ct.id = any(%(contacts)s) order by ct.id",
        {"contacts": contacts},
    )


def campaign(slug: str) -> Call[Row | None]:
    """One campaign's row (its window, number, timeouts), or None."""
    call = rows_call("select * from pgflow.campaigns where slug = %(slug)s", {"slug": slug})
    return Call(call.query, call.params, lambda rows: rows[0] if rows else None)


def unused_phones(candidates: list[str]) -> Call[list[str]]:
    """The candidate numbers no contact has yet."""
    call = rows_call(
        "select c as phone from unnest(%(candidates)s::text[]) c"
        " where not exists (select 1 from pgflow.contacts ct where ct.phone = c)",
        {"candidates": candidates},
    )
    return Call(call.query, call.params, lambda rows: [str(r["phone"]) for r in rows])

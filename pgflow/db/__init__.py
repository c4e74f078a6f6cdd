"""The one door from Python to the database.

Every SQL function the engine calls, and every query it runs, is built in this package and
nowhere else: one typed builder per SQL function returns a `Call` (`core.py`), which runs on
a sync connection (`.run(conn)`) or an async one (`await .arun(conn)`, or `await
.arun_in(pool)`). The two twins share the builder, so the SQL text, the argument order and
the way the answer is read exist once (procrastinate's manager does the same with
`*_query_kwargs` helpers). Database errors that carry our own SQLSTATEs (class PF) become
`pgflow.errors` exceptions in `core.py`, in one table.

One module per area, in the order a lead travels: `intake`, `drip`, `send`, `inbound`,
`outcomes`, `operations`; `demo` holds the demo's own reads and is imported by the demo
alone. Callers use `from pgflow import db` and `db.<builder>(...)`."""

from __future__ import annotations

from pgflow.db.core import (
    APPLICATION_NAME,
    SQLSTATE_ERRORS,
    UNAVAILABLE,
    Call,
    Now,
    Row,
    async_pool,
    connect,
    map_error,
    mapped_errors,
)
from pgflow.db.drip import (
    end_conversation,
    engage_conversation,
    pause_enrollment,
    stop_enrollment,
    tick,
)
from pgflow.db.inbound import (
    agent_turn,
    inbound_intent,
    live_conversations,
    opt_out_contact,
    opt_out_question,
    record_agent_reply,
    record_chat,
    record_opt_out_judgment,
    record_retell_event,
    retell_setup_inputs,
    takeover,
)
from pgflow.db.intake import (
    apply_campaigns,
    campaign_refusal,
    ingest_lead,
    reject_lead,
)
from pgflow.db.operations import (
    alert_notice,
    applied_migrations,
    contact_report,
    create_schema,
    dead_letters,
    discard_dead_letters,
    health,
    record_alert_notice,
    requeue_dead_letters,
    server_version,
    watch,
)
from pgflow.db.outcomes import (
    funnel,
    live_conversation_of,
    number_report,
    outcome_question,
    record_business_event,
    record_classification,
    review_queue,
    send_latency,
    set_number_limits,
    set_outcome,
)
from pgflow.db.send import (
    chat_to_end,
    claim_message,
    claim_messages,
    mark_chat_ended,
    record_send,
    record_sends,
    release_interrupted,
    worker_heartbeat,
)

__all__ = [
    "APPLICATION_NAME",
    "SQLSTATE_ERRORS",
    "UNAVAILABLE",
    "Call",
    "Now",
    "Row",
    "agent_turn",
    "alert_notice",
    "applied_migrations",
    "apply_campaigns",
    "async_pool",
    "campaign_refusal",
    "chat_to_end",
    "claim_message",
    "claim_messages",
    "connect",
    "contact_report",
    "create_schema",
    "dead_letters",
    "discard_dead_letters",
    "end_conversation",
    "engage_conversation",
    "funnel",
    "health",
    "inbound_intent",
    "ingest_lead",
    "live_conversation_of",
    "live_conversations",
    "map_error",
    "mapped_errors",
    "mark_chat_ended",
    "number_report",
    "opt_out_contact",
    "opt_out_question",
    "outcome_question",
    "pause_enrollment",
    "record_agent_reply",
    "record_alert_notice",
    "record_business_event",
    "record_chat",
    "record_classification",
    "record_opt_out_judgment",
    "record_retell_event",
    "record_send",
    "record_sends",
    "reject_lead",
    "release_interrupted",
    "requeue_dead_letters",
    "retell_setup_inputs",
    "review_queue",
    "send_latency",
    "server_version",
    "set_number_limits",
    "set_outcome",
    "stop_enrollment",
    "takeover",
    "tick",
    "watch",
    "worker_heartbeat",
]

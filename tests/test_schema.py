"""The data model of DESIGN §3 exists and its constraints bite."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerr

from tests.helpers import scalar

TABLES = [
    "contacts",
    "agents",
    "campaigns",
    "campaign_steps",
    "enrollments",
    "conversations",
    "messages",
    "lead_events",
    "webhook_deliveries",
    "events",
    "alerts",
    "workers",
    "pgqueuer",
    "pgqueuer_log",
]

Conn = psycopg.Connection[Any]


@pytest.fixture
def seeded(db: Conn) -> dict[str, int]:
    """One agent, campaign, contact, enrollment and open conversation."""
    agent = scalar(
        db, "insert into pgflow.agents (name, prompt) values ('ava', 'Be brief.') returning id"
    )
    campaign = scalar(
        db,
        "insert into pgflow.campaigns (slug, name, agent_id, from_number, status)"
        " values ('solar', 'Solar', %s, '+14155550100', 'active') returning id",
        [agent],
    )
    contact = scalar(
        db,
        "insert into pgflow.contacts (phone, first_name)"
        " values ('+14155550123', 'Sam') returning id",
    )
    enrollment = scalar(
        db,
        "insert into pgflow.enrollments (contact_id, campaign_id, next_step, next_message_at)"
        " values (%s, %s, 1, now()) returning id",
        [contact, campaign],
    )
    conversation = scalar(
        db,
        "insert into pgflow.conversations (contact_id, campaign_id, agent_id, enrollment_id,"
        " from_number) values (%s, %s, %s, %s, '+14155550100') returning id",
        [contact, campaign, agent, enrollment],
    )
    return {
        "agent": agent,
        "campaign": campaign,
        "contact": contact,
        "enrollment": enrollment,
        "conversation": conversation,
    }


def test_every_table_exists(db: Conn) -> None:
    present = {
        r[0]
        for r in db.execute(
            "select table_name from information_schema.tables where table_schema = 'pgflow'"
        )
    }
    missing = set(TABLES) - present
    assert not missing


def test_ids_are_bigint_identity(db: Conn) -> None:
    rows = db.execute(
        "select c.table_name, c.data_type, c.is_identity from information_schema.columns c"
        " join information_schema.tables t using (table_schema, table_name)"
        " where c.table_schema = 'pgflow' and c.column_name = 'id'"
        " and t.table_type = 'BASE TABLE' and c.table_name not like 'pgqueuer%%'"
        " and c.table_name not like '%%yoyo%%' and c.table_name <> 'workers'"
    ).fetchall()
    assert len(rows) >= 11
    assert all(r[1] == "bigint" and r[2] == "YES" for r in rows), rows


def test_every_foreign_key_is_indexed(db: Conn) -> None:
    unindexed = db.execute(
        """
        select c.conrelid::regclass::text, c.conname
        from pg_constraint c
        where c.contype = 'f' and c.connamespace = 'pgflow'::regnamespace
          and not exists (
            select 1 from pg_index i
            where i.indrelid = c.conrelid
              and (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] = c.conkey
          )
        """
    ).fetchall()
    assert unindexed == []


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        (
            "update pgflow.enrollments set status = 'sleeping' where id = %(enrollment)s",
            pgerr.CheckViolation,
        ),
        (
            "update pgflow.conversations set status = 'closed' where id = %(conversation)s",
            pgerr.CheckViolation,
        ),
        (
            "update pgflow.campaigns set status = 'running' where id = %(campaign)s",
            pgerr.CheckViolation,
        ),
        (
            "update pgflow.conversations set conversion_status = 'success'"
            " where id = %(conversation)s",
            pgerr.CheckViolation,
        ),
        (
            "update pgflow.conversations set status = 'ended', conversion_status = 'success',"
            " outcome_source = 'rule' where id = %(conversation)s",
            pgerr.CheckViolation,
        ),
        (
            "update pgflow.conversations set status = 'ended', ended_at = now()"
            " where id = %(conversation)s",
            pgerr.CheckViolation,
        ),
        (
            "update pgflow.conversations set conversion_status = 'won', status = 'ended',"
            " ended_at = now(), outcome_source = 'rule' where id = %(conversation)s",
            pgerr.CheckViolation,
        ),
        ("insert into pgflow.contacts (phone) values ('4155550123')", pgerr.CheckViolation),
        ("insert into pgflow.contacts (phone) values ('+1 415 555 0123')", pgerr.CheckViolation),
        (
            "insert into pgflow.contacts (phone, timezone) values ('+14155550999', 'Mars/Olympus')",
            pgerr.CheckViolation,
        ),
        (
            "insert into pgflow.enrollments (contact_id, campaign_id, next_step, next_message_at)"
            " values (%(contact)s, %(campaign)s, 1, now())",
            pgerr.UniqueViolation,
        ),
        (
            "insert into pgflow.conversations (contact_id, from_number)"
            " values (%(contact)s, '+14155550100')",
            pgerr.UniqueViolation,
        ),
        (
            "update pgflow.enrollments set status = 'completed' where id = %(enrollment)s",
            pgerr.CheckViolation,
        ),
        (
            "update pgflow.enrollments set status = 'active', next_message_at = null"
            " where id = %(enrollment)s",
            pgerr.CheckViolation,
        ),
        (
            "insert into pgflow.messages (conversation_id, contact_id, direction, kind, body,"
            " delivery_status, dedupe_key) values (%(conversation)s, %(contact)s, 'inbound',"
            " 'lead', 'hi', 'sent', 'k1')",
            pgerr.CheckViolation,
        ),
        (
            "insert into pgflow.messages (conversation_id, contact_id, direction, kind, body,"
            " delivery_status, dedupe_key, step_position) values (%(conversation)s, %(contact)s,"
            " 'outbound', 'campaign', 'hi', 'sent', 'k2', 1)",
            pgerr.CheckViolation,
        ),
        (
            "insert into pgflow.alerts (kind, message) values ('x', 'a'), ('x', 'b')",
            pgerr.UniqueViolation,
        ),
        (
            "update pgflow.contacts set opted_out_at = now() where id = %(contact)s",
            pgerr.CheckViolation,
        ),
        (
            "insert into pgflow.campaign_steps (campaign_id, position, delay, body)"
            " values (%(campaign)s, 0, '0', 'hi')",
            pgerr.CheckViolation,
        ),
        (
            "update pgflow.campaigns set window_start = '21:00' where id = %(campaign)s",
            pgerr.CheckViolation,
        ),
    ],
)
def test_database_rejects_illegal_state(
    db: Conn, seeded: dict[str, int], sql: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        db.execute(sql, seeded)


def test_legal_end_of_conversation_is_accepted(db: Conn, seeded: dict[str, int]) -> None:
    db.execute(
        "update pgflow.conversations set status = 'ended', ended_at = now(),"
        " conversion_status = 'qualified', outcome_source = 'llm' where id = %(conversation)s",
        seeded,
    )
    row = db.execute(
        "select status, conversion_status from pgflow.conversations where id = %(conversation)s",
        seeded,
    ).fetchone()
    assert row == ("ended", "qualified")
    # once ended, a new conversation on the same line is allowed
    db.execute(
        "insert into pgflow.conversations (contact_id, from_number) values (%(contact)s,"
        " '+14155550100')",
        seeded,
    )

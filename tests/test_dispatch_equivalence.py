"""The set-based pgflow._dispatch_steps (0019) against the row-at-a-time one it replaced
(0006, kept frozen in its migration): on random batches of due enrollments covering every
branch (sent, closed window, daily cap with several campaigns of one contact on one line,
paused campaign, opted-out contact, a lead who replied, a missing step, the last step), both
leave the database in the same state and report the same counts."""

from __future__ import annotations

import datetime as dt
import random
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.factories import apply_campaign, at

Conn = psycopg.Connection[Any]
NOW = at("2026-11-24 16:30")  # Tuesday 11:30 in New York, 08:30 in Los Angeles
ZONES = ["America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "Europe/Paris", None]
MIGRATIONS = Path(__file__).resolve().parent.parent / "sql" / "migrations"
MIGRATION = MIGRATIONS / "0006_create_campaign_engine.sql"


def rowwise_definition() -> str:
    """0006's _dispatch_steps, renamed: the reference implementation."""
    text = MIGRATION.read_text()
    match = re.search(r"create function pgflow\._dispatch_steps\(.*?\n\$\$;\n", text, re.S)
    assert match is not None
    return match.group(0).replace("pgflow._dispatch_steps(", "pgflow._dispatch_steps_rowwise(")


def populate(db: Conn, rng: random.Random) -> list[int]:
    """Two or three campaigns on one line, leads in every state a batch can meet."""
    campaigns = [
        apply_campaign(db, "a", daily_cap=rng.randint(1, 3)),
        apply_campaign(
            db,
            "b",
            daily_cap=rng.randint(1, 2),
            window_start=rng.choice(["09:00", "12:00", "00:00"]),
            steps=[
                {"delay": "0 seconds", "body": "B1 {{first_name}} {{city}}"},
                {"delay": "2 days", "body": "B2 " + "long text ü " * rng.randint(1, 20)},
            ],
        ),
    ]
    if rng.random() < 0.5:
        campaigns.append(apply_campaign(db, "c", status="paused"))
    ids: list[int] = []
    for n in range(rng.randint(20, 45)):
        zone = rng.choice(ZONES)
        contact = db.execute(
            "insert into pgflow.contacts (phone, first_name, timezone, attributes, opted_out_at,"
            " opt_out_source) values (%s, %s, %s, %s, %s, %s) returning id",
            [
                f"+1212555{n:04d}",
                rng.choice(["Sam", None, "Zoë"]),
                zone,
                psycopg.types.json.Jsonb({"city": "Austin"} if rng.random() < 0.5 else {}),
                *((NOW - dt.timedelta(days=1), "keyword") if rng.random() < 0.08 else (None, None)),
            ],
        ).fetchone()
        assert contact is not None
        mine: list[int] = []
        for campaign in campaigns:
            if rng.random() < 0.6:
                due = NOW - dt.timedelta(minutes=rng.randint(0, 600))
                enrollment = db.execute(
                    "insert into pgflow.enrollments (contact_id, campaign_id, next_step,"
                    " next_message_at, enrolled_at) values (%s, %s, %s, %s, %s) returning id",
                    [contact[0], campaign, rng.choice([1, 1, 2, 3, 4]), due, due],
                ).fetchone()
                assert enrollment is not None
                ids.append(enrollment[0])
                mine.append(enrollment[0])
        conversation = None
        if mine and rng.random() < 0.4:
            status = "engaged" if rng.random() < 0.25 else "open"
            conversation = db.execute(
                "insert into pgflow.conversations (contact_id, campaign_id, agent_id,"
                " from_number, status, engaged_at)"
                " select %s, c.id, c.agent_id, c.from_number, %s,"
                "        case when %s = 'engaged' then %s end"
                " from pgflow.campaigns c where c.id = %s returning id",
                [contact[0], status, status, NOW - dt.timedelta(hours=1), campaigns[0]],
            ).fetchone()
            for k in range(rng.randint(0, 3)):
                sent_at = NOW - dt.timedelta(hours=rng.uniform(1, 30))
                db.execute(
                    "insert into pgflow.messages (conversation_id, contact_id, direction, kind,"
                    " body, delivery_status, segments, encoding, created_at, sent_at, dedupe_key,"
                    " enrollment_id, step_position)"
                    " values (%s, %s, 'outbound', 'campaign', 'earlier', %s, 1, 'gsm7', %s, %s,"
                    " %s, %s, 1)",
                    [
                        conversation[0] if conversation else None,
                        contact[0],
                        rng.choice(["sent", "sent", "failed", "dead_letter"]),
                        sent_at,
                        sent_at,
                        f"earlier:{contact[0]}:{k}",
                        mine[0],
                    ],
                )
    rng.shuffle(ids)
    return ids


STATE = [
    "select id, status, next_step, next_message_at, last_step_sent_at, ended_at, stop_reason"
    " from pgflow.enrollments order by id",
    "select contact_id, campaign_id, enrollment_id, from_number, status, reply_deadline_at"
    " from pgflow.conversations order by contact_id, from_number, status",
    "select m.contact_id, m.enrollment_id, m.kind, m.body, m.step_position, m.delivery_status,"
    " m.segments, m.encoding, m.dedupe_key, m.created_at, cv.contact_id, cv.from_number"
    " from pgflow.messages m left join pgflow.conversations cv on cv.id = m.conversation_id"
    " order by m.contact_id, m.created_at, m.body, m.dedupe_key",
    "select q.entrypoint, q.priority, q.status, m.dedupe_key"
    " from pgflow.pgqueuer q"
    " join pgflow.messages m on m.id = (convert_from(q.payload, 'UTF8')::json ->> 'id')::bigint"
    " order by m.dedupe_key",
    # the audit trail: every enrollment transition with its reason, the rest by kind
    "select entity_id, from_status, to_status, reason, occurred_at from pgflow.events"
    " where entity = 'enrollment' order by entity_id, id",
    "select entity, from_status, to_status, count(*) from pgflow.events"
    " where entity <> 'enrollment' group by 1, 2, 3 order by 1, 2, 3",
]


def outcome(db: Conn, function: str, ids: list[int]) -> tuple[dict[str, Any], list[Any]]:
    result = db.execute(f"select pgflow.{function}(%s, %s)", [ids, NOW]).fetchone()
    assert result is not None
    state = [db.execute(query).fetchall() for query in STATE]
    return result[0], state


@pytest.mark.parametrize("seed", range(12))
def test_set_based_dispatch_matches_the_row_at_a_time_one(db: Conn, seed: int) -> None:
    rng = random.Random(seed)
    db.execute(rowwise_definition())
    # 0006 knew no state rules: the federal hours opened wide, the leads' New York numbers
    # carry no state rule, so both implementations decide by the campaign's window alone
    # (the rules themselves: tests/test_state_rules.py)
    db.execute(
        "update pgflow.state_windows set opens = '00:00', closes = '24:00' where state = 'US'"
    )
    ids = populate(db, rng)
    db.commit()
    with db.transaction(force_rollback=True):
        expected = outcome(db, "_dispatch_steps_rowwise", ids)
    with db.transaction(force_rollback=True):
        got = outcome(db, "_dispatch_steps", ids)
    assert got[0] == expected[0]
    for query, want, have in zip(STATE, expected[1], got[1], strict=True):
        assert have == want, query
    # the batches are not trivial: most branches show up across the seeds
    assert sum(expected[0].values()) > 0


def test_the_seeds_cover_every_branch(db: Conn) -> None:
    """The random batches above reach each branch of the dispatch (else the comparison
    proves less than it claims)."""
    db.execute(rowwise_definition())
    seen: dict[str, int] = {}
    for seed in range(12):
        rng = random.Random(seed)
        with db.transaction(force_rollback=True):
            ids = populate(db, rng)
            result, _ = outcome(db, "_dispatch_steps", ids)
        for key, value in result.items():
            seen[key] = seen.get(key, 0) + int(value)
    assert all(seen[key] > 0 for key in seen), seen
    assert set(seen) == {"sent", "deferred_window", "deferred_cap", "completed", "held", "stopped"}

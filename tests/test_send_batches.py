"""Claims and records in batches: pgflow.claim_messages / record_sends answer as the single
calls would, never deadlock when batches run at once, and the worker-side Coalescer gathers
calls, isolates a failing item and lets a lost database reach every waiting job."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from typing import Any

import psycopg
import pytest

from pgflow import db as pdb
from pgflow.errors import NotFound
from pgflow.jobs.batch import Coalescer, batched
from tests.factories import apply_campaign, at, ingest
from tests.helpers import rows, scalar

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")
OPEN = {"window_start": "00:00", "window_end": "24:00"}
WORKER = uuid.UUID(int=3)


def queued(db: Conn) -> list[int]:
    return [r[0] for r in rows(db, "select id from pgflow.messages order by id")]


def test_a_batch_claims_as_single_claims_would(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    for n in range(4):
        ingest(db, f"+1312555{n:04d}", NOW)
    ids = queued(db)
    pdb.stop_enrollment(
        scalar(db, "select enrollment_id from pgflow.messages where id = %s", [ids[2]]),
        "operator",
    ).run(db)
    answers = pdb.claim_messages([ids[3], ids[0], ids[2], ids[1], 999_999], WORKER, NOW).run(db)
    assert [a["action"] for a in answers] == ["send", "send", "suppressed", "send", "skip"]
    assert [a.get("message_id") for a in answers[:2]] == [ids[3], ids[0]]
    assert "usage_day" not in answers[0]
    assert rows(db, "select sum(messages)::int from pgflow.number_usage") == [(3,)]
    results = [
        {"message_id": ids[0], "attempt": 1, "result": {"ok": True, "chat_id": "chat_a"}},
        {"message_id": ids[3], "attempt": 1, "result": {"ok": False, "retryable": False}},
        {"message_id": ids[1], "attempt": 2, "result": {"ok": True}},
    ]
    recorded = pdb.record_sends(results, 30.0, NOW).run(db)
    assert [r["action"] for r in recorded] == ["sent", "dead_letter", "stale"]
    assert scalar(db, "select delivery_status from pgflow.messages where id = %s", [ids[3]]) == (
        "dead_letter"
    )


def test_batches_on_limited_numbers_run_at_once_without_deadlock(db_url: str, db: Conn) -> None:
    """Two connections claim interleaved batches of one number under a daily limit: no
    deadlock, and exactly the limit is claimed."""
    apply_campaign(db, from_numbers=["+14155550100", "+12125550100"], **OPEN)
    for number in ("+14155550100", "+12125550100"):
        pdb.set_number_limits(number, {"daily_segments": 30}).run(db)
    for n in range(80):
        ingest(db, f"+1312555{n:04d}", NOW)
    ids = queued(db)
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def claim(batches: list[list[int]]) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("set deadlock_timeout = '100ms'")
                for batch in batches:
                    answers.extend(pdb.claim_messages(batch, WORKER, NOW).run(conn))
        except BaseException as exc:  # reported below
            errors.append(exc)

    evens = [ids[i : i + 10 : 2] for i in range(0, 80, 10)]
    odds = [list(reversed(ids[i + 1 : i + 10 : 2])) for i in range(0, 80, 10)]
    threads = [threading.Thread(target=claim, args=(b,)) for b in (evens, odds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    sent = [a for a in answers if a["action"] == "send"]
    assert len(sent) == 60  # 30 segments a day on each number
    assert {a["reason"] for a in answers if a["action"] != "send"} == {"number daily limit"}
    assert rows(
        db, "select number, sum(segments)::int from pgflow.number_usage group by 1 order by 1"
    ) == [("+12125550100", 30), ("+14155550100", 30)]


def test_the_coalescer_gathers_calls_made_together() -> None:
    asyncio.run(_the_coalescer_gathers_calls_made_together())


async def _the_coalescer_gathers_calls_made_together() -> None:
    seen: list[list[int]] = []

    async def many(items: list[int]) -> list[int]:
        seen.append(items)
        await asyncio.sleep(0)
        return [i * 10 for i in items]

    singles: list[int] = []

    async def one(item: int) -> int:  # a batch of one is the single call
        singles.append(item)
        return item * 10

    gather = Coalescer(batched(many, one))
    assert await asyncio.gather(*(gather(i) for i in range(7))) == [0, 10, 20, 30, 40, 50, 60]
    assert seen == [[0, 1, 2, 3, 4, 5, 6]]
    small = Coalescer(batched(many, one), max_batch=3)
    assert await asyncio.gather(*(small(i) for i in range(7))) == [i * 10 for i in range(7)]
    assert seen[1:] == [[0, 1, 2], [3, 4, 5]]
    assert singles == [6]


def test_a_failing_item_fails_alone_and_a_lost_database_fails_all() -> None:
    asyncio.run(_a_failing_item_fails_alone_and_a_lost_database_fails_all())


async def _a_failing_item_fails_alone_and_a_lost_database_fails_all() -> None:
    async def many(items: list[int]) -> list[int]:
        if 13 in items:
            raise NotFound("13 is unlucky")
        if 0 in items:
            raise psycopg.OperationalError("server closed the connection")
        return items

    async def one(item: int) -> int:
        if item == 13:
            raise NotFound("13 is unlucky")
        return item

    gather = Coalescer(batched(many, one))
    answers = await asyncio.gather(*(gather(i) for i in (11, 12, 13, 14)), return_exceptions=True)
    assert answers[:2] == [11, 12]
    assert isinstance(answers[2], NotFound)
    assert answers[3] == 14
    lost = await asyncio.gather(*(gather(i) for i in (0, 1, 2)), return_exceptions=True)
    assert all(isinstance(a, psycopg.OperationalError) for a in lost)


def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    asyncio.run(_a_cancelled_caller_does_not_disturb_the_others())


async def _a_cancelled_caller_does_not_disturb_the_others() -> None:
    release = asyncio.Event()

    async def many(items: list[int]) -> list[int]:
        await release.wait()
        return items

    gather = Coalescer(batched(many, many), window=0.01)
    first = asyncio.create_task(gather(1))
    second = asyncio.create_task(gather(2))
    await asyncio.sleep(0.02)
    first.cancel()
    release.set()
    assert await second == 2
    with pytest.raises(asyncio.CancelledError):
        await first


def test_record_sends_of_nothing_is_nothing(db: Conn) -> None:
    assert pdb.record_sends([], 30.0, NOW + dt.timedelta(seconds=1)).run(db) == []


def test_a_cut_off_send_is_reconciled_before_it_is_sent_again(db: Conn) -> None:
    apply_campaign(db, max_attempts=2, **OPEN)
    ingest(db, "+13125550001", NOW)
    (message,) = queued(db)
    first = pdb.claim_message(message, WORKER, None, NOW).run(db)
    assert (first["action"], first["attempt"]) == ("send", 1)
    # the worker dies: the next claim asks to look for the chat before anything else
    later = NOW + dt.timedelta(minutes=1)
    look = pdb.claim_message(message, WORKER, None, later).run(db)
    assert look["action"] == "reconcile"
    assert (look["attempt"], look["to_number"]) == (1, "+13125550001")
    assert dt.datetime.fromisoformat(look["since"]) == NOW
    # Retell has no chat for it: released, claimed again as attempt 2
    assert pdb.release_interrupted(message, 1, later).run(db) == {"action": "released"}
    assert pdb.release_interrupted(message, 1, later).run(db) == {"action": "stale"}
    again = pdb.claim_message(message, WORKER, None, later).run(db)
    assert (again["action"], again["attempt"]) == ("send", 2)
    # cut off again, at max_attempts: a dead letter (a poison message)
    assert pdb.claim_message(message, WORKER, None, later).run(db)["action"] == "reconcile"
    assert pdb.release_interrupted(message, 2, later).run(db) == {"action": "dead_letter"}
    assert rows(db, "select attempt, outcome from pgflow.message_attempts order by attempt") == [
        (1, "interrupted"),
        (2, "interrupted"),
    ]


def _items(group: list[int], extra: int) -> list[dict[str, Any]]:
    """Results for a group's claimed texts: sent (two in one conversation, one by Twilio and
    given twice), a retryable failure, and a stale attempt."""
    ok = {"ok": True, "transport": "retell", "status_code": 200}
    return [
        {"message_id": group[0], "attempt": 1, "result": {**ok, "chat_id": "chat_1"}},
        {"message_id": extra, "attempt": 1, "result": {**ok, "chat_id": "chat_2"}},
        {
            "message_id": group[1],
            "attempt": 1,
            "result": {"ok": True, "transport": "twilio", "provider_message_id": "SM1"},
        },
        {"message_id": group[1], "attempt": 1, "result": {**ok, "chat_id": "chat_3"}},
        {
            "message_id": group[2],
            "attempt": 1,
            "result": {"ok": False, "retryable": True, "status_code": 503, "error": "busy"},
        },
        {"message_id": group[3], "attempt": 2, "result": {**ok, "chat_id": "chat_4"}},
    ]


def _state(db: Conn, ids: list[int]) -> list[tuple[Any, ...]]:
    """What recording left on these texts, their attempts, conversations and events."""
    return rows(
        db,
        """
        select m.delivery_status, m.sent_at, m.provider_message_id, m.chat_id, m.transport,
               m.delivery_error, m.attempts, a.outcome, a.status_code, a.finished_at,
               cv.last_outbound_at, cv.chat_status, cv.provider_chat_id,
               (select array_agg(e.from_status || '>' || e.to_status || ':' || e.reason
                                 order by e.id)
                  from pgflow.events e where e.entity = 'message' and e.entity_id = m.id)
          from unnest(%s::bigint[]) with ordinality as t(id, ord)
          join pgflow.messages m on m.id = t.id
          join pgflow.message_attempts a on a.message_id = m.id
          join pgflow.conversations cv on cv.id = m.conversation_id
         order by t.ord
        """,
        [ids],
    )


def test_a_batch_records_as_single_records_would(db: Conn) -> None:
    """record_sends (the sends that went through set-based, the rest one by one) leaves
    exactly what record_send item by item leaves, and answers the same."""
    apply_campaign(db, **OPEN)
    for n in range(8):
        ingest(db, f"+1312555{n:04d}", NOW)
    campaign = queued(db)
    # a second text in the first conversation of each group (a help text)
    for first in (campaign[0], campaign[4]):
        db.execute(
            "insert into pgflow.messages (conversation_id, contact_id, direction, kind, body,"
            " delivery_status, segments, dedupe_key)"
            " select conversation_id, contact_id, 'outbound', 'system', 'help', 'queued', 1,"
            " 'help-' || id from pgflow.messages where id = %s",
            [first],
        )
    extras = queued(db)[8:]
    claims = pdb.claim_messages(campaign + extras, WORKER, NOW).run(db)
    assert {c["action"] for c in claims} == {"send"}
    later = NOW + dt.timedelta(seconds=2)
    batch, single = _items(campaign[:4], extras[0]), _items(campaign[4:], extras[1])
    answers = pdb.record_sends(batch, 30.0, later).run(db)
    one_by_one: dict[int, dict[str, Any]] = {}
    for i, item in sorted(enumerate(single), key=lambda p: (p[1]["message_id"], p[0])):
        one_by_one[i] = pdb.record_send(
            item["message_id"], item["attempt"], item["result"], 30.0, later
        ).run(db)
    expected = [one_by_one[i] for i in range(len(single))]
    assert [a["action"] for a in answers] == ["sent", "sent", "sent", "stale", "retry", "stale"]
    assert [{k: v for k, v in a.items() if k != "delay_seconds"} for a in answers] == [
        {k: v for k, v in a.items() if k != "delay_seconds"} for a in expected
    ]
    assert _state(db, [*campaign[:4], extras[0]]) == _state(db, [*campaign[4:], extras[1]])


def test_one_batch_claims_no_more_than_the_numbers_daily_limit(db: Conn) -> None:
    """The sends of one batch count against the number's daily limit as they are claimed:
    the batch's later claims see them (a batch of 6 under a limit of 3 claims 3)."""
    apply_campaign(db, **OPEN)
    pdb.set_number_limits("+14155550100", {"daily_segments": 3}).run(db)
    for n in range(6):
        ingest(db, f"+1312555{n:04d}", NOW)
    answers = pdb.claim_messages(queued(db), WORKER, NOW).run(db)
    assert [a["action"] for a in answers] == ["send"] * 3 + ["defer"] * 3
    assert {a["reason"] for a in answers[3:]} == {"number daily limit"}
    assert all("usage_limited" not in a for a in answers)
    assert scalar(db, "select sum(segments)::int from pgflow.number_usage") == 3

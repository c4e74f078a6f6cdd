"""A backlog of due steps has no count per minute of our own: the tick dispatches one batch,
and a full one hands the rest to the dispatch_steps jobs (pgflow.dispatch_due per lane, a
transaction per batch), which run while their batches come back full."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from typing import Any

import psycopg

from pgflow import db as pdb
from pgflow.jobs.context import JobContext
from pgflow.jobs.dispatch import dispatch_steps
from pgflow.transport.retell import RetellClient
from tests.factories import apply_campaign, at, ingest, mark_sent
from tests.helpers import rows, scalar

Conn = psycopg.Connection[Any]
START = at("2026-11-23 15:00")  # Monday 10:00 in New York
STEP_2 = START + dt.timedelta(days=1)  # step 2 of the campaign is due a day after step 1


def backlog(db: Conn, leads: int) -> None:
    """`leads` leads whose step 1 went out at START: their step 2 is due at STEP_2."""
    apply_campaign(db)
    for n in range(leads):
        ingest(db, f"212555{n:04d}", START, first_name=f"Lead{n}")
    mark_sent(db, START)


def step_2_messages(db: Conn) -> list[tuple[Any, ...]]:
    return rows(
        db,
        "select contact_id, enrollment_id from pgflow.messages where step_position = 2"
        " order by enrollment_id",
    )


def drain(db: Conn, lane: int | None, batch: int) -> int:
    sent, more = 0, True
    while more:
        result = pdb.dispatch_due(lane, batch, STEP_2).run(db)
        db.commit()
        sent, more = sent + result["sent"], result["more"]
    return sent


def test_a_full_batch_hands_the_rest_to_one_job_per_lane(db: Conn) -> None:
    backlog(db, 9)
    first = pdb.tick(STEP_2, 4).run(db)
    assert (first["sent"], first["batches"], first["dispatch_jobs"]) == (4, 1, 2)
    assert rows(
        db,
        "select convert_from(payload, 'UTF8'), priority from pgflow.pgqueuer"
        " where entrypoint = 'dispatch_steps'"
        " order by id",
    ) == [('{"id" : 0}', 5), ('{"id" : 1}', 5)]
    # a second tick while the jobs wait queues no second pair
    assert pdb.tick(STEP_2, 4).run(db)["dispatch_jobs"] == 0
    assert drain(db, 0, 2) + drain(db, 1, 2) == 1  # 4 by the two ticks, the last one here
    sent = step_2_messages(db)
    assert len(sent) == 9
    assert len({enrollment for _, enrollment in sent}) == 9
    assert pdb.tick(STEP_2, 4).run(db)["sent"] == 0


def in_lane(db: Conn, lane: int, lanes: int = 2) -> int:
    query = "select count(*) from pgflow.contacts where id %% %s = %s"
    return int(scalar(db, query, [lanes, lane]))


def test_each_lane_takes_its_share_of_the_contacts(db: Conn) -> None:
    backlog(db, 10)
    assert drain(db, 1, 3) == in_lane(db, 1) > 0
    assert {contact % 2 for contact, _ in step_2_messages(db)} == {1}
    assert drain(db, 0, 3) == in_lane(db, 0) > 0
    assert len(step_2_messages(db)) == 10
    # every new message was logged once (one statement-level insert per batch), in id order
    assert rows(
        db,
        "select count(*), count(distinct entity_id), min(reason), max(reason)"
        " from pgflow.events e join pgflow.messages m on m.id = e.entity_id"
        " where e.entity = 'message' and e.from_status is null and m.step_position = 2",
    ) == [(10, 10, "step due", "step due")]


def test_the_number_of_lanes_is_a_database_setting(db: Conn) -> None:
    backlog(db, 6)
    db.execute("set pgflow.dispatch_lanes = 3")
    assert scalar(db, "select pgflow.dispatch_lanes()") == 3
    assert pdb.tick(STEP_2, 2).run(db)["dispatch_jobs"] == 3
    beyond = pdb.dispatch_due(3, 2, STEP_2).run(db)
    assert (beyond["sent"], beyond["more"]) == (0, False)
    assert "no such lane" in beyond["reason"]
    assert sum(drain(db, lane, 2) for lane in range(3)) == 4


def test_lanes_and_ticks_racing_on_many_connections_send_each_step_once(
    db_url: str, db: Conn
) -> None:
    backlog(db, 60)
    db.commit()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run(lane: int | None) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                start.wait()
                more = True
                while more:
                    if lane is None:
                        more = pdb.tick(STEP_2, 7).run(conn).get("dispatch_jobs", 0) > 0
                    else:
                        more = pdb.dispatch_due(lane, 7, STEP_2).run(conn)["more"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lane,)) for lane in (0, 1, None, 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert drain(db, None, 50) == 0  # nothing was left behind
    sent = step_2_messages(db)
    assert len(sent) == 60
    assert len({enrollment for _, enrollment in sent}) == 60
    assert scalar(db, "select count(*) from pgflow.enrollments where next_step = 3") == 60


def job_context(pool: Any) -> JobContext:
    retell = RetellClient("unused", "http://127.0.0.1:9")  # a Retell nobody calls
    ctx = JobContext(pool, retell, uuid.uuid4(), 0.05)
    ctx.clock = lambda: STEP_2
    return ctx


async def run_job(db_url: str, lane: int, *, stopping: bool = False, batch: int = 3) -> int:
    pool = pdb.async_pool(db_url, application="test", max_size=2)
    await pool.open()
    try:
        ctx = job_context(pool)
        if stopping:
            ctx.stopping.set()
        return await dispatch_steps(ctx, lane, batch=batch)
    finally:
        await pool.close()


def test_the_job_drains_its_lane_a_transaction_per_batch(db_url: str, db: Conn) -> None:
    backlog(db, 8)
    db.commit()
    lane_0 = in_lane(db, 0)
    assert asyncio.run(run_job(db_url, 0, batch=3)) == lane_0
    assert asyncio.run(run_job(db_url, 1, batch=10)) == 8 - lane_0
    assert len(step_2_messages(db)) == 8
    # each batch committed on its own: the messages carry one transaction id per batch
    assert (
        scalar(db, "select count(distinct xmin::text) from pgflow.messages where step_position = 2")
        == -(-lane_0 // 3) + 1
    )


def test_a_stopping_worker_ends_the_lane_before_its_next_batch(db_url: str, db: Conn) -> None:
    backlog(db, 4)
    db.commit()
    assert asyncio.run(run_job(db_url, 0, stopping=True)) == 0
    assert step_2_messages(db) == []

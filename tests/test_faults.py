"""Faults with real processes: a flapping Retell, a worker killed at random moments, a
storm of repeated lead webhooks, Postgres restarting under the web app. Nothing is lost
and nothing is sent twice. Seeded, bounded in time, no timing asserts."""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import ROOT, is_local_cluster
from tests.factories import apply_campaign, count, ingest
from tests.fake_retell import FakeRetell, Step
from tests.helpers import rows
from tests.processes import ServeProcess, WorkerProcess, wait_until

Conn = psycopg.Connection[Any]
pytestmark = [pytest.mark.slow, pytest.mark.real_clock]

OPEN_ALL_DAY = {"window_start": "00:00", "window_end": "24:00"}
TOKEN = "t0ken-for-fault-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEED = 20261206

# Kept well below 1,000 so the suite stays fast on a small (2-core, shared) machine; the
# seeded fault mix still gives every kind of fault dozens of times.
FLAPPING_MESSAGES = 300
FLAPPING_FAILURE_RATE = 0.30
KILLED_MESSAGES = 200
KILLS = 10
WEBHOOKS = 1000
REPEAT_RATE = 0.30
WEBHOOK_THREADS = 16

POSTERS = 3  # threads posting leads while Postgres restarts
SEND_TIMEOUT = 0.5  # the worker's --send-timeout; the fake's "timeouts" wait longer


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def terminal(db: Conn) -> int:
    return count(db, "messages", "delivery_status in ('sent', 'dead_letter')")


def chats_per_message(fake: FakeRetell) -> collections.Counter[str]:
    """How many chats the fake started (requests it took) for each pgflow message id."""
    return collections.Counter(
        str(chat["metadata"].get("pgflow_message_id")) for chat in fake.chats.values()
    )


def check_none_lost_none_twice(db: Conn, fake: FakeRetell, leads: int) -> dict[str, int]:
    """Every lead has its message, every message ended, each sent one has exactly one chat
    (the one it recorded), no message has two; the counts, for the report."""
    assert count(db, "contacts") == leads
    assert count(db, "messages") == leads, "a message is missing"
    assert terminal(db) == leads, "a message did not end sent or dead_letter"
    chats = chats_per_message(fake)
    duplicates = {m: n for m, n in chats.items() if n > 1}
    assert duplicates == {}, (
        f"PRODUCT BUG: {sum(n - 1 for n in duplicates.values())} duplicate create-sms-chat"
        f" over {len(duplicates)} message(s): {sorted(duplicates.items())[:20]}"
    )
    sent = rows(
        db,
        "select id::text, provider_message_id from pgflow.messages where delivery_status = 'sent'",
    )
    known = fake.chats
    for message_id, chat_id in sent:
        assert chats[message_id] == 1, f"message {message_id} is sent but Retell has no chat"
        assert chat_id in known, f"message {message_id} recorded chat {chat_id} Retell lacks"
        assert known[chat_id]["metadata"]["pgflow_message_id"] == message_id
    dead = rows(db, "select id::text from pgflow.messages where delivery_status = 'dead_letter'")
    for (message_id,) in dead:
        assert chats[message_id] == 0, f"dead-lettered message {message_id} did reach Retell"
    return {
        "sent": len(sent),
        "dead_letter": len(dead),
        "create_requests": len(fake.sms_requests()),
        "duplicates": 0,
    }


@pytest.fixture
def fake() -> Iterator[FakeRetell]:
    with FakeRetell(api_key="test-key") as server:
        yield server


@pytest.fixture
def workers(db_url: str, fake: FakeRetell) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def start_worker(
    started: list[WorkerProcess], db_url: str, fake: FakeRetell, *args: str
) -> WorkerProcess:
    worker = WorkerProcess(db_url, fake.url, fake.api_key, *args)
    started.append(worker)
    return worker.started()


def flapping_step(rng: random.Random) -> Step:
    """One create-sms-chat answer: ~70% normal, else a random fault."""
    if rng.random() >= FLAPPING_FAILURE_RATE:
        return Step()
    kind = rng.choice(
        ["500", "429", "timeout", "drop", "lost_answer", "late_answer", "slow", "503"]
    )
    if kind == "500":
        return Step(status=500)
    if kind == "503":
        return Step(status=503)
    if kind == "429":
        return Step(status=429, headers={"Retry-After": "0.1"})
    if kind == "timeout":  # never answers in time, never takes it
        return Step(delay=SEND_TIMEOUT * 2, drop=True)
    if kind == "drop":  # connection closed before Retell took it
        return Step(drop=True)
    if kind == "lost_answer":  # Retell took it; the answer is lost on the way back
        return Step(lost_answer=True)
    if kind == "late_answer":  # Retell took it; answers after the worker gave up
        return Step(answer_delay=SEND_TIMEOUT * 2)
    return Step(delay=SEND_TIMEOUT / 5)  # slow, but in time


def took_without_answer(step: Step) -> bool:
    return step.lost_answer or step.answer_delay >= SEND_TIMEOUT


def test_retell_flapping_loses_nothing(
    db: Conn, db_url: str, fake: FakeRetell, workers: list[WorkerProcess]
) -> None:
    """A seeded ~30% of create-sms-chat requests fail: 500/503, 429 (short Retry-After),
    timeouts, dropped connections, answers lost or late after Retell took the request,
    slow answers. The fake serves Retell's POST /v3/list-chats, so a send whose answer was
    lost is found by its pgflow_message_id and not sent again: no duplicates at all."""
    apply_campaign(db, max_attempts=30, **OPEN_ALL_DAY)
    rng = random.Random(SEED)
    script = [flapping_step(rng) for _ in range(FLAPPING_MESSAGES * 2)]
    fake.script(*script)
    for i in range(FLAPPING_MESSAGES):
        ingest(db, f"+1212555{i:04d}", now())
    start_worker(
        workers,
        db_url,
        fake,
        *("--retry-base", "0.05", "--poll", "0.2", "--send-timeout", str(SEND_TIMEOUT)),
        *("--heartbeat-timeout", "30"),
    )
    wait_until(
        lambda: terminal(db) == FLAPPING_MESSAGES,
        timeout=120,
        what=f"{FLAPPING_MESSAGES} messages sent or dead_letter",
    )
    stats = check_none_lost_none_twice(db, fake, FLAPPING_MESSAGES)
    used = script[: len(fake.sms_requests())]
    stats["faults"] = sum(s != Step() for s in used)
    stats["took_without_answer"] = sum(took_without_answer(s) for s in used)
    print(f"\nflapping: {stats}")
    assert stats["sent"] == FLAPPING_MESSAGES  # 30 attempts: a 30% fault rate never exhausts


def test_worker_killed_at_random_points_ten_times(
    db: Conn, db_url: str, fake: FakeRetell, workers: list[WorkerProcess]
) -> None:
    """SIGKILL at ten seeded moments of the run, most sends in flight after Retell took
    them (each answer waits a little): a send left 'sending' is looked up before it is
    sent again, so no message reaches Retell twice."""
    apply_campaign(db, max_attempts=30, **OPEN_ALL_DAY)
    rng = random.Random(SEED + 1)
    fake.script(*(Step(answer_delay=rng.uniform(0.02, 0.3)) for _ in range(KILLED_MESSAGES * 2)))
    for i in range(KILLED_MESSAGES):
        ingest(db, f"+1415555{i:04d}", now())
    args = (
        "--retry-base",
        "0.05",
        "--poll",
        "0.2",
        "--heartbeat-timeout",
        "2",
        "--concurrency",
        "5",
    )
    points = sorted(rng.sample(range(5, KILLED_MESSAGES - 5), KILLS))
    for point in points:
        worker = start_worker(workers, db_url, fake, *args)
        wait_until(
            lambda: len(fake.sms_requests()) >= point,  # noqa: B023 (called at once)
            timeout=60,
            what=f"{point} create-sms-chat requests",
        )
        time.sleep(rng.uniform(0, 0.15))  # a random moment, not a wait for an effect
        worker.kill()
    start_worker(workers, db_url, fake, *args)
    wait_until(
        lambda: terminal(db) == KILLED_MESSAGES,
        timeout=120,
        what=f"{KILLED_MESSAGES} messages sent or dead_letter after {KILLS} kills",
    )
    stats = check_none_lost_none_twice(db, fake, KILLED_MESSAGES)
    stats["interrupted_attempts"] = count(db, "message_attempts", "outcome = 'interrupted'")
    print(f"\nkilled: {stats}")
    assert stats["sent"] == KILLED_MESSAGES


def lead_body(i: int) -> dict[str, Any]:
    return {"campaign": "solar", "phone": f"+1646555{i:04d}", "first_name": f"Lead{i}"}


def test_a_thousand_parallel_lead_webhooks_with_repeats(db: Conn, db_url: str) -> None:
    """1,000 webhooks from 16 threads, 30% of them a repeat of another lead's body (the
    endpoint has no Idempotency-Key: a repeat is the same body again). Each distinct lead
    gets one contact, one enrollment, one first message; never a 5xx."""
    apply_campaign(db, **OPEN_ALL_DAY)
    rng = random.Random(SEED + 2)
    distinct = int(WEBHOOKS * (1 - REPEAT_RATE))
    plan = list(range(distinct)) + [rng.randrange(distinct) for _ in range(WEBHOOKS - distinct)]
    rng.shuffle(plan)
    server = ServeProcess(db_url, env={"PGFLOW_LEAD_TOKEN": TOKEN}).started()
    local = threading.local()
    clients: list[httpx.Client] = []

    def post(i: int) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=server.url, timeout=60)
            clients.append(client)
        status: int = client.post("/webhooks/leads", json=lead_body(i), headers=AUTH).status_code
        return status

    try:
        with concurrent.futures.ThreadPoolExecutor(WEBHOOK_THREADS) as pool:
            statuses = list(pool.map(post, plan))
    finally:
        for client in clients:
            client.close()
        server.stop()
    answered = collections.Counter(statuses)
    assert set(answered) <= {200, 201}, answered
    assert answered[201] == distinct, answered
    assert count(db, "contacts") == distinct
    assert count(db, "enrollments") == distinct
    assert count(db, "messages", "step_position = 1") == distinct
    per_enrollment = rows(
        db,
        "select count(*) from pgflow.messages m join pgflow.conversations c"
        " on c.id = m.conversation_id where m.step_position = 1 group by c.enrollment_id"
        " having count(*) <> 1",
    )
    assert per_enrollment == []
    assert count(db, "lead_events") == WEBHOOKS


@pytest.mark.skipif(
    not is_local_cluster(os.environ.get("DATABASE_URL")),
    reason="restarts only the local test cluster",
)
def test_web_answers_503_not_500_while_postgres_restarts(db: Conn, db_url: str) -> None:
    apply_campaign(db, **OPEN_ALL_DAY)
    db.close()
    server = ServeProcess(db_url, env={"PGFLOW_LEAD_TOKEN": TOKEN}).started()
    answers: list[tuple[int, int | str]] = []  # (lead number, status or exception name)
    restarted = threading.Event()
    during: list[int | str] = []  # answers to posts begun while db.sh restart ran
    restarting = threading.Event()
    after: list[int] = []  # statuses of posts begun after the restart
    stop = threading.Event()

    def keep_posting(first: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            i = first
            while not stop.is_set():
                began_after, began_during = restarted.is_set(), restarting.is_set()
                try:
                    status: int | str = client.post(
                        "/webhooks/leads", json=lead_body(i), headers=AUTH
                    ).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                answers.append((i, status))
                if began_during and not began_after:
                    during.append(status)
                if began_after and isinstance(status, int):
                    after.append(status)
                i += 1

    posters = [
        threading.Thread(target=keep_posting, args=(n * 3000,), daemon=True) for n in range(POSTERS)
    ]
    try:
        for poster in posters:
            poster.start()
        wait_until(lambda: len(answers) >= 20, timeout=30, what="leads posted before")
        restarting.set()
        restart = subprocess.run(
            [str(ROOT / "scripts" / "db.sh"), "restart"],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert restart.returncode == 0, restart.stderr
        restarted.set()
        wait_until(
            lambda: any(s in (200, 201) for s in after),
            timeout=60,
            what="a lead accepted after the restart",
        )
        stop.set()
        for poster in posters:
            poster.join(60)
            assert not poster.is_alive()
        assert server.proc.poll() is None, "pgflow serve exited"
    finally:
        stop.set()
        server.stop()
    statuses = collections.Counter(s for _, s in answers)
    print(f"\nrestart: {dict(statuses)}; begun during the restart: {collections.Counter(during)}")
    assert set(statuses) <= {200, 201, 503}, statuses
    accepted = {f"+1646555{i:04d}" for i, s in answers if s in (200, 201)}
    with psycopg.connect(db_url) as conn:
        stored = {p for (p,) in conn.execute("select phone from pgflow.contacts")}
    assert accepted - stored == set(), "a lead answered 200/201 is not in the database"

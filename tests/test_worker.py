"""The worker as a real process against the fake Retell: sends, retries, dead letters,
crash safety, graceful shutdown."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgflow.config import Settings
from tests.factories import apply_campaign, count, ingest
from tests.fake_retell import FakeRetell, Step
from tests.helpers import row, scalar
from tests.processes import CaptureServer, WorkerProcess, serving, wait_until

Conn = psycopg.Connection[Any]
OPEN_ALL_DAY = {"window_start": "00:00", "window_end": "24:00"}
FAST = ("--retry-base", "0.05", "--poll", "0.2", "--heartbeat-timeout", "30")

pytestmark = [pytest.mark.slow, pytest.mark.real_clock]


@pytest.fixture
def fake() -> Iterator[FakeRetell]:
    with FakeRetell(api_key="test-key") as server:
        yield server


@pytest.fixture
def start_worker(db_url: str, fake: FakeRetell) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = WorkerProcess(db_url, fake.url, fake.api_key, *(args or FAST))
        started.append(worker)
        return worker.started()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def campaign(db: Conn) -> int:
    return apply_campaign(db, **OPEN_ALL_DAY)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def message_status(db: Conn, message_id: int | None = None) -> str:
    value: str = scalar(
        db,
        "select delivery_status from pgflow.messages where %(id)s::bigint is null or id = %(id)s"
        " order by id limit 1",
        {"id": message_id},
    )
    return value


def settled(db: Conn, status: str) -> Any:
    return lambda: message_status(db) == status


def attempts(db: Conn) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in db.execute(
            "select attempt, outcome, status_code, error is not null from pgflow.message_attempts"
            " order by attempt"
        )
    ]


def test_lead_to_first_sms_request_woken_by_notify(
    db: Conn, db_url: str, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    start_worker("--poll", "60")  # polls only every 60 s: anything sooner came from NOTIFY
    with serving(Settings(database_url=db_url, lead_token="t")) as web:
        t0 = time.monotonic()
        response = web.post(
            "/webhooks/leads",
            headers={"Authorization": "Bearer t"},
            json={"campaign": "solar", "phone": "+1 (212) 555-0147", "first_name": "Sam"},
        )
        assert response.status_code == 201, response.text
        lead = response.json()
    [request] = fake.wait_for_requests(1, timeout=2.0)
    assert request.received_at - t0 < 2.0
    body = request.json
    assert body is not None
    message_id = scalar(db, "select id from pgflow.messages")
    assert body["from_number"] == "+14155550100"
    assert body["to_number"] == "+12125550147"
    assert body["retell_llm_dynamic_variables"]["sms_body"] == "Hi Sam, it's Ava from SunCo!"
    assert body["retell_llm_dynamic_variables"]["agent_prompt"] == "You are Ava. Be brief."
    assert body["metadata"]["pgflow_message_id"] == str(message_id)
    assert request.headers["authorization"] == "Bearer test-key"
    wait_until(settled(db, "sent"), what="message sent")
    assert row(db, "select attempts, provider_message_id is not null from pgflow.messages") == (
        1,
        True,
    )
    assert scalar(
        db,
        "select last_outbound_at is not null from pgflow.conversations where enrollment_id = %s",
        [lead["enrollment_id"]],
    )
    assert (
        scalar(
            db,
            "select count(*) from pgflow.workers where last_seen_at > now() - '1 minute'::interval",
        )
        == 1
    )


def test_two_server_errors_then_success(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    fake.script(500, 500)
    start_worker()
    ingest(db, "2125550147", now())
    wait_until(settled(db, "sent"), what="sent on the third attempt")
    assert len(fake.sms_requests()) == 3
    assert attempts(db) == [
        (1, "retry", 500, True),
        (2, "retry", 500, True),
        (3, "sent", 200, False),
    ]
    assert all(
        "HTTP 500" in e
        for (e,) in db.execute("select error from pgflow.message_attempts where outcome = 'retry'")
    )
    assert scalar(db, "select attempts from pgflow.messages") == 3


def test_rate_limited_is_retried_after_backoff(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    fake.script(429)  # answers Retry-After: 1
    start_worker()
    ingest(db, "2125550147", now())
    wait_until(settled(db, "sent"), what="sent after the rate limit")
    first, second = fake.sms_requests()
    assert second.received_at - first.received_at >= 1.0
    assert attempts(db) == [(1, "retry", 429, True), (2, "sent", 200, False)]


def test_bad_request_is_a_dead_letter_at_once(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    fake.script(400)
    start_worker()
    ingest(db, "2125550147", now())
    wait_until(settled(db, "dead_letter"), what="dead letter")
    assert len(fake.sms_requests()) == 1
    assert attempts(db) == [(1, "dead_letter", 400, True)]
    assert count(db, "alerts") == 0


@pytest.mark.parametrize(
    ("status", "kind"), [(401, "retell_unauthorized"), (402, "retell_payment_required")]
)
def test_auth_and_payment_failures_dead_letter_and_alert(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any, status: int, kind: str
) -> None:
    fake.script(Step(status=status))
    start_worker()
    ingest(db, "2125550147", now())
    wait_until(settled(db, "dead_letter"), what="dead letter")
    assert row(db, "select kind, severity, resolved_at is null from pgflow.alerts") == (
        kind,
        "critical",
        True,
    )
    assert len(fake.sms_requests()) == 1


def test_a_new_alert_is_posted_to_the_alert_webhook(
    db: Conn, db_url: str, campaign: int, fake: FakeRetell
) -> None:
    fake.script(401, 401)
    with CaptureServer() as hook:
        worker = WorkerProcess(
            db_url, fake.url, fake.api_key, *FAST, env={"PGFLOW_ALERT_WEBHOOK_URL": hook.url}
        ).started()
        try:
            ingest(db, "2125550147", now())
            ingest(db, "2125550148", now())
            [posted] = hook.wait_for(1)
            wait_until(
                lambda: (
                    scalar(
                        db,
                        "select count(*) from pgflow.messages"
                        " where delivery_status = 'dead_letter'",
                    )
                    == 2
                ),
                what="both dead letters",
            )
            wait_until(
                lambda: scalar(db, "select notified_at is not null from pgflow.alerts"),
                what="notified_at recorded",
            )
        finally:
            worker.stop()
    assert posted["source"] == "pgflow-sms"
    assert (posted["alert"]["kind"], posted["alert"]["severity"]) == (
        "retell_unauthorized",
        "critical",
    )
    assert "+12125550147" not in json.dumps(posted)  # no full phone number leaves
    # the second failure counts on the same open alert, and is not posted again
    assert row(db, "select count(*), max(occurrences) from pgflow.alerts") == (1, 2)
    assert len(hook.received) == 1


def test_timeout_is_retried(db: Conn, campaign: int, fake: FakeRetell, start_worker: Any) -> None:
    fake.script(Step(delay=2.0))
    start_worker("--retry-base", "0.05", "--poll", "0.2", "--send-timeout", "0.3")
    ingest(db, "2125550147", now())
    wait_until(settled(db, "sent"), timeout=15, what="sent after a timeout")
    outcomes = attempts(db)
    assert outcomes[0][:3] == (1, "retry", None)
    assert outcomes[-1][1] == "sent"


def test_kill_9_mid_send_loses_nothing(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    fake.script(Step(delay=30.0))  # the first send hangs until the worker is killed
    first = start_worker("--poll", "0.2", "--heartbeat-timeout", "2")
    ingest(db, "2125550147", now())
    fake.wait_for_requests(1, timeout=5, path="/create-sms-chat")
    first.kill()
    assert message_status(db) == "sending"
    start_worker("--poll", "1", "--heartbeat-timeout", "2")
    wait_until(settled(db, "sent"), timeout=20, what="sent after the restart")
    requests = fake.sms_requests()
    duplicates = len(requests) - 1
    assert duplicates <= 1  # at most one per kill: the killed attempt may have reached Retell
    assert attempts(db) == [(1, "interrupted", None, True), (2, "sent", 200, False)]


def test_a_send_whose_worker_died_after_retell_took_it_is_not_sent_again(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    """Retell starts the chat, the worker is killed before the answer comes back: the next
    worker finds the chat by our message id (list-chats) and records it sent."""
    fake.script(Step(answer_delay=30.0))
    first = start_worker("--poll", "0.2", "--heartbeat-timeout", "2")
    ingest(db, "2125550147", now())
    fake.wait_for_requests(1, timeout=5, path="/create-sms-chat")
    first.kill()
    start_worker("--poll", "0.2", "--heartbeat-timeout", "2")
    wait_until(settled(db, "sent"), timeout=20, what="recorded as sent")
    assert len(fake.sms_requests()) == 1  # never sent twice
    assert attempts(db) == [(1, "sent", 200, False)]
    chat = scalar(db, "select provider_message_id from pgflow.messages")
    assert chat in fake.chats  # the chat Retell started for it


def test_a_lost_answer_is_found_not_sent_again(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    """Retell takes the send but the connection drops before its answer: the worker looks
    for the chat before trying again, finds it, and records it sent."""
    fake.script(Step(lost_answer=True))
    start_worker("--poll", "0.2", "--retry-base", "0.05")
    ingest(db, "2125550147", now())
    wait_until(settled(db, "sent"), timeout=15, what="recorded as sent")
    assert len(fake.sms_requests()) == 1
    assert [a[:2] for a in attempts(db)] == [(1, "sent")]


def test_a_message_that_kills_its_worker_every_time_ends_dead_letter(
    db: Conn, fake: FakeRetell, start_worker: Any
) -> None:
    apply_campaign(db, max_attempts=2, **OPEN_ALL_DAY)
    fake.set_default(Step(delay=30.0))
    ingest(db, "2125550147", now())
    for kill in (1, 2):
        worker = start_worker("--poll", "1", "--heartbeat-timeout", "2")
        fake.wait_for_requests(kill, timeout=10, path="/create-sms-chat")
        worker.kill()
    start_worker("--poll", "1", "--heartbeat-timeout", "2")
    wait_until(settled(db, "dead_letter"), timeout=20, what="dead letter after the crashes")
    assert len(fake.sms_requests()) == 2
    assert "worker stopped during each of 2 attempts" in scalar(
        db, "select delivery_error from pgflow.messages"
    )


def test_sigterm_finishes_the_send_in_flight_and_exits_0(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    fake.script(Step(delay=1.5))
    worker = start_worker()
    ingest(db, "2125550147", now())
    fake.wait_for_requests(1, timeout=5)
    t0 = time.monotonic()
    assert worker.terminate(timeout=30) == 0
    assert time.monotonic() - t0 < 30
    assert message_status(db) == "sent"
    assert '"event": "worker.stopped"' in worker.output()
    assert scalar(db, "select stopped_at is not null from pgflow.workers")


def test_opted_out_before_sending_is_suppressed(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    ingest(db, "2125550147", now())  # queued while no worker runs
    db.execute("update pgflow.contacts set opted_out_at = now(), opt_out_source = 'sms'")
    start_worker()
    wait_until(settled(db, "suppressed"), what="suppressed")
    assert fake.sms_requests() == []


def test_window_closed_by_send_time_defers_instead_of_sending(
    db: Conn, campaign: int, fake: FakeRetell, start_worker: Any
) -> None:
    ingest(db, "2125550147", now())  # queued while no worker runs
    # the window closes before a worker gets to it: a window that opens 12 hours from now
    opens = (now() + dt.timedelta(hours=12)).astimezone(dt.UTC)
    db.execute(
        "update pgflow.campaigns set timezone = 'UTC', window_start = %s, window_end = %s",
        [f"{opens.hour:02d}:00", f"{opens.hour:02d}:59"],
    )
    db.execute("update pgflow.contacts set timezone = 'UTC'")
    start_worker()
    # the message learns when the window opens; the job is put back until then
    wait_until(
        lambda: scalar(
            db,
            "select m.send_after is not null and j.status = 'queued'"
            " and j.execute_after > now() + interval '11 hours'"
            " from pgflow.messages m, pgflow.pgqueuer j",
        ),
        what="deferred at send time",
    )
    assert message_status(db) == "queued"
    assert scalar(db, "select send_after from pgflow.messages") == opens.replace(
        minute=0, second=0, microsecond=0
    )
    assert fake.sms_requests() == []


@pytest.mark.parametrize("env", [{"RETELL_API_KEY": ""}])
def test_refuses_to_start_without_configuration(
    db_url: str, fake: FakeRetell, env: dict[str, str]
) -> None:
    worker = WorkerProcess(db_url, fake.url, "", *FAST, env=env)
    assert worker.proc.wait(30) == 1
    worker.stop()
    assert "RETELL_API_KEY is not set" in worker.output()


def test_refuses_to_start_on_unapplied_migrations(empty_db_url: str, fake: FakeRetell) -> None:
    worker = WorkerProcess(empty_db_url, fake.url, fake.api_key, *FAST)
    assert worker.proc.wait(30) == 1
    worker.stop()
    assert "not applied" in worker.output()
    assert "pgflow db migrate" in worker.output()

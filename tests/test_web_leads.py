"""The ASGI app served by a real uvicorn on 127.0.0.1: lead webhook, probes, metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from pgflow.config import Settings
from pgflow.web.leads import LEAD_BODY_LIMIT
from tests.factories import at, count
from tests.helpers import row, scalar
from tests.processes import ServeProcess, serving

Conn = psycopg.Connection[Any]
TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Monday 2026-11-23 18:00 UTC: 13:00 in New York, 10:00 in Los Angeles (415).
NOW = at("2026-11-23 18:00")
CAMPAIGNS = {
    "agents": [{"name": "ava", "prompt": "Be brief."}],
    "campaigns": [
        {
            "slug": "solar-q4",
            "name": "Solar",
            "agent": "ava",
            "from_number": "+14155550100",
            "timezone": "America/New_York",
            "window_days": [1, 2, 3, 4, 5, 6, 7],
            "window_start": "00:00",
            "window_end": "23:59",
            "steps": [
                {"delay": "0 minutes", "body": "Hi {{first_name}}!"},
                {"delay": "1 day", "body": "Still there?"},
            ],
        }
    ],
}
LEAD = {"campaign": "solar-q4", "phone": "(415) 555-0123", "first_name": "Sam"}


@pytest.fixture
def client(db_url: str, db: Conn) -> Iterator[httpx.Client]:
    db.execute("select pgflow.apply_campaigns(%s)", [Jsonb(CAMPAIGNS)])
    with serving(Settings(database_url=db_url, lead_token=TOKEN), NOW) as c:
        yield c


def post(client: httpx.Client, payload: Any, **kwargs: Any) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return client.post("/webhooks/leads", json=payload, headers=headers, **kwargs)


def last_event(db: Conn) -> tuple[Any, ...]:
    return row(
        db,
        "select result, error_code, campaign_slug, raw_body, payload from pgflow.lead_events"
        " order by id desc limit 1",
    )


def test_new_lead_is_created_then_already_enrolled(client: httpx.Client, db: Conn) -> None:
    first = post(client, LEAD)
    assert first.status_code == 201
    body = first.json()
    assert set(body) == {"contact_id", "enrollment_id", "status"}
    assert body["status"] == "created"
    assert isinstance(body["contact_id"], int)
    assert isinstance(body["enrollment_id"], int)
    assert row(db, "select phone, first_name, timezone from pgflow.contacts") == (
        "+14155550123",
        "Sam",
        "America/Los_Angeles",
    )
    assert row(db, "select body, delivery_status, step_position from pgflow.messages") == (
        "Hi Sam!",
        "queued",
        1,
    )
    assert scalar(db, "select entrypoint from pgflow.pgqueuer") == "send_sms"

    again = post(client, LEAD)
    assert again.status_code == 200
    assert again.json() == {**body, "status": "already_enrolled"}
    assert count(db, "messages") == 1
    assert count(db, "pgqueuer") == 1
    assert count(db, "lead_events") == 2


def test_two_identical_webhooks_at_the_same_moment(
    client: httpx.Client, db: Conn, db_url: str
) -> None:
    """Both requests reach the database and wait there; released together, they race."""
    base_url = str(client.base_url)
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    failures: list[BaseException] = []

    def send() -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=15) as own:  # its own connection
                barrier.wait(timeout=10)
                statuses.append(own.post("/webhooks/leads", json=LEAD, headers=AUTH).status_code)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=send) for _ in range(2)]
    with psycopg.connect(db_url) as gate:
        # Hold back every write to contacts until both ingest_lead calls are waiting on it.
        gate.execute("lock table pgflow.contacts in share mode")
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while waiting_on_contacts(db) < 2:  # a condition, not a stand-in for time
            assert not failures, failures
            assert time.monotonic() < deadline, "the two leads never reached the database"
            time.sleep(0.005)
        gate.commit()
    for t in threads:
        t.join(15)
    assert not failures, failures
    assert sorted(statuses) == [200, 201]
    assert count(db, "contacts") == 1
    assert count(db, "enrollments") == 1
    assert count(db, "conversations") == 1
    assert count(db, "messages", "step_position = 1") == 1
    assert count(db, "pgqueuer", "entrypoint = 'send_sms'") == 1
    assert count(db, "lead_events") == 2


def waiting_on_contacts(db: Conn) -> int:
    return int(
        scalar(
            db,
            "select count(*) from pg_catalog.pg_locks"
            " where relation = 'pgflow.contacts'::regclass and not granted",
        )
    )


def test_common_phone_formats_land_as_e164(client: httpx.Client, db: Conn) -> None:
    contact_ids = set()
    for phone in ("(415) 555-0123", "+1 415-555-0123", "4155550123"):
        response = post(client, {**LEAD, "phone": phone})
        assert response.status_code in (200, 201), response.text
        contact_ids.add(response.json()["contact_id"])
    # A sloppy Content-Type is fine when the body parses.
    sloppy = client.post(
        "/webhooks/leads",
        content=b'{"campaign": "solar-q4", "phone": "415.555.0123"}',
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert sloppy.status_code == 200
    contact_ids.add(sloppy.json()["contact_id"])
    assert contact_ids == {scalar(db, "select id from pgflow.contacts")}
    assert scalar(db, "select phone from pgflow.contacts") == "+14155550123"
    assert count(db, "enrollments") == 1


def test_unknown_campaign_is_404_and_recorded(client: httpx.Client, db: Conn) -> None:
    response = post(client, {**LEAD, "campaign": "nope"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_campaign"
    assert "nope" in response.json()["detail"]
    result, error, slug, _, payload = last_event(db)
    assert (result, error, slug) == ("rejected", "unknown_campaign", "nope")
    assert payload["phone"] == LEAD["phone"]
    assert count(db, "contacts") == 0


def test_bad_phone_is_422_and_recorded(client: httpx.Client, db: Conn) -> None:
    response = post(client, {**LEAD, "phone": "555-01"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_phone"
    assert response.json()["detail"]
    assert last_event(db)[:3] == ("rejected", "invalid_phone", "solar-q4")
    assert count(db, "contacts") == 0


def test_other_rejections_are_422(client: httpx.Client, db: Conn) -> None:
    missing = post(client, {"campaign": "solar-q4"})
    assert (missing.status_code, missing.json()["error"]) == (422, "invalid_payload")
    not_object = post(client, ["solar-q4", "4155550123"])
    assert (not_object.status_code, not_object.json()["error"]) == (422, "invalid_payload")
    # A consent time that is no time is rejected by ingest_lead itself, payload kept.
    bad_consent = post(client, {**LEAD, "consent": {"at": "not a time"}})
    assert (bad_consent.status_code, bad_consent.json()["error"]) == (422, "invalid_payload")
    assert "consent.at" in bad_consent.json()["detail"]
    result, error, _, _, payload = last_event(db)
    assert (result, error) == ("rejected", "invalid_payload")
    assert payload["consent"] == {"at": "not a time"}
    nul = client.post(
        "/webhooks/leads",
        content=b'{"campaign": "solar-q4", "phone": "4155550123", "first_name": "a\\u0000b"}',
        headers=AUTH,
    )
    assert (nul.status_code, nul.json()["error"]) == (422, "invalid_payload")
    assert count(db, "lead_events", "result = 'rejected'") == 4
    assert count(db, "contacts") == 0


def test_malformed_json_is_400_and_the_raw_body_kept(client: httpx.Client, db: Conn) -> None:
    text = '{"campaign": "solar-q4", "phone": '
    response = client.post("/webhooks/leads", content=text.encode(), headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"
    assert last_event(db) == ("rejected", "malformed_json", None, text, None)

    not_utf8 = client.post("/webhooks/leads", content=b'{"phone": "\xff\x00"}', headers=AUTH)
    assert (not_utf8.status_code, not_utf8.json()["error"]) == (400, "malformed_json")
    assert last_event(db)[3] == '{"phone": "\ufffd\ufffd"}'
    assert count(db, "lead_events", "error_code = 'malformed_json'") == 2


def test_oversized_body_is_413_and_a_prefix_recorded(client: httpx.Client, db: Conn) -> None:
    body = b"x" * (LEAD_BODY_LIMIT + 1)
    declared = client.post("/webhooks/leads", content=body, headers=AUTH)
    assert declared.status_code == 413
    assert declared.json()["error"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(17):
            yield b"y" * 4096

    chunked = client.post("/webhooks/leads", content=chunks(), headers=AUTH)
    assert chunked.status_code == 413
    rows = db.execute(
        "select error_code, length(raw_body), left(raw_body, 1) from pgflow.lead_events order by id"
    ).fetchall()
    assert rows == [
        ("payload_too_large", LEAD_BODY_LIMIT, "x"),
        ("payload_too_large", LEAD_BODY_LIMIT, "y"),
    ]
    # Exactly at the limit is not too large (just not JSON here).
    at_limit = client.post("/webhooks/leads", content=b" " * LEAD_BODY_LIMIT, headers=AUTH)
    assert at_limit.status_code == 400


def test_missing_or_wrong_token_is_401_and_writes_nothing(
    client: httpx.Client, db: Conn, db_url: str
) -> None:
    attempts: list[dict[str, Any]] = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer \u00e9t\u00e9".encode()},
    ]
    for headers in attempts:
        response = client.post("/webhooks/leads", json=LEAD, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "unauthorized"
        assert TOKEN not in response.text
    # With no token configured every lead is refused.
    with serving(Settings(database_url=db_url, lead_token=None), NOW) as open_door:
        assert open_door.post("/webhooks/leads", json=LEAD, headers=AUTH).status_code == 401
        assert open_door.post("/webhooks/leads", json=LEAD).status_code == 401
    assert count(db, "lead_events") == 0
    assert count(db, "contacts") == 0


def test_health_probes(client: httpx.Client, empty_db_url: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    with serving(Settings(database_url=empty_db_url, lead_token=TOKEN), NOW) as empty:
        assert empty.get("/healthz").status_code == 200
        not_ready = empty.get("/readyz")
        assert not_ready.status_code == 503
        assert "migrate" in not_ready.json()["reason"]


def test_metrics(client: httpx.Client, db: Conn) -> None:
    assert post(client, LEAD).status_code == 201
    assert post(client, {**LEAD, "campaign": "nope"}).status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("pgflow_contacts", ())] == 1
    assert samples[("pgflow_enrollments_active", ())] == 1
    assert samples[("pgflow_database_up", ())] == 1
    lead_201 = (("method", "POST"), ("route", "/webhooks/leads"), ("status", "201"))
    lead_404 = (("method", "POST"), ("route", "/webhooks/leads"), ("status", "404"))
    assert samples[("pgflow_http_requests_total", lead_201)] == 1
    assert samples[("pgflow_http_requests_total", lead_404)] == 1
    assert samples[("pgflow_lead_ingest_seconds_count", (("status", "created"),))] == 1
    assert samples[("pgflow_lead_ingest_seconds_count", (("status", "rejected"),))] == 1
    # queued-to-sent latency of what was sent in the last hour, per kind
    db.execute(
        "update pgflow.messages set delivery_status = 'sent', created_at = now() - interval '1s',"
        " sent_at = now() - interval '0.7 seconds'"
    )
    latency = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
        if s.name.startswith("pgflow_send_latency_seconds")
    }
    campaign = (("kind", "campaign"),)
    assert latency[("pgflow_send_latency_seconds_count", campaign)] == 1
    assert latency[("pgflow_send_latency_seconds_bucket", (*campaign, ("le", "0.25")))] == 0
    assert latency[("pgflow_send_latency_seconds_bucket", (*campaign, ("le", "0.5")))] == 1
    # the funnel, per campaign
    assert samples[("pgflow_campaign_enrolled", (("campaign", "solar-q4"),))] == 1
    assert samples[("pgflow_campaign_messaged", (("campaign", "solar-q4"),))] == 0
    open_ = (("campaign", "solar-q4"), ("state", "open"))
    assert samples[("pgflow_campaign_conversations", open_)] == 1
    success = (("campaign", "solar-q4"), ("state", "success"))
    assert samples[("pgflow_campaign_conversations", success)] == 0


def test_pgflow_serve_takes_leads_and_stops_cleanly(db_url: str, db: Conn) -> None:
    """The command an operator runs: a real process, a real port, SIGTERM."""
    db.execute("select pgflow.apply_campaigns(%s)", [Jsonb(CAMPAIGNS)])
    server = ServeProcess(db_url, env={"PGFLOW_LEAD_TOKEN": TOKEN}).started()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as web:
            assert web.get("/healthz").json() == {"status": "ok"}
            assert web.get("/readyz").status_code == 200
            assert post(web, {**LEAD, "campaign": "solar-q4"}).status_code in (200, 201)
        assert server.terminate() == 0
        assert '"event": "web.stopped"' in server.output()
        assert '"event": "lead.ingested"' in server.output()
        assert "4155550123" not in server.output()  # phones are masked in logs
    finally:
        server.stop()
    assert count(db, "lead_events") == 1


def test_the_app_needs_no_more_than_the_web_role(db: Conn, login_url: Callable[[str], str]) -> None:
    db.execute("select pgflow.apply_campaigns(%s)", [Jsonb(CAMPAIGNS)])
    with serving(Settings(database_url=login_url("pgflow_web"), lead_token=TOKEN)) as web:
        assert post(web, LEAD).status_code == 201
        assert post(web, {**LEAD, "campaign": "nope"}).status_code == 404
        assert web.post("/webhooks/leads", content=b"{", headers=AUTH).status_code == 400
        ready = web.get("/readyz")  # the web role reads the whole report: a job waits, no worker
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith("worker: none alive and 1 job(s) waiting")
        assert "\npgflow_contacts 1.0\n" in web.get("/metrics").text
    assert count(db, "lead_events") == 3

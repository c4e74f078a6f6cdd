"""POST /webhooks/retell on a real server: signatures on the raw body, chat_inbound answers,
a reply pausing the drip, duplicates, and webhooks the fake Retell sends by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgflow.config import Settings
from tests.chat_payloads import chat, event, inbound
from tests.factories import at, campaign_doc, count
from tests.fake_retell import FakeRetell
from tests.helpers import scalar
from tests.processes import serving, wait_until

Conn = psycopg.Connection[Any]
KEY = "retell-key-for-tests"
NOW = at("2026-11-23 15:00")
OPEN = {"window_start": "00:00", "window_end": "24:00"}
LEAD = {"campaign": "solar", "phone": "(212) 555-0147", "first_name": "Sam"}


@pytest.fixture
def fake() -> Iterator[FakeRetell]:
    with FakeRetell(KEY) as f:
        yield f


@pytest.fixture
def client(db_url: str, db: Conn) -> Iterator[httpx.Client]:
    doc = campaign_doc("solar", **OPEN)
    doc["agents"][0]["retell_agent_id"] = "agent_ava"
    doc["agents"].append({"name": "rita", "prompt": "You are Rita.", "retell_agent_id": "ag_r"})
    doc["campaigns"] += campaign_doc("roofing", agent="rita", from_number="+14155550199", **OPEN)[
        "campaigns"
    ]
    db.execute("select pgflow.apply_campaigns(%s)", [Jsonb(doc)])
    settings = Settings(database_url=db_url, lead_token="t", retell_api_key=KEY)
    with serving(settings, NOW) as c:
        yield c


def lead(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/webhooks/leads", json={**LEAD, **fields}, headers={"Authorization": "Bearer t"}
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def post(fake: FakeRetell, client: httpx.Client, payload: dict[str, Any], **kw: Any) -> Any:
    return fake.post_webhook(f"{client.base_url}/webhooks/retell", payload, **kw)


def nothing_written(db: Conn) -> bool:
    return count(db, "webhook_deliveries") == 0 and count(db, "messages", "kind = 'lead'") == 0


def test_bad_signatures_are_401_and_write_nothing(
    fake: FakeRetell, client: httpx.Client, db: Conn
) -> None:
    lead(client)
    payload = inbound("+12125550147", "+14155550100")
    url = "/webhooks/retell"
    assert post(fake, client, payload, api_key="not-the-key").status_code == 401
    old = int(time.time() * 1000) - 6 * 60 * 1000
    assert post(fake, client, payload, timestamp_ms=old).status_code == 401
    body, headers = fake.signed_webhook(payload)
    tampered = body.replace(b"+12125550147", b"+12125550148")
    assert client.post(url, content=tampered, headers=headers).status_code == 401
    assert client.post(url, content=body).status_code == 401  # no signature at all
    garbled = {**headers, "x-retell-signature": "v=1,d=zz"}
    assert client.post(url, content=body, headers=garbled).status_code == 401
    assert nothing_written(db)
    assert client.post(url, content=body, headers=headers).status_code == 200


def test_chat_inbound_gets_each_campaign_its_own_agent(
    fake: FakeRetell, client: httpx.Client, db: Conn
) -> None:
    lead(client)
    lead(client, campaign="roofing", phone="(212) 555-0148", first_name="Ria")
    a = post(fake, client, inbound("+12125550147", "+14155550100"))
    b = post(fake, client, inbound("+12125550148", "+14155550199", nested=False))
    assert a.status_code == b.status_code == 200
    a_answer, b_answer = a.json()["chat_inbound"], b.json()["chat_inbound"]
    assert a_answer["override_agent_id"] == "agent_ava"
    assert a_answer["dynamic_variables"]["agent_prompt"] == "You are Ava. Be brief."
    assert b_answer["override_agent_id"] == "ag_r"
    assert b_answer["dynamic_variables"]["agent_prompt"] == "You are Rita."
    assert b_answer["dynamic_variables"]["first_name"] == "Ria"
    conversation = scalar(
        db,
        "select id from pgflow.conversations where campaign_id ="
        " (select id from pgflow.campaigns where slug = 'roofing')",
    )
    assert b_answer["metadata"]["pgflow_conversation_id"] == str(conversation)
    unknown = post(fake, client, inbound("+12125550100", "+14155550100"))
    assert unknown.json() == {"chat_inbound": {"reject": True}}


def test_a_reply_pauses_the_drip_and_a_repeat_changes_nothing(
    fake: FakeRetell, client: httpx.Client, db: Conn
) -> None:
    created = lead(client)
    message = scalar(db, "select id from pgflow.messages")
    conversation = scalar(db, "select id from pgflow.conversations")
    payload = event(
        "transcript_updated",
        chat(
            "chat_9",
            [("agent", "Hi Sam"), ("user", "yes!")],
            conversation_id=conversation,
            message_id=message,
        ),
    )
    for _ in range(3):
        response = post(fake, client, payload)
        assert response.status_code == 200
    assert count(db, "webhook_deliveries") == 1
    assert count(db, "messages", "kind = 'lead'") == 1
    assert (
        scalar(
            db, "select status from pgflow.enrollments where id = %s", [created["enrollment_id"]]
        )
        == "paused"
    )


def test_malformed_and_oversized_bodies(fake: FakeRetell, client: httpx.Client, db: Conn) -> None:
    body = b"{not json"
    _, headers = fake.signed_webhook({})
    headers["x-retell-signature"] = fake.webhooks.headers(body)["x-retell-signature"]
    response = client.post("/webhooks/retell", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"
    big = b'{"event": "chat_ended", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    headers["x-retell-signature"] = fake.webhooks.headers(big)["x-retell-signature"]
    response = client.post("/webhooks/retell", content=big, headers=headers)
    assert response.status_code == 413
    assert nothing_written(db)


def test_the_fake_sends_its_own_webhooks_to_us(
    fake: FakeRetell, client: httpx.Client, db: Conn
) -> None:
    """Retell's side played by the fake: the lead texts our number with no chat open."""
    lead(client)
    fake.webhook_url = f"{client.base_url}/webhooks/retell"
    result = fake.say("+12125550147", "+14155550100", "hello, is this SunCo?")
    assert result["result"] == "delivered"
    fake.webhooks.wait_idle()
    wait_until(lambda: count(db, "messages", "kind = 'lead'") == 1, what="the lead's text")
    assert scalar(db, "select status from pgflow.conversations") == "engaged"
    [started] = fake.deliveries("chat_started")
    assert started.payload["chat"]["agent_id"] == "agent_ava"
    assert started.payload["chat"]["metadata"]["pgflow_conversation_id"].isdigit()


def test_reordered_and_repeated_deliveries_through_the_endpoint(
    fake: FakeRetell, client: httpx.Client, db: Conn
) -> None:
    """The fake holds a conversation's webhooks and sends them back to front, each twice:
    the lead's texts are recorded once each, in the order they were written."""
    lead(client)
    fake.webhook_url = f"{client.base_url}/webhooks/retell"
    fake.say("+12125550147", "+14155550100", "first")  # chat_inbound is answered at once
    fake.webhooks.wait_idle()
    fake.webhooks.hold()
    chat_id = next(iter(fake.chats))
    fake.post_agent_message(chat_id, "Thanks! Do you own your home?", None)
    fake.say("+12125550147", "+14155550100", "yes, I do")
    fake.end_chat(chat_id)
    held = fake.webhooks.release(order=[3, 2, 1, 0], times=2)
    fake.webhooks.wait_idle()
    assert all(d.delivered for d in held)
    texts = db.execute(
        "select direction, body from pgflow.messages where kind in ('lead', 'agent')"
        " order by created_at, id"
    ).fetchall()
    assert texts == [
        ("inbound", "first"),
        ("outbound", "Thanks! Do you own your home?"),
        ("inbound", "yes, I do"),
    ]
    assert scalar(db, "select chat_status from pgflow.conversations") == "ended"

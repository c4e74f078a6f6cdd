"""pgflow.transport.twilio against the fake Twilio (a real HTTP server whose shapes are pinned
to the official SDK in tests/test_fake_twilio.py): what is sent, how each failure is
classified, a lost answer found instead of sent again, and the callbacks' signatures."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from pgflow import transport
from pgflow.config import Settings
from pgflow.transport.twilio import TwilioClient, TwilioError, verify_signature
from tests.fake_twilio import FakeTwilio
from tests.helpers import scalar
from tests.test_fake_twilio import FormCapture

Conn = psycopg.Connection[Any]
LEAD = "+12125550147"
LINE = "+14155550100"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


@pytest.fixture
def capture() -> Iterator[FormCapture]:
    with FormCapture() as server:
        yield server


def client(fake: FakeTwilio, public_url: str, read_timeout: float = 5.0) -> TwilioClient:
    timeout = httpx.Timeout(connect=2.0, read=read_timeout, write=2.0, pool=2.0)
    return TwilioClient(
        fake.account_sid,
        fake.auth_token,
        public_url=public_url,
        base_url=fake.url,
        timeout=timeout,
    )


def send(twilio: TwilioClient, body: str = "Hi Sam, it's Ava from SunCo!", **kw: Any) -> Any:
    async def go() -> Any:
        async with twilio:
            return await twilio.send(
                to=kw.pop("to", LEAD),
                body=body,
                message_id=kw.pop("message_id", 42),
                validity_seconds=kw.pop("validity_seconds", 3600),
                from_=LINE,
                **kw,
            )

    return asyncio.run(go())


def test_a_send_carries_our_text_our_id_and_a_validity_period(
    fake: FakeTwilio, capture: FormCapture
) -> None:
    sent = send(client(fake, capture.base + "/base"), validity_seconds=999_999)
    assert sent.sid.startswith("SM")
    assert sent.status == "queued"
    [request] = fake.create_requests()
    assert request.form["Body"] == "Hi Sam, it's Ava from SunCo!"
    assert (request.form["To"], request.form["From"]) == (LEAD, LINE)
    assert request.form["ValidityPeriod"] == "36000"  # Twilio's limit: never more
    callback = urlsplit(request.form["StatusCallback"])
    assert callback.path == "/base/webhooks/twilio/status"
    assert parse_qs(callback.query) == {"message_id": ["42"]}
    # Twilio's callbacks come back signed over the URL it called and every field
    received = capture.wait_for(2)
    for url, params, headers in received:
        assert verify_signature(fake.auth_token, url, params, headers["x-twilio-signature"])
        assert not verify_signature("another-token", url, params, headers["x-twilio-signature"])
        assert not verify_signature(
            fake.auth_token, url, {**params, "MessageStatus": "x"}, headers["x-twilio-signature"]
        )
    assert [p["MessageStatus"] for _, p, _ in received] == ["sent", "delivered"]


def test_rate_limited_is_retryable_and_never_ambiguous(
    fake: FakeTwilio, capture: FormCapture
) -> None:
    fake.script(429)
    with pytest.raises(TwilioError) as refused:
        send(client(fake, capture.base))
    err = refused.value
    assert (err.status_code, err.retryable, err.ambiguous) == (429, True, False)
    assert err.twilio_code == 20429
    assert fake.messages == {}


def test_a_server_error_is_retryable_but_ambiguous(fake: FakeTwilio, capture: FormCapture) -> None:
    fake.script(500)
    with pytest.raises(TwilioError) as refused:
        send(client(fake, capture.base))
    assert (refused.value.retryable, refused.value.ambiguous) == (True, True)


@pytest.mark.parametrize(
    ("script", "code", "cls"),
    [((400, 21211), 21211, "bad_number"), ((400, 30034), 30034, "sender")],
)
def test_a_refusal_is_permanent_with_its_code_and_class(
    fake: FakeTwilio, capture: FormCapture, module_db: Conn, script: Any, code: int, cls: str
) -> None:
    fake.script(script)
    with pytest.raises(TwilioError) as refused:
        send(client(fake, capture.base))
    err = refused.value
    assert (err.retryable, err.twilio_code) == (False, code)
    assert scalar(module_db, "select pgflow.carrier_error_class(%s)", [err.twilio_code]) == cls
    assert LEAD not in str(err)  # no full phone number in an error


def test_an_unsubscribed_lead_is_21610_opted_out(
    fake: FakeTwilio, capture: FormCapture, module_db: Conn
) -> None:
    fake.unsubscribe(LEAD)
    with pytest.raises(TwilioError) as refused:
        send(client(fake, capture.base))
    code = refused.value.twilio_code
    assert (code, scalar(module_db, "select pgflow.carrier_error_class(%s)", [code])) == (
        21610,
        "opted_out",
    )


def test_bad_credentials_need_a_person(fake: FakeTwilio, capture: FormCapture) -> None:
    twilio = TwilioClient(
        fake.account_sid, "wrong-token", public_url=capture.base, base_url=fake.url
    )
    with pytest.raises(TwilioError) as refused:
        send(twilio)
    err = refused.value
    assert (err.status_code, err.alert, err.retryable) == (401, True, False)
    assert "wrong-token" not in str(err)


def test_a_lost_answer_is_found_by_the_list_api_instead_of_sent_again(
    fake: FakeTwilio, capture: FormCapture
) -> None:
    body = "Hi Sam, still interested?"
    since = dt.datetime.now(dt.UTC)
    fake.script("lost")  # created, then the connection closes before the answer
    with pytest.raises(TwilioError) as lost:
        send(client(fake, capture.base), body)
    assert (lost.value.retryable, lost.value.ambiguous) == (True, True)

    async def look(text: str) -> Any:
        async with client(fake, capture.base) as twilio:
            return await twilio.find_sent(to=LEAD, from_=LINE, body=text, since=since)

    found = asyncio.run(look(body))
    assert found is not None
    assert found.sid in fake.messages
    assert asyncio.run(look("another text")) is None
    assert len(fake.create_requests()) == 1  # nothing sent twice


def test_fetch_reads_a_message_and_refuses_a_made_up_sid(
    fake: FakeTwilio, capture: FormCapture
) -> None:
    sent = send(client(fake, capture.base))
    fake.wait_for_status(sent.sid, "delivered")

    async def fetch(sid: str) -> Any:
        async with client(fake, capture.base) as twilio:
            return await twilio.fetch(sid)

    assert asyncio.run(fetch(sent.sid)).status == "delivered"
    with pytest.raises(ValueError, match="not a message SID"):
        asyncio.run(fetch("../Calls"))


def test_error_classes_have_a_default_and_receipts_only_move_forward(module_db: Conn) -> None:
    def error_class(code: int | None) -> str:
        return str(scalar(module_db, "select pgflow.carrier_error_class(%s)", [code]))

    def rank(status: str) -> int:
        return int(scalar(module_db, "select pgflow._provider_rank(%s)", [status]))

    assert error_class(30006) == "bad_number"
    assert error_class(30003) == "transient"
    assert error_class(30007) == "filtered"
    assert error_class(99999) == "unknown"
    assert error_class(None) == "unknown"
    order = ["queued", "sending", "sent", "delivered"]
    assert [rank(s) for s in order] == sorted(rank(s) for s in order)
    assert rank("undelivered") == rank("delivered") == rank("failed")


def test_a_send_needs_exactly_one_sender(fake: FakeTwilio, capture: FormCapture) -> None:
    twilio = client(fake, capture.base)

    async def both() -> None:
        async with twilio:
            await twilio.send(
                to=LEAD,
                body="x",
                message_id=1,
                validity_seconds=60,
                from_=LINE,
                messaging_service_sid="MG" + "0" * 32,
            )

    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(both())


def test_the_worker_has_a_twilio_client_only_with_its_three_settings() -> None:
    full = Settings.from_env(
        dotenv=None,
        env={
            "DATABASE_URL": "postgresql://x/y",
            "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
            "TWILIO_AUTH_TOKEN": "t",
            "PGFLOW_PUBLIC_URL": "https://sms.example.com/",
        },
    )
    client = transport.create_twilio(full)
    assert client is not None
    assert (
        client.status_callback(7) == "https://sms.example.com/webhooks/twilio/status?message_id=7"
    )
    asyncio.run(client.aclose())
    for missing in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PGFLOW_PUBLIC_URL"):
        env = {
            "DATABASE_URL": "postgresql://x/y",
            "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
            "TWILIO_AUTH_TOKEN": "t",
            "PGFLOW_PUBLIC_URL": "https://sms.example.com",
        }
        del env[missing]
        assert transport.create_twilio(Settings.from_env(env, dotenv=None)) is None, missing

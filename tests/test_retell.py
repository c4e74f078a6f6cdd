"""The Retell adapter against the fake Retell, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pgflow.phones import mask
from pgflow.transport.base import parse_retry_after
from pgflow.transport.retell import (
    RetellClient,
    RetellError,
    SendResult,
    sign,
    verify_signature,
)
from tests.fake_retell import FakeRetell, Step

ROOT = Path(__file__).resolve().parent.parent
FROM = "+14155550100"
TO = "+14155550123"
KEY = "key_s3cret_test_value"
FAST = httpx.Timeout(connect=1.0, read=0.2, write=1.0, pool=1.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[FakeRetell]:
    with FakeRetell(api_key=KEY) as server:
        yield server


def client_for(fake: FakeRetell, *, api_key: str | None = None) -> RetellClient:
    return RetellClient(api_key or fake.api_key, fake.url, timeout=FAST)


async def send(client: RetellClient, body: str = "Hi Ann!", **overrides: object) -> SendResult:
    args: dict[str, object] = {
        "from_number": FROM,
        "to_number": TO,
        "body": body,
        "agent_id": None,
        "metadata": {"message_id": "42"},
        "dynamic_variables": {},
    }
    args.update(overrides)
    return await client.create_sms_chat(**args)  # type: ignore[arg-type]


async def send_error(fake: FakeRetell, *, api_key: str | None = None) -> RetellError:
    async with client_for(fake, api_key=api_key) as client:
        with pytest.raises(RetellError) as info:
            await send(client)
    return info.value


# -- sending -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_send_carries_exact_text_numbers_metadata_and_bearer(fake: FakeRetell) -> None:
    text = "Hi Ann, it's Ava from SunCo - {{not_a_var}} 2 quick questions? 😊"
    async with client_for(fake) as client:
        result = await send(
            client,
            text,
            agent_id="agent_solar",
            metadata={"message_id": "42", "enrollment_id": "7"},
            dynamic_variables={"first_name": "Ann", "agent_prompt": "You are Ava."},
        )
    assert result == SendResult(chat_id="chat_1", agent_id="agent_solar", status_code=200)
    [req] = fake.sms_requests()
    assert (req.method, req.path) == ("POST", "/create-sms-chat")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert req.json == {
        "from_number": FROM,
        "to_number": TO,
        "override_agent_id": "agent_solar",
        "metadata": {"message_id": "42", "enrollment_id": "7"},
        "retell_llm_dynamic_variables": {
            "first_name": "Ann",
            "agent_prompt": "You are Ava.",
            "sms_body": text,
        },
    }
    assert json.loads(req.body) == req.json
    # The fake's agent speaks `{{sms_body}}`: the first message is our text, byte for byte.
    assert fake.chats["chat_1"]["message_with_tool_calls"][0]["content"] == text


@pytest.mark.anyio
async def test_send_without_agent_omits_override_and_body_wins(fake: FakeRetell) -> None:
    async with client_for(fake) as client:
        result = await send(client, "Exact text", dynamic_variables={"sms_body": "stale"})
        second = await send(client, "Second")
    assert result.agent_id == "agent_default"
    assert (result.chat_id, second.chat_id) == ("chat_1", "chat_2")
    first_req = fake.sms_requests()[0]
    assert "override_agent_id" not in first_req.json
    assert first_req.json["retell_llm_dynamic_variables"] == {"sms_body": "Exact text"}


@pytest.mark.anyio
@pytest.mark.parametrize("body", ["", "   \n"])
async def test_empty_body_is_refused_before_any_request(fake: FakeRetell, body: str) -> None:
    async with client_for(fake) as client:
        with pytest.raises(ValueError, match="body"):
            await send(client, body)
    assert fake.requests == []


# -- error classification ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_and_rate_limits_are_retryable(fake: FakeRetell, status: int) -> None:
    fake.script(status)
    err = await send_error(fake)
    assert (err.status_code, err.retryable, err.alert) == (status, True, False)
    assert f"HTTP {status}" in str(err)
    assert err.retry_after == (1.0 if status == 429 else None)
    assert len(fake.sms_requests()) == 1  # the adapter itself never retries


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "expected"), [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None)]
)
async def test_retry_after_header_is_parsed(
    fake: FakeRetell, value: str, expected: float | None
) -> None:
    fake.script(Step(status=503, headers={"Retry-After": value}))
    err = await send_error(fake)
    assert err.retryable
    assert err.retry_after == expected


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    value = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(value, now=now) == pytest.approx(30.0)
    assert parse_retry_after(None) is None


@pytest.mark.anyio
async def test_timeout_is_retryable(fake: FakeRetell) -> None:
    fake.script(Step(delay=5.0))
    started = time.monotonic()
    err = await send_error(fake)
    assert time.monotonic() - started < 2.0
    assert (err.status_code, err.retryable, err.alert) == (None, True, False)
    assert "timed out" in str(err)


@pytest.mark.anyio
async def test_dropped_connection_is_retryable(fake: FakeRetell) -> None:
    fake.script(Step(drop=True))
    err = await send_error(fake)
    assert (err.status_code, err.retryable) == (None, True)
    assert "transport error" in str(err)
    # After the script the fake succeeds again, and the same client recovers.
    async with client_for(fake) as client:
        assert (await send(client)).chat_id == "chat_1"


@pytest.mark.anyio
async def test_connection_refused_is_retryable() -> None:
    with FakeRetell() as gone:
        url = gone.url
    async with RetellClient("k", url, timeout=FAST) as client:
        with pytest.raises(RetellError) as info:
            await send(client)
    assert (info.value.status_code, info.value.retryable) == (None, True)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_client_errors_are_permanent(fake: FakeRetell, status: int) -> None:
    fake.script(status)
    err = await send_error(fake)
    assert (err.status_code, err.retryable, err.alert) == (status, False, False)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 402])
async def test_auth_and_payment_errors_are_permanent_and_alert(
    fake: FakeRetell, status: int
) -> None:
    fake.script(status)
    err = await send_error(fake)
    assert (err.status_code, err.retryable, err.alert) == (status, False, True)


@pytest.mark.anyio
async def test_wrong_key_is_a_real_401(fake: FakeRetell) -> None:
    err = await send_error(fake, api_key="key_wrong")
    assert (err.status_code, err.retryable, err.alert) == (401, False, True)
    assert "Unauthorized" in str(err)
    [req] = fake.sms_requests()  # recorded although refused
    assert req.headers["authorization"] == "Bearer key_wrong"
    assert "key_wrong" not in str(err)


@pytest.mark.anyio
async def test_invalid_number_is_a_400_from_the_fake(fake: FakeRetell) -> None:
    async with client_for(fake) as client:
        with pytest.raises(RetellError) as info:
            await send(client, to_number="4155550123")
    assert (info.value.status_code, info.value.retryable) == (400, False)
    assert "to_number" in str(info.value)
    assert "4155550123" not in str(info.value)


@pytest.mark.anyio
async def test_error_message_hides_key_and_numbers_and_is_bounded(fake: FakeRetell) -> None:
    leaky = f"Number {TO} (from {FROM}) rejected for key {KEY}; call 4155550199. " + "x" * 2000
    fake.script(Step(status=422, body={"status": "error", "message": leaky}))
    err = await send_error(fake)
    text = str(err)
    assert "HTTP 422" in text
    assert "rejected for key" in text
    assert KEY not in text
    for number in (TO, FROM, TO[1:], FROM[1:], "4155550199"):
        assert number not in text
    assert mask(TO) in text
    assert len(text) < 600
    assert KEY not in repr(err)


@pytest.mark.anyio
async def test_error_without_retell_body_still_names_the_status(fake: FakeRetell) -> None:
    fake.script(Step(status=502, body="<html>bad gateway</html>", headers={"Content-Type": "x"}))
    err = await send_error(fake)
    assert str(err).startswith("Retell create-sms-chat: HTTP 502")
    assert err.retryable


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body", [{"agent_id": "agent_x"}, {"chat_id": 17}, {"chat_id": ""}, "not json", [1, 2]]
)
async def test_success_without_chat_id_is_a_permanent_error(fake: FakeRetell, body: object) -> None:
    fake.script(Step(status=200, body=body))
    err = await send_error(fake)
    assert (err.status_code, err.retryable, err.alert) == (200, False, False)
    assert "malformed response" in str(err)


# -- end / get ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_get_and_end_chat(fake: FakeRetell) -> None:
    async with client_for(fake) as client:
        sent = await send(client, "Hello there")
        chat = await client.get_chat(sent.chat_id)
        assert chat["chat_status"] == "ongoing"
        assert chat["metadata"] == {"message_id": "42"}
        await client.end_chat(sent.chat_id)
        assert (await client.get_chat(sent.chat_id))["chat_status"] == "ended"
        with pytest.raises(RetellError) as info:
            await client.get_chat("chat_nope")
        assert (info.value.status_code, info.value.retryable) == (404, False)
        with pytest.raises(RetellError) as ended:
            await client.end_chat("chat_nope")
        assert ended.value.status_code == 404
    methods = [(r.method, r.path) for r in fake.requests]
    assert ("PATCH", "/end-chat/chat_1") in methods
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in fake.requests)


# -- the fake itself ----------------------------------------------------------------------------


def test_fake_records_failed_requests_and_waits(fake: FakeRetell) -> None:
    fake.script(500)
    with httpx.Client(base_url=fake.url) as http:
        assert http.post("/create-sms-chat", content=b"{oops").status_code == 500
        bad = http.post("/create-sms-chat", content=b"{oops", headers={"authorization": "x"})
        assert bad.status_code == 401
        assert bad.json() == {"status": "error", "message": "Unauthorized"}
        malformed = http.post(
            "/create-sms-chat", content=b"{oops", headers={"authorization": f"Bearer {KEY}"}
        )
        assert malformed.status_code == 400
    got = fake.wait_for_requests(3, timeout=1.0)
    assert [r.body for r in got] == [b"{oops"] * 3
    assert all(r.json is None for r in got)
    assert got[0].received_at <= got[1].received_at <= got[2].received_at
    with pytest.raises(AssertionError, match="expected 4 request"):
        fake.wait_for_requests(4, timeout=0.05)


def test_fake_default_step_applies_after_the_script(fake: FakeRetell) -> None:
    fake.script(429)
    fake.set_default(503)
    auth = {"authorization": f"Bearer {KEY}"}
    body = {"from_number": FROM, "to_number": TO}
    with httpx.Client(base_url=fake.url, headers=auth) as http:
        statuses = [http.post("/create-sms-chat", json=body).status_code for _ in range(3)]
        fake.set_default(None)
        statuses.append(http.post("/create-sms-chat", json=body).status_code)
    assert statuses == [429, 503, 503, 200]


# -- signatures ---------------------------------------------------------------------------------

NOW = 1_700_000_000_000
BODY = b'{"event":"chat_ended","chat":{"chat_id":"chat_1"}}'


def test_sign_format_matches_hmac_of_body_plus_timestamp() -> None:
    header = sign(BODY, KEY, NOW)
    digest = hmac.new(KEY.encode(), BODY + str(NOW).encode(), hashlib.sha256).hexdigest()
    assert header == f"v={NOW},d={digest}"


def test_verify_round_trip() -> None:
    header = sign(BODY, KEY, NOW)
    assert verify_signature(BODY, header, KEY, now_ms=NOW)
    assert verify_signature(BODY, header, KEY, now_ms=NOW + 300_000)  # edge of the window
    assert verify_signature(BODY, header, KEY, now_ms=NOW - 300_000)
    assert verify_signature(
        BODY, header.upper().replace("V=", "v=").replace("D=", "d="), KEY, now_ms=NOW
    )
    assert verify_signature(BODY, sign(BODY, KEY, int(time.time() * 1000)), KEY)  # real clock


def test_verify_rejects_tampered_body_wrong_key_and_stale_timestamps() -> None:
    header = sign(BODY, KEY, NOW)
    assert not verify_signature(BODY + b" ", header, KEY, now_ms=NOW)
    assert not verify_signature(BODY.replace(b"chat_1", b"chat_2"), header, KEY, now_ms=NOW)
    assert not verify_signature(BODY, header, "key_other", now_ms=NOW)
    assert not verify_signature(BODY, header, "", now_ms=NOW)
    assert not verify_signature(BODY, header, KEY, now_ms=NOW + 300_001)
    assert not verify_signature(BODY, header, KEY, now_ms=NOW - 300_001)
    assert not verify_signature(BODY, sign(BODY, KEY, NOW - 3_600_000), KEY)  # real clock
    # The timestamp is part of what is signed: moving it breaks the digest.
    moved = header.replace(f"v={NOW}", f"v={NOW + 1}")
    assert not verify_signature(BODY, moved, KEY, now_ms=NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"v={NOW}",
        "d=" + "0" * 64,
        f"v={NOW},d=",
        f"v={NOW},d=xyz",
        f"v={NOW},d={'0' * 63}",
        f"v=abc,d={'0' * 64}",
        f"v=-{NOW},d={'0' * 64}",
        f"v={NOW},v={NOW},d={'0' * 64}",
        f"v={NOW},d={'é' * 64}",
        "v=" + "\u0661" * 13 + ",d=" + "0" * 64,  # non-ASCII digits
        f"v={NOW};d={'0' * 64}",
    ],
)
def test_verify_rejects_garbled_headers(header: str | None) -> None:
    assert not verify_signature(BODY, header, KEY, now_ms=NOW)


def test_fake_signs_webhooks_like_retell(fake: FakeRetell) -> None:
    payload = {"event": "chat_inbound", "chat_inbound": {"from_number": TO, "to_number": FROM}}
    body, headers = fake.signed_webhook(payload, timestamp_ms=NOW)
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == payload
    assert headers["x-retell-signature"] == sign(body, KEY, NOW)
    assert verify_signature(body, headers["x-retell-signature"], KEY, now_ms=NOW)
    _, other = fake.signed_webhook(payload, api_key="key_other")
    assert not verify_signature(body, other["x-retell-signature"], KEY)

    # post_webhook sends exactly those bytes (here to the fake, which wants a bearer: 401).
    response = fake.post_webhook(f"{fake.url}/hook", payload)
    assert response.status_code == 401
    [req] = fake.wait_for_requests(1, path="/hook")
    assert req.json == payload
    assert verify_signature(req.body, req.headers["x-retell-signature"], KEY)


# -- masking ------------------------------------------------------------------------------------


# -- the fake as a separate process -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.anyio
async def test_fake_runs_as_a_process(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.fake_retell", "--port", "0", "--api-key", "K"),
            *("--log", str(log), "--script", "500"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:"), line
        url = line.removeprefix("READY ")
        async with RetellClient("K", url, timeout=FAST) as client:
            with pytest.raises(RetellError) as info:
                await send(client)
            assert info.value.status_code == 500
            assert (await send(client, "From afar")).chat_id == "chat_1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["method"], x["path"]) for x in lines] == [("POST", "/create-sms-chat")] * 2
    assert lines[1]["json"]["retell_llm_dynamic_variables"]["sms_body"] == "From afar"
    assert lines[1]["headers"]["authorization"] == "Bearer K"

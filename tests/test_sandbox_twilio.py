"""The sandbox's Twilio face, driven by the real TwilioClient: sends land on the lead's phone
beside Retell's texts, signed status callbacks follow in order, scripted failures, lists and
fetches, our numbers' SmsUrl, and the lead's texts as Twilio's signed inbound webhook with
its STOP/START/HELP handling. Callbacks are caught by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import typer
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from pgflow.cli import sandbox as sandbox_cli
from pgflow.config import (
    SANDBOX_API_KEY,
    SANDBOX_BASE_URL,
    SANDBOX_PUBLIC_URL,
    SANDBOX_TWILIO_ACCOUNT_SID,
    Settings,
)
from pgflow.sandbox import Sandbox
from pgflow.sandbox.twilio_book import AUTO_REPLIES
from pgflow.transport.sandbox import SandboxClient
from pgflow.transport.twilio import TwilioClient, TwilioError, TwilioMessage
from tests.test_fake_twilio import FormCapture

KEY = "sandbox-key"  # the sandbox's Retell key, and so its Twilio auth token
LEAD = "+12125550147"
OTHER = "+12125550148"
LINE = "+14155550100"
RETELL_LINE = "+14155550199"


@pytest.fixture
def capture() -> Iterator[FormCapture]:
    with FormCapture() as server:
        yield server


@pytest.fixture
def sandbox(capture: FormCapture) -> Iterator[Sandbox]:
    box = Sandbox(
        KEY,
        webhook_url=f"{capture.base}/webhooks/retell",
        numbers=[RETELL_LINE],
        unique_ids=False,
        webhook_retry_delay=0.05,
    )
    with box:
        yield box


def client(box: Sandbox, public_url: str, token: str = KEY) -> TwilioClient:
    timeout = httpx.Timeout(5.0)
    sid = SANDBOX_TWILIO_ACCOUNT_SID
    return TwilioClient(sid, token, public_url=public_url, base_url=box.url, timeout=timeout)


def run(box: Sandbox, public_url: str, call: Callable[[TwilioClient], Any], **kw: Any) -> Any:
    """One call of the real client, in an event loop of its own."""

    async def go() -> Any:
        async with client(box, public_url, **kw) as twilio:
            return await call(twilio)

    return asyncio.run(go())


def send(box: Sandbox, public_url: str, to: str = LEAD, body: str = "Hi Sam!", mid: int = 7) -> Any:
    return run(
        box,
        public_url,
        lambda t: t.send(to=to, body=body, message_id=mid, validity_seconds=3600, from_=LINE),
    )


def say(box: Sandbox, lead: str, line: str, text: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with SandboxClient(KEY, box.url) as lead_side:
            return await lead_side.say(lead, line, text)

    return asyncio.run(go())


def wait_for_posts(capture: FormCapture, path: str, n: int, timeout: float = 5.0) -> list[Any]:
    """Poll until `n` POSTs to `path` arrived (background callbacks), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while len(found := posts_to(capture, path)) < n:
        assert time.monotonic() < deadline, f"{len(found)} of {n} POSTs to {path}"
        time.sleep(0.01)
    return found


def signed(received: tuple[str, dict[str, str], dict[str, str]], token: str = KEY) -> bool:
    url, params, headers = received
    validator = RequestValidator(token)
    return bool(validator.validate(url, params, headers["x-twilio-signature"]))


def posts_to(capture: FormCapture, path: str) -> list[tuple[str, dict[str, str], Any]]:
    return [r for r in capture.received if r[0].split("?")[0].endswith(path)]


def test_a_send_lands_on_the_phone_then_signed_statuses_follow(
    sandbox: Sandbox, capture: FormCapture
) -> None:
    retell = httpx.post(
        f"{sandbox.url}/create-sms-chat",
        json={
            "from_number": RETELL_LINE,
            "to_number": LEAD,
            "retell_llm_dynamic_variables": {"sms_body": "Hi from Retell"},
        },
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert retell.status_code == 200
    message = send(sandbox, capture.base, body="Hi Sam, it's Ava!")
    assert isinstance(message, TwilioMessage)
    assert message.sid.startswith("SM")
    assert len(message.sid) == 34
    assert (message.status, message.to, message.from_) == ("queued", LEAD, LINE)
    assert message.body == "Hi Sam, it's Ava!"
    assert message.num_segments == 1
    assert message.error_code is None
    assert message.date_created is not None
    texts = sandbox.phone(LEAD)
    assert [(t["text"], t["transport"]) for t in texts] == [
        ("Hi from Retell", "retell"),
        ("Hi Sam, it's Ava!", "twilio"),
    ]
    assert texts[1]["message_sid"] == message.sid
    assert texts[1]["line"] == LINE

    callbacks = wait_for_posts(capture, "/webhooks/twilio/status", 2)
    assert [c[1]["MessageStatus"] for c in callbacks] == ["sent", "delivered"]
    for url, params, headers in callbacks:
        assert url == f"{capture.base}/webhooks/twilio/status?message_id=7"
        assert signed((url, params, headers))
        assert not signed((url, params, headers), token="another-token")
        assert params["MessageSid"] == params["SmsSid"] == message.sid
        assert params["AccountSid"] == SANDBOX_TWILIO_ACCOUNT_SID
        assert (params["From"], params["To"], params["ApiVersion"]) == (LINE, LEAD, "2010-04-01")
        assert "ErrorCode" not in params
    fetched = run(sandbox, capture.base, lambda t: t.fetch(message.sid))
    assert fetched.status == "delivered"
    assert fetched.sid == message.sid


def test_scripted_outcomes_and_refusals(sandbox: Sandbox, capture: FormCapture) -> None:
    sandbox.twilio.outcome(OTHER, "undelivered", 30006)
    lost = send(sandbox, capture.base, to=OTHER, mid=8)
    sandbox.twilio.hooks.wait_idle()
    callbacks = [c[1] for c in posts_to(capture, "/webhooks/twilio/status")]
    assert [(c["MessageStatus"], c.get("ErrorCode")) for c in callbacks] == [
        ("sent", None),
        ("undelivered", "30006"),
    ]
    assert all(signed(c) for c in posts_to(capture, "/webhooks/twilio/status"))
    assert sandbox.phone(OTHER) == []  # it never reached the handset
    assert run(sandbox, capture.base, lambda t: t.fetch(lost.sid)).error_code == 30006

    sandbox.twilio.refuse(LEAD, 21211)
    with pytest.raises(TwilioError) as refused:
        send(sandbox, capture.base)
    assert (refused.value.status_code, refused.value.twilio_code) == (400, 21211)
    assert not refused.value.retryable
    assert not refused.value.ambiguous
    # the same scripts over HTTP, for a sandbox in another process
    auth = (SANDBOX_TWILIO_ACCOUNT_SID, KEY)
    cleared = httpx.post(
        f"{sandbox.url}/sandbox/twilio/script", json={"to": LEAD, "clear": True}, auth=auth
    )
    assert cleared.json() == {
        "to": LEAD,
        "outcome": "delivered",
        "error_code": None,
        "refuse": None,
        "status": None,
    }
    assert send(sandbox, capture.base).status == "queued"
    scripted = httpx.post(
        f"{sandbox.url}/sandbox/twilio/script",
        json={"to": LEAD, "outcome": "failed", "error_code": 30007},
        auth=auth,
    )
    assert scripted.json()["outcome"] == "failed"
    assert scripted.json()["error_code"] == 30007


def test_credentials_and_unknowns_answer_twilio_errors(
    sandbox: Sandbox, capture: FormCapture
) -> None:
    with pytest.raises(TwilioError) as unauthorized:
        run(sandbox, capture.base, lambda t: t.fetch("SM" + "0" * 32), token="wrong")
    assert (unauthorized.value.status_code, unauthorized.value.twilio_code) == (401, 20003)
    assert unauthorized.value.alert
    assert "wrong" not in unauthorized.value.message
    answer = httpx.get(f"{sandbox.url}/2010-04-01/Accounts/{SANDBOX_TWILIO_ACCOUNT_SID}.json")
    assert answer.status_code == 401
    assert answer.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    with pytest.raises(TwilioError) as unknown:
        run(sandbox, capture.base, lambda t: t.fetch("SM" + "0" * 32))
    assert (unknown.value.status_code, unknown.value.twilio_code) == (404, 20404)
    with pytest.raises(TwilioError) as service:
        run(
            sandbox,
            capture.base,
            lambda t: t.send(
                to=LEAD, body="hi", message_id=1, validity_seconds=60, messaging_service_sid="MG1"
            ),
        )
    assert service.value.status_code == 400


def test_lists_newest_first_and_find_the_lost_send(sandbox: Sandbox, capture: FormCapture) -> None:
    since = dt.datetime.now(dt.UTC)
    first = send(sandbox, capture.base, body="one", mid=1)
    second = send(sandbox, capture.base, body="two", mid=2)
    send(sandbox, capture.base, to=OTHER, body="three", mid=3)
    found = run(
        sandbox, capture.base, lambda t: t.find_sent(to=LEAD, from_=LINE, body="one", since=since)
    )
    assert found is not None
    assert found.sid == first.sid
    path = f"{sandbox.url}/2010-04-01/Accounts/{SANDBOX_TWILIO_ACCOUNT_SID}/Messages.json"
    auth = (SANDBOX_TWILIO_ACCOUNT_SID, KEY)
    page = httpx.get(path, params={"To": LEAD, "PageSize": "1"}, auth=auth).json()
    assert [m["sid"] for m in page["messages"]] == [second.sid]
    assert page["next_page_uri"] is not None
    every = httpx.get(path, params={"To": LEAD, "From": LINE}, auth=auth).json()
    assert [m["sid"] for m in every["messages"]] == [second.sid, first.sid]
    assert every["next_page_uri"] is None


def test_our_numbers_are_listed_and_their_sms_url_set(
    sandbox: Sandbox, capture: FormCapture
) -> None:
    number = run(sandbox, capture.base, lambda t: t.find_number(RETELL_LINE))
    assert number is not None
    assert number.sid.startswith("PN")
    assert number.sms_url is None
    assert run(sandbox, capture.base, lambda t: t.find_number("+15550001111")) is None
    assert not sandbox.twilio.is_line(RETELL_LINE)
    custom = f"{capture.base}/custom/inbound"
    updated = run(sandbox, capture.base, lambda t: t.set_number_sms_url(number.sid, custom))
    assert (updated.sid, updated.sms_url, updated.sms_method) == (number.sid, custom, "POST")
    assert sandbox.twilio.is_line(RETELL_LINE)
    answer = say(sandbox, LEAD, RETELL_LINE, "hello?")
    assert answer["result"] == "delivered"
    assert answer["transport"] == "twilio"
    [(url, params, headers)] = posts_to(capture, "/custom/inbound")
    assert url == custom
    assert signed((url, params, headers))


def test_the_lead_texts_a_twilio_line_and_stop_blocks_the_pair(
    sandbox: Sandbox, capture: FormCapture
) -> None:
    send(sandbox, capture.base)  # LINE sends through Twilio: it is a Twilio line now
    answer = say(sandbox, LEAD, LINE, "hello there")
    assert answer["result"] == "delivered"
    assert answer["opt_out_type"] is None
    [(url, params, headers)] = posts_to(capture, "/webhooks/twilio/inbound")
    assert url == f"{capture.base}/webhooks/twilio/inbound"
    assert signed((url, params, headers))
    assert params["MessageSid"] == params["SmsSid"] == answer["message_sid"]
    assert (params["From"], params["To"], params["Body"]) == (LEAD, LINE, "hello there")
    assert (params["NumMedia"], params["NumSegments"]) == ("0", "1")
    assert params["AccountSid"] == SANDBOX_TWILIO_ACCOUNT_SID
    assert "OptOutType" not in params

    stop = say(sandbox, LEAD, LINE, " stop ")
    assert stop["opt_out_type"] == "STOP"
    assert posts_to(capture, "/webhooks/twilio/inbound")[-1][1]["OptOutType"] == "STOP"
    assert sandbox.phone(LEAD)[-2:] == [
        {**sandbox.phone(LEAD)[-2], "direction": "from_lead", "text": " stop "},
        {**sandbox.phone(LEAD)[-1], "direction": "to_lead", "text": AUTO_REPLIES["STOP"]},
    ]
    with pytest.raises(TwilioError) as blocked:
        send(sandbox, capture.base, body="one more?")
    assert (blocked.value.status_code, blocked.value.twilio_code) == (400, 21610)

    assert say(sandbox, LEAD, LINE, "HELP")["opt_out_type"] == "HELP"
    assert sandbox.phone(LEAD)[-1]["text"] == AUTO_REPLIES["HELP"]
    assert say(sandbox, LEAD, LINE, "START")["opt_out_type"] == "START"
    assert posts_to(capture, "/webhooks/twilio/inbound")[-1][1]["OptOutType"] == "START"
    assert sandbox.phone(LEAD)[-1]["text"] == AUTO_REPLIES["START"]
    assert send(sandbox, capture.base, body="welcome back").status == "queued"
    assert say(sandbox, LEAD, LINE, "please stop texting")["opt_out_type"] is None


def test_say_keeps_the_retell_path_for_other_lines(sandbox: Sandbox, capture: FormCapture) -> None:
    answer = say(sandbox, LEAD, RETELL_LINE, "hi")
    assert answer["result"] == "delivered"
    assert answer["chat_id"] is not None
    assert "transport" not in answer
    assert posts_to(capture, "/webhooks/twilio/inbound") == []


def test_a_callback_that_cannot_connect_is_tried_once_more(sandbox: Sandbox) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    send(sandbox, closed)
    sandbox.twilio.hooks.wait_idle()
    tries = [(p.params["MessageStatus"], p.attempt) for p in sandbox.twilio.hooks.posts("status")]
    assert tries == [("sent", 0), ("sent", 1), ("delivered", 0), ("delivered", 1)]
    assert all(p.status is None for p in sandbox.twilio.hooks.posts("status"))


def test_pgflow_sandbox_say_takes_the_twilio_path(sandbox: Sandbox, capture: FormCapture) -> None:
    sandbox.twilio.add_line(LINE)
    cli = typer.Typer()
    cli.add_typer(sandbox_cli.app, name="sandbox")
    env = {
        "DATABASE_URL": "postgresql://unused",
        "PGFLOW_SMS_TRANSPORT": "sandbox",
        "RETELL_BASE_URL": sandbox.url,
        "RETELL_API_KEY": KEY,
    }
    result = CliRunner().invoke(
        cli, ["sandbox", "say", LEAD, "STOP", "--to", LINE, "--wait", "2"], env=env
    )
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())  # however the console wrapped it
    assert f"{LINE} -> +1212***0147: {AUTO_REPLIES['STOP']}" in shown
    assert posts_to(capture, "/webhooks/twilio/inbound")[-1][1]["OptOutType"] == "STOP"


def test_sandbox_mode_needs_no_twilio_settings() -> None:
    base = {"DATABASE_URL": "postgresql://x", "PGFLOW_SMS_TRANSPORT": "sandbox"}
    settings = Settings.from_env(base, dotenv=None)
    assert settings.twilio_account_sid == SANDBOX_TWILIO_ACCOUNT_SID
    assert settings.twilio_auth_token == SANDBOX_API_KEY
    assert settings.twilio_base_url == SANDBOX_BASE_URL == settings.retell_base_url
    assert settings.public_url == SANDBOX_PUBLIC_URL
    moved = Settings.from_env({**base, "RETELL_BASE_URL": "http://127.0.0.1:9999"}, dotenv=None)
    assert moved.twilio_base_url == "http://127.0.0.1:9999"  # one server serves both
    explicit = {
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": "tok",
        "TWILIO_BASE_URL": "http://127.0.0.1:7000/",
        "PGFLOW_PUBLIC_URL": "https://sms.example.com/",
    }
    mine = Settings.from_env({**base, **explicit}, dotenv=None)
    assert (mine.twilio_account_sid, mine.twilio_auth_token) == ("AC" + "1" * 32, "tok")
    assert (mine.twilio_base_url, mine.public_url) == (
        "http://127.0.0.1:7000",
        "https://sms.example.com",
    )
    real = Settings.from_env({"DATABASE_URL": "postgresql://x"}, dotenv=None)
    assert (real.twilio_account_sid, real.twilio_auth_token, real.public_url) == (None, None, None)
    assert real.twilio_base_url == "https://api.twilio.com"
    box = Sandbox(KEY, webhook_url="http://127.0.0.1:8123/webhooks/retell")
    assert box.public_url == "http://127.0.0.1:8123"
    box.public_url = "http://127.0.0.1:9000/"
    assert box.public_url == "http://127.0.0.1:9000"

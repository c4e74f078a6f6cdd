"""The fake Twilio (tests/fake_twilio.py) pinned to the real API with the official `twilio`
SDK: a real `twilio.rest.Client` aimed at the fake creates, lists and fetches typed
`MessageInstance`s; the resources carry exactly the keys the SDK reads; errors come back as
`TwilioRestException` with Twilio's codes; the callbacks and inbound webhooks the fake posts
pass `RequestValidator.validate`. No database."""

from __future__ import annotations

import datetime as dt
import http.server
import inspect
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.rest.api.v2010.account.incoming_phone_number import IncomingPhoneNumberInstance
from twilio.rest.api.v2010.account.message import MessageInstance

from tests.fake_twilio import API_VERSION, SIGNATURE_HEADER, FakeTwilio, segments

LEAD = "+12125550147"
OTHER = "+12125550148"
LINE = "+14155550100"
SERVICE = "MG" + "a" * 32
SID = re.compile(r"^SM[0-9a-f]{32}$")
PAGE_KEYS = {
    "messages",
    "first_page_uri",
    "next_page_uri",
    "page",
    "page_size",
    "previous_page_uri",
    "start",
    "end",
    "uri",
}


def sdk_keys(instance: type = MessageInstance) -> set[str]:
    """The payload keys `instance.__init__` reads: a resource's whole shape."""
    return set(re.findall(r'payload\.get\(\s*"(\w+)"', inspect.getsource(instance)))


def sdk_client(fake: FakeTwilio, token: str | None = None, timeout: float = 5.0) -> Client:
    """The supported seam: `Domain.base_url` is a plain attribute that `absolute_url` reads
    on every request (next_page_uri too), so aiming the Api domain at the fake is enough."""
    client = Client(
        fake.account_sid,
        fake.auth_token if token is None else token,
        http_client=TwilioHttpClient(timeout=timeout),
    )
    client.api.base_url = fake.url
    return client


class FormCapture:
    """A real HTTP server on 127.0.0.1 that records form POSTs (full URL, params, headers)
    and answers `status` with `body`."""

    def __init__(self, status: int = 200, body: str = "<Response/>") -> None:
        self.received: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                host = self.headers["Host"]
                with outer._cond:
                    outer.received.append(
                        (
                            f"http://{host}{self.path}",
                            dict(parse_qsl(raw, keep_blank_values=True)),
                            {k.lower(): v for k, v in self.headers.items()},
                        )
                    )
                    outer._cond.notify_all()
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> FormCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[tuple[str, dict[str, str], Any]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= n, timeout):
                raise AssertionError(f"expected {n} POSTs, got {len(self.received)}")
            return list(self.received)


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


@pytest.fixture
def capture() -> Iterator[FormCapture]:
    with FormCapture() as server:
        yield server


@pytest.fixture
def client(fake: FakeTwilio) -> Client:
    return sdk_client(fake)


def valid(fake: FakeTwilio, url: str, params: dict[str, str], signature: str) -> bool:
    return bool(RequestValidator(fake.auth_token).validate(url, params, signature))


# --- create, list, fetch --------------------------------------------------------------------


def test_create_returns_a_typed_message_in_twilios_shape(
    fake: FakeTwilio, client: Client, capture: FormCapture
) -> None:
    callback = f"{capture.base}/twilio/status?oid=7"
    message = client.messages.create(
        to=LEAD, from_=LINE, body="Hi Ann, it's Bo", status_callback=callback, validity_period=600
    )

    assert isinstance(message, MessageInstance)
    assert SID.match(message.sid or "")
    assert message.account_sid == fake.account_sid
    assert re.fullmatch(r"AC[0-9a-f]{32}", fake.account_sid)
    assert (message.to, message.from_, message.body) == (LEAD, LINE, "Hi Ann, it's Bo")
    assert message.status == "queued"
    assert message.direction == "outbound-api"
    assert (message.num_segments, message.num_media) == ("1", "0")
    assert message.messaging_service_sid is None
    assert message.date_sent is None
    assert message.error_code is None
    assert message.error_message is None
    assert message.price is None
    assert message.api_version == API_VERSION
    assert message.date_created is not None
    assert message.date_created.tzinfo == dt.UTC
    assert message.date_updated == message.date_created
    assert message.uri == f"/2010-04-01/Accounts/{fake.account_sid}/Messages/{message.sid}.json"
    assert message.subresource_uris is not None
    assert "media" in message.subresource_uris

    [request] = fake.create_requests()
    assert request.form == {
        "To": LEAD,
        "From": LINE,
        "Body": "Hi Ann, it's Bo",
        "StatusCallback": callback,
        "ValidityPeriod": "600",
    }
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"].startswith("twilio-python/")
    # the raw resource: RFC 2822 dates, and not one key the SDK does not read
    raw = fake.message(message.sid or "")
    assert set(raw) == sdk_keys()
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", raw["date_created"])


def test_list_and_fetch_give_typed_messages_newest_first(fake: FakeTwilio, client: Client) -> None:
    fake.outcome(LEAD, "queued")  # keep them queued: date_sent stays null
    sids = [
        client.messages.create(to=to, from_=LINE, body=f"text {i}").sid
        for i, to in enumerate([LEAD, OTHER, LEAD])
    ]

    to_lead = client.messages.list(to=LEAD)
    assert [m.sid for m in to_lead] == [sids[2], sids[0]]
    assert all(isinstance(m, MessageInstance) for m in to_lead)
    assert to_lead[0].body == "text 2"
    assert to_lead[0].date_sent is None
    # a page size of 1 makes the SDK follow next_page_uri (on the fake: base_url is kept)
    assert [m.sid for m in client.messages.list(page_size=1)] == sids[::-1]
    assert [m.sid for m in client.messages.list(from_=LINE, limit=2)] == sids[:0:-1]
    # a message not yet sent has no date_sent: no DateSent filter finds it
    assert client.messages.list(to=LEAD, date_sent=dt.datetime.now(dt.UTC)) == []

    fetched = client.messages(sids[1]).fetch()
    assert isinstance(fetched, MessageInstance)
    assert (fetched.sid, fetched.to, fetched.body) == (sids[1], OTHER, "text 1")

    page = httpx.get(
        f"{fake.url}{fake.messages_path}",
        params={"To": LEAD, "PageSize": 1},
        auth=(fake.account_sid, fake.auth_token),
    ).json()
    assert set(page) == PAGE_KEYS
    assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 1, 0, 0)
    assert page["next_page_uri"].startswith(fake.messages_path + "?To=")
    assert page["previous_page_uri"] is None

    with pytest.raises(TwilioRestException) as missing:
        client.messages("SM" + "0" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)


def test_bad_credentials_get_401_20003(fake: FakeTwilio) -> None:
    bad = sdk_client(fake, token="not-the-token")
    with pytest.raises(TwilioRestException) as refused:
        bad.messages.create(to=LEAD, from_=LINE, body="hi")
    assert (refused.value.status, refused.value.code) == (401, 20003)
    assert "Authenticate" in refused.value.msg
    # a list error is not a TwilioRestException: Page.process_response raises the base class
    with pytest.raises(TwilioException) as listed:
        bad.messages.list()
    assert not isinstance(listed.value, TwilioRestException)

    response = httpx.post(f"{fake.url}{fake.messages_path}", data={"To": LEAD, "Body": "x"})
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert fake.messages == {}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "12125550147"}, 21211),
        ({"to": "+1 212 555 0147"}, 21211),
        ({"to": ""}, 21604),
        ({"body": None}, 21602),
        ({"from_": None}, 21603),
        ({"from_": "not a sender!"}, 21212),
        ({"body": "x" * 1601}, 21617),
        ({"validity_period": 36001}, 21624),
        ({"status_callback": "ftp://example.com/cb"}, 21609),
        ({"to": "+15005550009"}, 21614),  # Twilio's magic test number: not a mobile
        ({"to": "+15005550004"}, 21610),
    ],
)
def test_validation_errors_are_twilio_rest_exceptions(
    fake: FakeTwilio, client: Client, kwargs: dict[str, Any], code: int
) -> None:
    args: dict[str, Any] = {"to": LEAD, "from_": LINE, "body": "hi", **kwargs}
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(**{k: v for k, v in args.items() if v is not None})
    assert (refused.value.status, refused.value.code) == (400, code)
    assert fake.messages == {}


def test_unsubscribed_recipient_gets_21610_until_resubscribed(
    fake: FakeTwilio, client: Client
) -> None:
    fake.unsubscribe(LEAD)
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to=LEAD, from_=LINE, body="hi")
    assert (refused.value.status, refused.value.code) == (400, 21610)
    assert "unsubscribed" in refused.value.msg
    assert client.messages.create(to=OTHER, from_=LINE, body="hi").status == "queued"

    fake.resubscribe(LEAD)
    assert client.messages.create(to=LEAD, from_=LINE, body="hi").status == "queued"


# --- incoming phone numbers -----------------------------------------------------------------

RETELL_HOOK = "https://api.retellai.com/twilio-sms-webhook/agent_x"
OUR_HOOK = "https://sms.example.com/webhooks/twilio/inbound"
NUMBER_PAGE_KEYS = (PAGE_KEYS - {"messages"}) | {"incoming_phone_numbers"}


def test_numbers_are_listed_and_updated_through_the_sdk(fake: FakeTwilio, client: Client) -> None:
    voice = "https://voice.example.com/status"
    sid = fake.add_number(LINE, sms_url=RETELL_HOOK, status_callback=voice)
    other = fake.add_number("+14155550199")  # a new number: no SMS URL ("", as Twilio has it)

    [found] = client.incoming_phone_numbers.list(phone_number=LINE)
    assert isinstance(found, IncomingPhoneNumberInstance)
    assert (found.sid, found.phone_number, found.sms_url, found.sms_method) == (
        sid,
        LINE,
        RETELL_HOOK,
        "POST",
    )
    assert (found.status_callback, found.sms_fallback_url, found.sms_application_sid) == (
        voice,
        "",
        "",
    )
    assert client.incoming_phone_numbers.list(phone_number=OTHER) == []
    # Twilio's filter: a part of a number matches, `*` is any digit
    assert {n.sid for n in client.incoming_phone_numbers.list(phone_number="415555")} == {
        sid,
        other,
    }
    assert [n.sid for n in client.incoming_phone_numbers.list(phone_number="+1415555019*")] == [
        other
    ]
    # a page size of 1: the SDK follows next_page_uri
    assert [n.sid for n in client.incoming_phone_numbers.list(page_size=1)] == [sid, other]

    updated = client.incoming_phone_numbers(sid).update(sms_url=OUR_HOOK, sms_method="POST")
    assert isinstance(updated, IncomingPhoneNumberInstance)
    assert (updated.sid, updated.sms_url, updated.sms_method) == (sid, OUR_HOOK, "POST")
    assert updated.status_callback == voice  # what the update does not name stays
    assert client.incoming_phone_numbers(sid).fetch().sms_url == OUR_HOOK
    assert fake.number(LINE)["sms_url"] == OUR_HOOK
    assert fake.numbers[LINE]["status_callback"] == voice
    [update] = fake.number_requests("POST")
    assert update.path.endswith(f"/Accounts/{fake.account_sid}/IncomingPhoneNumbers/{sid}.json")
    assert update.form == {"SmsUrl": OUR_HOOK, "SmsMethod": "POST"}
    reads = fake.number_requests("GET")
    assert reads[0].query["PhoneNumber"] == LINE  # the SDK's "+" arrives as a "+"
    assert len(reads) == 7  # 5 lists (the last in 2 pages) and a fetch

    raw = httpx.get(
        f"{fake.url}/{API_VERSION}/Accounts/{fake.account_sid}/IncomingPhoneNumbers.json",
        params={"PhoneNumber": LINE},
        auth=(fake.account_sid, fake.auth_token),
    ).json()
    assert set(raw) == NUMBER_PAGE_KEYS
    [resource] = raw["incoming_phone_numbers"]
    # every key the SDK reads, and the subresource_uris Twilio also sends
    assert set(resource) == sdk_keys(IncomingPhoneNumberInstance) | {"subresource_uris"}
    assert resource["capabilities"]["sms"] is True


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"sms_url": "not a url"}, 400, 21502),
        ({"sms_url": "ftp://example.com/sms"}, 400, 21502),
        ({"sms_method": "PUT"}, 400, 20001),
    ],
)
def test_a_bad_number_update_is_refused_and_changes_nothing(
    fake: FakeTwilio, client: Client, kwargs: dict[str, Any], status: int, code: int
) -> None:
    sid = fake.add_number(LINE, sms_url=RETELL_HOOK)
    with pytest.raises(TwilioRestException) as refused:
        client.incoming_phone_numbers(sid).update(**{"sms_url": OUR_HOOK, **kwargs})
    assert (refused.value.status, refused.value.code) == (status, code)
    assert fake.number(LINE)["sms_url"] == RETELL_HOOK


def test_an_unknown_number_sid_is_404(fake: FakeTwilio, client: Client) -> None:
    with pytest.raises(TwilioRestException) as missing:
        client.incoming_phone_numbers("PN" + "0" * 32).update(sms_url=OUR_HOOK)
    assert (missing.value.status, missing.value.code) == (404, 20404)
    fake.add_number(LINE)
    with pytest.raises(ValueError, match="already in the account"):
        fake.add_number(LINE)


# --- status callbacks -----------------------------------------------------------------------


def test_callbacks_are_signed_like_twilio_sent_then_delivered(
    fake: FakeTwilio, client: Client, capture: FormCapture
) -> None:
    callback = f"{capture.base}/twilio/status?oid=42&x=a%20b"
    sid = client.messages.create(to=LEAD, from_=LINE, body="hi", status_callback=callback).sid

    received = capture.wait_for(2)
    assert [params["MessageStatus"] for _, params, _ in received] == ["sent", "delivered"]
    for url, params, headers in received:
        assert url == callback
        assert valid(fake, url, params, headers[SIGNATURE_HEADER.lower()])
        assert not valid(
            fake, url, {**params, "MessageStatus": "failed"}, headers["x-twilio-signature"]
        )
        assert {k: params[k] for k in ("MessageSid", "SmsSid", "AccountSid", "From", "To")} == {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": fake.account_sid,
            "From": LINE,
            "To": LEAD,
        }
        assert params["ApiVersion"] == API_VERSION
        assert params["SmsStatus"] == params["MessageStatus"]
        assert "ErrorCode" not in params
        assert headers["content-type"].startswith("application/x-www-form-urlencoded")
    sent = fake.wait_for_callbacks(2, sid=sid)
    assert [c.status for c in sent] == [200, 200]
    assert sent[0].token != sent[1].token  # one idempotency token per event

    fake.wait_idle()
    delivered = client.messages(sid).fetch()
    assert delivered.status == "delivered"
    assert delivered.date_sent is not None
    assert delivered.price is not None


@pytest.mark.parametrize(
    ("outcome", "statuses", "code"),
    [
        (("undelivered", 30006), ["sent", "undelivered"], 30006),
        (("failed", 30007), ["failed"], 30007),
        ("sent", ["sent"], None),
    ],
)
def test_outcome_per_recipient(
    fake: FakeTwilio,
    client: Client,
    capture: FormCapture,
    outcome: Any,
    statuses: list[str],
    code: int | None,
) -> None:
    fake.outcome(LEAD, outcome)
    url = f"{capture.base}/status"
    sid = client.messages.create(to=LEAD, from_=LINE, body="hi", status_callback=url).sid
    other = client.messages.create(to=OTHER, from_=LINE, body="hi", status_callback=url).sid

    mine = fake.wait_for_callbacks(len(statuses), sid=sid)
    assert [c.params["MessageStatus"] for c in mine] == statuses
    assert mine[-1].params.get("ErrorCode") == (None if code is None else str(code))
    fake.wait_idle()
    fetched = client.messages(sid).fetch()
    assert (fetched.status, fetched.error_code) == (statuses[-1], code)
    assert (fetched.error_message is None) == (code is None)
    assert client.messages(other).fetch().status == "delivered"


def test_reversed_and_repeated_callbacks(
    fake: FakeTwilio, client: Client, capture: FormCapture
) -> None:
    fake.callback_order = "reversed"
    fake.repeat_callbacks = 2
    client.messages.create(to=LEAD, from_=LINE, body="hi", status_callback=f"{capture.base}/s")

    received = capture.wait_for(4)
    assert [p["MessageStatus"] for _, p, _ in received] == [
        "delivered",
        "delivered",
        "sent",
        "sent",
    ]
    assert all(valid(fake, url, p, h["x-twilio-signature"]) for url, p, h in received)
    tokens = [h["i-twilio-idempotency-token"] for _, _, h in received]
    assert tokens[0] == tokens[1] != tokens[2] == tokens[3]


def test_callbacks_off_still_moves_the_status(
    fake: FakeTwilio, client: Client, capture: FormCapture
) -> None:
    fake.callbacks = False
    sent = client.messages.create(to=LEAD, from_=LINE, body="hi", status_callback=capture.base)
    fake.wait_idle()
    assert fake.message(sent.sid or "")["status"] == "delivered"
    assert fake.callbacks_sent == []
    assert capture.received == []


def test_a_refused_connection_is_retried_once(fake: FakeTwilio, client: Client) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/status"
    fake.outcome(LEAD, "sent")
    client.messages.create(to=LEAD, from_=LINE, body="hi", status_callback=closed)
    fake.wait_idle()
    tries = fake.callbacks_sent
    assert [(c.attempt, c.status) for c in tries] == [(0, None), (1, None)]
    assert tries[0].token == tries[1].token
    assert tries[0].error


def test_messaging_service_sends_accepted_then_queued_sent_delivered(
    fake: FakeTwilio, client: Client, capture: FormCapture
) -> None:
    message = client.messages.create(
        to=LEAD, messaging_service_sid=SERVICE, body="hi", status_callback=capture.base
    )
    assert (message.status, message.from_, message.num_segments) == ("accepted", None, "0")
    assert message.messaging_service_sid == SERVICE

    received = capture.wait_for(3)
    assert [p["MessageStatus"] for _, p, _ in received] == ["queued", "sent", "delivered"]
    assert {p["MessagingServiceSid"] for _, p, _ in received} == {SERVICE}
    fake.wait_idle()
    fetched = client.messages(message.sid).fetch()
    assert (fetched.from_, fetched.num_segments) == (fake.service_number, "1")


# --- faults ---------------------------------------------------------------------------------


def test_timeout_leaves_a_message_the_list_api_finds(fake: FakeTwilio) -> None:
    fake.clock = lambda: dt.datetime(2024, 5, 1, 23, 59, 30, tzinfo=dt.UTC)
    fake.script("timeout")
    impatient = sdk_client(fake, timeout=0.5)
    with pytest.raises(requests.exceptions.Timeout):  # the SDK does not wrap it
        impatient.messages.create(to=LEAD, from_=LINE, body="did it go?")
    [created] = fake.wait_for_messages(1)
    fake.wait_idle()

    day = dt.date(2024, 5, 1)
    found = impatient.messages.list(to=LEAD, from_=LINE, date_sent=day)
    assert [(m.sid, m.body, m.status) for m in found] == [
        (created["sid"], "did it go?", "delivered")
    ]
    # the SDK sends a date as 2024-05-01T00:00:00Z; the filters are by GMT day, inclusive
    after = impatient.messages.list(to=LEAD, date_sent_after=dt.datetime(2024, 5, 1, 23, 59, 59))
    assert [m.sid for m in after] == [created["sid"]]
    assert impatient.messages.list(to=LEAD, date_sent_before=dt.date(2024, 4, 30)) == []
    assert impatient.messages.list(to=LEAD, date_sent=dt.date(2024, 5, 2)) == []
    # the raw filter forms too: DateSent>=YYYY-MM-DD, DateSent<=..., DateSent=...
    for name in ("DateSent>", "DateSent<", "DateSent"):
        raw = httpx.get(
            f"{fake.url}{fake.messages_path}",
            params={"To": LEAD, "From": LINE, name: "2024-05-01"},
            auth=(fake.account_sid, fake.auth_token),
        ).json()
        assert [m["sid"] for m in raw["messages"]] == [created["sid"]]


def test_a_lost_answer_also_leaves_the_message(fake: FakeTwilio, client: Client) -> None:
    fake.script("lost")
    with pytest.raises(requests.exceptions.ConnectionError):
        client.messages.create(to=LEAD, from_=LINE, body="lost")
    [created] = fake.wait_for_messages(1, to=LEAD)
    assert created["body"] == "lost"


def test_scripted_statuses_and_drop_create_nothing(fake: FakeTwilio, client: Client) -> None:
    fake.script(429, 500, (400, 30034), "drop")
    for status, code in [(429, 20429), (500, 20500), (400, 30034)]:
        with pytest.raises(TwilioRestException) as refused:
            client.messages.create(to=LEAD, from_=LINE, body="hi")
        assert (refused.value.status, refused.value.code) == (status, code)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.messages.create(to=LEAD, from_=LINE, body="hi")
    assert fake.messages == {}

    assert client.messages.create(to=LEAD, from_=LINE, body="hi").status == "queued"
    assert len(fake.messages) == 1
    assert len(fake.create_requests()) == 5


def test_api_key_auth(fake: FakeTwilio) -> None:
    key = "SK" + "b" * 32
    fake.api_keys[key] = "key-secret"
    client = Client(key, "key-secret", fake.account_sid)
    client.api.base_url = fake.url
    assert client.messages.create(to=LEAD, from_=LINE, body="hi").account_sid == fake.account_sid
    wrong = Client(key, "nope", fake.account_sid)
    wrong.api.base_url = fake.url
    with pytest.raises(TwilioRestException) as refused:
        wrong.messages.create(to=LEAD, from_=LINE, body="hi")
    assert refused.value.code == 20003


# --- inbound --------------------------------------------------------------------------------


def test_text_in_posts_a_signed_inbound_webhook(fake: FakeTwilio, capture: FormCapture) -> None:
    fake.inbound_url = f"{capture.base}/twilio/inbound"
    fake.messaging_service_sid = SERVICE
    status, body = fake.text_in(LEAD, LINE, "Is Tuesday ok? 🙂")
    assert (status, body) == (200, "<Response/>")

    [(url, params, headers)] = capture.wait_for(1)
    assert valid(fake, url, params, headers["x-twilio-signature"])
    assert params["From"] == LEAD
    assert params["To"] == LINE
    assert params["Body"] == "Is Tuesday ok? 🙂"
    assert (params["NumMedia"], params["NumSegments"]) == ("0", "1")
    assert params["MessagingServiceSid"] == SERVICE
    assert params["AccountSid"] == fake.account_sid
    assert SID.match(params["MessageSid"])
    assert "OptOutType" not in params
    assert fake.message(params["MessageSid"])["direction"] == "inbound"


def test_inbound_stop_unsubscribes_the_lead(fake: FakeTwilio, capture: FormCapture) -> None:
    fake.inbound_url = f"{capture.base}/in"
    client = fake.client()
    fake.text_in(LEAD, LINE, "STOP", opt_out_type="STOP")
    [(_, params, _)] = capture.wait_for(1)
    assert params["OptOutType"] == "STOP"
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to=LEAD, from_=LINE, body="one more?")
    assert refused.value.code == 21610

    fake.text_in(LEAD, LINE, "start")
    assert client.messages.create(to=LEAD, from_=LINE, body="welcome back").status == "queued"
    assert [m.body for m in client.messages.list(from_=LEAD)] == ["start", "STOP"]


def test_a_forged_signature_is_posted_as_given(fake: FakeTwilio, capture: FormCapture) -> None:
    fake.inbound_url = f"{capture.base}/in"
    fake.text_in(LEAD, LINE, "hi", signature="forged")
    [(url, params, headers)] = capture.wait_for(1)
    assert headers["x-twilio-signature"] == "forged"
    assert not valid(fake, url, params, "forged")


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("é" * 160, 1),
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("🙂" * 35, 1),
    ],
)
def test_segments(body: str, count: int) -> None:
    assert segments(body) == count

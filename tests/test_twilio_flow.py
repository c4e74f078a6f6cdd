"""A campaign on the Twilio transport, end to end against the fake Twilio (a real HTTP server
pinned to the `twilio` SDK): the real send job and receipt job in-process on a real pool,
the real web app under uvicorn taking Twilio's signed callbacks and inbound texts."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from pgqueuer.domain.errors import RetryRequested

from pgflow import campaigns
from pgflow import db as pdb
from pgflow.config import Settings
from pgflow.errors import PgflowError
from pgflow.jobs.agent_reply import agent_reply
from pgflow.jobs.check_receipt import check_receipt
from pgflow.jobs.context import JobContext
from pgflow.jobs.send_sms import send_sms
from pgflow.transport.retell import RetellClient
from pgflow.transport.twilio import TwilioClient
from tests.factories import apply_campaign, at, count, ingest
from tests.fake_twilio import FakeTwilio
from tests.helpers import row, rows, scalar
from tests.processes import ROOT, free_port, serving, wait_until

Conn = psycopg.Connection[Any]
T = TypeVar("T")
NOW = at("2026-11-23 22:00")  # Monday 17:00 in New York: three hours of window left
LEAD = "+12125550147"
LINE = "+14155550100"
TOKEN = "twilio-token"


class Rig:
    """The fake Twilio, our web app (its public URL is where Twilio calls us) and the jobs."""

    def __init__(self, db: Conn, db_url: str, fake: FakeTwilio, web: httpx.Client) -> None:
        self.db, self.db_url, self.fake, self.web = db, db_url, fake, web
        self.public = str(web.base_url).rstrip("/")
        self.twilio_configured = True
        self.client_timeout = 5.0

    def lead(self, **fields: Any) -> int:
        ingest(self.db, LEAD, NOW, first_name="Sam", **fields)
        return int(scalar(self.db, "select max(id) from pgflow.messages where kind = 'campaign'"))

    def run(self, job: Callable[[JobContext], Awaitable[T]]) -> T:
        return asyncio.run(self._run(job))

    async def _run(self, job: Callable[[JobContext], Awaitable[T]]) -> T:
        pool = pdb.async_pool(self.db_url, application="test", max_size=2)
        await pool.open()
        twilio = TwilioClient(
            self.fake.account_sid,
            TOKEN,
            public_url=self.public,
            base_url=self.fake.url,
            timeout=httpx.Timeout(self.client_timeout),
        )
        retell = RetellClient("unused", "http://127.0.0.1:9")  # a Retell nobody calls
        ctx = JobContext(
            pool, retell, uuid.uuid4(), 0.05, twilio=twilio if self.twilio_configured else None
        )
        ctx.clock = lambda: NOW
        try:
            return await job(ctx)
        finally:
            await twilio.aclose()
            await retell.aclose()
            await pool.close()

    def send(self, message_id: int) -> str:
        return self.run(lambda ctx: send_sms(ctx, message_id))

    def status(self, message_id: int) -> tuple[Any, ...]:
        return row(
            self.db,
            "select delivery_status, provider_status, carrier_error_code, transport"
            " from pgflow.messages where id = %s",
            [message_id],
        )

    def settled(self, message_id: int, status: str) -> None:
        wait_until(lambda: self.status(message_id)[0] == status, what=f"message {status}")


@pytest.fixture
def rig(db: Conn, db_url: str) -> Iterator[Rig]:
    apply_campaign(db, transport="twilio")
    port = free_port()  # Twilio signs the URL it called: our public URL is where we listen
    public = f"http://127.0.0.1:{port}"
    with FakeTwilio(auth_token=TOKEN, inbound_url=f"{public}/webhooks/twilio/inbound") as fake:
        settings = Settings(
            database_url=db_url,
            lead_token="t",
            retell_api_key="unused",
            twilio_auth_token=TOKEN,
            twilio_account_sid=fake.account_sid,
            public_url=public,
        )
        with serving(settings, clock=NOW, port=port) as web:
            yield Rig(db, db_url, fake, web)


def test_a_step_goes_out_as_written_and_its_receipts_make_it_delivered(rig: Rig) -> None:
    message = rig.lead()
    assert rig.send(message) == "sent"
    [create] = rig.fake.create_requests()
    assert create.form["To"] == LEAD
    assert create.form["From"] == LINE
    assert create.form["Body"].startswith("Hi Sam")
    callback = urlsplit(create.form["StatusCallback"])
    assert f"{callback.scheme}://{callback.netloc}" == rig.public
    assert parse_qs(callback.query) == {"message_id": [str(message)]}
    assert create.form["ValidityPeriod"] == str(3 * 3600)  # until 20:00 in the lead's zone
    rig.settled(message, "delivered")
    assert rig.status(message) == ("delivered", "delivered", None, "twilio")
    conversation = row(rig.db, "select provider_chat_id, chat_status from pgflow.conversations")
    assert conversation == (None, None)  # Twilio starts no chat
    assert count(rig.db, "webhook_deliveries", "provider = 'twilio'") == 2  # sent, delivered


def test_undelivered_30006_ends_the_contacts_drips_with_the_reason(rig: Rig) -> None:
    rig.fake.outcome(LEAD, ("undelivered", 30006))
    message = rig.lead()
    assert rig.send(message) == "sent"
    rig.settled(message, "failed")
    assert rig.status(message) == ("failed", "undelivered", 30006, "twilio")
    enrollment = row(rig.db, "select status, stop_reason from pgflow.enrollments")
    assert enrollment[0] == "stopped"
    assert "30006 (bad_number)" in enrollment[1]
    assert row(rig.db, "select status, conversion_status from pgflow.conversations") == (
        "ended",
        "discarded",
    )
    funnel = pdb.funnel("solar").run(rig.db)[0]
    assert (funnel["transport"], funnel["undelivered"]) == ("twilio", 1)
    assert funnel["undelivered_by_class"] == {"bad_number": 1}
    scrape = rig.web.get("/metrics").text
    assert 'pgflow_campaign_undelivered_by_class{campaign="solar",class="bad_number"} 1.0' in scrape
    assert 'pgflow_campaign_undelivered{campaign="solar"} 1.0' in scrape


def test_delivery_time_is_in_the_funnel_and_the_metrics(rig: Rig) -> None:
    message = rig.lead()
    assert rig.send(message) == "sent"
    rig.settled(message, "delivered")
    rig.db.execute(  # the receipt came 42 s after the send
        "update pgflow.messages set delivered_at = sent_at + interval '42 seconds'"
    )
    funnel = pdb.funnel("solar").run(rig.db)[0]
    assert (funnel["delivered"], funnel["delivery_seconds"]["p50"]) == (1, 42.0)
    scrape = rig.web.get("/metrics").text
    assert 'pgflow_campaign_delivery_seconds{campaign="solar",quantile="0.5"} 42.0' in scrape
    assert 'pgflow_campaign_delivered{campaign="solar"} 1.0' in scrape


def test_21610_at_send_suppresses_the_contact_without_a_second_confirmation(rig: Rig) -> None:
    rig.fake.unsubscribe(LEAD)  # the lead said STOP to Twilio itself, never to us
    message = rig.lead()
    assert rig.send(message) == "failed"
    assert rig.status(message)[:1] == ("failed",)
    assert rig.status(message)[2] == 21610
    assert row(rig.db, "select opted_out_at is not null, opt_out_source from pgflow.contacts") == (
        True,
        "carrier",
    )
    assert count(rig.db, "messages", "kind = 'system'") == 0  # Twilio confirmed already
    assert count(rig.db, "enrollments", "status = 'opted_out'") == 1
    assert count(rig.db, "messages", "delivery_status = 'dead_letter'") == 0
    assert len(rig.fake.create_requests()) == 1


def test_callbacks_out_of_order_and_repeated_never_move_a_text_back(rig: Rig) -> None:
    rig.fake.callback_order = "reversed"
    rig.fake.repeat_callbacks = 2
    message = rig.lead()
    assert rig.send(message) == "sent"
    rig.fake.wait_for_callbacks(4, timeout=10)
    assert rig.status(message)[:2] == ("delivered", "delivered")
    results = rig.db.execute(
        "select result, count(*) from pgflow.webhook_deliveries where provider = 'twilio'"
        " group by result order by result"
    ).fetchall()
    assert results == [("applied", 1), ("stale", 1)]  # delivered, then the late sent
    assert count(rig.db, "webhook_deliveries") == 2  # the repeats were duplicates


@pytest.mark.parametrize("fault", ["timeout", "lost"])
def test_a_lost_answer_is_reconciled_without_a_second_text(rig: Rig, fault: str) -> None:
    rig.fake.script(fault)  # Twilio creates the message; its answer never reaches us
    rig.client_timeout = 0.5
    message = rig.lead()
    assert rig.send(message) == "sent"
    assert len(rig.fake.create_requests()) == 1
    assert len(rig.fake.messages) == 1
    [sid] = rig.fake.messages
    assert rig.status(message)[0] in ("sent", "delivered")
    assert (
        scalar(rig.db, "select provider_message_id from pgflow.messages where id = %s", [message])
        == sid
    )


def test_a_refusal_nothing_was_created_for_is_retried_and_sent_once(rig: Rig) -> None:
    rig.fake.script(429)  # never processed, Twilio says: safe to send again
    message = rig.lead()
    with pytest.raises(RetryRequested):
        rig.send(message)
    rig.db.execute("update pgflow.messages set send_after = null where id = %s", [message])
    assert rig.send(message) == "sent"
    assert len(rig.fake.messages) == 1


def test_a_worker_that_died_mid_send_finds_the_text_instead_of_sending_it_again(
    rig: Rig,
) -> None:
    message = rig.lead()
    assert pdb.claim_message(message, None, None, NOW).run(rig.db)["action"] == "send"
    client = rig.fake.client()
    client.messages.create(
        to=LEAD,
        from_=LINE,
        body=scalar(rig.db, "select body from pgflow.messages where id = %s", [message]),
    )
    assert rig.send(message) == "sent"  # the next claim reconciles: found, not sent again
    assert len(rig.fake.messages) == 1


def test_without_a_twilio_account_the_text_is_a_dead_letter_with_an_alert(rig: Rig) -> None:
    rig.twilio_configured = False
    message = rig.lead()
    assert rig.send(message) == "dead_letter"
    alert = row(rig.db, "select kind, severity from pgflow.alerts")
    assert alert == ("twilio_error", "critical")
    assert "TWILIO_ACCOUNT_SID" in scalar(
        rig.db, "select delivery_error from pgflow.messages where id = %s", [message]
    )


def test_a_forged_or_stale_signature_is_403_and_writes_nothing(rig: Rig) -> None:
    rig.lead()
    status, _ = rig.fake.text_in(LEAD, LINE, "yes please", signature="forged")
    assert status == 403
    stale = rig.fake.sign("https://old.example/webhooks/twilio/inbound", {"Body": "hi"})
    status, _ = rig.fake.text_in(LEAD, LINE, "yes please", signature=stale)
    assert status == 403
    params = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered"}
    url = f"{rig.public}/webhooks/twilio/status?message_id=1"
    forged = rig.web.post(url, data=params, headers={"X-Twilio-Signature": "x"})
    assert forged.status_code == 403
    assert count(rig.db, "webhook_deliveries") == 0
    assert count(rig.db, "messages", "direction = 'inbound'") == 0


def test_a_reply_stops_the_drip_and_the_engine_writes_the_answer(rig: Rig) -> None:
    rig.send(rig.lead())
    status, body = rig.fake.text_in(LEAD, LINE, "Yes, tell me more")
    assert status == 200
    assert "<Response>" in body
    assert count(rig.db, "enrollments", "status = 'paused'") == 1
    assert row(rig.db, "select status from pgflow.conversations") == ("engaged",)
    inbound = scalar(rig.db, "select id from pgflow.messages where direction = 'inbound'")
    assert rig.run(lambda ctx: agent_reply(ctx, inbound)) == "queued"
    answer = scalar(rig.db, "select id from pgflow.messages where kind = 'agent'")
    assert rig.send(answer) == "sent"
    assert rig.fake.create_requests()[-1].form["ValidityPeriod"] == "1800"
    rig.fake.text_in(LEAD, LINE, "Yes, tell me more")  # a new text, a new MessageSid
    assert count(rig.db, "messages", "direction = 'inbound'") == 2


def test_inbound_stop_with_opt_out_type_is_suppressed_with_twilios_confirmation_only(
    rig: Rig,
) -> None:
    rig.send(rig.lead())
    status, _ = rig.fake.text_in(LEAD, LINE, "STOP", opt_out_type="STOP")
    assert status == 200
    assert row(rig.db, "select opted_out_at is not null, opt_out_source from pgflow.contacts") == (
        True,
        "carrier",
    )
    assert count(rig.db, "messages", "kind = 'system'") == 0
    assert count(rig.db, "enrollments", "status = 'opted_out'") == 1
    # a word Twilio does not handle: our one confirmation
    rig.fake.text_in(LEAD, LINE, "START", opt_out_type="START")
    assert count(rig.db, "messages", "kind = 'system'") == 0  # Twilio answered START too
    rig.fake.text_in(LEAD, LINE, "please stop texting me")
    assert count(rig.db, "messages", "kind = 'system'") == 1
    assert scalar(rig.db, "select opt_out_source from pgflow.contacts") == "phrase"


def test_help_answered_by_twilio_gets_no_second_help_text(rig: Rig) -> None:
    rig.send(rig.lead())
    rig.fake.text_in(LEAD, LINE, "HELP", opt_out_type="HELP")
    assert count(rig.db, "messages", "kind = 'system'") == 0
    assert count(rig.db, "messages", "direction = 'inbound'") == 1


def test_a_person_texts_through_twilio_while_the_agent_stays_quiet(rig: Rig) -> None:
    rig.send(rig.lead())
    conversation = int(scalar(rig.db, "select id from pgflow.conversations"))
    pdb.take_over(conversation, "rep@example.com", None, None, NOW).run(rig.db)
    pdb.human_reply(
        conversation, "Hi Sam, this is Dana. Call you at 3?", "rep@example.com", None, "k1", NOW
    ).run(rig.db)
    human = scalar(rig.db, "select id from pgflow.messages where kind = 'human'")
    assert rig.send(human) == "sent"
    assert rig.fake.create_requests()[-1].form["Body"] == "Hi Sam, this is Dana. Call you at 3?"
    rig.fake.text_in(LEAD, LINE, "Sure, 3 works")
    inbound = scalar(rig.db, "select max(id) from pgflow.messages where direction = 'inbound'")
    assert rig.run(lambda ctx: agent_reply(ctx, inbound)) == "skip"
    assert count(rig.db, "messages", "kind = 'agent'") == 0
    # handed back: the agent answers the text nobody answered (its job queued again)
    rig.db.execute("delete from pgflow.pgqueuer where entrypoint = 'agent_reply'")
    pdb.hand_back(conversation, "rep@example.com", None, False, NOW).run(rig.db)
    assert count(rig.db, "pgqueuer", "entrypoint = 'agent_reply'") == 1


def test_the_sweeper_asks_twilio_about_a_text_whose_receipt_never_came(rig: Rig) -> None:
    rig.fake.callbacks = False  # the statuses change at Twilio; no callback reaches us
    message = rig.lead()
    assert rig.send(message) == "sent"
    rig.fake.wait_idle()
    assert pdb.tick(NOW + dt.timedelta(hours=1)).run(rig.db)["receipt_checks"] == 0
    assert pdb.tick(NOW + dt.timedelta(hours=3)).run(rig.db)["receipt_checks"] == 1
    assert pdb.tick(NOW + dt.timedelta(hours=4)).run(rig.db)["receipt_checks"] == 0  # asked
    assert count(rig.db, "pgqueuer", "entrypoint = 'check_receipt'") == 1
    assert rig.run(lambda ctx: check_receipt(ctx, message)) == "applied"
    assert rig.status(message)[:2] == ("delivered", "delivered")
    assert rig.run(lambda ctx: check_receipt(ctx, message)) == "skip"


def test_a_number_carries_one_transport(db: Conn) -> None:
    apply_campaign(db, "solar", transport="twilio")
    with pytest.raises(PgflowError, match="another transport"):
        apply_campaign(db, "roofing", transport="retell")
    assert pdb.twilio_numbers().run(db) == [{"number": LINE, "campaigns": ["solar"]}]


def test_the_example_file_puts_its_twilio_campaign_on_twilio(db: Conn) -> None:
    doc = campaigns.load(Path(ROOT) / "examples" / "solar.yaml").doc
    pdb.apply_campaigns(doc).run(db)
    assert rows(db, "select slug, transport from pgflow.campaigns order by slug") == [
        ("solar-q4", "retell"),
        ("solar-q4-twilio", "twilio"),
    ]

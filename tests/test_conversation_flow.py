"""Conversations end to end: a real web server, a real worker process, the fake Retell
sending signed webhooks to the real endpoint, and (in the sandbox) a fake LLM server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pgflow import db as pdb
from pgflow.config import Settings
from tests.factories import apply_campaign, count
from tests.fake_llm import FakeLLM
from tests.fake_retell import FakeRetell
from tests.helpers import scalar
from tests.processes import WorkerProcess, serving, wait_until

Conn = psycopg.Connection[Any]
KEY = "flow-key"
OPEN = {"window_start": "00:00", "window_end": "24:00"}
FAST = ("--retry-base", "0.05", "--poll", "0.2", "--heartbeat-timeout", "30")
LEAD_PHONE = "+12125550147"
LINE = "+14155550100"

pytestmark = [pytest.mark.slow, pytest.mark.real_clock]


class Flow:
    """A lead's story through the real parts; `sandbox` makes the engine write replies."""

    def __init__(self, db: Conn, db_url: str, fake: FakeRetell, web: httpx.Client) -> None:
        self.db, self.db_url, self.fake, self.web = db, db_url, fake, web
        self.workers: list[WorkerProcess] = []

    def worker(self, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(self.db_url, self.fake.url, KEY, *FAST, env=env)
        self.workers.append(worker)
        return worker.started()

    def lead(self) -> dict[str, Any]:
        response = self.web.post(
            "/webhooks/leads",
            json={"campaign": "solar", "phone": LEAD_PHONE, "first_name": "Sam"},
            headers={"Authorization": "Bearer t"},
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def creates(self) -> list[dict[str, Any]]:
        return [r.json for r in self.fake.sms_requests()]

    def first_sms(self) -> str:
        self.fake.wait_for_requests(1, timeout=15, path="/create-sms-chat")
        wait_until(lambda: self.status("campaign") == "sent", what="step 1 recorded as sent")
        return next(iter(self.fake.chats))

    def status(self, kind: str) -> str | None:
        found = self.db.execute(
            "select delivery_status from pgflow.messages where kind = %s order by id desc",
            [kind],
        ).fetchone()
        return None if found is None else str(found[0])

    def tick_a_day_later(self) -> dict[str, Any]:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1, minutes=1)
        return pdb.tick(later).run(self.db)


@pytest.fixture
def flow(request: pytest.FixtureRequest, db_url: str, db: Conn) -> Iterator[Flow]:
    sandbox = bool(getattr(request, "param", False))
    apply_campaign(db, **OPEN)
    with FakeRetell(KEY) as fake:
        settings = Settings(
            database_url=db_url,
            lead_token="t",
            retell_api_key=KEY,
            sms_transport="sandbox" if sandbox else "retell",
        )
        with serving(settings) as web:
            fake.webhook_url = f"{web.base_url}/webhooks/retell"
            f = Flow(db, db_url, fake, web)
            try:
                yield f
            finally:
                for worker in f.workers:
                    worker.stop()


def test_a_reply_stops_the_drip(flow: Flow) -> None:
    flow.worker()
    flow.lead()
    flow.first_sms()
    flow.fake.say(LEAD_PHONE, LINE, "yes, tell me more")
    flow.fake.webhooks.wait_idle()
    wait_until(lambda: scalar(flow.db, "select status from pgflow.enrollments") == "paused")
    assert flow.tick_a_day_later()["sent"] == 0
    assert len(flow.creates()) == 1


def test_a_reply_no_webhook_mentioned_is_found_before_the_next_step(flow: Flow) -> None:
    flow.worker()
    flow.lead()
    chat_id = flow.first_sms()
    flow.fake.webhook_url = None  # Retell's webhooks are lost
    flow.fake.say(LEAD_PHONE, LINE, "sorry, missed this - yes!")
    assert count(flow.db, "messages", "kind = 'lead'") == 0  # nobody told us
    assert flow.tick_a_day_later()["sent"] == 1  # step 2 is queued
    wait_until(lambda: flow.status("campaign") == "suppressed", what="step 2 suppressed")
    assert len(flow.creates()) == 1  # step 2 never reached Retell
    gets = [r for r in flow.fake.requests if r.path == f"/get-chat/{chat_id}"]
    assert gets, "the worker read the chat before the step"
    assert scalar(flow.db, "select body from pgflow.messages where kind = 'lead'") == (
        "sorry, missed this - yes!"
    )


def test_stop_gets_one_confirmation_and_then_silence(flow: Flow) -> None:
    flow.worker()
    flow.lead()
    chat_id = flow.first_sms()
    flow.fake.say(LEAD_PHONE, LINE, "STOP")
    wait_until(lambda: flow.status("system") == "sent", what="the confirmation sent")
    wait_until(lambda: flow.fake.chats[chat_id]["chat_status"] == "ended", what="chat ended")
    confirmations = [c for c in flow.creates() if "unsubscribed" in json.dumps(c)]
    assert len(confirmations) == 1
    confirmation_chat = next(
        c
        for c in flow.fake.chats.values()
        if c["metadata"].get("pgflow_message_id")
        == str(scalar(flow.db, "select id from pgflow.messages where kind = 'system'"))
    )
    wait_until(lambda: flow.fake.chats[confirmation_chat["chat_id"]]["chat_status"] == "ended")
    flow.fake.say(LEAD_PHONE, LINE, "STOP STOP")  # a new chat: rejected, nothing sent
    assert flow.tick_a_day_later()["sent"] == 0
    assert len(flow.creates()) == 2  # step 1 and the one confirmation
    assert flow.fake.phone(LEAD_PHONE)[-1]["note"] == "rejected"


def test_a_person_texts_through_retell_and_its_ai_stays_quiet(flow: Flow) -> None:
    """With Retell (no way to post a text into a chat): the person's text starts a chat whose
    first message is exactly theirs, that chat is ended at once, and the lead's answer is
    refused at chat_inbound while the person holds the lead (docs/console.md)."""
    flow.worker()
    flow.lead()
    first_chat = flow.first_sms()
    conversation = scalar(flow.db, "select id from pgflow.conversations")
    pdb.take_over(conversation, "dana@example.com").run(flow.db)
    wait_until(
        lambda: flow.fake.chats[first_chat]["chat_status"] == "ended", what="Retell's chat ended"
    )
    text = "Hi Sam, Dana from SunCo here - when suits you for a call?"
    pdb.human_reply(conversation, text, "dana@example.com").run(flow.db)
    flow.fake.wait_for_requests(2, timeout=15, path="/create-sms-chat")
    wait_until(lambda: flow.status("human") == "sent", what="the person's text sent")
    create = flow.creates()[-1]
    variables = create["retell_llm_dynamic_variables"]
    assert variables["sms_body"] == text
    assert "Do not write anything more" in variables["agent_prompt"]
    human_chat = next(c["chat_id"] for c in flow.fake.chats.values() if c["chat_id"] != first_chat)
    wait_until(
        lambda: flow.fake.chats[human_chat]["chat_status"] == "ended",
        what="the person's chat ended at once",
    )
    assert [t["text"] for t in flow.fake.phone(LEAD_PHONE) if t["direction"] == "to_lead"][
        -1
    ] == text
    flow.fake.say(LEAD_PHONE, LINE, "tomorrow at 10?")
    flow.fake.webhooks.wait_idle()
    assert flow.fake.phone(LEAD_PHONE)[-1]["note"] == "rejected"
    assert len(flow.fake.chats) == 2  # no chat where Retell's AI could answer
    assert count(flow.db, "messages", "kind = 'agent'") == 0
    assert (
        count(
            flow.db,
            "events",
            "entity = 'contact' and reason like 'the lead texted while a person%'",
        )
        == 1
    )


@pytest.mark.parametrize("flow", [True], indirect=True, ids=["sandbox"])
def test_two_quick_texts_get_one_agent_reply_from_the_prompt(flow: Flow) -> None:
    with FakeLLM() as llm:
        llm.responder = lambda request: {
            "reply": "Happy to help, Sam! It's free. Do you own your home?",
            "action": "continue",
            "reason": "asked about price",
        }
        flow.worker(
            env={
                "PGFLOW_SMS_TRANSPORT": "sandbox",
                "PGFLOW_LLM_MODEL": "openai/fake-model",
                "PGFLOW_LLM_API_BASE": llm.api_base,
                "OPENAI_API_KEY": "sk-test",
            }
        )
        flow.lead()
        chat_id = flow.first_sms()
        flow.fake.say(LEAD_PHONE, LINE, "hi!")
        flow.fake.say(LEAD_PHONE, LINE, "what does it cost?")
        wait_until(lambda: flow.status("agent") == "sent", timeout=20, what="the agent's reply")
        flow.fake.webhooks.wait_idle()
        [completion] = llm.completions()
    system = completion["messages"][0]["content"]
    assert "You are Ava. Be brief." in system  # the agent's own prompt
    assert [m["content"] for m in completion["messages"][1:]] == [
        "Hi Sam, it's Ava from SunCo!",
        "hi!",
        "what does it cost?",
    ]
    assert completion["response_format"]["type"] == "json_schema"
    # recorded once, delivered into the live chat
    rows = flow.db.execute(
        "select body, chat_message_id from pgflow.messages where kind = 'agent'"
    ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "Happy to help, Sam! It's free. Do you own your home?"
    chat = flow.fake.chats[chat_id]
    assert [i["content"] for i in chat["message_with_tool_calls"]][-1] == rows[0][0]
    assert chat["message_with_tool_calls"][-1]["message_id"] == rows[0][1]
    assert flow.fake.phone(LEAD_PHONE)[-1] == {
        **flow.fake.phone(LEAD_PHONE)[-1],
        "direction": "to_lead",
        "text": rows[0][0],
    }


def test_every_step_carries_the_prompt_context_and_our_ids(flow: Flow) -> None:
    flow.worker()
    flow.lead()
    first_chat = flow.first_sms()
    assert flow.tick_a_day_later()["sent"] == 1
    flow.fake.wait_for_requests(2, timeout=15, path="/create-sms-chat")
    wait_until(lambda: flow.status("campaign") == "sent", what="step 2 sent")
    variables_needed = {
        "sms_body",
        "agent_prompt",
        "first_name",
        "campaign_name",
        "campaign_goal",
        "lead_context",
    }
    for create in flow.creates():
        variables = create["retell_llm_dynamic_variables"]
        assert variables_needed <= set(variables)
        assert all(isinstance(v, str) and v.strip() for v in variables.values()), variables
        assert variables["agent_prompt"] == "You are Ava. Be brief."
        assert set(create["metadata"]) == {
            "pgflow_message_id",
            "pgflow_conversation_id",
            "pgflow_contact_id",
        }
    bodies = [c["retell_llm_dynamic_variables"]["sms_body"] for c in flow.creates()]
    assert bodies == ["Hi Sam, it's Ava from SunCo!", "Hi Sam, still interested?"]
    # the previous chat was read (no reply there), then ended before the next one began
    paths = [r.path for r in flow.fake.requests]
    assert paths.index(f"/get-chat/{first_chat}") < paths.index(f"/end-chat/{first_chat}")


def llm_env(llm: FakeLLM) -> dict[str, str]:
    return {
        "PGFLOW_LLM_MODEL": "openai/fake-model",
        "PGFLOW_LLM_API_BASE": llm.api_base,
        "OPENAI_API_KEY": "sk-test",
    }


def quiet_and_replied(flow: Flow, text: str) -> None:
    flow.lead()
    flow.first_sms()
    flow.fake.say(LEAD_PHONE, LINE, text)
    flow.fake.webhooks.wait_idle()
    wait_until(lambda: scalar(flow.db, "select status from pgflow.conversations") == "engaged")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    assert pdb.tick(later).run(flow.db)["classify_requested"] == 1


def test_a_quiet_conversation_is_classified_by_the_llm(flow: Flow) -> None:
    with FakeLLM() as llm:
        llm.set_default(
            {"status": "qualified", "reason": "owns the home, $200 bill", "confidence": 0.92}
        )
        flow.worker(env=llm_env(llm))
        quiet_and_replied(flow, "yes I own it, the bill is about $200")
        wait_until(
            lambda: scalar(flow.db, "select status from pgflow.conversations") == "ended",
            what="the classification",
        )
        [completion] = [c for c in llm.completions() if "judge the outcome" in json.dumps(c)]
    assert (
        scalar(
            flow.db,
            "select conversion_status || ' ' || outcome_source || ': ' || outcome_reason"
            " from pgflow.conversations",
        )
        == "qualified llm: owns the home, $200 bill"
    )
    assert "Lead: yes I own it, the bill is about $200" in completion["messages"][1]["content"]
    assert completion["response_format"]["type"] == "json_schema"


def test_answers_that_never_parse_go_to_review(flow: Flow) -> None:
    with FakeLLM() as llm:
        llm.set_default("I think they are probably interested")
        flow.worker(env=llm_env(llm))
        quiet_and_replied(flow, "hmm maybe")
        wait_until(
            lambda: scalar(flow.db, "select review_reason is not null from pgflow.conversations"),
            timeout=20,
            what="the review flag",
        )
    assert scalar(flow.db, "select status from pgflow.conversations") == "engaged"  # no guess
    assert scalar(flow.db, "select review_reason from pgflow.conversations").startswith(
        "the outcome could not be classified: 5 attempts"
    )
    assert scalar(flow.db, "select kind from pgflow.alerts") == "needs_review"

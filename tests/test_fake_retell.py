"""The fake Retell (the sandbox server) pinned to the real API with the official retell-sdk:
every chat object it returns or sends validates against `ChatResponse` and carries no key
that model lacks (validation alone accepts unknown keys); our client sends only the keys
of `ChatCreateSMSChatParams`; its webhook signatures pass the SDK's `verify`."""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, Union, get_args, get_origin

import pydantic
import pytest
from retell.lib.webhook_auth import verify as sdk_verify
from retell.types.chat_create_sms_chat_params import ChatCreateSMSChatParams
from retell.types.chat_list_params import ChatListParams, FilterCriteria
from retell.types.chat_response import ChatResponse

from pgflow.transport.retell import RetellClient
from tests.fake_retell import FakeRetell
from tests.processes import CaptureServer

LEAD = "+12125550147"
LINE = "+14155550100"


def _models_in(annotation: Any) -> Iterator[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation
    elif get_origin(annotation) in (Union, types.UnionType, list, typing.List, dict):  # noqa: UP006
        for arg in get_args(annotation):
            yield from _models_in(arg)


def _member(models: list[type[pydantic.BaseModel]], value: dict[str, Any]) -> Any:
    if len(models) == 1:
        return models[0]
    for model in models:
        for key in ("role", "type"):
            field = model.model_fields.get(key)
            if (
                field is not None
                and get_origin(field.annotation) is Literal
                and value.get(key) in get_args(field.annotation)
            ):
                return model
    return None


def unknown_keys(
    model: type[pydantic.BaseModel], data: dict[str, Any], path: str = "$"
) -> list[str]:
    """Keys of `data` (recursively) that `model` does not define."""
    names = {(f.alias or n): n for n, f in model.model_fields.items()}
    found: list[str] = []
    for key, value in data.items():
        where = f"{path}.{key}"
        if key not in names:
            found.append(where)
            continue
        subs = list(_models_in(model.model_fields[names[key]].annotation))
        items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        if not subs:
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            member = _member(subs, item)
            if member is None:
                found.append(f"{where}[{i}]: no union member matches")
                continue
            found += unknown_keys(member, item, f"{where}[{i}]")
    return found


def assert_real_chat(chat: dict[str, Any]) -> None:
    ChatResponse.model_validate(chat)
    assert unknown_keys(ChatResponse, chat) == []
    assert "messages" not in chat


def test_the_key_check_finds_a_wrong_field_name() -> None:
    wrong = {
        "chat_id": "c",
        "agent_id": "a",
        "chat_status": "ongoing",
        "messages": [],  # the name of create-chat-completion's field, not the chat's
        "message_with_tool_calls": [{"role": "agent", "content": "hi", "text": "hi"}],
    }
    ChatResponse.model_validate(wrong)  # validation alone lets it through
    assert unknown_keys(ChatResponse, wrong) == [
        "$.messages",
        "$.message_with_tool_calls[0].text",
    ]


@pytest.mark.anyio
async def test_chats_have_the_real_shape_everywhere() -> None:
    with CaptureServer() as hooks, FakeRetell(webhook_url=hooks.url) as fake:
        async with RetellClient(fake.api_key, fake.url) as client:
            sent = await client.create_sms_chat(
                from_number=LINE,
                to_number=LEAD,
                body="Hi Sam!",
                agent_id=None,
                metadata={"pgflow_message_id": "1"},
                dynamic_variables={"agent_prompt": "Be brief.", "first_name": "Sam"},
            )
            fake.say(LEAD, LINE, "yes please")
            fake.post_agent_message(sent.chat_id, "Great - own or rent?", "pgflow-2")
            chat = await client.get_chat(sent.chat_id)
            await client.end_chat(sent.chat_id)
            ended = await client.get_chat(sent.chat_id)
        fake.webhooks.wait_idle()
        posted = hooks.wait_for(5)
    assert_real_chat(chat)
    assert_real_chat(ended)
    assert [i["role"] for i in chat["message_with_tool_calls"]] == ["agent", "user", "agent"]
    assert chat["message_with_tool_calls"][2]["message_id"] == "pgflow-2"
    assert [p["event"] for p in posted] == [
        "chat_started",
        "transcript_updated",
        "transcript_updated",
        "chat_ended",
        "chat_analyzed",
    ]
    for payload in posted:
        assert set(payload) == {"event", "chat"}
        assert_real_chat(payload["chat"])


@pytest.mark.anyio
async def test_our_client_sends_only_the_sdk_keys() -> None:
    allowed = set(ChatCreateSMSChatParams.__annotations__)
    with FakeRetell() as fake:
        async with RetellClient(fake.api_key, fake.url) as client:
            await client.create_sms_chat(
                from_number=LINE,
                to_number=LEAD,
                body="Hi",
                agent_id="agent_x",
                metadata={"pgflow_message_id": "1"},
                dynamic_variables={"first_name": "Sam"},
            )
        [request] = fake.sms_requests()
    assert set(request.json) <= allowed
    assert {"from_number", "to_number", "override_agent_id", "metadata"} <= set(request.json)


def test_signatures_pass_the_sdk_verify() -> None:
    with CaptureServer() as hooks, FakeRetell(webhook_url=hooks.url) as fake:
        body, headers = fake.signed_webhook({"event": "chat_ended", "chat": {"chat_id": "c"}})
        assert sdk_verify(body.decode(), fake.api_key, headers["x-retell-signature"])  # type: ignore[no-untyped-call]
        assert not sdk_verify(body.decode(), "another-key", headers["x-retell-signature"])  # type: ignore[no-untyped-call]
        fake.say(LEAD, LINE, "hello")  # chat_inbound, then chat events: all signed
        fake.webhooks.wait_idle()
    assert fake.deliveries()
    for delivery in fake.deliveries():
        raw = fake.webhooks.body(delivery.payload)
        signature = fake.webhooks.headers(raw)["x-retell-signature"]
        assert sdk_verify(raw.decode(), fake.api_key, signature)  # type: ignore[no-untyped-call]


def test_webhooks_are_retried_like_retell() -> None:
    with CaptureServer(statuses=[503, 500]) as hooks, FakeRetell(webhook_url=hooks.url) as fake:
        fake.say(LEAD, LINE, "hi")  # chat_inbound gets 503, 500, then an answer
        fake.webhooks.wait_idle()
        inbound = fake.deliveries("chat_inbound")[0]
        assert len(hooks.received) == 5  # 3 tries of chat_inbound, then 2 chat events
    assert inbound.attempts == ["503", "500", "204"]


def test_held_webhooks_can_be_reordered_and_repeated() -> None:
    with CaptureServer() as hooks, FakeRetell(webhook_url=hooks.url) as fake:
        fake.webhooks.hold()
        fake.say(LEAD, LINE, "one")
        chat_id = next(iter(fake.chats))
        fake.say(LEAD, LINE, "two")
        fake.end_chat(chat_id)
        held = fake.webhooks.release(order=[3, 1, 0, 2], times=2)
        fake.webhooks.wait_idle()
        posted = hooks.received
    events = [p["event"] for p in posted if p["event"] != "chat_inbound"]
    assert [d.event for d in held] == [
        "chat_started",
        "transcript_updated",
        "transcript_updated",
        "chat_ended",
        "chat_analyzed",
    ]
    assert events == [
        "chat_ended",
        "chat_ended",
        "transcript_updated",
        "transcript_updated",
        "chat_started",
        "chat_started",
        "transcript_updated",
        "transcript_updated",
    ]


@pytest.mark.anyio
async def test_our_chat_search_speaks_the_sdk_filter_and_finds_our_send() -> None:
    """find_sent's list-chats body uses only keys of the SDK's ChatListParams and its
    filters, and finds the chat by the metadata we sent (not another send to the lead)."""
    since = dt.datetime.now(dt.UTC)
    with FakeRetell() as fake:
        async with RetellClient(fake.api_key, fake.url) as client:
            for message_id in ("7", "8"):
                await client.create_sms_chat(
                    from_number=LINE,
                    to_number=LEAD,
                    body="Hi",
                    agent_id=None,
                    metadata={"pgflow_message_id": message_id},
                    dynamic_variables={},
                )
            found = await client.find_sent(to_number=LEAD, since=since, message_id=8)
            missing = await client.find_sent(to_number=LEAD, since=since, message_id=9)
        searches = [r for r in fake.requests if r.path == "/v3/list-chats"]
    assert found is not None
    assert fake.chats[found.chat_id]["metadata"] == {"pgflow_message_id": "8"}
    assert missing is None
    body = searches[0].json
    assert set(body) <= set(ChatListParams.__annotations__)
    assert set(body["filter_criteria"]) <= set(FilterCriteria.__annotations__)
    assert body["filter_criteria"]["user_number"] == {"op": "eq", "type": "string", "value": LEAD}

"""The benchmarks' fast fake Retell (bench/fast_retell.py) pinned to the real API like the
sandbox is (tests/test_fake_retell.py): run as the benchmarks run it, a process of its own
on 127.0.0.1, every chat it answers validates against retell-sdk's `ChatResponse` and
carries no key that model lacks; a new chat has the sandbox's keys; our client reads it;
its errors have the sandbox's shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from retell.types.chat_create_sms_chat_params import ChatCreateSMSChatParams

from bench.common import ReadyProcess
from pgflow.transport.retell import RetellClient
from tests.fake_retell import FakeRetell, error_body
from tests.test_fake_retell import LEAD, LINE, assert_real_chat

API_KEY = "bench-key"
NEW_CHAT: dict[str, Any] = {
    "from_number": LINE,
    "to_number": LEAD,
    "metadata": {"pgflow_message_id": "1"},
    "retell_llm_dynamic_variables": {"first_name": "Sam", "sms_body": "Hi Sam!"},
}


@pytest.fixture(scope="module")
def fast_url() -> Iterator[str]:
    with ReadyProcess("bench.fast_retell", "--port", "0", "--api-key", API_KEY) as fake:
        yield fake.url


def bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_request_is_one_the_sdk_sends() -> None:
    assert set(NEW_CHAT) <= set(ChatCreateSMSChatParams.__annotations__)


def test_a_new_chat_has_the_real_shape_and_the_sandbox_keys(fast_url: str) -> None:
    created = httpx.post(f"{fast_url}/create-sms-chat", json=NEW_CHAT, headers=bearer())
    with FakeRetell(API_KEY) as sandbox:
        reference = httpx.post(f"{sandbox.url}/create-sms-chat", json=NEW_CHAT, headers=bearer())
    assert created.status_code == reference.status_code == 200
    chat, expected = created.json(), reference.json()
    assert_real_chat(chat)
    assert set(chat) == set(expected)
    [item] = chat["message_with_tool_calls"]
    assert set(item) == set(expected["message_with_tool_calls"][0])
    assert (item["role"], item["content"]) == ("agent", "Hi Sam!")


@pytest.mark.anyio
async def test_our_client_reads_its_chats_and_they_have_the_real_shape(fast_url: str) -> None:
    async with RetellClient(API_KEY, fast_url) as client:
        sent = await client.create_sms_chat(
            from_number=LINE,
            to_number=LEAD,
            body="Hi Sam!",
            agent_id="agent_x",
            metadata={"pgflow_message_id": "2"},
            dynamic_variables={"first_name": "Sam"},
        )
        chat = await client.get_chat(sent.chat_id)
        await client.end_chat(sent.chat_id)
        ended = await client.get_chat(sent.chat_id)
    assert sent.agent_id == "agent_x"
    assert_real_chat(chat)
    assert_real_chat(ended)
    assert (chat["chat_status"], ended["chat_status"]) == ("ongoing", "ended")
    assert chat["metadata"] == {"pgflow_message_id": "2"}


@pytest.mark.parametrize(
    ("method", "path", "body", "key", "status"),
    [
        ("POST", "/create-sms-chat", NEW_CHAT, "wrong-key", 401),
        ("POST", "/create-sms-chat", {**NEW_CHAT, "to_number": "555-0147"}, API_KEY, 400),
        ("GET", "/get-chat/chat_unknown", None, API_KEY, 404),
        ("PATCH", "/end-chat/chat_unknown", None, API_KEY, 404),
    ],
    ids=["wrong-key", "bad-number", "get-unknown", "end-unknown"],
)
def test_its_errors_have_the_sandbox_shape(
    fast_url: str, method: str, path: str, body: Any, key: str, status: int
) -> None:
    response = httpx.request(method, fast_url + path, json=body, headers=bearer(key))
    assert response.status_code == status
    answer = response.json()
    assert set(answer) == set(error_body(status))
    assert answer["status"] == "error"
    assert isinstance(answer["message"], str)
    assert answer["message"]

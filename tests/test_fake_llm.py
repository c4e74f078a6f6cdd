"""The fake LLM (tests/fake_llm.py) against the real litellm client, over real HTTP on
127.0.0.1: what our code will see from litellm is what these tests pin down."""

from __future__ import annotations

import os

# Before litellm is imported: its import would otherwise fetch the model cost map.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import asyncio
import contextlib
import importlib.util
import inspect
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import litellm
import pytest
from litellm.exceptions import (
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)
from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
from pydantic import BaseModel

from tests.fake_llm import (
    COMPLETIONS_PATH,
    STREAM_REFUSED,
    FakeLLM,
    Reply,
    as_reply,
    parse_answer,
)

litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner per error

# pydantic warns (a UserWarning, which pyproject makes an error) when litellm's first call
# builds a schema for its `ReadOnly` TypedDict items; it is about litellm's types, not ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Item .* on TypedDict class .* is using the `ReadOnly` qualifier:UserWarning"
)

ROOT = Path(__file__).resolve().parent.parent
MODEL = "openai/fake-model"
FAKE_LLM = [sys.executable, "-m", "tests.fake_llm"]
MESSAGES = [{"role": "user", "content": "Hi, is this SunCo?"}]
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
HAS_TENACITY = importlib.util.find_spec("tenacity") is not None


class Intent(BaseModel):
    intent: str
    confidence: float


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse (and report) any socket connection that is not to the loopback."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def allowed(address: Any) -> bool:
        host = address[0] if isinstance(address, tuple) else None
        return host is None or host in LOOPBACK  # None: a unix socket

    def connect(sock: socket.socket, address: Any) -> None:
        if not allowed(address):
            attempts.append(address)
            raise ConnectionRefusedError(f"test tried to reach {address}")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if not allowed(address):
            attempts.append(address)
            raise ConnectionRefusedError(f"test tried to reach {address}")
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield
    assert attempts == [], f"connections outside 127.0.0.1: {attempts}"


@pytest.fixture(autouse=True)
def fresh_litellm_clients() -> Iterator[None]:
    """Each test starts with no client cached by litellm, and leaves none open.

    litellm caches its SDK clients (async ones per event loop) and closes them at exit or
    on eviction; a client merely forgotten would close its sockets in the garbage
    collector, as a ResourceWarning charged to some later test.
    """
    yield
    cache = litellm.in_memory_llm_clients_cache
    for client in list(cache.cache_dict.values()):
        close = getattr(client, "close", None)
        if callable(close) and not inspect.iscoroutinefunction(close):
            close()  # sync clients; async tests close theirs in their loop (async_litellm)
    cache.flush_cache()  # type: ignore[no-untyped-call]


@pytest.fixture
async def async_litellm() -> AsyncIterator[None]:
    """For async tests: close litellm's async clients in the test's own event loop."""
    yield
    await close_litellm_async_clients()  # type: ignore[no-untyped-call]


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@contextlib.contextmanager
def own_event_loop() -> Iterator[None]:
    """Give a blocking litellm call an event loop we close afterwards.

    litellm's sync completion logs through `asyncio.get_event_loop()`, which (on 3.11, in the
    main thread, with no loop set yet) creates and installs a loop that nobody closes: its
    later ResourceWarning would fail some unrelated test. Ending with no loop set is the
    state `asyncio.run` leaves behind.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def complete(llm: FakeLLM, messages: list[dict[str, str]] | None = None, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": MESSAGES if messages is None else messages,
        "api_base": llm.api_base,
        "api_key": "sk-test",
        "timeout": 5,
        "num_retries": 0,
    }
    args.update(kwargs)
    with own_event_loop():
        return litellm.completion(**args)


async def acomplete(llm: FakeLLM, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": MESSAGES,
        "api_base": llm.api_base,
        "api_key": "sk-test",
        "timeout": 5,
        "num_retries": 0,
    }
    args.update(kwargs)
    return await litellm.acompletion(**args)


def content_of(response: Any) -> str:
    text = response.choices[0].message.content
    assert isinstance(text, str)
    return text


# -- answers -------------------------------------------------------------------------------


def test_plain_text_answer_and_what_the_fake_saw(llm: FakeLLM) -> None:
    llm.script("Yes! This is Ava from SunCo 😊")
    response = complete(llm)
    assert content_of(response) == "Yes! This is Ava from SunCo 😊"
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "fake-model"
    assert response.usage.prompt_tokens == 4  # words, the fake's stand-in for tokens
    assert response.usage.completion_tokens == 7
    assert response.usage.total_tokens == 11
    [req] = llm.requests
    assert (req.method, req.path) == ("POST", COMPLETIONS_PATH)
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.json == {"model": "fake-model", "messages": MESSAGES}
    assert llm.completions() == [req.json]


def test_script_then_default_then_ok(llm: FakeLLM) -> None:
    assert content_of(complete(llm)) == "ok"  # nothing scripted
    llm.script("first", "second")
    llm.set_default("again")
    answers = [content_of(complete(llm)) for _ in range(4)]
    assert answers == ["first", "second", "again", "again"]
    llm.set_default(None)
    assert content_of(complete(llm)) == "ok"


def test_dict_answer_in_json_mode_is_json_text(llm: FakeLLM) -> None:
    answer = {"intent": "stop", "confidence": 0.93, "notes": ["opt-out", "é"]}
    llm.script(answer)
    response = complete(llm, response_format={"type": "json_object"})
    assert json.loads(content_of(response)) == answer
    [body] = llm.completions()
    assert body["response_format"] == {"type": "json_object"}


def test_pydantic_response_format_arrives_as_json_schema(llm: FakeLLM) -> None:
    llm.script({"intent": "book", "confidence": 0.5})
    response = complete(llm, response_format=Intent)
    assert Intent.model_validate_json(content_of(response)) == Intent(intent="book", confidence=0.5)
    [body] = llm.completions()
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Intent"
    assert fmt["json_schema"]["schema"]["required"] == ["intent", "confidence"]


def test_reply_content_and_finish_reason(llm: FakeLLM) -> None:
    llm.script(Reply(content="Hi Ann, quick q", finish_reason="length"), Reply(content={"a": 1}))
    first, second = complete(llm), complete(llm)
    assert (content_of(first), first.choices[0].finish_reason) == ("Hi Ann, quick q", "length")
    assert json.loads(content_of(second)) == {"a": 1}


def test_responder_sees_system_prompt_and_turns(llm: FakeLLM) -> None:
    seen: list[list[dict[str, Any]]] = []

    def responder(request: dict[str, Any]) -> str | None:
        messages: list[dict[str, Any]] = request["messages"]
        seen.append(messages)
        if "STOP" in messages[-1]["content"]:
            return None  # pass: the default answers
        system = next(m["content"] for m in messages if m["role"] == "system")
        users = [m["content"] for m in messages if m["role"] == "user"]
        return f"[{system}] turn {len(users)}: {users[-1].upper()}"

    llm.responder = responder
    llm.set_default("You're unsubscribed.")
    conversation = [
        {"role": "system", "content": "You are Ava."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi! Solar?"},
        {"role": "user", "content": "maybe"},
    ]
    assert content_of(complete(llm, conversation)) == "[You are Ava.] turn 2: MAYBE"
    assert seen == [conversation]
    stop = [*conversation, {"role": "user", "content": "STOP"}]
    assert content_of(complete(llm, stop)) == "You're unsubscribed."
    llm.script("scripted wins")
    assert content_of(complete(llm, conversation)) == "scripted wins"
    assert len(seen) == 2  # the script answered without asking the responder


def test_a_failing_responder_is_a_visible_500(llm: FakeLLM) -> None:
    def responder(request: dict[str, Any]) -> str:
        raise KeyError("no such turn")

    llm.responder = responder
    with pytest.raises(InternalServerError, match="FakeLLM responder raised KeyError"):
        complete(llm)
    [error] = llm.errors
    assert isinstance(error, KeyError)


# -- errors as litellm raises them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (429, RateLimitError),
        (500, InternalServerError),
        (503, ServiceUnavailableError),
        (400, BadRequestError),
        (401, AuthenticationError),
        # litellm 1.103.7 maps an OpenAI-provider 404 to BadRequestError, not NotFoundError.
        (404, BadRequestError),
    ],
)
def test_error_statuses_map_to_litellm_exceptions(
    llm: FakeLLM, status: int, exception: type[Exception]
) -> None:
    llm.script(status)
    with pytest.raises(exception) as info:
        complete(llm)
    assert type(info.value) is exception
    assert getattr(info.value, "status_code", None) == status
    assert len(llm.requests) == 1  # num_retries=0: no retry anywhere


def test_rate_limit_carries_openai_error_body_and_retry_after(llm: FakeLLM) -> None:
    llm.script(429)
    with pytest.raises(RateLimitError, match="Rate limit reached") as info:
        complete(llm)
    err = info.value
    # litellm keeps the real headers and error object here; `err.response` is a stand-in
    # with no headers, and `err.code` is the status as a string.
    assert getattr(err, "litellm_response_headers", {}).get("retry-after") == "1"
    assert isinstance(err.body, dict)
    assert err.body["code"] == "rate_limit_exceeded"


def test_custom_error_body(llm: FakeLLM) -> None:
    body = {"error": {"message": "This model's maximum context length is 8 tokens", "type": "x"}}
    llm.script(Reply(status=400, body=body))
    with pytest.raises(BadRequestError, match="maximum context length"):
        complete(llm)


@pytest.mark.skipif(not HAS_TENACITY, reason="litellm's retry layer needs tenacity")
def test_num_retries_recovers_after_a_500(llm: FakeLLM) -> None:
    llm.script(500, "fine")
    assert content_of(complete(llm, num_retries=2)) == "fine"
    requests = llm.wait_for_requests(2)
    assert len(requests) == 2
    # The retry is the OpenAI SDK's own (litellm passes num_retries as its max_retries).
    assert [r.headers["x-stainless-retry-count"] for r in requests] == ["0", "1"]


@pytest.mark.skipif(not HAS_TENACITY, reason="litellm's retry layer needs tenacity")
def test_num_retries_is_two_layers_of_retries(llm: FakeLLM) -> None:
    llm.set_default(500)
    with pytest.raises(InternalServerError):
        complete(llm, num_retries=1)
    # The SDK tries 1 + num_retries times, then litellm's tenacity wrapper makes
    # num_retries more attempts with SDK retries off: 3 requests for num_retries=1.
    counts = [r.headers["x-stainless-retry-count"] for r in llm.requests]
    assert counts == ["0", "1", "0"]


def test_delay_past_the_timeout_raises_timeout(llm: FakeLLM) -> None:
    llm.script(Reply(delay=2.0))
    started = time.monotonic()
    with pytest.raises(Timeout):
        complete(llm, timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert len(llm.requests) == 1


def test_dropped_connection_is_an_internal_server_error(llm: FakeLLM) -> None:
    # Surprise: litellm 1.103.7 reports the SDK's APIConnectionError as a 500.
    llm.script(Reply(drop=True))
    with pytest.raises(InternalServerError, match="Connection error") as info:
        complete(llm)
    assert info.value.status_code == 500
    assert content_of(complete(llm)) == "ok"  # the script is used up: served again


def test_stream_is_refused_clearly(llm: FakeLLM) -> None:
    llm.script("kept for the next request")
    with pytest.raises(BadRequestError, match=STREAM_REFUSED):
        complete(llm, stream=True)
    assert llm.completions()[0]["stream"] is True
    assert content_of(complete(llm)) == "kept for the next request"


def test_api_key_is_checked_when_given() -> None:
    with FakeLLM(api_key="sk-right") as llm:
        with pytest.raises(AuthenticationError):
            complete(llm, api_key="sk-wrong")
        assert content_of(complete(llm, api_key="sk-right")) == "ok"


# -- async ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_acompletion_answers_and_raises(llm: FakeLLM, async_litellm: None) -> None:
    llm.script("async hello", {"intent": "stop"}, 429)
    assert content_of(await acomplete(llm)) == "async hello"
    response = await acomplete(llm, response_format={"type": "json_object"})
    assert json.loads(content_of(response)) == {"intent": "stop"}
    with pytest.raises(RateLimitError):
        await acomplete(llm)
    assert [r.headers["x-stainless-async"] for r in llm.requests] == ["async:asyncio"] * 3


@pytest.mark.anyio
async def test_acompletion_timeout(llm: FakeLLM, async_litellm: None) -> None:
    llm.script(Reply(delay=2.0))
    started = time.monotonic()
    with pytest.raises(Timeout):
        await acomplete(llm, timeout=0.5)
    assert time.monotonic() - started < 1.5


# -- the HTTP surface ------------------------------------------------------------------------


def test_models_and_openai_error_shape(llm: FakeLLM) -> None:
    with httpx.Client(base_url=llm.url, timeout=2) as client:
        models = client.get("/v1/models")
        missing = client.post("/chat/completions", json={})
        bad_json = client.post(COMPLETIONS_PATH, content=b"{nope")
        no_messages = client.post(COMPLETIONS_PATH, json={"model": "m", "messages": []})
    assert models.status_code == 200
    assert models.json()["data"][0]["id"] == "fake-model"
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert "api_base" in error["message"]  # a hint when /v1 is missing
    assert bad_json.status_code == 400
    assert no_messages.status_code == 400
    assert "messages" in no_messages.json()["error"]["message"]


def test_raw_body_replacement(llm: FakeLLM) -> None:
    llm.script(Reply(body="not json", headers={"Content-Type": "text/plain"}))
    with httpx.Client(timeout=2) as client:
        response = client.post(
            llm.url + COMPLETIONS_PATH, json={"model": "m", "messages": MESSAGES}
        )
    assert (response.status_code, response.text) == (200, "not json")
    assert response.headers["content-type"] == "text/plain"


def test_concurrent_requests_each_take_one_answer(llm: FakeLLM) -> None:
    answers = [f"answer {i}" for i in range(20)]
    llm.script(*answers)

    def one(i: int) -> str:
        body = {"model": "m", "messages": [{"role": "user", "content": str(i)}]}
        response = client.post(COMPLETIONS_PATH, json=body)
        text: str = response.json()["choices"][0]["message"]["content"]
        return text

    with httpx.Client(base_url=llm.url, timeout=5) as client, ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(20)))
    assert sorted(got) == sorted(answers)
    assert len(llm.completions()) == 20


def test_wait_for_requests_explains_a_timeout(llm: FakeLLM) -> None:
    complete(llm)
    assert len(llm.wait_for_requests(1, path=COMPLETIONS_PATH)) == 1
    with pytest.raises(AssertionError, match=r"expected 2 request\(s\).*got 1"):
        llm.wait_for_requests(2, timeout=0.05)


def test_stop_cuts_a_scripted_delay_short(llm: FakeLLM) -> None:
    errors: list[Exception] = []
    llm.script(Reply(delay=30.0))
    url = llm.url + COMPLETIONS_PATH

    def call() -> None:
        try:
            with httpx.Client(timeout=10) as client:
                client.post(url, json={"model": "m", "messages": MESSAGES})
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    llm.wait_for_requests(1)
    started = time.monotonic()
    llm.stop()  # the fixture's own stop is then a no-op
    caller.join(timeout=5)
    assert time.monotonic() - started < 2.0
    assert not caller.is_alive()
    assert len(errors) == 1  # the connection was closed without an answer


def test_answers_are_checked_when_scripted() -> None:
    assert as_reply(429) == Reply(status=429)
    assert as_reply({"a": 1}) == Reply(content={"a": 1})
    with pytest.raises(TypeError, match="not a FakeLLM answer"):
        as_reply(True)
    llm = FakeLLM()
    with pytest.raises(TypeError, match="not a FakeLLM answer"):
        llm.script(["a list"])  # type: ignore[arg-type]
    assert parse_answer("503") == 503
    assert parse_answer("drop") == Reply(drop=True)
    assert parse_answer("delay=0.5") == Reply(delay=0.5)
    assert parse_answer("hello there") == "hello there"


@pytest.mark.slow
def test_process_mode(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [*FAKE_LLM, "--port", "0", "--default", "hello", "--script", "429", "--log", str(log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:"), line
        url = line.removeprefix("READY ")
        body = {"model": "m", "messages": MESSAGES}
        with httpx.Client(base_url=url, timeout=5) as client:
            first = client.post(COMPLETIONS_PATH, json=body)
            second = client.post(COMPLETIONS_PATH, json=body)
        assert first.status_code == 429
        assert second.json()["choices"][0]["message"]["content"] == "hello"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    logged = [json.loads(row) for row in log.read_text().splitlines()]
    assert [row["json"] for row in logged] == [body, body]

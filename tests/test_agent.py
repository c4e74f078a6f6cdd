"""The agent: SMS segment arithmetic (the same as the SQL's), the offline agent's rules, and
the LLM agent against a fake OpenAI-compatible server (strict JSON, retried once)."""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest

from pgflow.agent import AgentError, OfflineAgent, ReplyRequest, Turn, fit, segments
from tests.fake_llm import FakeLLM

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

Conn = psycopg.Connection[Any]
SAMPLES = [
    "",
    "Hi Sam!",
    "x" * 160,
    "x" * 161,
    "{" * 80,
    "{" * 81,
    "€uro " * 30,
    "Hola, ¿qué tal?",
    "Great 👍",
    "ü" * 70,
    "👍" * 35,
    "👍" * 36,
    "a\u2019b" * 30,  # a curly apostrophe is not GSM-7
]


@pytest.mark.parametrize("text", SAMPLES)
def test_segments_agree_with_sql(module_db: Conn, text: str) -> None:
    row = module_db.execute("select pgflow.sms_segments(%s)", [text]).fetchone()
    assert row is not None
    assert segments(text) == row[0]


def test_fit_keeps_whole_sentences_within_two_segments() -> None:
    long = " ".join(f"Sentence number {i} says something useful." for i in range(20))
    cut = fit(long)
    assert segments(cut) <= 2
    assert cut.endswith(".")
    assert long.startswith(cut)
    assert fit("short and sweet") == "short and sweet"
    words = fit("word " * 200)
    assert segments(words) <= 2
    assert words.endswith("…")


def request(*lead_texts: str, turns: int = 1) -> ReplyRequest:
    return ReplyRequest(
        agent_name="ava",
        prompt="You are Ava from SunCo.",
        model=None,
        campaign_name="Solar",
        goal="Book a call",
        variables={"first_name": "Sam", "lead_context": "first_name: Sam"},
        transcript=[Turn("agent", "Hi Sam!"), *(Turn("lead", t) for t in lead_texts)],
        turns_used=turns,
        max_turns=10,
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("texts", "action"),
    [
        (("can I talk to a real person?",), "handoff"),
        (("tuesday at 3pm works",), "booked"),
        (("I rent my apartment",), "end"),
        (("how much does it cost?",), "continue"),
        (("yes", "I own it"), "continue"),
    ],
)
async def test_offline_agent(texts: tuple[str, ...], action: str) -> None:
    reply = await OfflineAgent().reply(request(*texts))
    assert reply.action == action
    assert reply.text
    assert segments(reply.text) <= 2


@pytest.mark.anyio
async def test_offline_agent_leaves_ambiguous_texts_alone() -> None:
    assert await OfflineAgent().judge_opt_out("ugh, stop it") is False


@pytest.mark.anyio
async def test_llm_agent_answers_from_the_prompt_in_strict_json() -> None:
    from pgflow.agent.llm import LlmAgent

    with FakeLLM() as llm:
        llm.script(
            "not json at all",  # asked again once
            {"reply": "Sure! Do you own your home?", "action": "continue", "reason": "qualifying"},
            {"opt_out": True, "reason": "asks to stop"},
        )
        agent = LlmAgent("openai/fake", api_base=llm.api_base, timeout=5)
        reply = await agent.reply(request("hi", "tell me more"))
        assert (reply.text, reply.action) == ("Sure! Do you own your home?", "continue")
        assert await agent.judge_opt_out("please quit these") is True
        await agent.aclose()
        first, second, judge = llm.completions()
    assert "You are Ava from SunCo." in first["messages"][0]["content"]
    assert [m["role"] for m in first["messages"][1:]] == ["assistant", "user", "user"]
    assert second["messages"] == first["messages"]
    assert judge["messages"][-1]["content"] == "please quit these"


@pytest.mark.anyio
async def test_llm_agent_gives_up_on_nonsense_and_on_errors() -> None:
    from pgflow.agent.llm import LlmAgent

    with FakeLLM() as llm:
        llm.script({"reply": "", "action": "dance", "reason": "?"}, {"wrong": 1}, 500)
        agent = LlmAgent("openai/fake", api_base=llm.api_base, timeout=5)
        with pytest.raises(AgentError, match="unparseable"):
            await agent.reply(request("hi"))
        with pytest.raises(AgentError, match="InternalServerError"):
            await agent.reply(request("hi"))
        await agent.aclose()

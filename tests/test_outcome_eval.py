"""The evaluation set through the whole outcome pipeline against a fake OpenAI-compatible
server that answers what each case expects: this checks the plumbing (transcripts reach the
model with their goal, verdicts land as outcomes, the rules settle what they should), not a
model's judgment; bench/eval_outcomes.py measures that."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import psycopg

from pgflow.agent import OUTCOMES
from pgflow.agent.llm import LlmAgent
from tests import outcome_eval
from tests.fake_llm import FakeLLM

Conn = psycopg.Connection[Any]


def test_the_set_covers_every_outcome_and_the_hard_cases() -> None:
    cases = outcome_eval.cases()
    assert len(cases) >= 40
    counts = collections.Counter(c["expected"] for c in cases)
    assert set(counts) == set(OUTCOMES)
    assert min(counts.values()) >= 6
    assert sum(c["difficulty"] == "hard" for c in cases) >= 15
    assert len({c["id"] for c in cases}) == len(cases)


def test_the_pipeline_on_the_evaluation_set(db: Conn) -> None:
    expected = {
        json.dumps([t["text"] for t in c["transcript"] if t["role"] == "lead"]): c["expected"]
        for c in outcome_eval.cases()
    }

    def answer(request: dict[str, Any]) -> Any:
        system = request["messages"][0]["content"]
        if "opt-out" in system:  # an ambiguous text: the fake says it is not an opt-out
            return {"opt_out": False, "reason": "not a request to stop"}
        lines = request["messages"][1]["content"].splitlines()
        leads = [line.removeprefix("Lead: ") for line in lines if line.startswith("Lead: ")]
        status = expected.get(json.dumps(leads), "qualified")
        return {"status": status, "reason": f"the case says {status}", "confidence": 0.9}

    with FakeLLM() as llm:
        llm.responder = answer
        agent = LlmAgent("openai/eval", api_base=llm.api_base, timeout=10)

        async def go() -> list[outcome_eval.Result]:
            try:
                return await outcome_eval.run(db, agent)
            finally:
                await agent.aclose()

        results = asyncio.run(go())
        asked = llm.completions()
    report = outcome_eval.summary(results)
    assert report["cases"] == len(outcome_eval.cases())
    assert report["wrong"] == []
    assert report["accuracy"] == 1.0
    by_source = collections.Counter((r.expected, r.source) for r in results)
    # no reply, STOP and asking for a person never reach the model
    assert by_source[("no_response", "rule")] == sum(
        1 for c in outcome_eval.cases() if c["expected"] == "no_response"
    )
    classified = [r for r in results if r.source == "llm"]
    assert classified
    assert all(r.expected not in {"no_response"} for r in classified)
    goals = {c["campaign_goal"] for c in outcome_eval.cases()}
    assert all(
        any(goal in a["messages"][0]["content"] for goal in goals)
        for a in asked
        if "judge the outcome" in a["messages"][0]["content"]
    )

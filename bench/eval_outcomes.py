"""The outcome classification measured on the evaluation set (tests/data/outcome_eval.jsonl)
with the configured model: accuracy, a confusion matrix and the review rate. The same
pipeline as production (tests/outcome_eval.py): the SQL rules first, then the model.

    PGFLOW_LLM_MODEL=openai/gpt-4o-mini OPENAI_API_KEY=... python -m bench.eval_outcomes
    python -m bench.eval_outcomes --offline      # the offline rules, as a baseline

Without a model (and without --offline) it says so and exits 2. Results are written to
bench/results/eval_outcomes.json (or eval_outcomes_offline.json)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import psycopg

from bench.common import fresh_database, record
from pgflow.agent import Agent, OfflineAgent
from tests import outcome_eval


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="measure the offline rules")
    args = parser.parse_args()
    model = os.environ.get("PGFLOW_LLM_MODEL", "").strip()
    agent: Agent
    if args.offline:
        agent = OfflineAgent()
    elif model:
        from pgflow.agent.llm import LlmAgent

        agent = LlmAgent(model, api_base=os.environ.get("PGFLOW_LLM_API_BASE") or None)
    else:
        sys.stderr.write(
            "no model: set PGFLOW_LLM_MODEL (and the provider's key, e.g. OPENAI_API_KEY),"
            " or pass --offline to measure the offline rules\n"
        )
        return 2
    url = fresh_database("pgflow_bench_eval")

    async def go() -> list[outcome_eval.Result]:
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                return await outcome_eval.run(conn, agent)
            finally:
                await agent.aclose()

    results = asyncio.run(go())
    report = outcome_eval.summary(results)
    sys.stdout.write(outcome_eval.confusion_table(report) + "\n\n")
    name = "eval_outcomes_offline" if args.offline else "eval_outcomes"
    record(name, {"judge": "offline" if args.offline else model, **report})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

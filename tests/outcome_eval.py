"""The outcome pipeline run on the evaluation set (tests/data/outcome_eval.jsonl), exactly
as production runs it: each transcript arrives as a Retell chat through
pgflow.record_retell_event() (the opt-out and escalation rules act there), ambiguous
opt-out words are judged, then pgflow.outcome_question() applies the remaining rules and
the agent classifies what is left, recorded by pgflow.record_classification().

Used by tests/test_outcome_eval.py (a fake LLM: the plumbing) and bench/eval_outcomes.py
(the configured model: the accuracy)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg

from pgflow import db as pdb
from pgflow.agent import OUTCOMES, Agent, AgentError, ClassifyRequest
from tests.chat_payloads import chat, event

DATA = Path(__file__).resolve().parent / "data" / "outcome_eval.jsonl"
NOW = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
REVIEW = "review"  # what the pipeline gives when a person must decide


def cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]


@dataclasses.dataclass(frozen=True)
class Result:
    id: str
    expected: str
    got: str  # an outcome, or "review"
    source: str | None
    difficulty: str


def seed(conn: psycopg.Connection[Any], items: list[dict[str, Any]]) -> None:
    goals = sorted({c["campaign_goal"] for c in items})
    doc: dict[str, Any] = {
        "agents": [{"name": "eval", "prompt": "You qualify leads and book calls. Be brief."}],
        "campaigns": [
            {
                "slug": f"eval-{i}",
                "name": f"Campaign {i}",
                "agent": "eval",
                "goal": goal,
                "from_number": "+14155550100",
                "window_start": "00:00",
                "window_end": "24:00",
                "window_days": [1, 2, 3, 4, 5, 6, 7],
                "daily_cap": 10,
                "steps": [{"delay": "0 seconds", "body": "Hi {{first_name}}!"}],
            }
            for i, goal in enumerate(goals)
        ],
    }
    pdb.apply_campaigns(doc, NOW).run(conn)


async def run(conn: psycopg.Connection[Any], agent: Agent) -> list[Result]:
    items = cases()
    seed(conn, items)
    goals = sorted({c["campaign_goal"] for c in items})
    results: list[Result] = []
    for n, case in enumerate(items):
        conversation = await _play(
            conn, agent, case, n, f"eval-{goals.index(case['campaign_goal'])}"
        )
        row = conn.execute(
            "select status, conversion_status, outcome_source from pgflow.conversations"
            " where id = %s",
            [conversation],
        ).fetchone()
        assert row is not None
        got = row[1] if row[0] == "ended" else REVIEW
        results.append(Result(case["id"], case["expected"], got, row[2], case["difficulty"]))
    return results


async def _play(
    conn: psycopg.Connection[Any], agent: Agent, case: dict[str, Any], n: int, slug: str
) -> int:
    phone = f"+1212555{n:04d}"
    lead = pdb.ingest_lead({"campaign": slug, "phone": phone, "first_name": "Sam"}, None, NOW).run(
        conn
    )
    assert lead["status"] == "created", lead
    message, conversation = conn.execute(
        "select id, conversation_id from pgflow.messages where enrollment_id = %s",
        [lead["enrollment_id"]],
    ).fetchone() or (0, 0)
    first = case["transcript"][0]["text"]
    conn.execute("update pgflow.messages set body = %s where id = %s", [first, message])
    claim = pdb.claim_message(message, None, None, NOW).run(conn)
    assert claim["action"] == "send", claim
    pdb.record_send(message, 1, {"ok": True, "chat_id": f"eval_{n}"}, 30.0, NOW).run(conn)
    items = [("agent" if t["role"] == "agent" else "user", t["text"]) for t in case["transcript"]]
    payload = chat(
        f"eval_{n}",
        items,
        conversation_id=conversation,
        message_id=message,
        start_ms=int(NOW.timestamp() * 1000),
        with_tools=False,
    )
    pdb.record_retell_event(event("chat_ended", payload), False, NOW).run(conn)
    for (text_id,) in conn.execute(
        "select id from pgflow.messages where conversation_id = %s and intent = 'maybe_opt_out'",
        [conversation],
    ).fetchall():
        question = pdb.opt_out_question(text_id).run(conn)
        if question is not None:
            opt_out = await agent.judge_opt_out(str(question["text"]))
            pdb.record_opt_out_judgment(text_id, opt_out, NOW).run(conn)
    question = pdb.outcome_question(conversation, NOW).run(conn)
    if question["classify"]:
        try:
            verdict = await agent.classify(ClassifyRequest.from_question(question))
        except AgentError as exc:
            pdb.record_classification(
                conversation,
                question["transcript_hash"],
                None,
                None,
                None,
                None,
                error=str(exc)[:300],
                now=NOW,
            ).run(conn)
        else:
            pdb.record_classification(
                conversation,
                question["transcript_hash"],
                verdict.status,
                verdict.reason,
                verdict.confidence,
                verdict.model,
                now=NOW,
                source="rule" if agent.name == "offline" else "llm",
            ).run(conn)
    return int(conversation)


def summary(results: list[Result]) -> dict[str, Any]:
    """Accuracy, the confusion matrix (expected -> got), the review rate, per difficulty."""
    total = len(results)
    right = sum(r.got == r.expected for r in results)
    matrix: dict[str, dict[str, int]] = {
        e: collections.Counter(r.got for r in results if r.expected == e) for e in OUTCOMES
    }
    by_difficulty = {
        d: round(
            sum(r.got == r.expected for r in results if r.difficulty == d)
            / max(1, sum(r.difficulty == d for r in results)),
            3,
        )
        for d in ("easy", "hard")
    }
    return {
        "cases": total,
        "accuracy": round(right / total, 3) if total else None,
        "review_rate": round(sum(r.got == REVIEW for r in results) / total, 3) if total else None,
        "accuracy_by_difficulty": by_difficulty,
        "confusion": {e: dict(matrix[e]) for e in OUTCOMES},
        "wrong": [dataclasses.asdict(r) for r in results if r.got != r.expected],
    }


def confusion_table(report: dict[str, Any]) -> str:
    columns = [*OUTCOMES, REVIEW]
    width = max(len(c) for c in columns) + 1
    lines = ["expected \\ got".ljust(width) + "".join(c[:11].rjust(12) for c in columns)]
    for expected in OUTCOMES:
        counts = report["confusion"][expected]
        lines.append(
            expected.ljust(width) + "".join(str(counts.get(c, 0)).rjust(12) for c in columns)
        )
    return "\n".join(lines)

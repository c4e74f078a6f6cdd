"""`pgflow retell setup` against the fake Retell: a plan first, then the objects, then a
second run that changes nothing."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import typer
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from pgflow import retell_setup
from pgflow.cli import retell
from tests.factories import campaign_doc
from tests.fake_retell import FakeRetell

Conn = psycopg.Connection[Any]
cli = typer.Typer()
cli.add_typer(retell.app, name="retell")
HOOK = "https://sms.example.com/webhooks/retell"


def setup(fake: FakeRetell, db_url: str, *args: str) -> dict[str, Any]:
    env = {"DATABASE_URL": db_url, "RETELL_API_KEY": fake.api_key, "RETELL_BASE_URL": fake.url}
    result = CliRunner().invoke(
        cli, ["retell", "setup", "--webhook-url", HOOK, "--json", *args], env=env
    )
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.output)
    return answer


def actions(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["target"].split(" ")[0], c["action"]) for c in answer["changes"]]


def test_setup_plans_then_creates_then_changes_nothing(db_url: str, db: Conn) -> None:
    doc = campaign_doc("solar")
    db.execute("select pgflow.apply_campaigns(%s)", [Jsonb(doc)])
    # a Twilio campaign's line is Twilio's: retell setup leaves it alone
    twilio = campaign_doc("hydro", transport="twilio", from_number="+14155550111")
    db.execute("select pgflow.apply_campaigns(%s)", [Jsonb(twilio)])
    with FakeRetell(numbers=["+14155550100", "+14155550111"]) as fake:
        plan = setup(fake, db_url, "--dry-run")
        assert plan["dry_run"] is True
        assert actions(plan) == [
            ("retell-llm", "create"),
            ("chat-agent", "create"),
            ("number", "update"),
        ]
        assert fake.book.llms == {}
        assert fake.book.agents == {}

        done = setup(fake, db_url)
        assert actions(done) == actions(plan)
        [llm] = fake.book.llms.values()
        assert llm["general_prompt"].startswith("{{agent_prompt}}")
        assert llm["begin_message"] == "{{sms_body}}"
        [agent] = fake.book.agents.values()
        assert agent["agent_name"] == "pgflow-sms"
        assert agent["response_engine"] == {"type": "retell-llm", "llm_id": llm["llm_id"]}
        assert agent["webhook_url"] == HOOK
        assert "transcript_updated" in agent["webhook_events"]
        assert agent["end_chat_after_silence_ms"] == 24 * 3600 * 1000
        assert agent["post_chat_analysis_data"][0]["name"] == "conversion_status"
        assert agent["post_chat_analysis_data"][0]["choices"] == retell_setup.OUTCOMES
        number = fake.book.numbers["+14155550100"]
        assert number["inbound_sms_webhook_url"] == HOOK
        binding = [{"agent_id": agent["agent_id"], "weight": 1}]
        assert number["inbound_sms_agents"] == number["outbound_sms_agents"] == binding
        assert not fake.book.numbers["+14155550111"].get("inbound_sms_webhook_url")

        again = setup(fake, db_url)
        assert {a for _, a in actions(again)} == {"unchanged"}
        assert len(fake.book.llms) == len(fake.book.agents) == 1


def test_setup_repairs_drift_and_reports_missing_numbers(db_url: str, db: Conn) -> None:
    doc = campaign_doc("solar")
    db.execute("select pgflow.apply_campaigns(%s)", [Jsonb(doc)])
    with FakeRetell() as fake:  # the number is not in this Retell account
        setup(fake, db_url)
        [agent] = fake.book.agents.values()
        agent["webhook_events"] = ["chat_ended"]  # someone edited it in Retell's dashboard
        again = setup(fake, db_url)
    changes = {c["target"].split(" ")[0]: c for c in again["changes"]}
    assert changes["chat-agent"]["action"] == "update"
    assert changes["chat-agent"]["detail"] == "webhook_events"
    assert changes["number"]["action"] == "missing"

"""`pgflow sandbox say`: the lead's side of the sandbox, through the real endpoint."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import typer
from typer.testing import CliRunner

from pgflow.cli import sandbox
from pgflow.config import Settings
from tests.factories import apply_campaign, count, ingest
from tests.fake_retell import FakeRetell
from tests.processes import serving

Conn = psycopg.Connection[Any]
cli = typer.Typer()
cli.add_typer(sandbox.app, name="sandbox")
OPEN = {"window_start": "00:00", "window_end": "24:00"}


def test_say_texts_our_number_and_shows_the_answer(db_url: str, db: Conn) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, "2125550147", None, first_name="Sam")  # type: ignore[arg-type]
    settings = Settings(database_url=db_url, retell_api_key="k", sms_transport="sandbox")
    with (
        serving(settings) as web,
        FakeRetell("k", responder=lambda chat: "Great to hear from you, Sam!") as fake,
    ):
        fake.webhook_url = f"{web.base_url}/webhooks/retell"
        env = {
            "DATABASE_URL": db_url,
            "PGFLOW_SMS_TRANSPORT": "sandbox",
            "RETELL_BASE_URL": fake.url,
            "RETELL_API_KEY": "k",
        }
        result = CliRunner().invoke(
            cli, ["sandbox", "say", "(212) 555-0147", "hello there", "--wait", "5"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "+1212***0147 -> +14155550100: hello there" in result.output
        assert "+14155550100 -> +1212***0147: Great to hear from you, Sam!" in result.output
        fake.webhooks.wait_idle()
        assert count(db, "messages", "kind = 'lead' and body = 'hello there'") == 1
        quiet = CliRunner().invoke(
            cli, ["sandbox", "say", "2125550147", "STOP", "--wait", "0", "--json"], env=env
        )
        assert quiet.exit_code == 0, quiet.output
        assert json.loads(quiet.output)["result"] == "delivered"
        fake.webhooks.wait_idle()
    assert count(db, "contacts", "opted_out_at is not null") == 1


def test_say_needs_a_line_for_a_stranger(db_url: str, db: Conn) -> None:
    env = {"DATABASE_URL": db_url, "PGFLOW_SMS_TRANSPORT": "sandbox"}
    result = CliRunner().invoke(cli, ["sandbox", "say", "2125550199", "hi"], env=env)
    assert result.exit_code == 1
    assert "has no conversation: say which number with --to" in result.output

"""`pgflow dead-letters`: list, requeue (a real worker sends it), refusals, discard."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from pgflow.cli import dead_letters
from tests.factories import apply_campaign, ingest
from tests.fake_retell import FakeRetell
from tests.helpers import row, scalar
from tests.processes import WorkerProcess, wait_until

pytestmark = pytest.mark.real_clock  # see conftest.any_hour

Conn = psycopg.Connection[Any]
cli = typer.Typer()
cli.add_typer(dead_letters.app, name="dead-letters")


@pytest.fixture
def dead(db: Conn) -> list[int]:
    """Two dead letters (one per contact), made the way the worker makes them."""
    apply_campaign(db, window_start="00:00", window_end="24:00")
    now = dt.datetime.now(dt.UTC)
    ids = []
    for phone in ("2125550147", "2125550148"):
        ingest(db, phone, now)
        message = scalar(db, "select max(id) from pgflow.messages")
        claim = scalar(db, "select pgflow.claim_message(%s)", [message])
        assert claim["action"] == "send"
        result = {"ok": False, "retryable": False, "status_code": 422, "error": "HTTP 422 unknown"}
        db.execute("select pgflow.record_send(%s, 1, %s::jsonb)", [message, json.dumps(result)])
        ids.append(message)
    return ids


def run(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["dead-letters", *args], env={"DATABASE_URL": db_url})


def test_list_masks_phones_and_shows_errors(db_url: str, dead: list[int]) -> None:
    result = run(db_url, "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == sorted(dead, reverse=True)
    assert {r["phone"] for r in rows} == {"+1212***0147", "+1212***0148"}
    assert rows[0]["delivery_error"] == "HTTP 422 unknown"
    table = run(db_url, "list", "--campaign", "solar")
    assert "2 dead letter(s)" in table.output
    assert "no dead letters" in run(db_url, "list", "--campaign", "other").output
    assert run(db_url, "list", "--since", "yesterday").exit_code == 1


def test_requeue_sends_it_with_a_real_worker(db_url: str, db: Conn, dead: list[int]) -> None:
    result = run(db_url, "requeue", str(dead[0]))
    assert result.exit_code == 0, result.output
    assert f"{dead[0]}: requeued" in result.output
    assert row(
        db, "select delivery_status, attempts from pgflow.messages where id = %s", [dead[0]]
    ) == ("queued", 0)
    with FakeRetell() as fake:
        worker = WorkerProcess(db_url, fake.url, fake.api_key, "--poll", "0.2").started()
        try:
            wait_until(
                lambda: (
                    scalar(
                        db, "select delivery_status from pgflow.messages where id = %s", [dead[0]]
                    )
                    == "sent"
                ),
                what=f"the requeued message sent; worker said:\n{worker.output()}",
            )
        finally:
            worker.stop()
        assert len(fake.sms_requests()) == 1
    assert (
        scalar(db, "select delivery_status from pgflow.messages where id = %s", [dead[1]])
        == "dead_letter"
    )


def test_requeue_refuses_opted_out_contacts_and_reports_unknown_ids(
    db_url: str, db: Conn, dead: list[int]
) -> None:
    db.execute(
        "update pgflow.contacts set opted_out_at = now(), opt_out_source = 'sms'"
        " where phone = '+12125550147'"
    )
    result = run(db_url, "requeue", str(dead[0]), str(dead[1]), "999999")
    assert result.exit_code == 1
    assert f"{dead[0]}: refused (the contact has opted out)" in result.output
    assert f"{dead[1]}: requeued" in result.output
    assert "999999: not_found" in result.output
    assert (
        scalar(db, "select delivery_status from pgflow.messages where id = %s", [dead[0]])
        == "dead_letter"
    )
    assert (
        scalar(
            db,
            "select count(*) from pgflow.pgqueuer where status = 'queued'"
            " and entrypoint = 'send_sms'",
        )
        >= 1
    )


def test_requeue_all_of_a_campaign(db_url: str, db: Conn, dead: list[int]) -> None:
    assert run(db_url, "requeue", "--all", "--campaign", "nope").exit_code == 1
    result = run(db_url, "requeue", "--all", "--campaign", "solar", "--json")
    assert result.exit_code == 0, result.output
    assert [r["result"] for r in json.loads(result.output)] == ["requeued", "requeued"]
    assert "no dead letters to requeue" in run(db_url, "requeue", "--all").output
    assert run(db_url, "requeue").exit_code == 1  # neither ids nor --all


def test_discard(db_url: str, db: Conn, dead: list[int]) -> None:
    result = run(db_url, "discard", str(dead[0]), "424242")
    assert result.exit_code == 1
    assert f"{dead[0]}: discarded" in result.output
    assert "424242: not_found" in result.output
    assert (
        scalar(db, "select delivery_status from pgflow.messages where id = %s", [dead[0]])
        == "failed"
    )

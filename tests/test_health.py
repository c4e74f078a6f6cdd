"""`pgflow status` and pgflow.health(): checks that fail when something is wrong."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import typer
from typer.testing import CliRunner

from pgflow.cli import status as status_cli
from tests.factories import apply_campaign, at, ingest

Conn = psycopg.Connection[Any]
cli = typer.Typer()
cli.command()(status_cli.status)


def status(db_url: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--json"], env={"DATABASE_URL": db_url})
    return result.exit_code, json.loads(result.output)


def checks(report: dict[str, Any]) -> dict[str, bool]:
    return {c["name"]: c["ok"] for c in report["checks"]}


def test_a_fresh_database_is_healthy(db_url: str) -> None:
    code, report = status(db_url)
    assert code == 0
    assert report["healthy"] is True
    assert {"database", "schema", "pg_cron", "worker", "alerts"} <= set(checks(report))
    assert report["figures"]["contacts"] == 0


def test_jobs_waiting_with_no_worker_alive_is_unhealthy(db_url: str, db: Conn) -> None:
    apply_campaign(db, window_start="00:00", window_end="24:00")
    ingest(db, "2125550147", at("2026-11-23 15:00"))
    code, report = status(db_url)
    assert code == 1
    assert checks(report)["worker"] is False
    assert report["figures"]["jobs_ready"] == 1
    db.execute("select pgflow.worker_heartbeat(gen_random_uuid(), 'vm1', 42, '0.1.0')")
    code, report = status(db_url)
    assert (code, checks(report)["worker"]) == (0, True)


def test_an_open_critical_alert_is_unhealthy(db_url: str, db: Conn) -> None:
    # a live worker, so the alert's own deliver_alert job does not count against health
    db.execute("select pgflow.worker_heartbeat(gen_random_uuid(), 'vm1', 42, '0.1.0')")
    db.execute("select pgflow.open_alert('retell_unauthorized', 'critical', 'bad key')")
    code, report = status(db_url)
    assert (code, checks(report)["alerts"]) == (1, False)
    db.execute("select pgflow.resolve_alert('retell_unauthorized')")
    assert status(db_url)[0] == 0


def test_pending_migrations_are_unhealthy(empty_db_url: str) -> None:
    code, report = status(empty_db_url)
    assert code == 1
    assert checks(report)["schema"] is False

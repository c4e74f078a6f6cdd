"""What a lead costs the database in planning: the functions its one call runs keep their
plans for the session.

PostgreSQL 15 keeps no plan for a SQL-language function it cannot inline, and ours never
inline (`set search_path`): such a function is parsed and planned again in every
transaction, that is for every lead (bench/RESULTS.md, Notes: a third of a lead's database
time before migration 0044). So the functions on a lead's path are plpgsql, and
`ingest_lead` runs its statements, and those it calls, on generic plans."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.factories import apply_campaign, at, ingest

Conn = psycopg.Connection[Any]
# Monday 2026-11-23 15:00 UTC = 10:00 in New York: step 1 goes at once.
MORNING = at("2026-11-23 15:00")

# SQL-language functions allowed on a lead's path: none (each would be planned again for
# every lead). Never add one.
SQL_ON_THE_PATH: set[str] = set()


def functions_run(db: Conn, phone: str, **fields: Any) -> dict[str, str]:
    """The pgflow functions one lead's ingest ran (name -> language), counted by
    PostgreSQL's own statistics of the current transaction, which is rolled back."""
    with db.transaction(force_rollback=True):
        db.execute("set local track_functions = 'all'")
        assert ingest(db, phone, MORNING, **fields)["status"] == "created"
        rows = db.execute(
            "select p.proname, l.lanname from pg_catalog.pg_proc p"
            " join pg_catalog.pg_namespace n on n.oid = p.pronamespace"
            " join pg_catalog.pg_language l on l.oid = p.prolang"
            " where n.nspname = 'pgflow' and pg_catalog.pg_stat_get_xact_function_calls(p.oid) > 0"
        ).fetchall()
    return {str(name): str(language) for name, language in rows}


def test_a_lead_runs_no_sql_function_but_those_of_other_areas_listed(db: Conn) -> None:
    apply_campaign(db, window_start="00:00", window_end="24:00")
    leads: list[tuple[str, dict[str, Any]]] = [
        ("(212) 555-0147", {"first_name": "Sam"}),
        (
            "+1 415 555 0199",
            {
                "first_name": "Ana",
                "state": "New York",
                "timezone": "America/New_York",
                "consent": {"at": "2026-11-23T14:59:00Z", "text": "I agree", "ip": "10.0.0.1"},
            },
        ),
    ]
    for phone, fields in leads:
        run = functions_run(db, phone, **fields)
        assert {"ingest_lead", "_dispatch_steps", "_state_code", "sender_for"} <= set(run)
        planned_per_lead = {name for name, language in run.items() if language == "sql"}
        assert planned_per_lead == SQL_ON_THE_PATH, planned_per_lead


def test_ingest_lead_runs_on_generic_plans(db: Conn) -> None:
    config = db.execute(
        "select p.proconfig from pg_catalog.pg_proc p"
        " where p.oid = 'pgflow.ingest_lead(jsonb, timestamptz, jsonb)'::regprocedure"
    ).fetchone()
    assert config is not None
    assert "plan_cache_mode=force_generic_plan" in config[0]

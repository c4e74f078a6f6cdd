"""pg_cron is preloaded and schedules work in the project (cron) database."""

from __future__ import annotations

import psycopg

from pgflow import migrations
from tests.conftest import with_database
from tests.helpers import row, scalar


def test_pg_cron_preloaded_and_schedules_in_project_database(server_url: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        preload = scalar(conn, "show shared_preload_libraries")
        cron_db = scalar(conn, "select current_setting('cron.database_name')")
    assert "pg_cron" in preload
    project_url = with_database(server_url, cron_db)
    migrations.migrate(project_url)
    with psycopg.connect(project_url, autocommit=True) as conn:
        job = scalar(conn, "select cron.schedule('pgflow-test-probe', '*/5 * * * *', 'select 1')")
        try:
            found = row(
                conn, "select schedule, command, database from cron.job where jobid = %s", [job]
            )
            assert found == ("*/5 * * * *", "select 1", cron_db)
        finally:
            conn.execute("select cron.unschedule('pgflow-test-probe')")
        left = scalar(conn, "select count(*) from cron.job where jobname = 'pgflow-test-probe'")
        assert left == 0


def test_tick_and_prune_are_scheduled_by_name(server_url: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        cron_db = scalar(conn, "select current_setting('cron.database_name')")
    project_url = with_database(server_url, cron_db)
    migrations.migrate(project_url)
    with psycopg.connect(project_url, autocommit=True) as conn:
        jobs = conn.execute(
            "select jobname, schedule, command from cron.job"
            " where jobname like 'pgflow-%%' and jobname <> 'pgflow-test-probe' order by 1"
        ).fetchall()
    assert jobs == [
        ("pgflow-prune", "17 * * * *", "select pgflow.prune()"),
        ("pgflow-tick", "* * * * *", "select pgflow.tick()"),
    ]


def test_status_of_the_project_database_sees_the_tick_schedule(server_url: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        cron_db = scalar(conn, "select current_setting('cron.database_name')")
    project_url = with_database(server_url, cron_db)
    migrations.migrate(project_url)
    with psycopg.connect(project_url, autocommit=True) as conn:
        health = scalar(conn, "select pgflow.health()")
    tick = {c["name"]: c for c in health["checks"]}["tick"]
    # the launcher runs, the job is scheduled: either no run yet, or a recent success
    assert tick["ok"] is True, tick
    assert tick["detail"] == "scheduled; no run yet" or tick["detail"].startswith("last ran")

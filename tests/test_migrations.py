"""The migration chain: apply, re-apply (no-op), roll back all, apply again, snapshot."""

from __future__ import annotations

import json

import psycopg
from typer.testing import CliRunner

from pgflow import migrations
from pgflow.cli import db as db_cli
from tests.snapshot import SNAPSHOT, schema_dump


def objects(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select c.relkind::text, c.relname from pg_class c"
            " where c.relnamespace = 'pgflow'::regnamespace and c.relname not like '%%yoyo%%'"
            " union all select 'f', p.proname from pg_proc p"
            " where p.pronamespace = 'pgflow'::regnamespace order by 1, 2"
        ).fetchall()


def test_apply_twice_is_a_noop(empty_db_url: str) -> None:
    first = migrations.migrate(empty_db_url)
    assert first == [
        m.name.removesuffix(".sql")
        for m in sorted(
            p
            for p in migrations.MIGRATIONS_DIR.glob("*.sql")
            if not p.name.endswith(".rollback.sql")
        )
    ]
    before = objects(empty_db_url)
    assert migrations.migrate(empty_db_url) == []
    assert objects(empty_db_url) == before
    assert migrations.status(empty_db_url).current


def test_rollback_all_then_apply_again(empty_db_url: str) -> None:
    migrations.migrate(empty_db_url)
    applied = objects(empty_db_url)
    rolled = migrations.rollback(empty_db_url)
    assert len(rolled) == len(migrations.status(empty_db_url).pending) > 0
    assert objects(empty_db_url) == []
    migrations.migrate(empty_db_url)
    assert objects(empty_db_url) == applied


def test_committed_snapshot_matches_migrations(db_url: str) -> None:
    assert SNAPSHOT.read_text() == schema_dump(db_url), (
        "sql/schema.sql is stale: run `make schema-snapshot` and commit it"
    )


def test_every_migration_has_header_and_rollback() -> None:
    for path in sorted(migrations.MIGRATIONS_DIR.iterdir()):
        assert path.suffix == ".sql", f"{path.name}: only .sql migrations belong here"
        lines = path.read_text().splitlines()
        assert lines[0].startswith("-- "), f"{path.name}: first line must be a comment"
        if path.name.endswith(".rollback.sql"):
            continue
        assert lines[1].startswith("-- depends:"), f"{path.name}: second line must be depends"
        assert path.with_name(path.stem + ".rollback.sql").exists(), f"{path.name}: no rollback"


def test_db_cli_migrate_and_status(empty_db_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": empty_db_url}
    before = runner.invoke(db_cli.app, ["status", "--json"], env=env)
    assert before.exit_code == 1
    assert json.loads(before.output)["applied"] == []
    applied = runner.invoke(db_cli.app, ["migrate"], env=env)
    assert applied.exit_code == 0, applied.output
    assert "applied 0001_create_schema" in applied.output
    assert "nothing to apply" in runner.invoke(db_cli.app, ["migrate"], env=env).output
    after = runner.invoke(db_cli.app, ["status", "--json"], env=env)
    assert after.exit_code == 0
    assert json.loads(after.output)["pending"] == []

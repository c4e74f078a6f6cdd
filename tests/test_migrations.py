"""The migration chain: apply, re-apply (no-op), roll back all, apply again, snapshot."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from pgflow import migrations
from pgflow.cli import db as db_cli
from tests import releases
from tests.conftest import admin, drop_database, with_database
from tests.snapshot import SNAPSHOT, normalise, schema_dump


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


# --- released migrations are frozen (sql/README.md) ------------------------------------------


def test_released_migrations_are_unchanged() -> None:
    pins = releases.read_pins()
    assert pins, "sql/migrations.lock pins no migration"
    for name, digest in sorted(pins.items()):
        path = releases.MIGRATIONS / name
        assert path.exists(), f"{name} was released and must not be removed"
        assert releases.sha256(path) == digest, (
            f"{name} changed after it was released: a database already past it never sees "
            "the change. Restore it and put the change in a new migration (sql/README.md)."
        )


def test_every_release_is_pinned() -> None:
    pins = releases.read_pins()
    dumps = releases.release_dumps()
    assert dumps, "tests/data/releases holds no release"
    for dump in dumps:
        applied = re.findall(r"^[0-9a-f]{64}\t(\S+)\t", dump.read_text(), flags=re.M)
        assert applied, f"{dump.name} records no applied migration"
        assert applied[-1] == dump.stem
        for migration in applied:
            assert f"{migration}.sql" in pins, f"{migration} is in {dump.name} but not pinned"


@pytest.mark.parametrize("dump", releases.release_dumps(), ids=lambda p: p.stem)
def test_upgrade_from_a_release_equals_a_fresh_build(
    dump: Path, server_url: str, template_db: str, tmp_path: Path
) -> None:
    """A database built by an earlier migration set, upgraded to head, is the same schema
    (functions, grants, constraints) as one built from scratch: the gap a fresh-chain
    snapshot cannot see. Both sides go through one dump and restore before they are
    compared, because a restore re-parenthesises CHECK expressions."""
    with scratch_databases(server_url, 3) as (upgraded, round_a, round_b):
        releases.restore(upgraded, dump)
        assert migrations.status(upgraded).applied[-1] == dump.stem
        migrations.migrate(upgraded)
        assert migrations.status(upgraded).current
        fresh = with_database(server_url, template_db)
        sides = []
        for source, target in ((upgraded, round_a), (fresh, round_b)):
            out = tmp_path / f"{target.rsplit('/', 1)[-1]}.sql"
            out.write_text(releases.restorable(releases.full_dump(source)))
            releases.restore(target, out)
            sides.append(normalise(releases.full_dump(target)))
        assert sides[0] == sides[1], _first_difference(sides[0], sides[1])


@contextlib.contextmanager
def scratch_databases(server_url: str, n: int) -> Iterator[list[str]]:
    names = [f"pgflow_up_{os.getpid()}_{uuid.uuid4().hex[:6]}" for _ in range(n)]
    with admin(server_url) as conn:
        for name in names:
            conn.execute(f'create database "{name}"')
    try:
        yield [with_database(server_url, name) for name in names]
    finally:
        for name in names:
            drop_database(server_url, name)


def _first_difference(upgraded: str, fresh: str) -> str:
    diff = difflib.unified_diff(
        fresh.splitlines(), upgraded.splitlines(), "fresh build", "upgraded release", lineterm=""
    )
    return "upgraded schema differs from a fresh build:\n" + "\n".join(list(diff)[:40])


def test_db_upgrade_dry_run_shows_what_would_change(empty_db_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": empty_db_url}
    plan = runner.invoke(db_cli.app, ["upgrade", "--dry-run", "--json"], env=env)
    assert plan.exit_code == 0, plan.output
    items = json.loads(plan.output)
    assert [i["migration"] for i in items] == list(migrations.migration_ids())
    by_id = {i["migration"]: i for i in items}
    assert "create table pgflow.contacts" in by_id["0001_create_schema"]["changes"]
    assert "create function pgflow.watch(...)" in by_id["0018_create_alerts"]["changes"]
    assert any(
        c.startswith("alter table pgflow.alerts: add column resolve_notified_at")
        for c in by_id["0018_create_alerts"]["changes"]
    )
    assert by_id["0013_index_chat_ids"]["changes"][0] == (
        "create unique index messages_chat_message_id_key on pgflow.messages"
    )
    assert migrations.status(empty_db_url).applied == []  # a dry run changes nothing
    text = runner.invoke(db_cli.app, ["upgrade", "--dry-run"], env=env)
    assert "0018_create_alerts  Alerts that open and resolve by themselves" in text.output
    assert runner.invoke(db_cli.app, ["upgrade"], env=env).exit_code == 0
    after = runner.invoke(db_cli.app, ["upgrade", "--dry-run"], env=env)
    assert "schema is current; nothing would run" in after.output

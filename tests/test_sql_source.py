"""sql/functions/ (the readable current source) is what the migrations build, and a change
made in one place only (the source or a migration) is caught (tests/sqlsource.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import sqlsource

Conn = psycopg.Connection[Any]


def test_the_source_is_what_the_migrations_build(db: Conn) -> None:
    found = sqlsource.differences(db)
    assert not found, (
        "sql/functions/ and the migrations differ: edit the source, then `make migration "
        "NAME=verb_object` (sql/README.md)\n" + "\n".join(d.describe() for d in found)
    )


def test_every_function_is_defined_in_one_file_named_for_its_area() -> None:
    names = sqlsource.defined_names()
    assert {"tick", "ingest_lead", "record_send", "claim_message"} <= names.keys()
    assert not {n: f for n, f in names.items() if len(f) > 1}
    assert names["tick"] == ["drip.sql"]
    assert names["ingest_lead"] == ["intake.sql"]
    assert names["claim_message"] == ["send.sql"]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of sql/functions/ to change."""
    return Path(shutil.copytree(sqlsource.SOURCE, tmp_path / "functions"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_function_changed_in_the_source_alone_is_caught(db: Conn, source: Path) -> None:
    edit(source / "drip.sql", "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock /* x */")
    found = sqlsource.differences(db, source)
    assert [(d.identity.split("(")[0], d.what) for d in found] == [("pgflow.tick", "changed")]
    assert "/* x */" in found[0].describe()


def test_a_function_changed_by_a_migration_alone_is_caught(db: Conn) -> None:
    # what a new migration would do if nobody updated sql/functions/
    definition = db.execute(
        "select pg_get_functiondef('pgflow.sms_segments(text)'::regprocedure)"
    ).fetchone()
    assert definition is not None
    db.execute(definition[0].replace("$function$\n", "$function$\n-- changed\n", 1))
    found = sqlsource.differences(db)
    assert [(d.identity, d.what) for d in found] == [("pgflow.sms_segments(text)", "changed")]


def test_a_function_left_out_added_or_granted_otherwise_is_caught(db: Conn, source: Path) -> None:
    text = (source / "operations.sql").read_text()
    start = text.index("create or replace function pgflow.send_latency(")
    (source / "operations.sql").write_text(text[:start])  # send_latency is last in the file
    (source / "common.sql").write_text(
        (source / "common.sql").read_text()
        + "\ncreate or replace function pgflow.answer() returns int language sql"
        + " set search_path = '' as $$ select 42 $$;\n"
    )
    edit(source / "roles.sql", "  pgflow.health(timestamptz),\n", "")  # the first: web's
    found = {(d.identity.split("(")[0], d.what) for d in sqlsource.differences(db, source)}
    assert found == {
        ("pgflow.send_latency", "missing"),
        ("pgflow.answer", "added"),
        ("pgflow.health", "grants"),
    }


def test_a_function_defined_twice_is_caught(db: Conn, source: Path) -> None:
    tick = sqlsource.statements_by_name(source)["tick"]
    (source / "alerts.sql").write_text((source / "alerts.sql").read_text() + "\n" + tick + "\n")
    found = sqlsource.differences(db, source)
    twice = [d for d in found if d.what.startswith("defined in")]
    assert [d.describe() for d in twice] == [
        "pgflow.tick: defined in ['alerts.sql', 'drip.sql']; keep one"
    ]


def test_the_migration_written_from_the_source_makes_them_equal(db: Conn, source: Path) -> None:
    edit(source / "drip.sql", "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock /* y */")
    text = (source / "operations.sql").read_text()
    (source / "operations.sql").write_text(
        text[: text.index("create or replace function pgflow.send_latency(")]
    )
    edit(
        source / "roles.sql",
        "  to pgflow_reader;",
        "  , pgflow.tick(timestamptz, integer)\n  to pgflow_reader;",
    )
    roles = source / "roles.sql"
    roles.write_text(re.sub(r",?\n  pgflow\.send_latency\([^)]*\)", "", roles.read_text()))
    diffs = sqlsource.differences(db, source)
    up, down = sqlsource.migration_text(diffs, "replace_tick", "0099_previous", source)
    assert up.splitlines()[1] == "-- depends: 0099_previous"
    assert re.search(r"(?m)^drop function pgflow\.send_latency\(", up)
    assert (
        "grant execute on function pgflow.tick(timestamp with time zone,integer) to pgflow_reader;"
        in up
    )
    db.execute(up)
    assert sqlsource.differences(db, source) == []
    db.execute(down)
    assert sqlsource.differences(db) == []

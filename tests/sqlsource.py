"""The readable SQL source (sql/functions/) against what the migrations build.

sql/functions/<area>.sql holds the current definition of every function and view of schema
pgflow, and sql/functions/roles.sql who may execute which function. The migrations stay the
only thing a database ever runs; this module keeps the two equal:

- `differences(conn)` applies the source inside a transaction on a migrated database, reads
  the catalog before and after, and rolls back: every function or view whose definition,
  attributes or grants the source would change, every one the source leaves out, and every
  one it adds. Empty means the source is what the migrations built.
- `python -m tests.sqlsource migration NAME` (`make migration NAME=...`) writes the next
  numbered migration from those differences: the changed and new definitions as written in
  the source, `drop function` for what the source removed, grants as roles.sql says, and a
  rollback with the definitions the database had.
- `python -m tests.sqlsource check` prints the differences (exit 1 when there are any).

The one way to change a function: edit its file, run `make migration NAME=verb_object`,
read the migration, commit both (sql/README.md)."""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import psycopg
import sqlparse

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "sql" / "functions"
ROLES_FILE = SOURCE / "roles.sql"
MIGRATIONS = ROOT / "sql" / "migrations"
ROLES = ("pgflow_web", "pgflow_worker", "pgflow_operator", "pgflow_reader")
DEFINES = re.compile(r"(?im)^create\s+or\s+replace\s+(function|view)\s+pgflow\.(\w+)\s*\(?")


@dataclasses.dataclass(frozen=True)
class Item:
    """A function or view as the catalog has it."""

    kind: str  # function | view
    identity: str  # pgflow.name(argtypes) or pgflow.name
    name: str
    definition: str
    grants: frozenset[str]  # roles with EXECUTE (functions); PUBLIC as "public"


@dataclasses.dataclass(frozen=True)
class Difference:
    identity: str
    what: str  # changed | missing (in the database, not in the source) | added | grants
    before: Item | None
    after: Item | None

    def describe(self) -> str:
        if self.what.startswith("defined in"):
            return f"{self.identity}: {self.what}; keep one"
        if self.what == "missing":
            return f"{self.identity}: in the database but in no file of sql/functions/"
        if self.what == "added":
            return f"{self.identity}: in sql/functions/ but not built by the migrations"
        assert self.before is not None
        assert self.after is not None
        if self.what == "grants":
            return (
                f"{self.identity}: EXECUTE for {sorted(self.before.grants)} in the database, "
                f"{sorted(self.after.grants)} in sql/functions/roles.sql"
            )
        diff = difflib.unified_diff(
            self.before.definition.splitlines(),
            self.after.definition.splitlines(),
            "migrations",
            "sql/functions",
            lineterm="",
            n=1,
        )
        return f"{self.identity}: the source differs from the migrations\n" + "\n".join(diff)


def source_files(source: Path = SOURCE) -> list[Path]:
    """The area files in the order they are applied (roles.sql last)."""
    roles = source / ROLES_FILE.name
    return [*sorted(p for p in source.glob("*.sql") if p != roles), roles]


def definitions(source: Path = SOURCE) -> list[tuple[str, str, str]]:
    """(file, name, statement) for each `create or replace function|view` of the source, the
    statement with the comment block right above it (statements split by sqlparse, as
    `pgflow db upgrade --dry-run` splits a migration)."""
    found: list[tuple[str, str, str]] = []
    for path in source_files(source):
        for statement in sqlparse.split(path.read_text(encoding="utf-8")):
            lines = statement.splitlines()
            code = (i for i, line in enumerate(lines) if line.strip() and line[:2] != "--")
            first = next(code, 0)
            match = DEFINES.match(lines[first]) if lines else None
            if match is None:
                continue
            blank = [i for i in range(first) if not lines[i].strip()]
            above = blank[-1] + 1 if blank else 0
            found.append((path.name, match.group(2), "\n".join(lines[above:])))
    return found


def defined_names(source: Path = SOURCE) -> dict[str, list[str]]:
    """name -> the files that define it (a name in two files is an error)."""
    where: dict[str, list[str]] = {}
    for file, name, _ in definitions(source):
        where.setdefault(name, []).append(file)
    return where


def statements_by_name(source: Path = SOURCE) -> dict[str, str]:
    """name -> its statement as written in the source, for writing a migration."""
    return {name: statement for _, name, statement in definitions(source)}


CATALOG = """
select 'function' as kind, p.oid::regprocedure::text as identity, p.proname::text as name,
       pg_catalog.pg_get_functiondef(p.oid) as definition,
       array(select case when a.grantee = 0 then 'public' else a.grantee::regrole::text end
               from pg_catalog.aclexplode(
                      coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
              where a.privilege_type = 'EXECUTE' and a.grantee <> p.proowner) as grants,
       p.ctid::text as version
  from pg_catalog.pg_proc p
 where p.pronamespace = 'pgflow'::regnamespace
union all
select 'view', c.oid::regclass::text, c.relname::text,
       pg_catalog.pg_get_viewdef(c.oid), '{}'::text[],
       c.ctid::text
  from pg_catalog.pg_class c
 where c.relnamespace = 'pgflow'::regnamespace and c.relkind = 'v'
"""


def catalog(conn: psycopg.Connection[Any]) -> tuple[dict[str, Item], dict[str, str]]:
    """Every function and view of schema pgflow, and the version (ctid) of its catalog row:
    a statement that writes the row, even with the same definition, gives it a new one."""
    items: dict[str, Item] = {}
    versions: dict[str, str] = {}
    for kind, identity, name, definition, grants, version in conn.execute(CATALOG):
        items[identity] = Item(kind, identity, name, definition, frozenset(grants))
        versions[identity] = version
    return items, versions


def revoke_all(conn: psycopg.Connection[Any]) -> None:
    """No EXECUTE for anyone but the owner, so the grants that follow are roles.sql's alone."""
    roles = ", ".join(["public", *ROLES])
    conn.execute(f"revoke execute on all functions in schema pgflow from {roles}")


def apply_source(
    conn: psycopg.Connection[Any], source: Path = SOURCE, *, roles: bool = True
) -> None:
    """Run the area files (and roles.sql) in the caller's transaction."""
    for path in source_files(source):
        if path.name != ROLES_FILE.name or roles:
            conn.execute(path.read_text(encoding="utf-8"))


def differences(conn: psycopg.Connection[Any], source: Path = SOURCE) -> list[Difference]:
    """What the source would change in this migrated database (nothing is kept)."""
    found: list[Difference] = []
    for name, files in sorted(defined_names(source).items()):
        if len(files) > 1:
            found.append(Difference(f"pgflow.{name}", f"defined in {files}", None, None))
    with conn.transaction(force_rollback=True):
        before, _ = catalog(conn)
        revoke_all(conn)
        _, revoked = catalog(conn)
        apply_source(conn, source, roles=False)
        _, written = catalog(conn)
        roles = (source / ROLES_FILE.name).read_text(encoding="utf-8")
        conn.execute(roles)
        after, _ = catalog(conn)
    for identity in sorted(before.keys() | after.keys()):
        old, new = before.get(identity), after.get(identity)
        if old is None:
            found.append(Difference(identity, "added", None, new))
        elif written.get(identity) == revoked.get(identity):
            found.append(Difference(identity, "missing", old, None))
        elif new is not None and old.definition != new.definition:
            found.append(Difference(identity, "changed", old, new))
        elif new is not None and old.grants != new.grants:
            found.append(Difference(identity, "grants", old, new))
    return found


# --- writing a migration from the differences ----------------------------------------------


def grant_lines(identity: str, old: frozenset[str], new: frozenset[str]) -> list[str]:
    lines = [f"revoke execute on function {identity} from {role};" for role in sorted(old - new)]
    lines += [f"grant execute on function {identity} to {role};" for role in sorted(new - old)]
    return lines


def migration_text(
    diffs: list[Difference], name: str, previous: str, source: Path = SOURCE
) -> tuple[str, str]:
    """(migration, rollback) for these differences."""
    statements = statements_by_name(source)
    up: list[str] = []
    down: list[str] = []
    for d in diffs:
        if d.what == "missing":
            assert d.before is not None
            drop = "view" if d.before.kind == "view" else "function"
            up.append(f"drop {drop} {d.identity};")
            grants = grant_lines(d.identity, frozenset({"public"}), d.before.grants)
            down.append("\n".join([d.before.definition.rstrip() + ";", *grants]))
        elif d.what in ("changed", "added"):
            item = d.after
            assert item is not None
            if d.before is None:
                public = frozenset({"public"}) if item.kind == "function" else frozenset()
                grants = grant_lines(d.identity, public, item.grants)
                down.append(f"drop {item.kind} {d.identity};")
            else:
                grants = grant_lines(d.identity, d.before.grants, item.grants)
                back = grant_lines(d.identity, item.grants, d.before.grants)
                down.append("\n".join([d.before.definition.rstrip() + ";", *back]))
            up.append("\n".join([statements[item.name].rstrip(), *grants]))
        elif d.what == "grants":
            assert d.before is not None
            assert d.after is not None
            up.append("\n".join(grant_lines(d.identity, d.before.grants, d.after.grants)))
            down.append("\n".join(grant_lines(d.identity, d.after.grants, d.before.grants)))
        else:
            raise SystemExit(f"cannot write a migration: {d.describe()}")
    names = ", ".join(sorted({d.identity.split("(")[0] for d in diffs}))
    head = f"-- {name.replace('_', ' ').capitalize()}: {names} (from sql/functions/).\n"
    body = head + f"-- depends: {previous}\n\n" + "\n\n".join(up) + "\n"
    rollback = head + f"-- depends: {previous}\n\n" + "\n\n".join(reversed(down)) + "\n"
    return body, rollback


def main(argv: list[str]) -> int:
    from pgflow import migrations
    from pgflow.config import Settings
    from tests.conftest import scratch_database

    if (
        not argv
        or argv[0] not in ("check", "migration")
        or (argv[0] == "migration") != (len(argv) == 2)
    ):
        sys.stderr.write("usage: python -m tests.sqlsource check | migration NAME\n")
        return 2
    if len(argv) == 2 and not re.fullmatch(r"[a-z][a-z0-9_]*", argv[1]):
        sys.stderr.write("NAME is lower_snake_case, a verb and an object: replace_tick\n")
        return 2
    with (
        scratch_database(Settings.from_env().database_url, "pgflow_src") as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        diffs = differences(conn)
    if argv[0] == "check":
        for d in diffs:
            sys.stdout.write(d.describe() + "\n")
        sys.stdout.write(f"{len(diffs)} difference(s) between sql/functions/ and the migrations\n")
        return 1 if diffs else 0
    if not diffs:
        sys.stdout.write("sql/functions/ is what the migrations build: no migration needed\n")
        return 0
    previous = migrations.migration_ids()[-1]
    number = int(previous.split("_", 1)[0]) + 1
    stem = f"{number:04d}_{argv[1]}"
    body, rollback = migration_text(diffs, argv[1], previous)
    (MIGRATIONS / f"{stem}.sql").write_text(body, encoding="utf-8")
    (MIGRATIONS / f"{stem}.rollback.sql").write_text(rollback, encoding="utf-8")
    for d in diffs:
        sys.stdout.write(f"  {d.what:<8} {d.identity}\n")
    sys.stdout.write(f"wrote sql/migrations/{stem}.sql and its rollback: read them, then commit\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

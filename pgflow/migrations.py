"""Schema migrations: a thin wrapper around yoyo over `sql/migrations/`.

yoyo's bookkeeping tables live in schema `pgflow` too (its connection's search_path)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from yoyo import get_backend, read_migrations
from yoyo.backends.base import DatabaseBackend

_here = Path(__file__).resolve().parent
# Installed wheels carry sql/ inside the package; a checkout has it beside the package.
SQL_DIR = _here / "sql" if (_here / "sql" / "migrations").is_dir() else _here.parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"


@dataclasses.dataclass(frozen=True)
class MigrationStatus:
    applied: list[str]
    pending: list[str]

    @property
    def current(self) -> bool:
        return not self.pending


def yoyo_url(database_url: str) -> str:
    """yoyo's URL for a libpq URL: the psycopg 3 backend, search_path = pgflow."""
    parts = urlsplit(database_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", "pgflow"))
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query), ""))


@contextmanager
def _backend(database_url: str) -> Iterator[DatabaseBackend]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create schema if not exists pgflow")
    backend = get_backend(yoyo_url(database_url))
    try:
        yield backend
    finally:
        backend.connection.close()


# yoyo's bookkeeping table (schema pgflow, see yoyo_url); read directly so that asking for
# the status never creates anything and needs nothing beyond SELECT on it.
APPLIED_MIGRATIONS_SQL = "select migration_id from pgflow._yoyo_migration"


def migration_ids() -> list[str]:
    """The ids of every migration in sql/migrations/, in order."""
    return [m.id for m in read_migrations(str(MIGRATIONS_DIR))]


def status(database_url: str) -> MigrationStatus:
    """Applied and pending migrations; read-only."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("select to_regclass('pgflow._yoyo_migration')").fetchone()
        applied: set[str] = set()
        if exists is not None and exists[0] is not None:
            applied = {r[0] for r in conn.execute(APPLIED_MIGRATIONS_SQL)}
    ids = migration_ids()
    return MigrationStatus(
        applied=[i for i in ids if i in applied],
        pending=[i for i in ids if i not in applied],
    )


def migrate(database_url: str) -> list[str]:
    """Apply every pending migration; returns the ids applied (empty when current)."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(database_url) as backend, backend.lock():
        todo = backend.to_apply(migrations)
        backend.apply_migrations(todo)
        return [m.id for m in todo]


def rollback(database_url: str, count: int | None = None) -> list[str]:
    """Roll back the last `count` applied migrations (all when None); returns their ids."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(database_url) as backend, backend.lock():
        todo = backend.to_rollback(migrations)
        if count is not None:
            todo = todo[:count]
        backend.rollback_migrations(todo)
        return [m.id for m in todo]

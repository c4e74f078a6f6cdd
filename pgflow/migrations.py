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


def status(database_url: str) -> MigrationStatus:
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(database_url) as backend:
        pending = {m.id for m in backend.to_apply(migrations)}
    return MigrationStatus(
        applied=[m.id for m in migrations if m.id not in pending],
        pending=[m.id for m in migrations if m.id in pending],
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

"""Schema migrations: a thin wrapper around yoyo over `sql/migrations/`.

yoyo's bookkeeping tables live in schema `pgflow` too (its connection's search_path).
Whether a database is current is decided in one place, `pending()`, from the applied ids
that `pgflow.db.applied_migrations()` reads; `pgflow db status`, `pgflow status`,
`/readyz` and the worker's start-up check all go through it."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from yoyo import get_backend, read_migrations
from yoyo.backends.base import DatabaseBackend

from pgflow import db

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

    def describe(self) -> str:
        """One line for a check: how many are applied, which are pending."""
        if not self.applied and self.pending:
            return "schema not migrated; run `pgflow db migrate`"
        text = f"{len(self.applied)} migrations applied"
        if self.pending:
            text += f", {len(self.pending)} pending: {', '.join(self.pending)}"
            text += "; run `pgflow db migrate`"
        return text


def yoyo_url(database_url: str) -> str:
    """yoyo's URL for a libpq URL: the psycopg 3 backend, search_path = pgflow."""
    parts = urlsplit(database_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", "pgflow"))
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query), ""))


@contextmanager
def _backend(database_url: str) -> Iterator[DatabaseBackend]:
    with db.connect(database_url, application="migrate") as conn:
        db.create_schema().run(conn)
    backend = get_backend(yoyo_url(database_url))
    try:
        yield backend
    finally:
        backend.connection.close()


@functools.cache
def migration_ids() -> tuple[str, ...]:
    """The ids of every migration in sql/migrations/, in order."""
    return tuple(m.id for m in read_migrations(str(MIGRATIONS_DIR)))


def compare(applied: Iterable[str] | None) -> MigrationStatus:
    """The one pending-migrations check: the ids this code expects against those applied
    (None: the database was never migrated)."""
    done = set(applied or ())
    ids = migration_ids()
    return MigrationStatus(
        applied=[i for i in ids if i in done],
        pending=[i for i in ids if i not in done],
    )


def status(database_url: str) -> MigrationStatus:
    """Applied and pending migrations; read-only."""
    with db.connect(database_url, application="status") as conn:
        return compare(db.applied_migrations().run(conn))


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


_STATEMENT = re.compile(
    r"^\s*(create(?:\s+or\s+replace)?(?:\s+unique)?\s+"
    r"(?:table|function|view|index|trigger|schema|type|role|extension)"
    r"|alter\s+(?:table|function|type)|drop\s+\w+|grant|revoke|insert\s+into|update|delete|"
    r"comment\s+on|select|do)\b",
    re.IGNORECASE,
)
_NAME = re.compile(
    r"(?:table|function|view|index|trigger|type|extension|into|on)\s+(?:concurrently\s+)?"
    r"(?:if\s+(?:not\s+)?exists\s+)?([\w.]+(?:\([^)]*\))?)",
    re.IGNORECASE,
)


def describe(migration_id: str) -> list[str]:
    """What a migration changes, one line per statement ("create function pgflow.watch(...)",
    "alter table pgflow.alerts", "grant ..."), read from its SQL: what `pgflow db upgrade
    --dry-run` shows a DBA before an upgrade."""
    import sqlparse

    path = MIGRATIONS_DIR / f"{migration_id}.sql"
    changes: list[str] = []
    for statement in sqlparse.split(path.read_text(encoding="utf-8")):
        text = sqlparse.format(statement, strip_comments=True).strip()
        match = _STATEMENT.match(text)
        if not match:
            continue
        verb = " ".join(match.group(1).lower().split())
        name = _NAME.search(text)
        target = name.group(1) if name and not verb.startswith(("grant", "revoke", "do")) else ""
        target = " ".join(target.split())
        if "(" in target:
            target = target.split("(", 1)[0] + "(...)"
        if verb.endswith("index"):
            table = re.search(r"\bon\s+([\w.]+)", text, re.IGNORECASE)
            target += f" on {table.group(1)}" if table else ""
        elif verb == "alter table":
            actions = re.findall(
                r"\b((?:add|drop|validate|alter)\s+(?:column|constraint)\s+"
                r"(?:if\s+(?:not\s+)?exists\s+)?\w+)",
                text,
                re.IGNORECASE,
            )
            target += (
                f": {', '.join(' '.join(a.lower().split()) for a in actions)}" if actions else ""
            )
        elif verb in ("grant", "revoke"):
            target = " ".join(text.split()[1:4]) + " ..."
        changes.append(f"{verb} {target}".strip())
    return changes


def comment(migration_id: str) -> str:
    """A migration's one-line comment (its first line)."""
    first = (MIGRATIONS_DIR / f"{migration_id}.sql").read_text(encoding="utf-8").splitlines()[0]
    return first.removeprefix("--").strip()

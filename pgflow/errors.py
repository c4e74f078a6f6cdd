"""Exceptions the engine raises (`pgflow.db` maps database errors onto them), and how one
is shown on one line."""

from __future__ import annotations


class PgflowError(Exception):
    """Base class: every error the engine raises on purpose."""

    code = "error"


class ConfigError(PgflowError):
    """Configuration is missing or invalid."""

    code = "config"


class InvalidInput(PgflowError):
    """Input failed validation (SQLSTATE PF003)."""

    code = "invalid"


class NotFound(PgflowError):
    """A referenced row does not exist (SQLSTATE PF002)."""

    code = "not_found"


class IllegalTransition(PgflowError):
    """A state change from a state that does not allow it (SQLSTATE PF001)."""

    code = "illegal_transition"


class Conflict(PgflowError):
    """The change conflicts with what already happened (SQLSTATE PF005)."""

    code = "conflict"


class Suppressed(PgflowError):
    """The contact is opted out (SQLSTATE PF004)."""

    code = "suppressed"


class SchemaNotCurrent(PgflowError):
    """The database has migrations that are not applied."""

    code = "schema_not_current"


def first_line(exc: BaseException, limit: int | None = 300) -> str:
    """An error's first line (its type's name when it says nothing), for a log field or a
    one-line message; cut at `limit` characters (None: never cut)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    return line if limit is None else line[:limit]

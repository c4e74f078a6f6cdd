"""Database access: connections, the one place `pgflow.*` SQL functions are called, and the
mapping of database errors (by SQLSTATE) onto `pgflow.errors`."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgflow import errors

# Our own SQLSTATEs (class PF), raised by the SQL functions.
SQLSTATE_ERRORS: dict[str, type[errors.PgflowError]] = {
    "PF001": errors.IllegalTransition,
    "PF002": errors.NotFound,
    "PF003": errors.InvalidInput,
    "PF004": errors.Suppressed,
    "PF005": errors.Conflict,
}

APPLICATION_NAME = "pgflow"


def connect(url: str, *, autocommit: bool = True, application: str = "") -> psycopg.Connection[Any]:
    """A plain connection; autocommit so every SQL function call is its own transaction."""
    name = f"{APPLICATION_NAME}-{application}" if application else APPLICATION_NAME
    return psycopg.connect(url, autocommit=autocommit, application_name=name)


def map_error(exc: psycopg.Error) -> Exception:
    """The engine's exception for a database error, or the error itself."""
    state = exc.sqlstate or ""
    cls = SQLSTATE_ERRORS.get(state)
    if cls is None:
        return exc
    message = exc.diag.message_primary or str(exc)
    return cls(message)


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise database errors with our own SQLSTATEs as `pgflow.errors` exceptions."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = map_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def call(conn: psycopg.Connection[Any], function: str, *args: Any, **kwargs: Any) -> Any:
    """Call `pgflow.<function>` with positional and named arguments; return its scalar value.

    dicts are passed as jsonb, lists as arrays; the function name is quoted as an identifier.
    """
    query, params = _function_call(function, args, kwargs)
    with mapped_errors(), conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
        return None if row is None else row[0]


def _function_call(
    function: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[sql.Composed, list[Any]]:
    params: list[Any] = [_adapt(a) for a in args]
    parts: list[sql.Composable] = [sql.Placeholder() for _ in args]
    for name, value in kwargs.items():
        parts.append(sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder()))
        params.append(_adapt(value))
    query = sql.SQL("select {}({})").format(
        sql.Identifier("pgflow", function), sql.SQL(", ").join(parts)
    )
    return query, params


async def acall(
    conn: psycopg.AsyncConnection[Any], function: str, *args: Any, **kwargs: Any
) -> Any:
    """`call` for async connections: one statement, our SQLSTATEs mapped."""
    query, params = _function_call(function, args, kwargs)
    with mapped_errors():
        async with conn.cursor() as cur:
            await cur.execute(query, params)
            row = await cur.fetchone()
            return None if row is None else row[0]


def fetch_all(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Rows of a read-only query as dicts (used by the CLI's read views)."""
    with mapped_errors(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query.encode(), params)
        return cur.fetchall()


def _adapt(value: Any) -> Any:
    if isinstance(value, dict):
        return Jsonb(value)
    return value


def now(conn: psycopg.Connection[Any]) -> dt.datetime:
    with conn.cursor() as cur:
        cur.execute("select now()")
        row = cur.fetchone()
        assert row is not None
        value: dt.datetime = row[0]
        return value


# --- the SQL functions, one thin wrapper each -------------------------------------------


def ingest_lead(
    conn: psycopg.Connection[Any],
    payload: Any,
    edge: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """pgflow.ingest_lead(): one lead in, {contact_id, enrollment_id, status} (or rejected)."""
    result: dict[str, Any] = call(conn, "ingest_lead", Jsonb(payload), now, edge)
    return result


def reject_lead(
    conn: psycopg.Connection[Any],
    raw_body: str,
    error: str,
    detail: str,
    source: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """pgflow.reject_lead(): record a lead body that could not be read at all."""
    result: dict[str, Any] = call(conn, "reject_lead", raw_body, error, detail, source, now)
    return result


def tick(conn: psycopg.Connection[Any], now: dt.datetime | None = None) -> dict[str, Any]:
    result: dict[str, Any] = call(conn, "tick", now)
    return result


def apply_campaigns(
    conn: psycopg.Connection[Any], doc: dict[str, Any], now: dt.datetime | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = call(conn, "apply_campaigns", doc, now)
    return result

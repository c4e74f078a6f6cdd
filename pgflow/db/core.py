"""The door's frame: connections, the error table, and `Call`, one statement that runs on
a sync connection (`.run(conn)`) or an async one (`await .arun(conn)`, `await
.arun_in(pool)`). The builders in the sibling modules return `Call`s made here."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, LiteralString, TypeVar, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgflow import errors

T = TypeVar("T")
Row = dict[str, Any]
Now = dt.datetime | None  # the injected clock: None is the database's now()

# Our own SQLSTATEs (class PF), raised by the SQL functions (sql/STATE_MACHINES.md).
SQLSTATE_ERRORS: dict[str, type[errors.PgflowError]] = {
    "PF001": errors.IllegalTransition,
    "PF002": errors.NotFound,
    "PF003": errors.InvalidInput,
    "PF004": errors.Suppressed,
    "PF005": errors.Conflict,
}

APPLICATION_NAME = "pgflow"
# Errors that mean "the database is not there right now" (restart, failover, network).
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)


def connect(url: str, *, autocommit: bool = True, application: str = "") -> psycopg.Connection[Any]:
    """A plain connection; autocommit so every call is its own transaction."""
    return psycopg.connect(url, autocommit=autocommit, application_name=_app_name(application))


def async_pool(
    url: str,
    *,
    application: str,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 10.0,
) -> AsyncConnectionPool[Any]:
    """A pool of autocommit async connections, not yet opened (`await pool.open()`).

    Each connection is checked before it is handed out, so the first request after a
    database restart gets a live connection instead of a dead one."""
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={"autocommit": True, "application_name": _app_name(application)},
        check=AsyncConnectionPool.check_connection,
        name=_app_name(application),
        open=False,
    )


def _app_name(application: str) -> str:
    return f"{APPLICATION_NAME}-{application}" if application else APPLICATION_NAME


def map_error(exc: psycopg.Error) -> Exception:
    """The engine's exception for a database error, or the error itself. A value too large
    for an index or a row (SQLSTATE class 54) is bad input, not a database that is down."""
    if (exc.sqlstate or "").startswith("54"):
        return errors.InvalidInput(
            "a value is too large to store (an identifier or a name of several kilobytes)"
        )
    cls = SQLSTATE_ERRORS.get(exc.sqlstate or "")
    if cls is None:
        return exc
    return cls(exc.diag.message_primary or str(exc))


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


@dataclasses.dataclass(frozen=True)
class Call(Generic[T]):
    """One SQL statement with its parameters and the way its answer is read."""

    query: sql.SQL | sql.Composed
    params: Sequence[Any] | dict[str, Any]
    read: Callable[[list[Row]], T]
    # The answer when a table the query reads does not exist (yet): None re-raises.
    absent: Callable[[], T] | None = None

    def run(self, conn: psycopg.Connection[Any]) -> T:
        try:
            with mapped_errors(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self.query, self.params)
                return self.read(cur.fetchall() if cur.description else [])
        except psycopg.errors.UndefinedTable:
            if self.absent is None:
                raise
            return self.absent()

    async def arun(self, conn: psycopg.AsyncConnection[Any]) -> T:
        try:
            with mapped_errors():
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(self.query, self.params)
                    return self.read(await cur.fetchall() if cur.description else [])
        except psycopg.errors.UndefinedTable:
            if self.absent is None:
                raise
            return self.absent()

    async def arun_in(self, pool: AsyncConnectionPool[Any]) -> T:
        async with pool.connection() as conn:
            return await self.arun(conn)


def scalar(rows: list[Row]) -> Any:
    return next(iter(rows[0].values())) if rows else None


def function_call(name: str, *args: Any, **named: Any) -> Call[Any]:
    """`select pgflow.<name>(args..., key => value...)`: its one value (dicts go as jsonb)."""
    parts: list[sql.Composable] = [sql.Placeholder() for _ in args]
    params = [adapt(a) for a in args]
    for key, value in named.items():
        parts.append(sql.SQL("{} => {}").format(sql.Identifier(key), sql.Placeholder()))
        params.append(adapt(value))
    query = sql.SQL("select {}({}) as value").format(
        sql.Identifier("pgflow", name), sql.SQL(", ").join(parts)
    )
    return Call(query, params, scalar)


def json_call(name: str, *args: Any, **named: Any) -> Call[Row]:
    """A function that returns one jsonb object."""
    return cast(Call[Row], function_call(name, *args, **named))


def void_call(name: str, *args: Any, **named: Any) -> Call[None]:
    """A function called for its effect (a transition returns its row: not needed here)."""
    call = function_call(name, *args, **named)
    return Call(call.query, call.params, lambda rows: None)


def json_list_call(name: str, *args: Any, **named: Any) -> Call[list[Row]]:
    """A function that returns a jsonb array of objects."""
    call = function_call(name, *args, **named)
    return Call(call.query, call.params, lambda rows: list(scalar(rows) or []))


def rows_call(text: LiteralString, params: dict[str, Any] | None = None) -> Call[list[Row]]:
    """A named read-only query (its text lives only in this module)."""
    return Call(sql.SQL(text), params or {}, lambda rows: rows)


def adapt(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict) else value

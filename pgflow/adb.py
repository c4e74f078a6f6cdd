"""Async twins of `pgflow.db`'s wrappers, for the ASGI app's pooled async connections.

One SQL statement per call; errors carrying our own SQLSTATEs are mapped exactly as in
`pgflow.db` (it does the calling: `db.acall` -> `db.mapped_errors` -> `db.map_error`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgflow import db, migrations


async def ingest_lead(
    conn: psycopg.AsyncConnection[Any],
    payload: Any,
    edge: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """pgflow.ingest_lead(): one lead in, {contact_id, enrollment_id, status} (or rejected)."""
    result: dict[str, Any] = await db.acall(conn, "ingest_lead", Jsonb(payload), now, edge)
    return result


async def reject_lead(
    conn: psycopg.AsyncConnection[Any],
    raw_body: str,
    error: str,
    detail: str,
    source: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """pgflow.reject_lead(): record a lead body that could not be read at all."""
    result: dict[str, Any] = await db.acall(
        conn, "reject_lead", raw_body, error, detail, source, now
    )
    return result


async def health(
    conn: psycopg.AsyncConnection[Any], now: dt.datetime | None = None
) -> dict[str, Any]:
    """pgflow.health(): {"now", "checks": [{name, ok, detail}], "figures": {name: number}}."""
    result: dict[str, Any] = await db.acall(conn, "health", now)
    return result


async def applied_migrations(conn: psycopg.AsyncConnection[Any]) -> set[str] | None:
    """Ids of the applied yoyo migrations; None when the database was never migrated.

    Read-only, so a readiness probe can call it as often as it likes."""
    try:
        async with conn.cursor() as cur:
            await cur.execute(migrations.APPLIED_MIGRATIONS_SQL)
            rows = await cur.fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    return {str(r[0]) for r in rows}

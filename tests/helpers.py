"""Small query helpers for tests."""

from __future__ import annotations

from typing import Any

import psycopg


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    """The first column of the first row; fails the test when there is no row."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, f"no row from: {query}"
    return row[0]


def row(conn: psycopg.Connection[Any], query: str, params: Any = None) -> tuple[Any, ...]:
    found = conn.execute(query, params).fetchone()
    assert found is not None, f"no row from: {query}"
    return tuple(found)


def rows(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()

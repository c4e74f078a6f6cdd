"""Test data: campaigns applied through pgflow.apply_campaigns, leads through ingest_lead."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgflow import db as pdb
from pgflow import phones

UTC = dt.UTC
ALL_DAYS = [1, 2, 3, 4, 5, 6, 7]


def at(text: str) -> dt.datetime:
    """A UTC instant from 'YYYY-MM-DD HH:MM'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def campaign_doc(slug: str = "solar", **overrides: Any) -> dict[str, Any]:
    campaign: dict[str, Any] = {
        "slug": slug,
        "name": f"Campaign {slug}",
        "agent": "ava",
        "from_number": "+14155550100",
        "timezone": "America/New_York",
        "window_start": "09:00",
        "window_end": "20:00",
        "window_days": ALL_DAYS,
        "reply_timeout": "3 days",
        "daily_cap": 3,
        "fallbacks": {"first_name": "there"},
        "steps": [
            {"delay": "0 seconds", "body": "Hi {{first_name}}, it's Ava from SunCo!"},
            {"delay": "1 day", "body": "Hi {{first_name}}, still interested?"},
            {"delay": "3 days", "body": "Last note, {{first_name}}: reply YES for a call."},
        ],
    }
    campaign.update(overrides)
    return {
        "agents": [{"name": "ava", "prompt": "You are Ava. Be brief."}],
        "campaigns": [campaign],
    }


def apply_campaign(conn: psycopg.Connection[Any], slug: str = "solar", **overrides: Any) -> int:
    result = pdb.apply_campaigns(campaign_doc(slug, **overrides)).run(conn)
    campaign_id: int = result["campaigns"][0]["id"]
    return campaign_id


def ingest(
    conn: psycopg.Connection[Any],
    phone: str,
    now: dt.datetime,
    campaign: str = "solar",
    **fields: Any,
) -> dict[str, Any]:
    """A lead through the same path the webhook takes (edge normalisation + one SQL call)."""
    payload = {"campaign": campaign, "phone": phone, **fields}
    return pdb.ingest_lead(payload, phones.normalize(phone).as_edge(), now).run(conn)


def count(
    conn: psycopg.Connection[Any], table: str, where: str = "true", params: Any = None
) -> int:
    row = conn.execute(f"select count(*) from pgflow.{table} where {where}", params).fetchone()
    assert row is not None
    return int(row[0])


def mark_sent(conn: psycopg.Connection[Any], now: dt.datetime) -> int:
    """What a worker records after a successful send (until the worker does it itself)."""
    cur = conn.execute(
        "update pgflow.messages set delivery_status = 'sent', sent_at = %s, updated_at = %s"
        " where delivery_status = 'queued'",
        [now, now],
    )
    return cur.rowcount


def jsonb(value: Any) -> Jsonb:
    return Jsonb(value)

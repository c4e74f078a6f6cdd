"""The deliver_alert job: POST a newly opened alert to PGFLOW_ALERT_WEBHOOK_URL."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from pgflow import db, logs

log = logging.getLogger("pgflow.jobs.deliver_alert")


async def deliver_alert(
    pool: AsyncConnectionPool[Any], http: httpx.AsyncClient, url: str | None, alert_id: int
) -> None:
    alert = await db.alert(alert_id).arun_in(pool)
    if alert is None:
        return
    logs.event(
        log,
        "alert.opened",
        logging.ERROR,
        alert_id=alert_id,
        kind=alert["kind"],
        severity=alert["severity"],
        message=alert["message"],
    )
    if not url:
        return
    error: str | None = None
    try:
        response = await http.post(url, json={"source": "pgflow-sms", "alert": alert})
        if response.status_code >= 300:
            error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    await db.record_alert_delivery(alert_id, error).arun_in(pool)
    logs.event(
        log,
        "alert.notified" if error is None else "alert.notify_failed",
        alert_id=alert_id,
        error=error,
    )

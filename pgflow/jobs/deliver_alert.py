"""The deliver_alert job: an alert's notices (when it opens, when it resolves) POSTed to
PGFLOW_ALERT_WEBHOOK_URL as Slack-compatible JSON (`text`, plus the alert itself), retried
with backoff, and logged either way."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from pgflow import db, logs
from pgflow.jobs.context import JobContext

log = logging.getLogger("pgflow.jobs.deliver_alert")


def slack_text(notice: str, alert: dict[str, Any]) -> str:
    if notice == "resolved":
        return f"[pgflow-sms] resolved: {alert['kind']}"
    return f"[pgflow-sms] {str(alert['severity']).upper()} {alert['kind']}: {alert['message']}"


async def deliver_alert(
    ctx: JobContext, http: httpx.AsyncClient, url: str | None, alert_id: int, attempts: int = 0
) -> str:
    due = await db.alert_notice(alert_id).arun_in(ctx.pool)
    if due is None:
        return "skip"
    notice, alert = str(due["notice"]), due["alert"]
    if attempts == 0:
        logs.event(
            log,
            f"alert.{notice}",
            logging.ERROR
            if notice == "opened" and alert["severity"] == "critical"
            else logging.WARNING,
            alert_id=alert_id,
            kind=alert["kind"],
            severity=alert["severity"],
            message=alert["message"] if notice == "opened" else None,
        )
    if not url:
        return "logged"
    error: str | None = None
    payload = {
        "text": slack_text(notice, alert),
        "source": "pgflow-sms",
        "notice": notice,
        "alert": alert,
    }
    try:
        response = await http.post(url, json=payload)
        if response.status_code >= 300:
            error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    await db.record_alert_notice(alert_id, notice, error).arun_in(ctx.pool)
    if error is None:
        logs.event(log, "alert.notified", alert_id=alert_id, kind=alert["kind"], notice=notice)
        return "notified"
    ctx.retry_or_give_up(
        log,
        "alert.notify_failed",
        attempts,
        "the alert webhook failed",
        alert_id=alert_id,
        kind=alert["kind"],
        notice=notice,
        error=error,
    )
    return "failed"

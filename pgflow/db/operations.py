"""Operations: alerts, health, migrations' bookkeeping, dead letters, a contact's report."""

from __future__ import annotations

import datetime as dt
from typing import cast

from psycopg import sql

from pgflow.db.core import (
    Call,
    Now,
    Row,
    function_call,
    json_call,
    json_list_call,
    rows_call,
    void_call,
)


def watch(source: str, now: Now = None) -> Call[Row]:
    """pgflow.watch(): open and resolve the alerts whose conditions changed."""
    return json_call("watch", source, now)


def alert_notice(alert_id: int) -> Call[Row | None]:
    """pgflow.alert_notice(): {notice: opened | resolved, alert} when one is due, else None."""
    return cast(Call[Row | None], function_call("alert_notice", alert_id))


def record_alert_notice(
    alert_id: int, notice: str, error: str | None = None, now: Now = None
) -> Call[None]:
    return void_call("record_alert_notice", alert_id, notice, error, now)


def health(now: Now = None) -> Call[Row]:
    """pgflow.health(): {"now", "checks": [{name, ok, detail}], "figures": {name: number}}."""
    return json_call("health", now)


def deferrals() -> Call[list[Row]]:
    """pgflow.deferrals(): the steps and texts waiting now, by the rule that holds them
    back; [{rule, steps, texts}]."""
    return json_list_call("deferrals")


def server_version() -> Call[str]:
    call = rows_call("select current_setting('server_version') as version")
    return Call(call.query, call.params, lambda rows: str(rows[0]["version"]))


def applied_migrations() -> Call[set[str] | None]:
    """Ids of the applied yoyo migrations; None when the database was never migrated.

    Read-only (yoyo's bookkeeping table in schema pgflow), so probes may call it often."""
    return Call(
        sql.SQL("select migration_id from pgflow._yoyo_migration"),
        [],
        lambda rows: {str(r["migration_id"]) for r in rows},
        absent=lambda: None,
    )


def create_schema() -> Call[None]:
    """The schema yoyo keeps its bookkeeping in (it must exist before yoyo connects)."""
    return Call(sql.SQL("create schema if not exists pgflow"), [], lambda rows: None)


def requeue_dead_letters(ids: list[int] | None, campaign: str | None) -> Call[list[Row]]:
    """pgflow.requeue_dead_letters(): one {id, result, detail?} per message asked for."""
    return json_list_call("requeue_dead_letters", ids, campaign)


def discard_dead_letters(ids: list[int]) -> Call[list[Row]]:
    return json_list_call("discard_dead_letters", ids)


def dead_letters(campaign: str | None, since: dt.datetime | None, limit: int) -> Call[list[Row]]:
    """Rows of the view pgflow.dead_letters, newest first (phones unmasked: mask them)."""
    return rows_call(
        "select id, campaign, phone, attempts, delivery_error, failed_at, contact_opted_out,"
        " step_position, body from pgflow.dead_letters"
        " where (%(campaign)s::text is null or campaign = %(campaign)s)"
        " and (%(since)s::timestamptz is null or failed_at >= %(since)s)"
        " order by failed_at desc, id desc limit %(limit)s",
        {"campaign": campaign, "since": since, "limit": limit},
    )


def contact_report(phone: str, limit: int = 200) -> Call[Row | None]:
    """pgflow.contact_report(): one contact's drips, conversations and transcript."""
    return cast(Call[Row | None], function_call("contact_report", phone, limit))

"""Intake: a lead in (ingest, reject, refusal) and the campaign files that say where it goes."""

from __future__ import annotations

from typing import Any, cast

from psycopg import sql
from psycopg.types.json import Jsonb

from pgflow.db.core import Call, Now, Row, function_call, json_call, json_list_call


def ingest_lead(payload: Any, edge: dict[str, Any] | None = None, now: Now = None) -> Call[Row]:
    """pgflow.ingest_lead(): one lead in -> {contact_id, enrollment_id, status}
    (created | already_enrolled | suppressed) or {status: rejected, error, detail}."""
    return json_call("ingest_lead", Jsonb(payload), now, edge)


def reject_lead(
    raw_body: str, error: str, detail: str, source: str | None = None, now: Now = None
) -> Call[Row]:
    """pgflow.reject_lead(): record a lead body that could not be read at all."""
    return json_call("reject_lead", raw_body, error, detail, source, now)


def campaign_refusal(slug: str) -> Call[Row | None]:
    """pgflow.campaign_refusal(): why a campaign takes no leads ({error, detail}) or None."""
    return cast(Call[Row | None], function_call("campaign_refusal", slug))


def apply_campaigns(doc: dict[str, Any], now: Now = None) -> Call[Row]:
    """pgflow.apply_campaigns(): upsert agents and campaigns; what was done per item."""
    return json_call("apply_campaigns", doc, now)


def simulate_campaign(
    slug: str, leads: list[dict[str, Any]], days: int = 14, now: Now = None
) -> Call[list[Row]]:
    """pgflow.simulate_campaign(): when each step would go to each sample lead, and which
    rule decided; [{phone, timezone, rules, steps: [{step, due_at, send_at, local, rule,
    why}]}]. Reads only."""
    return json_list_call("simulate_campaign", slug, Jsonb(leads), days, now)


# --- bulk import (`pgflow leads import`): a chunk COPYed into a staging table, one call ---
#
# The staging table is a temporary table of the importing session, not a pgflow table: the
# roles hold no privileges on tables (roles.sql: EXECUTE on functions only), and a session's
# own temporary table needs none; it is private to the import (two imports at once never see
# each other's rows), writes no WAL, and is dropped at each commit (one chunk is one
# transaction: nothing is left in the session). The caller builds the arrays
# pgflow.import_leads() takes from it, so the function (security definer) never reads a
# table it does not own.

LEAD_STAGING_COLUMNS = ("line", "payload", "phone", "phone_error", "zone")


def create_lead_staging() -> Call[None]:
    """The transaction's staging table for lead rows (dropped at commit)."""
    return Call(
        sql.SQL(
            "create temp table pgflow_lead_staging (line integer, payload jsonb,"
            " phone text, phone_error text, zone text) on commit drop"
        ),
        [],
        lambda rows: None,
    )


def copy_lead_staging() -> sql.Composed:
    """COPY ... FROM STDIN (text format) into the staging table: LEAD_STAGING_COLUMNS, in
    that order; the payload as JSON text."""
    return sql.SQL("copy pg_temp.pgflow_lead_staging ({}) from stdin").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in LEAD_STAGING_COLUMNS)
    )


def import_staged_leads(campaign: str, source: str | None, now: Now = None) -> Call[list[Row]]:
    """pgflow.import_leads() over the staged rows in line order: per row {line, status,
    error, detail, contact_id, enrollment_id}, as ingest_lead() would answer each."""
    query = sql.SQL(
        "select r.line, r.status, r.error, r.detail, r.contact_id, r.enrollment_id"
        " from (select array_agg(s.line order by s.line) as lines,"
        " array_agg(s.payload order by s.line) as payloads,"
        " array_agg(s.phone order by s.line) as phones,"
        " array_agg(s.phone_error order by s.line) as phone_errors,"
        " array_agg(s.zone order by s.line) as zones"
        " from pg_temp.pgflow_lead_staging s) a"
        " cross join lateral pgflow.import_leads(%(campaign)s, %(source)s, a.lines,"
        " a.payloads, a.phones, a.phone_errors, a.zones, %(now)s) r"
    )
    return Call(query, {"campaign": campaign, "source": source, "now": now}, lambda rows: rows)

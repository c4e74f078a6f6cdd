"""Intake: a lead in (ingest, reject, refusal) and the campaign files that say where it goes."""

from __future__ import annotations

from typing import Any, cast

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

"""GET /metrics (Prometheus text).

The process's own instruments (`instruments.py`): `pgflow_http_requests_total{route,method,
status}`, `pgflow_lead_ingest_seconds{status}`. Per scrape, from `pgflow.health()`: a
`pgflow_<figure>` gauge per figure, `pgflow_health_check_ok{check}`, `pgflow_database_up`;
from `pgflow.funnel()`, per campaign: `pgflow_campaign_<figure>{campaign}` and
`pgflow_campaign_conversations{campaign,state}` (each outcome, open, engaged, in_review);
from `pgflow.number_report()`, per sending number: today's use and its limits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from pgflow import db
from pgflow.web.context import PROBE_TIMEOUT, Web

_METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


async def metrics(web: Web, request: Request) -> Response:
    health: dict[str, Any] | None
    funnel: list[dict[str, Any]] = []
    latency: dict[str, Any] = {}
    numbers: list[dict[str, Any]] = []
    deferrals: list[dict[str, Any]] = []
    try:
        async with web.pool.connection(timeout=PROBE_TIMEOUT) as conn:
            health = await db.health().arun(conn)
            funnel = await db.funnel().arun(conn)
            latency = await db.send_latency().arun(conn)
            numbers = await db.number_report().arun(conn)
            deferrals = await db.deferrals().arun(conn)
    except psycopg.Error:
        health = None
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_HealthCollector(health))
    scrape.register(_FunnelCollector(funnel))
    scrape.register(_LatencyCollector(latency))
    scrape.register(_NumbersCollector(numbers))
    scrape.register(_DeferralsCollector(deferrals))
    text = generate_latest(web.metrics.registry) + generate_latest(scrape)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


class _HealthCollector:
    """This scrape's `pgflow.health()`: a gauge per figure, one per check, and `up`."""

    def __init__(self, health: dict[str, Any] | None) -> None:
        self.health = health

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "pgflow_database_up", "1 when the database's health report answered this scrape."
        )
        up.add_metric([], 0 if self.health is None else 1)
        yield up
        if self.health is None:
            return
        checks = GaugeMetricFamily(
            "pgflow_health_check_ok", "1 when the health check passes.", labels=["check"]
        )
        for check in self.health.get("checks") or []:
            checks.add_metric([str(check.get("name"))], 1 if check.get("ok") else 0)
        yield checks
        for name, value in sorted((self.health.get("figures") or {}).items()):
            metric = f"pgflow_{name}"
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not _METRIC_NAME.match(metric):
                continue
            gauge = GaugeMetricFamily(metric, f"Health figure {name}.")
            gauge.add_metric([], value)
            yield gauge


CAMPAIGN_FIGURES = (
    ("enrolled", "Leads enrolled in the campaign."),
    ("messaged", "Leads sent at least one step."),
    ("steps_sent", "Campaign steps sent."),
    ("delivered", "Campaign steps the carrier reported delivered (Twilio)."),
    ("undelivered", "Campaign steps the carrier reported undelivered or failed (Twilio)."),
    ("replied", "Leads who replied."),
    ("opted_out", "Leads who opted out."),
    ("reply_rate", "Replied / messaged."),
    ("opt_out_rate", "Opted out / messaged."),
    ("median_first_reply_seconds", "Median seconds from the first step to the first reply."),
)


class _FunnelCollector:
    """This scrape's `pgflow.funnel()`: per-campaign gauges."""

    def __init__(self, funnel: list[dict[str, Any]]) -> None:
        self.funnel = funnel

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        for name, help_text in CAMPAIGN_FIGURES:
            gauge = GaugeMetricFamily(f"pgflow_campaign_{name}", help_text, labels=["campaign"])
            for campaign in self.funnel:
                value = campaign.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    gauge.add_metric([str(campaign["campaign"])], value)
            yield gauge
        states = GaugeMetricFamily(
            "pgflow_campaign_conversations",
            "Conversations of the campaign by outcome or state.",
            labels=["campaign", "state"],
        )
        for campaign in self.funnel:
            for state, value in sorted((campaign.get("outcomes") or {}).items()):
                states.add_metric([str(campaign["campaign"]), state], value)
        yield states
        undelivered = GaugeMetricFamily(
            "pgflow_campaign_undelivered_by_class",
            "Campaign steps undelivered, by the carrier error's class.",
            labels=["campaign", "class"],
        )
        took = GaugeMetricFamily(
            "pgflow_campaign_delivery_seconds",
            "Seconds from sent to the carrier's delivered receipt (Twilio), by quantile.",
            labels=["campaign", "quantile"],
        )
        for campaign in self.funnel:
            slug = str(campaign["campaign"])
            for error_class, value in sorted((campaign.get("undelivered_by_class") or {}).items()):
                undelivered.add_metric([slug, error_class], value)
            for quantile, key in (("0.5", "p50"), ("0.9", "p90")):
                value = (campaign.get("delivery_seconds") or {}).get(key)
                if value is not None:
                    took.add_metric([slug, quantile], float(value))
        yield undelivered
        yield took


class _LatencyCollector:
    """Queued-to-sent seconds of the messages sent in the last hour, per kind."""

    def __init__(self, latency: dict[str, Any]) -> None:
        self.latency = latency

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(
            "pgflow_send_latency_seconds",
            "Seconds from queued to sent, messages sent in the last hour, by kind.",
            labels=["kind"],
        )
        for kind, item in sorted(self.latency.items()):
            buckets = [(_le(le), count) for le, count in item["buckets"]]
            buckets.append(("+Inf", item["count"]))
            family.add_metric([kind], buckets, item["sum"])
        yield family


def _le(value: float) -> str:
    return f"{value:g}"


NUMBER_FIGURES = (
    ("messages_today", "pgflow_number_messages_today", "Sends claimed today (UTC)."),
    ("segments_today", "pgflow_number_segments_today", "Segments claimed today (UTC)."),
    ("daily_segments", "pgflow_number_daily_segments_limit", "Carrier limit: segments a day."),
    ("per_second", "pgflow_number_per_second_limit", "Carrier limit: messages a second."),
)


class _NumbersCollector:
    """This scrape's `pgflow.number_report()`: per sending number, use today and limits
    (a limit that is not set has no sample)."""

    def __init__(self, numbers: list[dict[str, Any]]) -> None:
        self.numbers = numbers

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        for key, name, help_text in NUMBER_FIGURES:
            gauge = GaugeMetricFamily(name, help_text, labels=["number"])
            for number in self.numbers:
                if number.get(key) is not None:
                    gauge.add_metric([str(number["number"])], float(number[key]))
            yield gauge


class _DeferralsCollector:
    """The drip steps and texts waiting now, by the rule that holds them back (the
    campaign's window or cap, a state's hours, cap or quiet day)."""

    def __init__(self, deferrals: list[dict[str, Any]]) -> None:
        self.deferrals = deferrals

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        waiting = GaugeMetricFamily(
            "pgflow_deferred",
            "Drip steps (what=step) and texts (what=text) waiting, by the rule holding them back.",
            labels=["rule", "what"],
        )
        for d in self.deferrals:
            waiting.add_metric([str(d["rule"]), "step"], float(d["steps"]))
            waiting.add_metric([str(d["rule"]), "text"], float(d["texts"]))
        yield waiting

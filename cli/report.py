"""`pgflow report`: the funnel, per campaign."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from pgflow import db
from pgflow.agent import OUTCOMES

from .common import console, fail, parse_since, print_json, settings


def report(
    campaign: str | None = typer.Option(None, help="Only this campaign (slug)."),
    since: str | None = typer.Option(
        None, help="Only leads enrolled at or after this time (ISO date or time)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Enrolled, messaged, delivered (Twilio), replied, outcomes, opt-outs, time to reply.

    Per step: sent, and the leads who replied after it."""
    start = parse_since(since)
    with db.connect(settings().database_url, application="cli") as conn:
        funnel = db.funnel(campaign, start).run(conn)
    if campaign and not funnel:
        fail(f"no campaign with slug {campaign!r}")
    if as_json:
        print_json(funnel)
        return
    if not funnel:
        console.print("no campaigns")
        return
    for item in funnel:
        print_funnel(item)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f}%"


def print_funnel(item: dict[str, Any]) -> None:
    title = f"{item['campaign']}" + (f" (leads since {item['since']})" if item["since"] else "")
    funnel = Table(title=title, title_justify="left")
    funnel.add_column("funnel")
    funnel.add_column("leads", justify="right")
    funnel.add_column("", justify="right")
    enrolled = int(item["enrolled"])
    funnel.add_row("enrolled", str(enrolled), "")
    messaged = int(item["messaged"]) / enrolled if enrolled else None
    funnel.add_row("messaged", str(item["messaged"]), f"{_pct(messaged)} of enrolled")
    _delivery_rows(funnel, item)
    funnel.add_row("replied", str(item["replied"]), f"{_pct(item['reply_rate'])} of messaged")
    funnel.add_row("opted out", str(item["opted_out"]), f"{_pct(item['opt_out_rate'])} of messaged")
    median = item["median_first_reply_seconds"]
    funnel.add_row("median first reply", "-" if median is None else _duration(float(median)), "")
    console.print(funnel)
    outcomes = Table(title="conversations", title_justify="left")
    for column in (*OUTCOMES, "open", "engaged", "in review"):
        outcomes.add_column(column, justify="right")
    counts = item["outcomes"]
    outcomes.add_row(*(str(counts[k]) for k in (*OUTCOMES, "open", "engaged", "in_review")))
    console.print(outcomes)
    steps = Table(title="steps", title_justify="left")
    for column in ("step", "sent", "replied after it", "reply rate"):
        steps.add_column(column, justify="right")
    for step in item["steps"]:
        rate = step["replied_after"] / step["sent"] if step["sent"] else None
        steps.add_row(
            str(step["position"]), str(step["sent"]), str(step["replied_after"]), _pct(rate)
        )
    console.print(steps)


def _delivery_rows(funnel: Table, item: dict[str, Any]) -> None:
    """Steps delivered and undelivered (by the carrier error's class) and how long delivery
    took: Twilio reports them; Retell reports no delivery at all."""
    if item.get("transport") != "twilio":
        funnel.add_row("steps delivered", "-", f"{item.get('transport', 'retell')}: no receipts")
        return
    sent = int(item["steps_sent"])
    delivered = int(item["delivered"]) / sent if sent else None
    funnel.add_row("steps delivered", str(item["delivered"]), f"{_pct(delivered)} of sent")
    classes = ", ".join(f"{k} {v}" for k, v in sorted(item["undelivered_by_class"].items()))
    funnel.add_row("steps undelivered", str(item["undelivered"]), classes)
    took = item.get("delivery_seconds") or {}
    if took.get("p50") is not None:
        funnel.add_row(
            "delivery time",
            _duration(float(took["p50"])),
            f"p90 {_duration(float(took['p90']))}",
        )


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"

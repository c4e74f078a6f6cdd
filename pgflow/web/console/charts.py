"""Server-rendered SVG pictures for the funnel page: no script, no library. Every text in
them is escaped (a campaign's name is data)."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

DAY_NAMES = {1: "Mon", 2: "Tue", 3: "Wed", 4: "Thu", 5: "Fri", 6: "Sat", 7: "Sun"}
OUTCOME_COLOURS = {
    "success": "#1a7f37",
    "qualified": "#2f81f7",
    "unqualified": "#8c959f",
    "escalated": "#bf3989",
    "no_response": "#afb8c1",
    "discarded": "#cf222e",
}
WIDTH = 640
BAR = 22
GAP = 8
LABEL = 150


def _bars(items: list[tuple[str, float, str, str]], title: str) -> str:
    """Horizontal bars: (label, value, colour, value text)."""
    top = max((v for _, v, _, _ in items), default=0) or 1
    height = len(items) * (BAR + GAP) + GAP
    rows = []
    for i, (label, value, colour, text) in enumerate(items):
        y = GAP + i * (BAR + GAP)
        width = max(1.0, (WIDTH - LABEL - 90) * value / top) if value else 0
        rows.append(
            f'<text x="{LABEL - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL}" y="{y}" width="{width:.1f}" height="{BAR}" fill="{colour}" rx="3">'
            f"<title>{escape(label)}: {escape(text)}</title></rect>"
            f'<text x="{LABEL + width + 6:.1f}" y="{y + 16}">{escape(text)}</text>'
        )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(rows)}</svg>"
    )


def _rate(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.0f}%)" if whole else str(part)


def funnel_svg(row: dict[str, Any]) -> str:
    """enrolled -> messaged -> replied -> each outcome, as bars."""
    enrolled = int(row.get("enrolled") or 0)
    items: list[tuple[str, float, str, str]] = [
        ("enrolled", enrolled, "#57606a", str(enrolled)),
        (
            "messaged",
            int(row.get("messaged") or 0),
            "#6e7781",
            _rate(int(row.get("messaged") or 0), enrolled),
        ),
        (
            "replied",
            int(row.get("replied") or 0),
            "#0969da",
            _rate(int(row.get("replied") or 0), int(row.get("messaged") or 0)),
        ),
    ]
    outcomes = row.get("outcomes") or {}
    for name, colour in OUTCOME_COLOURS.items():
        count = int(outcomes.get(name) or 0)
        items.append((name.replace("_", " "), count, colour, _rate(count, enrolled)))
    return _bars(items, f"Funnel of {row.get('campaign')}")


def steps_svg(row: dict[str, Any]) -> str:
    """Reply rate after each step: replies that came after the step / leads it reached."""
    items: list[tuple[str, float, str, str]] = []
    for step in row.get("steps") or []:
        sent, replied = int(step.get("sent") or 0), int(step.get("replied_after") or 0)
        rate = replied / sent if sent else 0.0
        items.append(
            (f"step {step.get('position')}", rate, "#0969da", f"{100 * rate:.0f}% of {sent}")
        )
    return _bars(items, f"Reply rate per step of {row.get('campaign')}")


def hours_svg(hours: list[dict[str, Any]]) -> str:
    """Texts sent per hour over the last day, as columns (UTC hours)."""
    height, base = 140, 118
    top = max((int(h["sent"]) for h in hours), default=0) or 1
    step = WIDTH / max(1, len(hours))
    cols = []
    for i, h in enumerate(hours):
        n = int(h["sent"])
        bar = (base - 10) * n / top
        hour = dt.datetime.fromisoformat(str(h["hour"])).astimezone(dt.UTC)
        x = i * step
        cols.append(
            f'<rect x="{x + 2:.1f}" y="{base - bar:.1f}" width="{step - 4:.1f}" '
            f'height="{bar:.1f}" fill="#0969da"><title>{hour:%H}:00 UTC: {n} sent</title></rect>'
        )
        if i % 3 == 0:
            cols.append(f'<text x="{x + 2:.1f}" y="{height - 6}">{hour:%H}h</text>')
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        'aria-label="Texts sent per hour, last 24 hours" xmlns="http://www.w3.org/2000/svg">'
        f"<title>Texts sent per hour, last 24 hours</title>{''.join(cols)}</svg>"
    )

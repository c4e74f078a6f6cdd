"""Pages as HTML: the Jinja2 environment (autoescaped: a lead's `<script>` is text), the
filters the templates use, form bodies, and the error page people see instead of a trace."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from pgflow import __version__

HERE = Path(__file__).parent

OUTCOMES = ("success", "qualified", "unqualified", "escalated", "no_response", "discarded")


def _when(value: Any) -> str:
    """An ISO instant as 'YYYY-MM-DD HH:MM' UTC; '-' for none."""
    if not value:
        return "-"
    text = str(value)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return text[:16]
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(value: Any, now: dt.datetime | None = None) -> str:
    if not value:
        return "-"
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    seconds = int(((now or dt.datetime.now(dt.UTC)) - moment).total_seconds())
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _name(row: dict[str, Any]) -> str:
    parts = [row.get("first_name") or "", row.get("last_name") or ""]
    return " ".join(p for p in parts if p).strip() or "(no name)"


ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = _when
ENV.filters["ago"] = _ago
ENV.filters["name"] = _name
ENV.globals["version"] = __version__
ENV.globals["OUTCOMES"] = OUTCOMES


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    body = ENV.get_template(template).render(request=request, **context)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def error_page(
    request: Request, status: int, title: str, detail: str, user: Any = None
) -> HTMLResponse:
    return page(request, "error.html", status=status, title=title, detail=detail, user=user)


def plain_error(status: int, title: str) -> HTMLResponse:
    """An error page that needs no template (the last resort)."""
    text = html.escape(title)
    return HTMLResponse(
        f"<!doctype html><title>{text}</title><h1>{text}</h1><p><a href='/console/'>Inbox</a>",
        status_code=status,
        headers=SECURITY_HEADERS,
    )


# The console's own pages only: its scripts and styles, no frames, no referrer leaks.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def one(form: dict[str, list[str]], key: str) -> str:
    """The first value of a form field ('' when absent)."""
    values = form.get(key) or [""]
    return values[0]


def read_ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit() and len(v) < 19]

"""Campaign files (YAML): load, validate, and normalise for pgflow.apply_campaigns().

Reading YAML with line numbers is `campaign_yaml`; what a valid file is (the published
JSON Schema, `campaign_schema`, and the checks beyond it) is `campaign_check`, which says
which check lives where. Here: the document a valid file becomes (durations as
intervals, days as numbers, phone numbers in E.164, text stripped), and the warnings that
do not refuse a file."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from pgflow import campaign_yaml
from pgflow.campaign_check import problems
from pgflow.campaign_schema import (
    DAY_ALIASES,
    day_number,
    e164,
    parse_duration,
    stripped,
    time_of_day,
)
from pgflow.errors import InvalidInput

__all__ = ["CampaignFile", "load", "parse", "parse_duration"]

LONG_TEXT = 320
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
ZERO = "0 days 0 seconds"


@dataclasses.dataclass
class CampaignFile:
    doc: dict[str, Any]
    warnings: list[str]


def load(path: Path) -> CampaignFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InvalidInput(
            f"{path}:{line}: not UTF-8 ({exc.reason}); save the file as UTF-8"
        ) from None
    return parse(text.removeprefix("\ufeff"), str(path))


def parse(text: str, source: str = "<campaign file>") -> CampaignFile:
    """Validate a campaign document; raises InvalidInput listing every problem at once, each
    with the file, the line and the field (`solar.yaml:24: campaigns[0].steps[1].delay: ...`)."""
    data, root = campaign_yaml.read(text, source)
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping with 'agents' and 'campaigns'")
    found = problems(data, source)
    if found:
        raise InvalidInput(campaign_yaml.located(found, root, source))
    doc = {
        "agents": [_agent(item) for item in data.get("agents") or []],
        "campaigns": [_campaign(item) for item in data.get("campaigns") or []],
        "numbers": [_number(item) for item in data.get("numbers") or []],
    }
    return CampaignFile(doc, _warnings(doc))


# --- the document for pgflow.apply_campaigns(), from a valid file ---------------------------


def _agent(item: dict[str, Any]) -> dict[str, Any]:
    return _present(
        {
            "name": stripped(item["name"]),
            "prompt": stripped(item["prompt"]),
            "model": stripped(item.get("model")),
            "retell_agent_id": stripped(item.get("retell_agent_id")),
            "max_turns": item.get("max_turns"),
            "reply_debounce": _interval(item.get("reply_debounce")),
        }
    )


def _campaign(item: dict[str, Any]) -> dict[str, Any]:
    pool = _pool(item)
    window = item.get("send_window") or {}
    fallbacks = {
        str(key): value
        for key, raw in (item.get("fallbacks") or {}).items()
        if (value := stripped(str(raw))) is not None
    }
    return _present(
        {
            "slug": stripped(item["slug"]),
            "name": stripped(item["name"]),
            "agent": stripped(item["agent"]),
            "from_number": pool[0],
            "from_numbers": pool,
            "status": item.get("status"),
            "transport": item.get("transport"),
            "timezone": stripped(item.get("timezone")),
            "window_start": time_of_day(window.get("start")),
            "window_end": time_of_day(window.get("end")),
            "window_days": _days(window.get("days")),
            "reply_timeout": _interval(item.get("reply_timeout")),
            "silence_timeout": _interval(item.get("silence_timeout")),
            "daily_cap": item.get("daily_cap"),
            "max_attempts": item.get("max_attempts"),
            "help_text": stripped(item.get("help_text")),
            "goal": stripped(item.get("goal")),
            "opt_out_text": stripped(item.get("opt_out_text")),
            "fallbacks": fallbacks,
            "steps": [
                {"delay": _interval(step.get("delay")) or ZERO, "body": stripped(step["body"])}
                for step in item["steps"]
            ],
        }
    )


def _pool(item: dict[str, Any]) -> list[str]:
    """The campaign's sending numbers, from_number first: `from_number`, `from_numbers` (a
    pool; a new conversation keeps the number it starts on), or both."""
    listed = [item["from_number"]] if "from_number" in item else []
    pool: list[str] = []
    for raw in [*listed, *(item.get("from_numbers") or [])]:
        number = e164(raw)
        if number is not None and number not in pool:  # from_number may be listed too
            pool.append(number)
    return pool


def _number(item: dict[str, Any]) -> dict[str, Any]:
    out = _present(
        {"inbound_agent": stripped(item.get("inbound_agent")), "number": e164(item["number"])}
    )
    # A limit key that is present is applied (null: no limit); an absent one is left as is.
    out.update({limit: item[limit] for limit in ("per_second", "daily_segments") if limit in item})
    return out


def _interval(value: Any) -> str | None:
    """A duration as an interval PostgreSQL reads: '1d12h' -> '1 days 43200 seconds'."""
    seconds = parse_duration(value) if isinstance(value, str) else None
    if seconds is None:
        return None
    days, rest = divmod(seconds, 86400)
    return f"{days} days {rest} seconds"


def _days(value: Any) -> list[int] | None:
    """Days as ISO numbers (mon = 1): from a list, an alias (weekdays) or 'mon,wed'."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.lower() in DAY_ALIASES:
            return DAY_ALIASES[value.lower()]
        value = value.split(",")
    return sorted({number for day in value if (number := day_number(day)) is not None})


def _present(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


def _warnings(doc: dict[str, Any]) -> list[str]:
    """What does not refuse a file but should be read: long texts, and placeholders a
    contact may have no value for."""
    found: list[str] = []
    for i, campaign in enumerate(doc["campaigns"]):
        for j, step in enumerate(campaign["steps"]):
            where, body = f"campaigns[{i}].steps[{j}].body", step["body"]
            if len(body) > LONG_TEXT:
                found.append(f"{where}: {len(body)} characters; keep texts under {LONG_TEXT}")
            for name in sorted(set(_PLACEHOLDER.findall(body))):
                if name not in campaign["fallbacks"]:
                    found.append(
                        f"{where}: {{{{{name}}}}} has no fallback; it is left out when a "
                        "contact has no value"
                    )
    return found

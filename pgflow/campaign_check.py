"""What a valid campaign file is: the one validator of campaign files, `problems()`.

Which check lives where:

- `campaign_schema.SCHEMA`, the published JSON Schema (`pgflow campaign schema`, for
  editors): the shape (keys, types, what is required), text lengths, number ranges, the
  formats of durations, times of day, days and slugs, the status values. Its errors are
  told here in our words (`_message`): "'1x' is not a duration (use e.g. ...)", not the
  pattern that failed.
- `_beyond()`, here, only what a JSON Schema cannot say: a whole number written `5.0`
  (YAML tells it from 5, JSON Schema cannot: the validator's "integer" is Python's int),
  text that is blank or holds a NUL character, phone numbers (`phones.normalize`), IANA
  time zones, a send window's start before its end, days written as text ("weekdays",
  "mon,wed"), durations' bounds (reply_debounce at most 5m, timeouts longer than zero),
  a per_second that is NaN, names, slugs and numbers unique in the file, a from_numbers
  pool naming a number twice, a number's inbound_agent defined in the file.
- `pgflow.apply_campaigns()` (SQL), what only the database knows: a campaign's agent
  exists (in the file or applied before), steps that enrollments have passed do not
  change, a number's inbound agent exists; and, for callers that skip this validator, a
  campaign has steps and every value fits its column.

`problems()` runs the first two together, so every problem of a file is listed at once.
`pgflow.campaigns` then normalises the valid document and warns (long texts,
placeholders without a fallback): warnings never refuse a file."""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Iterator
from typing import Any

import jsonschema

from pgflow import phones
from pgflow.campaign_schema import (
    DAY_ALIASES,
    MAX_INT,
    MAX_NAME,
    SCHEMA,
    day_number,
    e164,
    seconds,
    stripped,
    time_of_day,
)

MAX_DEBOUNCE = 300  # seconds


# --- the validator -------------------------------------------------------------------------


def problems(data: dict[str, Any], source: str) -> list[str]:
    """Every problem of a campaign document (`path: message`), the schema's and those
    beyond it; [] when it is valid."""
    found = [f"{path}: {message}" for path, message in _schema_problems(data)]
    found += [f"{path}: {message}" for path, message in _beyond(data, source)]
    return list(dict.fromkeys(found))


def _whole_number(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_VALIDATOR = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _whole_number),
)(SCHEMA)

WHOLE_NUMBERS = {"max_turns", "daily_cap", "max_attempts", "daily_segments"}
NOT_A_DURATION = "{value} is not a duration (use e.g. 0m, 30m, 2h, 1d, 1d12h)"
NOT_A_TIME = "{value} is not a time of day (HH:MM, 24:00 for end of day)"
NOT_A_DAY = "{value} is not a day (mon..sun)"
PER_SECOND = "must be a number of messages per second, 0 < n <= 1000"
# What a field must be, in our words, keyed by its name in the schema ("[]": an item of).
SHAPES = {
    "agents": "must be a list",
    "campaigns": "must be a list",
    "numbers": "must be a list",
    "agents[]": "must be a mapping",
    "campaigns[]": "must be a mapping",
    "numbers[]": "must be a mapping {number, inbound_agent, per_second, daily_segments}",
    "steps": "at least one step is required",
    "steps[]": "must be a mapping {delay, body}",
    "from_numbers": "must be a list of sending numbers",
    "send_window": "must be a mapping {start, end, days}",
    "days": "must be a list of days like [mon, tue, wed]",
    "days[]": NOT_A_DAY,
    "start": NOT_A_TIME,
    "end": NOT_A_TIME,
    "delay": NOT_A_DURATION,
    "reply_timeout": NOT_A_DURATION,
    "silence_timeout": NOT_A_DURATION,
    "reply_debounce": NOT_A_DURATION,
    "status": "must be draft, active, paused or archived",
    "transport": "must be retell or twilio",
    "per_second": PER_SECOND,
    "fallbacks": "must be a mapping of placeholder to text",
    "fallbacks.*": "must be text",
}


def _schema_problems(data: Any) -> Iterator[tuple[str, str]]:
    """The JSON Schema's verdict, in document order."""
    for error in sorted(_VALIDATOR.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        path = _path(error.path)
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed), key=str):
                yield _path([*error.path, key]), f"unknown key (allowed: {', '.join(allowed)})"
        elif error.validator == "required":
            for key in error.validator_value:
                if key not in error.instance:
                    yield f"{path}.{key}", "is required"
        elif error.validator == "anyOf":  # a campaign's from_number or from_numbers
            yield f"{path}.from_number", "is required (or from_numbers, a list)"
        else:
            yield path, _message(error)


def _message(error: jsonschema.ValidationError) -> str:
    keyword, field = error.validator, _field(error)
    if keyword == "minLength":
        return "must not be empty"
    if keyword == "maxLength":
        return f"longer than {error.validator_value:,} characters"
    if field in WHOLE_NUMBERS:
        if keyword == "maximum" and error.validator_value < MAX_INT:
            return f"at most {error.validator_value}"
        return f"must be a whole number from 1 to {MAX_INT:,}"
    if field == "slug" and keyword == "pattern":
        return "use lowercase letters, digits, - and _ (at most 63)"
    if field in SHAPES:
        return SHAPES[field].replace("{value}", _shown(error.instance))
    if keyword == "type":
        return "must be text"  # every other typed field is text
    return str(error.message)


def _field(error: jsonschema.ValidationError) -> str:
    """The name of the field the error is about, from where it is in the schema:
    'delay', 'steps[]' (an item of steps), 'fallbacks.*' (a value of fallbacks)."""
    parts = list(error.absolute_schema_path)[:-1]  # the last is the keyword that failed
    name = "(top)"
    for i, part in enumerate(parts):
        if i > 0 and parts[i - 1] == "properties":
            name = str(part)
        elif part == "items":
            name += "[]"
        elif part == "additionalProperties":
            name += ".*"
    return name


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _shown(value: Any) -> str:
    return repr(value)[:60] if isinstance(value, str | int | float) else type(value).__name__


# --- beyond the schema ---------------------------------------------------------------------


def _beyond(data: dict[str, Any], source: str) -> Iterator[tuple[str, str]]:
    """What the schema cannot check. Values of the wrong shape are the schema's to report:
    each check here looks only at values of the shape it expects."""
    agents, campaigns, numbers = (_items(data, key) for key in ("agents", "campaigns", "numbers"))
    for path, agent in agents:
        yield from _texts(path, agent, ("name", "prompt"), ("model", "retell_agent_id"))
        debounce = seconds(agent.get("reply_debounce"))
        if debounce is not None and debounce > MAX_DEBOUNCE:
            yield f"{path}.reply_debounce", "at most 5m"
    for path, campaign in campaigns:
        yield from _campaign(path, campaign)
    for path, number in numbers:
        yield from _texts(path, number, ("number",), ("inbound_agent",))
        yield from _phone(f"{path}.number", number.get("number"))
        rate = number.get("per_second")
        if isinstance(rate, float) and math.isnan(rate):
            yield f"{path}.per_second", PER_SECOND
    names = {stripped(agent.get("name")) for _, agent in agents}
    for _, number in numbers:
        inbound = stripped(number.get("inbound_agent"))
        if inbound is not None and inbound not in names:
            yield (
                f"number {e164(number.get('number'))}",
                f"inbound_agent {inbound!r} is not defined",
            )
    for kind, items, key, value_of in (
        ("agent", agents, "name", stripped),
        ("campaign", campaigns, "slug", stripped),
        ("number", numbers, "number", e164),
    ):
        seen: set[str] = set()
        for _, item in items:
            value = value_of(item.get(key))
            if value in seen:
                yield f"{kind} {value}", f"appears twice in {source}"
            if value is not None:
                seen.add(value)


def _campaign(path: str, item: dict[Any, Any]) -> Iterator[tuple[str, str]]:
    optional = ("timezone", "help_text", "goal", "opt_out_text")
    yield from _texts(path, item, ("name", "agent", "from_number"), optional)
    yield from _phone(f"{path}.from_number", item.get("from_number"))
    pool = item.get("from_numbers")
    listed: set[str] = set()
    for j, raw in enumerate(pool if isinstance(pool, list) else []):
        where = f"{path}.from_numbers[{j}]"
        yield from _text(where, raw, required=True)
        yield from _phone(where, raw)
        number = e164(raw)
        if number is not None and number in listed:
            yield where, f"{number} is listed twice"
        listed.update([number] if number else [])
    zone = stripped(item.get("timezone"))
    if zone is not None and "\x00" not in zone:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            yield f"{path}.timezone", f"{zone!r} is not an IANA time zone (e.g. America/Chicago)"
    window = item.get("send_window")
    if isinstance(window, dict):
        start, end = time_of_day(window.get("start")), time_of_day(window.get("end"))
        if start and end and start >= end:
            yield f"{path}.send_window", "start must be before end (same day)"
        days = window.get("days")
        if isinstance(days, str) and days.lower() not in DAY_ALIASES:
            for day in days.split(","):
                if day_number(day.strip()) is None:
                    yield (
                        f"{path}.send_window.days",
                        NOT_A_DAY.replace("{value}", _shown(day.strip())),
                    )
    for key in ("reply_timeout", "silence_timeout"):
        if seconds(item.get(key)) == 0:
            yield f"{path}.{key}", "must be longer than zero"
    fallbacks = item.get("fallbacks")
    for key, value in fallbacks.items() if isinstance(fallbacks, dict) else []:
        if isinstance(key, str):
            yield from _text(f"{path}.fallbacks", key, required=True)
        if isinstance(value, str):
            yield from _text(f"{path}.fallbacks.{key}", value, required=False)
        elif isinstance(value, int | float) and len(str(value)) > MAX_NAME:
            yield f"{path}.fallbacks.{key}", f"longer than {MAX_NAME:,} characters"
    steps = item.get("steps")
    for j, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict):
            yield from _texts(f"{path}.steps[{j}]", step, ("body",), ())


def _items(data: dict[str, Any], key: str) -> list[tuple[str, dict[Any, Any]]]:
    """The mappings listed under a top-level key, with their paths."""
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [(f"{key}[{i}]", item) for i, item in enumerate(items) if isinstance(item, dict)]


def _texts(
    path: str, item: dict[Any, Any], required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[str, str]]:
    for key in required + optional:
        yield from _text(f"{path}.{key}", item.get(key), required=key in required)


def _text(path: str, value: Any, *, required: bool) -> Iterator[tuple[str, str]]:
    """A text the schema took: no NUL character, and not blank when it is required."""
    if not isinstance(value, str):
        return
    if "\x00" in value:
        yield path, "must not contain NUL characters"
    elif required and value and not value.strip():
        yield path, "must not be empty"


def _phone(path: str, value: Any) -> Iterator[tuple[str, str]]:
    raw = stripped(value)
    if raw is not None and "\x00" not in raw:
        number = phones.normalize(raw)
        if number.e164 is None:
            yield path, f"{raw!r}: {number.error}"

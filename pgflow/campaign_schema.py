"""The published JSON Schema of campaign files (`pgflow campaign schema`, for editors), and
what a valid value of each format means (durations, times of day, days, phone numbers).
`pgflow.campaign_check` validates files with it, and says which check lives where."""

from __future__ import annotations

import re
from typing import Any

from pgflow import phones

MAX_TEXT = 2000  # any text field of a campaign file, unless it says otherwise
MAX_NAME = 100  # names (agents, placeholders) and fallbacks
MAX_PROMPT = 20_000
MAX_BODY = 1600
MAX_INT = 2_147_483_647

DAY_NUMBERS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
DAY_ALIASES = {
    "weekdays": [1, 2, 3, 4, 5],
    "daily": [1, 2, 3, 4, 5, 6, 7],
    "all": [1, 2, 3, 4, 5, 6, 7],
}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

DURATION = {
    "type": "string",
    "pattern": r"^\s*(\d+\s*[smhdw]\s*)+$",
    "description": "A duration: 30s, 15m, 2h, 1d, 1w, or sums like 1d12h.",
}
TIME = {
    "type": "string",
    "pattern": r"^([01]?\d|2[0-3]):[0-5]\d$|^24:00$",
    "description": "A local time of day, HH:MM (24:00 for the end of the day). Quote it.",
}
DAY = {"type": "string", "pattern": "(?i)^(mon|tue|wed|thu|fri|sat|sun)"}
TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
NAME = {**TEXT, "maxLength": MAX_NAME}

AGENT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "prompt"],
    "properties": {
        "name": {**NAME, "description": "Unique; campaigns name their agent by it."},
        "prompt": {
            **TEXT,
            "maxLength": MAX_PROMPT,
            "description": "The agent's instructions (its system prompt).",
        },
        "model": {
            **TEXT,
            "description": "litellm model string, used when PGFLOW_LLM_MODEL is set.",
        },
        "retell_agent_id": {**TEXT, "description": "A Retell chat agent of your own."},
        "max_turns": {"type": "integer", "minimum": 1, "maximum": 100},
        "reply_debounce": {
            **DURATION,
            "description": "Texts this close get one answer (at most 5m).",
        },
    },
}
STEP: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["body"],
    "properties": {
        "delay": {**DURATION, "description": "After the previous step (step 1: usually 0m)."},
        "body": {
            **TEXT,
            "maxLength": MAX_BODY,
            "description": "The text; {{first_name}} and any attribute of the lead.",
        },
    },
}
CAMPAIGN: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["slug", "name", "agent", "steps"],
    "anyOf": [{"required": ["from_number"]}, {"required": ["from_numbers"]}],
    "properties": {
        "slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
        "name": TEXT,
        "agent": {**NAME, "description": "The name of an agent."},
        "goal": {**TEXT, "description": "What the campaign is for, in a sentence."},
        "from_number": {**TEXT, "description": "The sending number, any common format."},
        "from_numbers": {
            "type": "array",
            "items": TEXT,
            "minItems": 1,
            "description": "A pool of sending numbers (after from_number when both are "
            "given); a conversation keeps the number it starts on.",
        },
        "status": {"enum": ["draft", "active", "paused", "archived"]},
        "transport": {
            "enum": ["retell", "twilio"],
            "description": "Who carries the texts: retell (its LLM writes the replies, with "
            "our prompt) or twilio (our agent writes them; delivery receipts; a person can "
            "text the lead). Default retell.",
        },
        "timezone": {**TEXT, "description": "IANA zone used when the lead's is unknown."},
        "send_window": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "start": TIME,
                "end": TIME,
                "days": {
                    "type": ["array", "string"],
                    "items": DAY,
                    "minItems": 1,
                    "description": "A list of days, or text: weekdays, daily, mon,wed,fri.",
                },
            },
        },
        "reply_timeout": DURATION,
        "silence_timeout": DURATION,
        "daily_cap": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 50},
        "help_text": TEXT,
        "opt_out_text": TEXT,
        "fallbacks": {
            "type": "object",
            "propertyNames": {"minLength": 1, "maxLength": MAX_NAME},
            "additionalProperties": {"type": ["string", "number"], "maxLength": MAX_NAME},
        },
        "steps": {"type": "array", "items": STEP, "minItems": 1},
    },
}
NUMBER: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["number"],
    "properties": {
        "number": TEXT,
        "inbound_agent": {**TEXT, "description": "Answers people who text this number first."},
        "per_second": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": 1000,
            "description": "Carrier limit: messages per second from this number (null: none).",
        },
        "daily_segments": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_INT,
            "description": "Carrier limit: SMS segments per UTC day (null: none).",
        },
    },
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://pgflow-sms.example/campaign.schema.json",
    "title": "pgflow-sms campaign file",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "agents": {"type": "array", "items": AGENT},
        "campaigns": {"type": "array", "items": CAMPAIGN},
        "numbers": {"type": "array", "items": NUMBER},
    },
}

# --- formats: what a valid value means ------------------------------------------------------

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_DURATION_FORMAT = re.compile(DURATION["pattern"])
_TIME = re.compile(r"^(?:([01]?\d|2[0-3]):([0-5]\d)|(24):(00))$")


def parse_duration(text: str) -> int | None:
    """Seconds in '0m', '90s', '2h', '1d12h', '1w'; None when it is not one."""
    compact = re.sub(r"\s+", "", text.strip().lower())
    if not compact or _DURATION.sub("", compact):
        return None
    return sum(int(n) * DURATION_UNITS[u] for n, u in _DURATION.findall(compact))


def seconds(value: Any) -> int | None:
    """A duration field's seconds, or None when it is absent or not a duration."""
    if not isinstance(value, str) or not _DURATION_FORMAT.match(value):
        return None
    return parse_duration(value)


def time_of_day(value: Any) -> str | None:
    """'9:00' -> '09:00' ('24:00' stays), or None when it is absent or not a time."""
    match = _TIME.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    return "24:00" if match[3] else f"{int(match[1]):02d}:{match[2]}"


def day_number(day: str) -> int | None:
    """'Monday', 'mon' -> 1; None when it is not a day."""
    return DAY_NUMBERS.get(day.strip().lower()[:3])


def stripped(value: Any) -> str | None:
    """A text field as kept: stripped, or None when it is absent, blank or not text."""
    return (value.strip() or None) if isinstance(value, str) else None


def e164(value: Any) -> str | None:
    """A phone number field in E.164, or None when it is not one."""
    raw = stripped(value)
    return None if raw is None else phones.normalize(raw).e164

"""The published JSON Schema of campaign files (`pgflow campaign schema`), so editors can
validate and complete campaign YAML; `pgflow.campaigns` checks every file against it before
its own checks (durations, zones, numbers, windows)."""

from __future__ import annotations

from typing import Any

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
TEXT = {"type": "string", "minLength": 1}

AGENT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "prompt"],
    "properties": {
        "name": {**TEXT, "description": "Unique; campaigns name their agent by it."},
        "prompt": {**TEXT, "description": "The agent's instructions (its system prompt)."},
        "model": {
            **TEXT,
            "description": "litellm model string, used when PGFLOW_LLM_MODEL is set.",
        },
        "retell_agent_id": {**TEXT, "description": "A Retell chat agent of your own."},
        "max_turns": {"type": "integer", "minimum": 1, "maximum": 100},
        "reply_debounce": {**DURATION, "description": "Texts this close get one answer."},
    },
}
STEP: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["body"],
    "properties": {
        "delay": {**DURATION, "description": "After the previous step (step 1: usually 0m)."},
        "body": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1600,
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
        "agent": {**TEXT, "description": "The name of an agent."},
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
        "timezone": {**TEXT, "description": "IANA zone used when the lead's is unknown."},
        "send_window": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "start": TIME,
                "end": TIME,
                "days": {
                    "oneOf": [
                        {"type": "array", "items": DAY, "minItems": 1},
                        {"type": "string"},
                    ]
                },
            },
        },
        "reply_timeout": DURATION,
        "silence_timeout": DURATION,
        "daily_cap": {"type": "integer", "minimum": 1},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 50},
        "help_text": TEXT,
        "opt_out_text": TEXT,
        "fallbacks": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
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

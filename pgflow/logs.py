"""Structured logs: a stable `event` name plus fields, one JSON object a line.

The library only emits (`event()`); the CLI installs a formatter (`JsonFormatter`, the
default, or `TextFormatter` for a terminal, PGFLOW_LOG_FORMAT=text). Both render every
value through Python's JSON encoder, so nothing a client sends (a newline, a quote, a
control character) can forge a line. Call sites pass phones masked (`pgflow.phones.mask`)
and never secrets; the formatters mask any E.164-looking number and redact the secrets they
were given, as a second line of defence."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from pgflow.phones import mask

_E164 = re.compile(r"\+[1-9]\d{7,14}")
# LogRecord attributes that are not fields of ours.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log event `name` with `fields` (None values are left out)."""
    if not logger.isEnabledFor(level):
        return
    clean = {k: v for k, v in fields.items() if v is not None}
    logger.log(level, name, extra={"event": name, "fields": clean})


class _Scrubber:
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, "***")
        return _E164.sub(lambda m: mask(m.group(0)), value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, dict):
            return {str(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return self.text(str(value))


def _fields(record: logging.LogRecord, scrub: _Scrubber) -> dict[str, Any]:
    data: dict[str, Any] = {}
    name = getattr(record, "event", None)
    if name is None:  # a library's own record (uvicorn, pgqueuer): its message is the text
        data["message"] = scrub.text(record.getMessage())
    else:
        data["event"] = str(name)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                data[key if key not in ("ts", "level", "logger", "event") else f"f_{key}"] = (
                    scrub.value(value)
                )
    for key, value in vars(record).items():
        if key not in _RESERVED and key not in ("event", "fields") and key not in data:
            data[key] = scrub.value(value)
    if record.exc_info:
        data["error"] = scrub.text(logging.Formatter().formatException(record.exc_info))
    return data


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "event", ...fields} on one line (json.dumps, ASCII only)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.scrub = _Scrubber(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            **_fields(record, self.scrub),
        }
        return json.dumps(line, default=str, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger event=name key=value`: values JSON-quoted when they need it."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.scrub = _Scrubber(secrets)

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        parts = [stamp, record.levelname, record.name]
        for key, value in _fields(record, self.scrub).items():
            parts.append(f"{key}={_quote(value)}")
        return " ".join(parts)


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and re.fullmatch(r"[\w.:/+*@%-]+", text):
        return text
    return json.dumps(text, ensure_ascii=True)

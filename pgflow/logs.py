"""Structured log lines: a stable `event` key plus fields, rendered `event=... key=value`.

The library only emits; the CLI configures handlers. Never pass full phone numbers or
secrets as fields: use `pgflow.phones.mask`."""

from __future__ import annotations

import logging
from typing import Any


def _render(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    if not logger.isEnabledFor(level):
        return
    line = " ".join([f"event={name}", *(f"{k}={_render(v)}" for k, v in fields.items())])
    logger.log(level, line, extra={"event": name, "fields": fields})

"""Logs are one JSON object a line, written by the standard encoder: no input can forge a
line; phones are masked and secrets redacted even where a call site forgot."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from pgflow import logs
from tests.factories import campaign_doc
from tests.processes import ServeProcess

Conn = psycopg.Connection[Any]
HOSTILE = 'x"\n{"ts": "forged", "event": "lead.ingested"}\r\n\u2028\x1b[31mred'


def test_a_hostile_campaign_string_is_one_well_formed_line(db_url: str, db: Conn) -> None:
    db.execute("select pgflow.apply_campaigns(%s)", [Jsonb(campaign_doc("solar"))])
    server = ServeProcess(db_url, env={"PGFLOW_LEAD_TOKEN": "t", "RETELL_API_KEY": "k3y-secret"})
    server.started()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as web:
            response = web.post(
                "/webhooks/leads",
                json={"campaign": HOSTILE, "phone": "+12125550147"},
                headers={"Authorization": "Bearer t"},
            )
        assert response.status_code == 404
        assert server.terminate() == 0
    finally:
        server.stop()
    lines = [line for line in server.output().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    rejected = [p for p in parsed if p.get("event") == "lead.rejected"]
    assert len(rejected) == 1
    assert rejected[0]["campaign"] == HOSTILE[:100]
    assert rejected[0]["phone"] == "+1212***0147"
    assert not [p for p in parsed if p.get("ts") == "forged"]
    assert all(line.isascii() for line in lines)
    assert "k3y-secret" not in server.output()
    assert "+12125550147" not in server.output()


def record(**fields: Any) -> logging.LogRecord:
    item = logging.makeLogRecord(
        {"name": "pgflow.test", "levelno": logging.INFO, "levelname": "INFO", "msg": "sms.sent"}
    )
    item.event = "sms.sent"
    item.fields = fields
    return item


def test_formatters_mask_phones_and_redact_secrets() -> None:
    line = logs.JsonFormatter(["retell-secret-key"]).format(
        record(to="+14155550123", error="HTTP 401 for key retell-secret-key\nsecond line")
    )
    data = json.loads(line)
    assert data["to"] == "+1415***0123"
    assert data["error"] == "HTTP 401 for key ***\nsecond line"
    assert "\n" not in line
    text = logs.TextFormatter(["retell-secret-key"]).format(
        record(to="+14155550123", error='a "quoted"\nvalue', attempt=2)
    )
    assert "\n" not in text
    assert 'to=+1415***0123 error="a \\"quoted\\"\\nvalue" attempt=2' in text

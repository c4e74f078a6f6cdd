"""pgflow.intake: the sync and async twins give the same answers (one core), the phone is
normalised once per lead, and a lead the SQL cannot take is still reported."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgflow import intake, phones
from tests.factories import apply_campaign, at, count

Conn = psycopg.Connection[Any]
MORNING = at("2026-11-23 15:00")
NUL_TEXT = "text must not contain NUL characters (\\u0000)"


def lead(phone: str, **fields: Any) -> intake.Lead:
    return intake.prepare({"campaign": "solar", "phone": phone, **fields}, now=MORNING)


def both(url: str, make: Callable[[], intake.Lead]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same lead through `ingest` and `ingest_async` (a fresh lead each time)."""
    with psycopg.connect(url, autocommit=True) as conn:
        sync = intake.ingest(conn, make())

    async def run() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await intake.ingest_async(conn, make())

    return sync, asyncio.run(run())


def test_the_twins_answer_alike(db: Conn, db_url: str) -> None:
    apply_campaign(db)
    created, again = both(db_url, lambda: lead("(212) 555-0147"))
    assert (created["status"], again["status"]) == ("created", "already_enrolled")
    sync, async_ = both(db_url, lambda: lead("2125550148", first_name="Sa\x00m"))
    for result in (sync, async_):
        assert (result["status"], result["error"], result["detail"]) == (
            "rejected",
            "invalid_payload",
            NUL_TEXT,
        )
    assert count(db, "lead_events", "error_code = 'invalid_payload'") == 2


def test_both_twins_report_a_lead_when_the_rejection_cannot_be_recorded(
    db: Conn, login_url: Callable[[str], str]
) -> None:
    apply_campaign(db)
    db.execute(
        "revoke execute on function pgflow.reject_lead(text, text, text, text, timestamptz)"
        " from pgflow_web"
    )
    url = login_url("pgflow_web")
    expected = {"status": "rejected", "error": "invalid_payload", "detail": NUL_TEXT}
    assert both(url, lambda: lead("2125550148", first_name="Sa\x00m")) == (expected, expected)
    assert count(db, "lead_events") == 0


def test_a_savepoint_keeps_the_transaction_usable(db: Conn, db_url: str) -> None:
    apply_campaign(db)
    with psycopg.connect(db_url, autocommit=True) as conn:
        with conn.transaction(force_rollback=True):
            refused = intake.ingest(conn, lead("2125550148", first_name="Sa\x00m"), savepoint=True)
            taken = intake.ingest(conn, lead("2125550149"), savepoint=True)
        assert (refused["status"], taken["status"]) == ("rejected", "created")
    assert count(db, "lead_events") == 0  # rolled back: a dry run


def test_the_phone_is_normalised_once_per_lead(
    db: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_campaign(db)
    calls: list[str] = []
    normalize = phones.normalize

    def counted(raw: str, *args: Any, **kwargs: Any) -> phones.Normalized:
        calls.append(raw)
        return normalize(raw, *args, **kwargs)

    monkeypatch.setattr(phones, "normalize", counted)
    prepared = lead("(212) 555-0147")
    assert prepared.phone != "(212) 555-0147"  # masked for logs
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert intake.ingest(conn, prepared)["status"] == "created"
    assert calls == ["(212) 555-0147"]

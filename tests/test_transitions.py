"""Transition functions: legal moves succeed and are audited; illegal ones raise PF001/PF002."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgflow import db as pdb
from pgflow import errors
from tests.factories import apply_campaign, at, ingest
from tests.helpers import row, scalar

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")

ENROLLMENT_MOVES = {
    "pause_enrollment": ({"active"}, "paused"),
    "complete_enrollment": ({"active"}, "completed"),
    "stop_enrollment": ({"active", "paused"}, "stopped"),
    "opt_out_enrollment": ({"active", "paused"}, "opted_out"),
}
ENROLLMENT_STATES = ["active", "paused", "completed", "stopped", "opted_out"]


@pytest.fixture
def lead(db: Conn) -> dict[str, Any]:
    apply_campaign(db)
    return ingest(db, "2125550147", NOW)


def force_enrollment(db: Conn, enrollment: int, status: str) -> None:
    ended = status in ("completed", "stopped", "opted_out")
    db.execute(
        "update pgflow.enrollments set status = %s, ended_at = case when %s then now() end,"
        " stop_reason = case when %s in ('stopped', 'opted_out') then 'test' end,"
        " next_message_at = case when %s = 'active' then now() end where id = %s",
        [status, ended, status, status, enrollment],
    )


def move(db: Conn, function: str, entity_id: int) -> Any:
    reason = "because" if function == "stop_enrollment" else None
    # complete_ and opt_out_enrollment are the tick's and the opt-out's: no builder in the door
    with pdb.mapped_errors():
        return db.execute(f"select pgflow.{function}(%s, %s, %s)", [entity_id, reason, NOW])


@pytest.mark.parametrize("function", sorted(ENROLLMENT_MOVES))
@pytest.mark.parametrize("start", ENROLLMENT_STATES)
def test_enrollment_transitions(db: Conn, lead: dict[str, Any], function: str, start: str) -> None:
    enrollment = lead["enrollment_id"]
    force_enrollment(db, enrollment, start)
    allowed, target = ENROLLMENT_MOVES[function]
    if start in allowed:
        move(db, function, enrollment)
        assert (
            scalar(db, "select status from pgflow.enrollments where id = %s", [enrollment])
            == target
        )
        assert row(
            db,
            "select from_status, to_status, occurred_at from pgflow.events"
            " where entity = 'enrollment' order by id desc limit 1",
        ) == (start, target, NOW)
    else:
        with pytest.raises(errors.IllegalTransition, match=f"enrollment {enrollment} is {start}"):
            move(db, function, enrollment)
        with pytest.raises(psycopg.Error) as info:
            db.execute(
                f"select pgflow.{function}(%s{', %s' if function == 'stop_enrollment' else ''})",
                [enrollment, "x"] if function == "stop_enrollment" else [enrollment],
            )
        assert info.value.sqlstate == "PF001"


@pytest.mark.parametrize("function", [*sorted(ENROLLMENT_MOVES), "engage_conversation"])
def test_missing_row_is_not_found(db: Conn, function: str) -> None:
    with pytest.raises(errors.NotFound):
        move(db, function, 999_999)


def test_conversation_open_engaged_ended(db: Conn, lead: dict[str, Any]) -> None:
    conversation = scalar(db, "select id from pgflow.conversations")
    pdb.engage_conversation(conversation, now=NOW).run(db)
    with pytest.raises(errors.IllegalTransition, match="is engaged; cannot engage"):
        pdb.engage_conversation(conversation).run(db)
    pdb.end_conversation(conversation, "qualified", "owns home", "llm", NOW).run(db)
    assert row(
        db, "select status, conversion_status, outcome_reason, ended_at from pgflow.conversations"
    ) == ("ended", "qualified", "owns home", NOW)
    for args in (("success", None, "human"), ("qualified", None, "llm")):
        with pytest.raises(errors.IllegalTransition, match="is ended; cannot end"):
            pdb.end_conversation(conversation, *args).run(db)
    with pytest.raises(errors.IllegalTransition):
        pdb.engage_conversation(conversation).run(db)
    # ending the conversation stopped the drip
    assert row(db, "select status, stop_reason from pgflow.enrollments") == (
        "stopped",
        "conversation ended: qualified",
    )


def test_open_conversation_can_end_directly(db: Conn, lead: dict[str, Any]) -> None:
    conversation = scalar(db, "select id from pgflow.conversations")
    pdb.end_conversation(conversation, "discarded", "STOP", "rule").run(db)
    assert scalar(db, "select conversion_status from pgflow.conversations") == "discarded"


@pytest.mark.parametrize(
    ("status", "source"), [("won", "rule"), ("success", "robot"), (None, "rule")]
)
def test_end_conversation_validates_its_arguments(
    db: Conn, lead: dict[str, Any], status: str | None, source: str
) -> None:
    conversation = scalar(db, "select id from pgflow.conversations")
    with pytest.raises(errors.InvalidInput):
        pdb.end_conversation(conversation, status, None, source).run(db)  # type: ignore[arg-type]


def test_stop_needs_a_reason(db: Conn, lead: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidInput):
        pdb.stop_enrollment(lead["enrollment_id"], " ").run(db)


def test_events_carry_the_reason(db: Conn, lead: dict[str, Any]) -> None:
    pdb.pause_enrollment(lead["enrollment_id"], "operator hold", NOW).run(db)
    assert scalar(db, "select reason from pgflow.events where to_status = 'paused'") == (
        "operator hold"
    )

"""The drip: the tick, and the transitions an operator or a test asks for by name."""

from __future__ import annotations

from pgflow.db.core import Call, Now, Row, json_call, void_call


def tick(now: Now = None, batch: int = 1000) -> Call[Row]:
    """pgflow.tick(): dispatch due steps, end unanswered conversations; counts."""
    return json_call("tick", now, batch)


def dispatch_due(lane: int | None, batch: int = 1000, now: Now = None) -> Call[Row]:
    """pgflow.dispatch_due(): one batch of a lane's due steps; counts and `more`."""
    return json_call("dispatch_due", lane, batch, now)


def pause_enrollment(enrollment_id: int, reason: str | None = None, now: Now = None) -> Call[None]:
    return void_call("pause_enrollment", enrollment_id, reason, now)


def stop_enrollment(enrollment_id: int, reason: str, now: Now = None) -> Call[None]:
    return void_call("stop_enrollment", enrollment_id, reason, now)


def engage_conversation(
    conversation_id: int, reason: str | None = None, now: Now = None
) -> Call[None]:
    return void_call("engage_conversation", conversation_id, reason, now)


def end_conversation(
    conversation_id: int, status: str, reason: str | None, source: str, now: Now = None
) -> Call[None]:
    """pgflow.end_conversation(): open|engaged -> ended with an outcome (PF001 otherwise)."""
    return void_call("end_conversation", conversation_id, status, reason, source, now)

"""Sending: the send-time claim, the record of each attempt, chats, the worker's heartbeat."""

from __future__ import annotations

import uuid
from typing import Any, cast

from psycopg.types.json import Jsonb

from pgflow.db.core import Call, Now, Row, function_call, json_call, json_list_call, void_call


def record_send(
    message_id: int, attempt: int, result: dict[str, Any], retry_base: float, now: Now = None
) -> Call[Row]:
    """pgflow.record_send(): the outcome of one attempt; {action: sent|retry|dead_letter|stale}."""
    return json_call("record_send", message_id, attempt, result, retry_base, now)


def claim_messages(
    message_ids: list[int], worker_id: uuid.UUID | None, now: Now = None
) -> Call[list[Row]]:
    """pgflow.claim_messages(): claim_message for each id, in one transaction, answers in order."""
    return json_list_call("claim_messages", message_ids, worker_id, now)


def record_sends(items: list[Row], retry_base: float = 30.0, now: Now = None) -> Call[list[Row]]:
    """pgflow.record_sends(): record_send for each {message_id, attempt, result}, in one
    transaction, answers in order."""
    return json_list_call("record_sends", Jsonb(items), retry_base, now)


def release_interrupted(message_id: int, attempt: int, now: Now = None) -> Call[Row]:
    """pgflow.release_interrupted(): a cut-off attempt Retell has no chat for waits again;
    {action: released | dead_letter | stale}."""
    return json_call("release_interrupted", message_id, attempt, now)


def claim_message(
    message_id: int, worker_id: uuid.UUID | None, checked_chat: str | None = None, now: Now = None
) -> Call[Row]:
    """pgflow.claim_message(): the send-time re-check and claim; {action: send | defer |
    suppressed | skip | dead_letter | check_chat}."""
    return json_call("claim_message", message_id, worker_id, checked_chat, now)


def mark_chat_ended(chat_id: str, now: Now = None) -> Call[int]:
    """pgflow.mark_chat_ended(): the chat is over; how many conversations it was current for."""
    return cast(Call[int], function_call("mark_chat_ended", chat_id, now))


def chat_to_end(conversation_id: int) -> Call[str | None]:
    """pgflow.chat_to_end(): the conversation's chat while it may be ongoing, else None."""
    return cast(Call[str | None], function_call("chat_to_end", conversation_id))


def worker_heartbeat(
    worker_id: uuid.UUID, host: str, pid: int, version: str, stopping: bool = False
) -> Call[None]:
    return void_call("worker_heartbeat", worker_id, host, pid, version, stopping)

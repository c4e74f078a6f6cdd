"""Retell chat objects and webhooks for SQL-level tests, in the shape Retell sends them
(`message_with_tool_calls`, no `messages` key; our ids in `metadata`)."""

from __future__ import annotations

from typing import Any

Item = tuple[str, str]  # (role, content): role "agent" or "user"


def chat(
    chat_id: str,
    items: list[Item],
    *,
    conversation_id: int | None = None,
    message_id: int | None = None,
    status: str = "ongoing",
    start_ms: int = 1_790_000_000_000,
    with_tools: bool = True,
) -> dict[str, Any]:
    metadata: dict[str, str] = {}
    if conversation_id is not None:
        metadata["pgflow_conversation_id"] = str(conversation_id)
    if message_id is not None:
        metadata["pgflow_message_id"] = str(message_id)
    entries: list[dict[str, Any]] = []
    for n, (role, content) in enumerate(items):
        entries.append(
            {
                "message_id": f"{chat_id}-m{n}",
                "role": role,
                "content": content,
                "created_timestamp": start_ms + 1000 * n,
            }
        )
        if with_tools and role == "user":
            entries.append(  # not a message: must not be recorded
                {
                    "tool_call_id": f"{chat_id}-t{n}",
                    "role": "tool_call_invocation",
                    "name": "check_calendar",
                    "arguments": "{}",
                }
            )
    transcript = "".join(
        f"{'Agent' if role == 'agent' else 'User'}: {content}\n" for role, content in items
    )
    return {
        "chat_id": chat_id,
        "agent_id": "agent_test",
        "chat_status": status,
        "chat_type": "sms_chat",
        "metadata": metadata,
        "start_timestamp": start_ms,
        "transcript": transcript,
        "message_with_tool_calls": entries,
    }


def event(name: str, chat_object: dict[str, Any]) -> dict[str, Any]:
    return {"event": name, "chat": chat_object}


def inbound(lead: str, line: str, *, nested: bool = True, **extra: Any) -> dict[str, Any]:
    body = {"from_number": lead, "to_number": line, **extra}
    if nested:
        return {"event": "chat_inbound", "chat_inbound": body}
    return {"event": "chat_inbound", **body}

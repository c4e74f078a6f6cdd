"""The sandbox's memory: SMS chats in Retell's shape, what each phone received, and the
Retell LLMs, chat agents and phone numbers `pgflow retell setup` configures.

A chat as Retell returns it (retell-sdk's ChatResponse): no phone numbers, no `messages`
key; its texts are `message_with_tool_calls` entries {message_id, role, content,
created_timestamp}; `transcript` is "Agent: ...\\nUser: ..." lines."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import threading
import time
from typing import Any

DEFAULT_AGENT_ID = "agent_default"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")  # a phone number as Retell takes it


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclasses.dataclass
class Chat:
    chat_id: str
    agent_id: str
    lead: str
    line: str
    metadata: dict[str, Any]
    variables: dict[str, str]
    status: str = "ongoing"
    start_ms: int = dataclasses.field(default_factory=now_ms)
    end_ms: int | None = None
    items: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, role: str, content: str, message_id: str) -> dict[str, Any]:
        item = {
            "message_id": message_id,
            "role": role,
            "content": content,
            "created_timestamp": max(now_ms(), self._last_ms() + 1),
        }
        self.items.append(item)
        return item

    def _last_ms(self) -> int:
        return max([self.start_ms, *(int(i["created_timestamp"]) for i in self.items)])

    def public(self) -> dict[str, Any]:
        """The chat object as Retell's API and webhooks show it."""
        chat: dict[str, Any] = {
            "chat_id": self.chat_id,
            "agent_id": self.agent_id,
            "chat_status": self.status,
            "chat_type": "sms_chat",
            "metadata": copy.deepcopy(self.metadata),
            "retell_llm_dynamic_variables": dict(self.variables),
            "start_timestamp": self.start_ms,
            "transcript": "".join(
                f"{'Agent' if i['role'] == 'agent' else 'User'}: {i['content']}\n"
                for i in self.items
            ),
            "message_with_tool_calls": copy.deepcopy(self.items),
        }
        if self.end_ms is not None:
            chat["end_timestamp"] = self.end_ms
            chat["chat_analysis"] = {
                "chat_summary": f"An SMS chat of {len(self.items)} message(s).",
                "user_sentiment": "Unknown",
                "chat_successful": any(i["role"] == "user" for i in self.items),
                "custom_analysis_data": {},
            }
        return chat


@dataclasses.dataclass(frozen=True)
class PhoneText:
    """One text on a lead's phone: to the lead (from an agent, or a provider's auto-reply)
    or from the lead."""

    direction: str  # "to_lead" | "from_lead"
    text: str
    line: str
    chat_id: str | None
    at_ms: int
    note: str | None = None  # e.g. "rejected": the provider dropped the lead's text
    transport: str = "retell"  # or "twilio": which of the sandbox's APIs carried it
    message_sid: str | None = None  # Twilio's SM... id, for a text through Twilio

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ChatBook:
    """Chats, phones and the configured Retell objects, behind one lock.

    Ids carry `token` (when given) so that they stay unique across restarts, as Retell's
    are: a database that outlives one sandbox must never see an id twice."""

    def __init__(self, token: str = "") -> None:
        self.token = token
        self.lock = threading.RLock()
        self.chats: dict[str, Chat] = {}
        self.phones: dict[str, list[PhoneText]] = {}
        self.llms: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self.numbers: dict[str, dict[str, Any]] = {}
        self._ids: dict[str, itertools.count[int]] = {}

    def next_id(self, prefix: str) -> str:
        """chat_1, chat_2, ...; msg_1, ...: one sequence per prefix."""
        with self.lock:
            counter = self._ids.setdefault(prefix, itertools.count(1))
            middle = f"{self.token}_" if self.token else ""
            return f"{prefix}_{middle}{next(counter)}"

    def clear(self) -> None:
        with self.lock:
            self.chats.clear()
            self.phones.clear()

    def open_chat(self, lead: str, line: str) -> Chat | None:
        """The most recent ongoing chat between a lead and one of our numbers."""
        with self.lock:
            ongoing = [
                c
                for c in self.chats.values()
                if c.lead == lead and c.line == line and c.status == "ongoing"
            ]
            return max(ongoing, key=lambda c: c.start_ms) if ongoing else None

    def to_phone(self, text: PhoneText, lead: str) -> None:
        with self.lock:
            self.phones.setdefault(lead, []).append(text)

    def phone(self, number: str) -> list[dict[str, Any]]:
        with self.lock:
            return [t.as_json() for t in self.phones.get(number, [])]

    def add_number(self, number: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            entry = self.numbers.setdefault(
                number,
                {
                    "phone_number": number,
                    "phone_number_type": "retell-twilio",
                    "inbound_agents": [],
                    "outbound_agents": [],
                    "inbound_sms_agents": [],
                    "outbound_sms_agents": [],
                    "inbound_sms_webhook_url": None,
                    "last_modification_timestamp": now_ms(),
                },
            )
            entry.update(fields)
            return copy.deepcopy(entry)

"""The chats as they happen, both sides: the simulated lead texting one of our numbers
(`say`: into the ongoing chat, or, like Retell, a chat_inbound webhook first and then a new
chat), and the agent's texts (the first one of create-sms-chat, then ours, which the sandbox
takes where Retell's own LLM would answer). Each change goes out as a signed chat event."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pgflow.sandbox.chats import DEFAULT_AGENT_ID, E164, Chat, ChatBook, PhoneText, now_ms
from pgflow.sandbox.http import Refusal
from pgflow.sandbox.webhooks import WebhookSender

# How Retell's own agent would answer a lead (tests); None: nobody answers but us.
Responder = Callable[[dict[str, Any]], str | None]


class LiveChats:
    """Starts, feeds and ends the chats in `book`, sending their events through `webhooks`."""

    def __init__(
        self, book: ChatBook, webhooks: WebhookSender, responder: Responder | None = None
    ) -> None:
        self.book = book
        self.webhooks = webhooks
        self.responder = responder

    def new_chat(
        self,
        lead: str,
        line: str,
        *,
        agent_id: str,
        metadata: dict[str, Any],
        variables: dict[str, Any],
    ) -> Chat:
        """A chat between the lead and our number `line`, nothing said yet (no event)."""
        with self.book.lock:
            chat = Chat(
                chat_id=self.book.next_id("chat"),
                agent_id=agent_id,
                lead=lead,
                line=line,
                metadata=copy.deepcopy(metadata),
                variables={str(k): str(v) for k, v in variables.items()},
            )
            self.book.chats[chat.chat_id] = chat
        return chat

    def send_first(self, chat: Chat) -> dict[str, Any]:
        """create-sms-chat's first text to the lead, then chat_started; returns the chat as
        Retell answers it."""
        # The agent's begin_message is {{sms_body}}: the first text is ours, word for word.
        first = chat.variables.get("sms_body", "{{sms_body}}")
        with self.book.lock:
            chat.add("agent", first, self.book.next_id("msg"))
            answer = chat.public()
        self.book.to_phone(
            PhoneText("to_lead", first, chat.line, chat.chat_id, now_ms()), chat.lead
        )
        self._emit("chat_started", chat)  # queued before the answer: events keep their order
        return answer

    def say(self, lead: str, line: str, text: str) -> dict[str, Any]:
        """The lead texts one of our numbers: into the ongoing chat, or, like Retell, a
        chat_inbound webhook first (a reject drops the text) and then a new chat."""
        if not E164.match(lead) or not E164.match(line):
            raise Refusal(400, "from_number and to_number must be E.164 phone numbers")
        chat = self.book.open_chat(lead, line)
        if chat is None:
            answer = self.webhooks.call(
                {
                    "event": "chat_inbound",
                    "chat_inbound": {
                        "from_number": lead,
                        "to_number": line,
                        "agent_id": self._line_agent(line),
                    },
                }
            )
            inbound = answer.get("chat_inbound") if isinstance(answer, dict) else None
            inbound = inbound if isinstance(inbound, dict) else {}
            if inbound.get("reject") is True:
                self.book.to_phone(
                    PhoneText("from_lead", text, line, None, now_ms(), "rejected"), lead
                )
                return {"result": "rejected", "chat_id": None}
            variables = inbound.get("dynamic_variables")
            metadata = inbound.get("metadata")
            chat = self.new_chat(
                lead,
                line,
                agent_id=str(inbound.get("override_agent_id") or self._line_agent(line)),
                metadata=metadata if isinstance(metadata, dict) else {},
                variables=variables if isinstance(variables, dict) else {},
            )
            self._emit("chat_started", chat)
        with self.book.lock:
            chat.add("user", text, self.book.next_id("msg"))
        self.book.to_phone(PhoneText("from_lead", text, line, chat.chat_id, now_ms()), lead)
        self._emit("transcript_updated", chat)
        if self.responder is not None:
            reply = self.responder(chat.public())
            if reply:
                self._agent_text(chat, reply, self.book.next_id("msg"))
        return {"result": "delivered", "chat_id": chat.chat_id}

    def post_agent_message(self, chat_id: str, content: str, message_id: str | None) -> str:
        """Our agent's text into a live chat (what Retell does not allow, the sandbox does)."""
        with self.book.lock:
            chat = self.book.chats.get(chat_id)
            if chat is None:
                raise Refusal(404, "Chat not found")
            if chat.status != "ongoing":
                raise Refusal(409, "Chat has ended")
            if message_id and any(i["message_id"] == message_id for i in chat.items):
                return message_id  # a retried post: once only
        return self._agent_text(chat, content, message_id or self.book.next_id("msg"))

    def end_chat(self, chat_id: str) -> bool:
        """End a chat (False: no such chat); ending an ended chat changes nothing."""
        with self.book.lock:
            chat = self.book.chats.get(chat_id)
            if chat is None:
                return False
            if chat.status != "ongoing":
                return True
            chat.status = "ended"
            chat.end_ms = now_ms()
        self._emit("chat_ended", chat)
        self._emit("chat_analyzed", chat)
        return True

    def _agent_text(self, chat: Chat, content: str, message_id: str) -> str:
        with self.book.lock:
            chat.add("agent", content, message_id)
        self.book.to_phone(
            PhoneText("to_lead", content, chat.line, chat.chat_id, now_ms()), chat.lead
        )
        self._emit("transcript_updated", chat)
        return message_id

    def _line_agent(self, line: str) -> str:
        with self.book.lock:
            number = self.book.numbers.get(line) or {}
            agents = number.get("inbound_sms_agents") or []
        return str(agents[0]["agent_id"]) if agents else DEFAULT_AGENT_ID

    def _emit(self, event: str, chat: Chat) -> None:
        with self.book.lock:
            payload = {"event": event, "chat": chat.public()}
        self.webhooks.send(payload)

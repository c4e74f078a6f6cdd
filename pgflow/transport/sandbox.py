"""The sandbox transport: Retell's API served locally by `pgflow sandbox serve` (or the
demo), which also takes our own text into a live chat. So in the sandbox the engine writes
the agent's replies (the agent_reply job), where with Retell its own LLM does."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pgflow.transport.base import json_object
from pgflow.transport.retell import RetellClient, RetellError


class SandboxClient(RetellClient):
    """RetellClient for the sandbox: `accepts_text`, plus the lead's side for the CLI."""

    def __init__(self, api_key: str, base_url: str, **kwargs: Any) -> None:
        super().__init__(api_key, base_url, **kwargs)
        self.name = "sandbox"
        self.accepts_text = True

    async def post_message(self, chat_id: str, body: str, message_id: str) -> str:
        """Our agent's text into the live chat; `message_id` makes a retried post once-only
        and lets the chat's echo be recognised as ours."""
        path = f"/sandbox/chats/{quote(chat_id, safe='')}/messages"
        response = await self._request(
            "POST", path, "post-message", (), {"content": body, "message_id": message_id}
        )
        data = json_object(response) or {}
        return str(data.get("message_id") or message_id)

    async def say(self, lead: str, line: str, text: str) -> dict[str, Any]:
        """Play the lead: a text from `lead` to our number `line`."""
        response = await self._request(
            "POST",
            "/sandbox/say",
            "say",
            (lead, line),
            {"from_number": lead, "to_number": line, "text": text},
        )
        data = json_object(response)
        if data is None:
            raise RetellError("sandbox say: malformed answer", status_code=None, retryable=False)
        return data

    async def phone(self, number: str) -> list[dict[str, Any]]:
        """Every text the lead's phone sent and received, in order."""
        response = await self._request(
            "GET", f"/sandbox/phones/{quote(number, safe='+')}", "phone", (number,), None
        )
        data = json_object(response) or {}
        texts = data.get("texts")
        return texts if isinstance(texts, list) else []

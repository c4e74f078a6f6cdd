"""Retell's HTTP API as the sandbox serves it: every request is recorded, then routed.

- Retell's chat calls: create-sms-chat (where the scripted faults apply), get-chat,
  end-chat, v3/list-chats;
- the Retell LLMs, chat agents and phone numbers `pgflow retell setup` reads and writes;
- the sandbox's own: our text into a chat (`POST /sandbox/chats/{id}/messages`), the lead's
  text (`POST /sandbox/say`: through Twilio's side when the line is a Twilio line), a phone's
  texts (`GET /sandbox/phones/{number}`), and faults
  for the next sends (`POST /sandbox/script`).

Every call needs `Authorization: Bearer <api key>`, as Retell's; a scripted fault answers a
create-sms-chat before the key is checked."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from pgflow.sandbox import faults
from pgflow.sandbox.chats import DEFAULT_AGENT_ID, E164, Chat, ChatBook, now_ms
from pgflow.sandbox.http import Handler, RecordedRequest, Recorder, Refusal, route_of
from pgflow.sandbox.lead import LiveChats

CREATE_PATH = "/create-sms-chat"


class RetellApi:
    """Answers each request a `Server` hands it (`api(handler)`)."""

    def __init__(
        self,
        api_key: str,
        live: LiveChats,
        script: faults.Script,
        recorder: Recorder,
        stopping: threading.Event,
        say: Callable[[str, str, str], dict[str, Any]] | None = None,
    ) -> None:
        self.api_key = api_key
        self.live = live
        self.book: ChatBook = live.book
        self.script = script
        self.recorder = recorder
        self.stopping = stopping  # set when the sandbox stops: scripted waits end
        self.say = say or live.say  # the lead's text: Retell's chats, or another provider

    def __call__(self, handler: Handler) -> None:
        request = self.recorder.record(handler)
        if is_create(request.method, request.path):
            self._create(handler, request, self.script.next())
            return
        if not self._authorized(request):
            handler.refuse(401)
            return
        try:
            status, body = self._route(request)
        except Refusal as refusal:
            handler.refuse(refusal.status, refusal.message)
            return
        handler.respond(status, body)

    def _authorized(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _create(self, handler: Handler, request: RecordedRequest, step: faults.Step) -> None:
        if faults.answered_before(step, handler, self.stopping):
            return
        if not self._authorized(request):
            handler.refuse(401)
            return
        problem = validate_create(request)
        if problem is not None:
            handler.refuse(400, problem)
            return
        payload: dict[str, Any] = request.json
        lead, line = str(payload["to_number"]), str(payload["from_number"])
        if line not in self.book.numbers:
            self.book.add_number(line)
        chat = self.live.new_chat(
            lead,
            line,
            agent_id=str(payload.get("override_agent_id") or DEFAULT_AGENT_ID),
            metadata=payload.get("metadata") or {},
            variables=payload.get("retell_llm_dynamic_variables") or {},
        )
        faults.answer_after(step, handler, self.stopping, self.live.send_first(chat))

    def _route(self, request: RecordedRequest) -> tuple[int, Any]:
        method, route = request.method, route_of(request.path)
        body = request.json if isinstance(request.json, dict) else {}
        if method == "GET" and route.startswith("/get-chat/"):
            with self.book.lock:
                chat = self.book.chats.get(route.removeprefix("/get-chat/"))
                if chat is None:
                    raise Refusal(404, "Chat not found")
                return 200, chat.public()
        if method == "PATCH" and route.startswith("/end-chat/"):
            if not self.live.end_chat(route.removeprefix("/end-chat/")):
                raise Refusal(404, "Chat not found")
            return 204, None
        if method == "POST" and route == "/v3/list-chats":
            return 200, self._list_chats(body)
        if method == "POST" and route.startswith("/sandbox/chats/") and route.endswith("/messages"):
            chat_id = route.removeprefix("/sandbox/chats/").removesuffix("/messages")
            content = body.get("content")
            if not isinstance(content, str) or not content.strip():
                raise Refusal(400, "content must be a non-empty string")
            message_id = body.get("message_id")
            posted = self.live.post_agent_message(
                chat_id, content, message_id if isinstance(message_id, str) else None
            )
            return 200, {"chat_id": chat_id, "message_id": posted}
        if method == "POST" and route == "/sandbox/say":
            lead, line, text = body.get("from_number"), body.get("to_number"), body.get("text")
            if not all(isinstance(v, str) for v in (lead, line, text)):
                raise Refusal(400, "from_number, to_number and text are required strings")
            return 200, self.say(str(lead), str(line), str(text))
        if method == "GET" and route.startswith("/sandbox/phones/"):
            number = route.removeprefix("/sandbox/phones/")
            return 200, {"number": number, "texts": self.book.phone(number)}
        if method == "POST" and route == "/sandbox/script":
            steps = faults.parse_script(str(body.get("steps", "")))
            self.script.add(*steps)
            return 200, {"queued": len(steps)}
        return self._setup_route(method, route, body, request.path)

    def _setup_route(
        self, method: str, route: str, body: dict[str, Any], path: str
    ) -> tuple[int, Any]:
        """The Retell objects `pgflow retell setup` reads and writes."""
        book = self.book
        with book.lock:
            if method == "POST" and route == "/create-retell-llm":
                return 201, _create_object(book.llms, "llm_id", book.next_id("llm"), body)
            if route.startswith(("/get-retell-llm/", "/update-retell-llm/")):
                return 200, _object(book.llms, _last(route), method, body, "LLM not found")
            if method == "GET" and route == "/v2/list-retell-llms":
                return 200, {"items": copy.deepcopy(list(book.llms.values())), "has_more": False}
            if method == "POST" and route == "/create-chat-agent":
                if not isinstance(body.get("response_engine"), dict):
                    raise Refusal(400, "response_engine is required")
                agent_id = book.next_id("agent")
                return 201, _create_object(book.agents, "agent_id", agent_id, body, channel="chat")
            if route.startswith(("/get-chat-agent/", "/update-chat-agent/")):
                return 200, _object(book.agents, _last(route), method, body, "Agent not found")
            if method == "POST" and route == "/v2/list-agents":
                return 200, {"items": copy.deepcopy(list(book.agents.values())), "has_more": False}
            if method == "GET" and route == "/v2/list-phone-numbers":
                return 200, {"items": copy.deepcopy(list(book.numbers.values())), "has_more": False}
            if route.startswith(("/get-phone-number/", "/update-phone-number/")):
                number = unquote(_last(route))
                return 200, _object(book.numbers, number, method, body, "Phone number not found")
        raise Refusal(404, f"No route for {method} {path}")

    def _list_chats(self, body: dict[str, Any]) -> dict[str, Any]:
        criteria = (
            body.get("filter_criteria") if isinstance(body.get("filter_criteria"), dict) else {}
        )
        assert isinstance(criteria, dict)

        def wanted(chat: Chat) -> bool:
            for key, attr in (("user_number", chat.lead), ("agent_number", chat.line)):
                rule = criteria.get(key)
                if isinstance(rule, dict) and rule.get("value") != attr:
                    return False
            return True

        with self.book.lock:
            found = sorted(
                (c for c in self.book.chats.values() if wanted(c)),
                key=lambda c: c.start_ms,
                reverse=True,
            )
            items = []
            for chat in found:
                item = chat.public()
                for omitted in ("transcript", "message_with_tool_calls"):
                    item.pop(omitted, None)
                items.append(item)
        return {"items": items, "has_more": False}


def _create_object(
    store: dict[str, dict[str, Any]], id_key: str, new_id: str, body: dict[str, Any], **fixed: Any
) -> dict[str, Any]:
    """A new Retell LLM or chat agent: its id, `fixed`, version 0, then what was sent."""
    store[new_id] = {
        id_key: new_id,
        **fixed,
        "version": 0,
        **body,
        "last_modification_timestamp": now_ms(),
    }
    return copy.deepcopy(store[new_id])


def _object(
    store: dict[str, dict[str, Any]], key: str, method: str, body: dict[str, Any], missing: str
) -> dict[str, Any]:
    """get-X/{key}, or update-X/{key} (a PATCH merges `body` in), on one kind of object."""
    if key not in store:
        raise Refusal(404, missing)
    if method == "PATCH":
        store[key].update(body, last_modification_timestamp=now_ms())
    return copy.deepcopy(store[key])


def _last(route: str) -> str:
    return route.rsplit("/", 1)[1]


def is_create(method: str, path: str) -> bool:
    return method == "POST" and route_of(path) == CREATE_PATH


def validate_create(request: RecordedRequest) -> str | None:
    """Why a create-sms-chat body is invalid, or None."""
    payload = request.json
    if request.json is None and request.body:
        return "Invalid JSON body"
    if not isinstance(payload, dict):
        return "Request body must be a JSON object"
    for field in ("from_number", "to_number"):
        value = payload.get(field)
        if not isinstance(value, str) or not E164.match(value):
            return f"{field} must be an E.164 phone number"
    agent = payload.get("override_agent_id")
    if agent is not None and not isinstance(agent, str):
        return "override_agent_id must be a string"
    metadata = payload.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return "metadata must be an object"
    variables = payload.get("retell_llm_dynamic_variables")
    if variables is not None and not (
        isinstance(variables, dict) and all(isinstance(v, str) for v in variables.values())
    ):
        return "retell_llm_dynamic_variables must map strings to strings"
    return None

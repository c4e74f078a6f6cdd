"""`pgflow retell setup`: the Retell side, configured through its API, idempotently.

- A Retell LLM whose `general_prompt` is `{{agent_prompt}}` plus the lead's context and
  whose `begin_message` is `{{sms_body}}`: every chat carries our agent's prompt and our
  exact first text as dynamic variables, so one LLM serves every agent and campaign.
- A chat agent `pgflow-sms` on it: our webhook URL, the events we record
  (`transcript_updated` included), a silence timeout, and a `conversion_status` enum in
  `post_chat_analysis_data` (a second, independent outcome signal).
- Each of our sending numbers: that agent for inbound and outbound SMS, and our URL as its
  inbound SMS webhook. Agents our campaign files name by `retell_agent_id` get the same
  webhook settings (their own LLM is left alone; a warning says when its prompt ignores
  `{{agent_prompt}}`).

Each step reads first and writes only what differs; `dry_run` reads and writes nothing."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

from pgflow.agent import OUTCOMES as AGENT_OUTCOMES
from pgflow.transport.retell import RetellClient, RetellError

AGENT_NAME = "pgflow-sms"
WEBHOOK_EVENTS = ["chat_started", "transcript_updated", "chat_ended", "chat_analyzed"]
OUTCOMES = list(AGENT_OUTCOMES)  # a list, as Retell answers it (compared when re-applied)
GENERAL_PROMPT = """{{agent_prompt}}

You are texting {{first_name}} by SMS on behalf of {{campaign_name}}.
The campaign's goal: {{campaign_goal}}.
What we know about them: {{lead_context}}.
Keep every reply under 300 characters, plain text, one question at a time. If they ask you
to stop texting them, do not reply: end the chat."""
BEGIN_MESSAGE = "{{sms_body}}"
ANALYSIS = [
    {
        "type": "enum",
        "name": "conversion_status",
        "description": (
            "The outcome of this SMS conversation: success (an appointment was booked or the "
            "goal reached), qualified (interested and a fit, nothing booked), unqualified (not "
            "a fit), escalated (asked for a person), no_response (never replied), discarded "
            "(opted out or irrelevant)."
        ),
        "choices": OUTCOMES,
    }
]


@dataclasses.dataclass(frozen=True)
class Change:
    target: str  # e.g. "retell-llm", "chat-agent pgflow-sms", "number +14155550100"
    action: str  # create | update | unchanged | warning | missing
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


async def setup(
    client: RetellClient,
    *,
    webhook_url: str,
    numbers: list[str],
    agent_ids: list[str],
    silence_ms: int = 24 * 3600 * 1000,
    dry_run: bool = False,
) -> list[Change]:
    plan = _Setup(client, dry_run)
    agent_id = await plan.agent(webhook_url, silence_ms)
    for number in numbers:
        await plan.number(number, agent_id, webhook_url)
    for other in agent_ids:
        if other != agent_id:
            await plan.their_agent(other, webhook_url)
    return plan.changes


class _Setup:
    def __init__(self, client: RetellClient, dry_run: bool) -> None:
        self.client = client
        self.dry_run = dry_run
        self.changes: list[Change] = []

    def note(self, target: str, action: str, detail: str = "") -> None:
        self.changes.append(Change(target, action, detail))

    async def write(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.dry_run:
            return {}
        return await self.client.call_json(method, path, body) or {}

    async def read(self, target: str, path: str, missing: str) -> dict[str, Any] | None:
        """What Retell has at `path`; None, noted `missing`, when it has nothing there."""
        try:
            return await self.client.call_json("GET", path) or {}
        except RetellError as exc:
            if exc.status_code == 404:
                self.note(target, "missing", missing)
                return None
            raise

    async def agent(self, webhook_url: str, silence_ms: int) -> str:
        listed = await self.client.call_json(
            "POST",
            "/v2/list-agents",
            {"filter_criteria": {"channel": {"op": "eq", "type": "string", "value": "chat"}}},
        )
        ours = [a for a in (listed or {}).get("items", []) if a.get("agent_name") == AGENT_NAME]
        wanted = {
            "agent_name": AGENT_NAME,
            "webhook_url": webhook_url,
            "webhook_events": WEBHOOK_EVENTS,
            "end_chat_after_silence_ms": silence_ms,
            "post_chat_analysis_data": ANALYSIS,
        }
        llm_wanted = {
            "general_prompt": GENERAL_PROMPT,
            "begin_message": BEGIN_MESSAGE,
            "start_speaker": "agent",
        }
        if not ours:
            llm = await self.write("POST", "/create-retell-llm", llm_wanted)
            self.note("retell-llm", "create", "general_prompt {{agent_prompt}}, begin {{sms_body}}")
            engine = {"type": "retell-llm", "llm_id": llm.get("llm_id", "(new)")}
            created = await self.write(
                "POST", "/create-chat-agent", {**wanted, "response_engine": engine}
            )
            self.note(f"chat-agent {AGENT_NAME}", "create", f"webhook {webhook_url}")
            return str(created.get("agent_id", "(new agent)"))
        agent = ours[0]
        agent_id = str(agent["agent_id"])
        llm_id = (agent.get("response_engine") or {}).get("llm_id")
        if llm_id:
            llm = await self.client.call_json("GET", f"/get-retell-llm/{quote(llm_id)}") or {}
            await self.diff(
                f"retell-llm {llm_id}",
                "PATCH",
                f"/update-retell-llm/{quote(llm_id)}",
                llm,
                llm_wanted,
            )
        await self.diff(
            f"chat-agent {AGENT_NAME}",
            "PATCH",
            f"/update-chat-agent/{quote(agent_id)}",
            agent,
            wanted,
        )
        return agent_id

    async def number(self, number: str, agent_id: str, webhook_url: str) -> None:
        target = f"number {number}"
        current = await self.read(
            target,
            f"/get-phone-number/{number}",
            "not in this Retell account: buy or import it first",
        )
        if current is None:
            return
        binding = [{"agent_id": agent_id, "weight": 1}]
        wanted = {
            "inbound_sms_webhook_url": webhook_url,
            "inbound_sms_agents": binding,
            "outbound_sms_agents": binding,
        }
        await self.diff(target, "PATCH", f"/update-phone-number/{number}", current, wanted)

    async def their_agent(self, agent_id: str, webhook_url: str) -> None:
        target = f"chat-agent {agent_id}"
        agent = await self.read(
            target,
            f"/get-chat-agent/{quote(agent_id)}",
            "named as retell_agent_id but not in Retell",
        )
        if agent is None:
            return
        wanted = {"webhook_url": webhook_url, "webhook_events": WEBHOOK_EVENTS}
        await self.diff(target, "PATCH", f"/update-chat-agent/{quote(agent_id)}", agent, wanted)
        llm_id = (agent.get("response_engine") or {}).get("llm_id")
        if llm_id:
            llm = await self.client.call_json("GET", f"/get-retell-llm/{quote(llm_id)}") or {}
            if "{{agent_prompt}}" not in str(llm.get("general_prompt", "")):
                self.note(target, "warning", "its LLM prompt ignores {{agent_prompt}}")
            if str(llm.get("begin_message", "")) != BEGIN_MESSAGE:
                self.note(target, "warning", "its begin_message is not {{sms_body}}")

    async def diff(
        self, target: str, method: str, path: str, current: dict[str, Any], wanted: dict[str, Any]
    ) -> None:
        changed = {k: v for k, v in wanted.items() if current.get(k) != v}
        if not changed:
            self.note(target, "unchanged")
            return
        await self.write(method, path, changed)
        self.note(target, "update", ", ".join(sorted(changed)))

"""The agent on a language model, through litellm: the agent's own prompt, the campaign's
goal and the lead's context, with a strict JSON answer. Any OpenAI-compatible server works
through `api_base` (tests use a fake one on 127.0.0.1).

litellm is imported when the first LlmAgent is made (it is slow to import), with its cost
map read locally so that importing it never reaches the network."""

from __future__ import annotations

import json
import os
from typing import Any

import pydantic

from pgflow.agent.base import (
    Action,
    AgentError,
    AgentReply,
    Classification,
    ClassifyRequest,
    Outcome,
    ReplyRequest,
    Turn,
    fit,
)

DEFAULT_TIMEOUT = 20.0
ATTEMPTS = 2  # an unparseable answer is asked for again once, then AgentError

RULES = """You are texting a lead by SMS on behalf of {campaign}. Follow the instructions
below. Keep every reply under 300 characters, plain text, no emoji, one question at a time.
Never claim to be human if asked directly. Never ask for payment details.
Answer as JSON: {{"reply": <your text>, "action": <one of continue, handoff, end, booked>,
"reason": <why, in a few words>}}. action is "booked" when the lead has agreed to a specific
day and time, "handoff" when they ask for a person or you cannot help, "end" when the
conversation is over (not a fit, or they said goodbye), else "continue".
The campaign's goal: {goal}
What we know about the lead: {context}
--- instructions ---
{prompt}"""

JUDGE = """Decide whether this SMS from a lead asks us to stop texting them (an opt-out).
"Stop by tomorrow", "don't stop" or a question are not opt-outs; "stop texting me", "remove
me", "leave me alone" and any request to not be contacted are. Answer as JSON:
{"opt_out": true|false, "reason": <a few words>}"""


CLASSIFY = """You judge the outcome of an SMS conversation between a business's agent and a
lead. The campaign: {campaign}. Its goal: {goal}.
The outcomes:
- success: the goal was reached (an appointment booked for a concrete time, or the lead
  says they booked)
- qualified: interested and a fit, but nothing booked
- unqualified: not a fit (a renter where owners are needed, a wrong number, out of the
  area, not interested)
- escalated: the lead asked for a person, or the agent handed over
- no_response: the lead never replied
- discarded: the lead opted out, or the conversation is irrelevant or abusive
Judge by what the lead said: sarcasm is not agreement; a booking cancelled later is not a
success. Answer as JSON: {{"status": <an outcome>, "reason": <one sentence>,
"confidence": <from 0 to 1>}}"""


class _Verdict(pydantic.BaseModel):
    status: Outcome
    reason: str
    confidence: float = pydantic.Field(ge=0, le=1)


class _Reply(pydantic.BaseModel):
    reply: str
    action: Action
    reason: str


class _Judgment(pydantic.BaseModel):
    opt_out: bool
    reason: str


class LlmAgent:
    name = "llm"

    def __init__(
        self, model: str, *, api_base: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        self._litellm = litellm
        self.model = model
        self.api_base = api_base
        self.timeout = timeout
        # An OpenAI-compatible server of your own (PGFLOW_LLM_API_BASE) may need no key, but
        # the client insists on one; with a provider, litellm reads the provider's variable.
        self.api_key = (os.environ.get("OPENAI_API_KEY") or "no-key") if api_base else None

    async def reply(self, request: ReplyRequest) -> AgentReply:
        system = RULES.format(
            campaign=request.campaign_name or "our team",
            goal=request.goal or "help the lead",
            context=request.variables.get("lead_context", "nothing known yet"),
            prompt=request.prompt,
        )
        messages = [{"role": "system", "content": system}, *_history(request.transcript)]
        answer = await self._ask(request.model or self.model, messages, _Reply)
        assert isinstance(answer, _Reply)
        if not answer.reply.strip():  # an unknown action fails `_Reply`'s validation
            raise AgentError(f"the model answered an empty reply {answer!r}")
        return AgentReply(fit(answer.reply), answer.action, answer.reason[:300] or None)

    async def classify(self, request: ClassifyRequest) -> Classification:
        system = CLASSIFY.format(
            campaign=request.campaign or "our team", goal=request.goal or "help the lead"
        )
        transcript = "\n".join(
            f"{'Lead' if t.role == 'lead' else 'Agent'}: {t.text}" for t in request.transcript
        )
        model = request.model or self.model
        answer = await self._ask(
            model,
            [{"role": "system", "content": system}, {"role": "user", "content": transcript}],
            _Verdict,
        )
        assert isinstance(answer, _Verdict)
        return Classification(answer.status, answer.reason[:500], answer.confidence, model)

    async def aclose(self) -> None:
        """Close the HTTP clients litellm cached for this event loop."""
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        await close_litellm_async_clients()  # type: ignore[no-untyped-call]

    async def judge_opt_out(self, text: str) -> bool:
        messages = [{"role": "system", "content": JUDGE}, {"role": "user", "content": text}]
        answer = await self._ask(self.model, messages, _Judgment)
        assert isinstance(answer, _Judgment)
        return answer.opt_out

    async def _ask(
        self, model: str, messages: list[dict[str, str]], schema: type[pydantic.BaseModel]
    ) -> pydantic.BaseModel:
        problem = "no answer"
        for _ in range(ATTEMPTS):
            try:
                response: Any = await self._litellm.acompletion(
                    model=model,
                    messages=messages,
                    api_base=self.api_base,
                    api_key=self.api_key,
                    response_format=schema,
                    timeout=self.timeout,
                    num_retries=0,
                )
            except Exception as exc:  # litellm's errors: rate limits, timeouts, 5xx, auth
                raise AgentError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
            content = response.choices[0].message.content or ""
            try:
                return schema.model_validate(json.loads(content))
            except (ValueError, pydantic.ValidationError) as exc:
                problem = f"unparseable answer ({type(exc).__name__}): {content[:200]!r}"
        raise AgentError(problem)


def _history(transcript: list[Turn]) -> list[dict[str, str]]:
    return [
        {"role": "user" if t.role == "lead" else "assistant", "content": t.text} for t in transcript
    ]

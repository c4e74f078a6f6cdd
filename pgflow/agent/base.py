"""What an agent is: it answers a lead in a conversation, and judges whether an ambiguous
text is an opt-out. Two implementations share this interface: `LlmAgent` (litellm, the
agent's prompt) and `OfflineAgent` (deterministic rules, for the demo and tests)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal, Protocol

Action = Literal["continue", "handoff", "end", "booked"]
Outcome = Literal["success", "qualified", "unqualified", "escalated", "no_response", "discarded"]
OUTCOMES: tuple[Outcome, ...] = (
    "success",
    "qualified",
    "unqualified",
    "escalated",
    "no_response",
    "discarded",
)
MAX_SEGMENTS = 2

# GSM-7: the basic set and the extension characters that count double (sms_segments() in SQL).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


class AgentError(Exception):
    """The agent could not answer now (the model is unreachable, or answered nonsense)."""


@dataclasses.dataclass(frozen=True)
class Turn:
    role: Literal["agent", "lead"]
    text: str


@dataclasses.dataclass(frozen=True)
class ReplyRequest:
    """Everything an agent sees to answer: its prompt, the campaign, the lead, the talk."""

    agent_name: str
    prompt: str
    model: str | None
    campaign_name: str
    goal: str | None
    variables: dict[str, str]
    transcript: list[Turn]
    turns_used: int
    max_turns: int

    @classmethod
    def from_turn(cls, turn: dict[str, Any]) -> ReplyRequest:
        """From pgflow.agent_turn()'s answer."""
        agent = turn["agent"]
        campaign = turn.get("campaign") or {}
        return cls(
            agent_name=str(agent["name"]),
            prompt=str(agent["prompt"]),
            model=agent.get("model"),
            campaign_name=str(campaign.get("name") or ""),
            goal=campaign.get("goal"),
            variables={str(k): str(v) for k, v in (turn.get("variables") or {}).items()},
            transcript=[
                Turn("lead" if t["role"] == "lead" else "agent", str(t["text"]))
                for t in turn.get("transcript") or []
            ],
            turns_used=int(turn.get("turns") or 0),
            max_turns=int(turn.get("max_turns") or 10),
        )

    @property
    def last_lead_texts(self) -> list[str]:
        """The lead's texts since the agent last spoke (a burst is answered as one)."""
        texts: list[str] = []
        for turn in reversed(self.transcript):
            if turn.role != "lead":
                break
            texts.append(turn.text)
        return list(reversed(texts))


@dataclasses.dataclass(frozen=True)
class AgentReply:
    text: str
    action: Action = "continue"
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class ClassifyRequest:
    """A conversation to classify: the campaign, its goal, the transcript."""

    campaign: str
    goal: str | None
    transcript: list[Turn]
    model: str | None = None

    @classmethod
    def from_question(cls, question: dict[str, Any]) -> ClassifyRequest:
        """From pgflow.outcome_question()'s answer."""
        return cls(
            campaign=str(question.get("campaign") or ""),
            goal=question.get("goal"),
            transcript=[
                Turn("lead" if t["role"] == "lead" else "agent", str(t["text"]))
                for t in question.get("transcript") or []
            ],
            model=question.get("model"),
        )


@dataclasses.dataclass(frozen=True)
class Classification:
    status: Outcome
    reason: str
    confidence: float
    model: str | None = None


class Agent(Protocol):
    name: str

    async def reply(self, request: ReplyRequest) -> AgentReply:
        """The next text to the lead (kept within two SMS segments where possible)."""
        ...

    async def judge_opt_out(self, text: str) -> bool:
        """True when an ambiguous text asks to stop being contacted."""
        ...

    async def classify(self, request: ClassifyRequest) -> Classification:
        """The conversation's outcome with a reason and a confidence from 0 to 1; AgentError
        when no valid answer came (the conversation then goes to review)."""
        ...

    async def aclose(self) -> None:
        """Release connections (call it in the event loop the agent ran in)."""
        ...


def segments(text: str) -> int:
    """SMS segments of a text: GSM-7 160/153 (extension characters count double), else
    UCS-2 70/67 in UTF-16 units. The same rule as pgflow.sms_segments()."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units = len(text) + sum(1 for c in text if c in _GSM_EXTENDED)
        return 1 if units <= 160 else -(-units // 153)
    u16 = len(text.encode("utf-16-le")) // 2
    return 1 if u16 <= 70 else -(-u16 // 67)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def fit(text: str, max_segments: int = MAX_SEGMENTS) -> str:
    """The text cut to `max_segments`: whole sentences where it can, else whole words."""
    text = " ".join(text.split())
    if segments(text) <= max_segments:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if segments(candidate) > max_segments:
            break
        kept = candidate
    if kept:
        return kept
    words: list[str] = []
    for word in text.split(" "):
        if segments(" ".join([*words, word]) + "…") > max_segments:
            break
        words.append(word)
    return " ".join(words) + "…"

"""A deterministic agent that needs no model: simple rules over the lead's last texts.

It qualifies, books and hands over the way the demo's story needs, and it never invents:
when it cannot tell, it asks the next qualifying question. Same interface as LlmAgent."""

from __future__ import annotations

import re

from pgflow.agent.base import AgentReply, Classification, ClassifyRequest, ReplyRequest, fit

_DAY_OR_TIME = re.compile(
    r"\b(mon|tues?|wed(nes)?|thu(rs?)?|fri|sat(ur)?|sun)(day)?\b|\b\d{1,2}(:\d{2})?\s*(am|pm)\b"
    r"|\btomorrow\b|\b(morning|afternoon|evening)\b|\b\d{1,2}:\d{2}\b",
    re.IGNORECASE,
)
_HUMAN = re.compile(
    r"\b(real|actual|live) (person|human)\b|\b(talk|speak) (to|with) (a |an |someone|your )?"
    r"(person|human|someone|manager|agent|representative)\b|\bhuman\b",
    re.IGNORECASE,
)
_NOT_A_FIT = re.compile(
    r"\b(rent|renting|renter|tenant|apartment|condo board|wrong number|not interested|no thanks"
    r"|moved|moving)\b",
    re.IGNORECASE,
)
_CANCEL = re.compile(
    r"\b(cancel|can'?t make it|cannot make it|never ?mind|call it off|not anymore)\b", re.I
)
_STOP = re.compile(
    r"\b(stop texting|unsubscribe|remove me|leave me alone|don'?t (text|contact|message) me)\b",
    re.IGNORECASE,
)
_YES = re.compile(r"^\s*(y|yes|yeah|yep|sure|ok|okay|sounds good|definitely|absolutely)\b", re.I)
_PRICE = re.compile(r"\b(cost|price|how much|expensive|pay|quote|\$)", re.IGNORECASE)


class OfflineAgent:
    """Rules, not a model: answers are predictable, for the demo and for tests."""

    name = "offline"

    async def reply(self, request: ReplyRequest) -> AgentReply:
        said = " ".join(request.last_lead_texts)
        first = request.variables.get("first_name", "there")
        if _HUMAN.search(said):
            return AgentReply(
                "Of course - I'm handing you to a member of our team now; they'll text you "
                "shortly.",
                "handoff",
                "the lead asked for a person",
            )
        if _DAY_OR_TIME.search(said):
            when = _DAY_OR_TIME.search(said)
            slot = when.group(0) if when else "then"
            return AgentReply(
                f"Perfect, {first} - you're booked for {slot}. You'll get a confirmation "
                "shortly. Anything else I can help with?",
                "booked",
                f"the lead chose a time ({slot})",
            )
        if _NOT_A_FIT.search(said):
            return AgentReply(
                f"Thanks for letting me know, {first}. It sounds like this isn't a fit right "
                "now - I won't take more of your time.",
                "end",
                "the lead is not a fit",
            )
        if _PRICE.search(said):
            return AgentReply(
                fit(
                    "Good question - it depends on your home and usage, and the consultation "
                    "is free. Would a quick call this week work? Just send a day and time."
                )
            )
        if _YES.search(said) or request.turns_used == 0:
            return AgentReply(
                fit(
                    f"Great, {first}! A couple of quick questions: do you own your home, and "
                    "roughly what is your monthly bill?"
                )
            )
        return AgentReply(
            fit("Thanks! When would be a good time for a 10-minute call? Send a day and time.")
        )

    async def classify(self, request: ClassifyRequest) -> Classification:
        """By rules over the lead's words, in this order: a person asked for, an opt-out,
        a time agreed (and not cancelled after), not a fit; else interested."""
        texts = [t.text for t in request.transcript if t.role == "lead"]
        if not texts:
            return Classification("no_response", "the lead never replied", 1.0, self.name)
        said = " ".join(texts)
        if _HUMAN.search(said):
            return Classification("escalated", "the lead asked for a person", 0.9, self.name)
        if _STOP.search(said):
            return Classification("discarded", "the lead asked not to be texted", 0.9, self.name)
        booked = [i for i, text in enumerate(texts) if _DAY_OR_TIME.search(text)]
        cancelled = [i for i, text in enumerate(texts) if _CANCEL.search(text)]
        if booked and not (cancelled and cancelled[-1] > booked[-1]):
            return Classification("success", "the lead agreed a time", 0.8, self.name)
        if _NOT_A_FIT.search(said):
            return Classification("unqualified", "the lead is not a fit", 0.8, self.name)
        if cancelled:
            return Classification("qualified", "a time was agreed, then called off", 0.6, self.name)
        return Classification(
            "qualified", "the lead replied and is interested; nothing booked", 0.65, self.name
        )

    async def aclose(self) -> None:
        return None

    async def judge_opt_out(self, text: str) -> bool:
        """Without a model the rules' verdict stands: a text they left ambiguous is a reply."""
        return False

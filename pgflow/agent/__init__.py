"""The agent: who writes replies where the engine writes them (the sandbox), and who
judges texts the opt-out rules left ambiguous. `create()` picks the language model when
one is configured, else the offline agent."""

from __future__ import annotations

from pgflow.agent.base import (
    OUTCOMES,
    Agent,
    AgentError,
    AgentReply,
    Classification,
    ClassifyRequest,
    ReplyRequest,
    Turn,
    fit,
    segments,
)
from pgflow.agent.offline import OfflineAgent
from pgflow.config import Settings


def create(settings: Settings) -> Agent:
    """LlmAgent on PGFLOW_LLM_MODEL (an agent's own `model` wins per reply), else the
    deterministic OfflineAgent."""
    if settings.llm_model:
        from pgflow.agent.llm import LlmAgent

        return LlmAgent(settings.llm_model, api_base=settings.llm_api_base)
    return OfflineAgent()


__all__ = [
    "OUTCOMES",
    "Agent",
    "AgentError",
    "AgentReply",
    "Classification",
    "ClassifyRequest",
    "OfflineAgent",
    "ReplyRequest",
    "Turn",
    "create",
    "fit",
    "segments",
]

"""LLM access for memsvc: one protocol (`LLM`), a litellm gateway and an offline built-in.

    llm = get_llm(settings.llm_model)       # None -> BuiltinLLM (offline, deterministic)
    with track_usage() as used:
        facts = llm.extract_facts(episodes)
    # used.as_dict(): calls, tokens and cost of exactly these calls, for the job's tenant record
"""

from __future__ import annotations

from memsvc.llm.builtin import BuiltinLLM
from memsvc.llm.gateway import (
    LLM,
    Episode,
    Fact,
    LiteLLMGateway,
    LLMCallError,
    LLMOutputError,
    Usage,
    normalize_attribute,
    normalize_key,
    track_usage,
)

__all__ = [
    "LLM", "BuiltinLLM", "Episode", "Fact", "LLMCallError", "LLMOutputError", "LiteLLMGateway", "Usage",
    "get_llm", "normalize_attribute", "normalize_key", "track_usage",
]


def get_llm(settings_model: str | None, *, max_retries: int = 2) -> LLM:
    """The configured model through litellm, or the built-in when none is configured."""
    if settings_model is None or not settings_model.strip():
        return BuiltinLLM()
    return LiteLLMGateway(settings_model.strip(), max_retries=max_retries)

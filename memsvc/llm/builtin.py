"""BuiltinLLM: the deterministic, offline, extractive `LLM` used when no model is configured.

No model, no randomness, no clock: the same input gives the same output on every machine, so the
embedded default works offline and consolidation re-runs are idempotent. It is a floor, not a
rival to a real model: summaries pick sentences, gists drop function words, facts come from a
closed set of patterns restated from templates, with (subject, attribute) keys (memsvc.llm.facts;
relative dates resolved by memsvc.llm.dates).
"""

from __future__ import annotations

from collections.abc import Sequence

from memsvc.llm.facts import extract_facts
from memsvc.llm.gateway import (
    GIST_MAX_WORDS,
    Episode,
    Fact,
    Usage,
    UsageMeter,
)
from memsvc.llm.summary import faithful_summary, keyword_gist

BUILTIN = "builtin"  # memories.summary_by of the old summarizer's summaries (stale: see memsvc.llm.summarizer)


def builtin_summary(text: str) -> str | None:
    """The faithful extractive summary (memsvc.llm.summary): whole sentences of the text, verbatim, or
    None where the text is its own summary (one statement, nothing to leave out, or not 75% or less)."""
    return faithful_summary(text)


class BuiltinLLM(UsageMeter):
    """Offline, deterministic `LLM`. Usage counts calls only (no tokens, no cost)."""

    def _count(self) -> None:
        self._record(Usage(calls=1))

    def summarize(self, text: str) -> str:
        """The extractive summary, or the text itself (whitespace collapsed) where there is none: a
        demotion then keeps every statement rather than a summary that lost one."""
        self._count()
        return faithful_summary(text) or " ".join(text.split())

    def gist(self, text: str) -> str:
        """Whole content words of the most informative sentences, or the text itself where it is short."""
        self._count()
        return keyword_gist(text, GIST_MAX_WORDS) or " ".join(text.split())

    def extract_facts(self, episodes: Sequence[Episode]) -> list[Fact]:
        self._count()
        return extract_facts(episodes)

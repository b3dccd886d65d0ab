"""Which summarizer writes memories' summaries and gists: `MEMSVC_SUMMARIZER` = none | extractive | llm | auto.

    summarizer = get_summarizer()                  # from the configuration; auto: llm when a model is set
    summary = summarizer.summarize(text)           # None: no summary worth storing (the text is its own)

- `extractive` (the offline default): whole sentences of the text, verbatim (memsvc.llm.summary). Cheap
  and deterministic, so the write path stores it with the memory (memories.summary_by = "extractive") and
  the context builder derives it on the fly for memories that have none stored.
- `llm`: the configured litellm model (memsvc.llm.gateway). Never on the request path: a write stores no
  summary (summary_by NULL) and the hourly maintenance pass asks the model, in batches; until then
  contexts offer the extractive summary, derived on the fly. A text of one sentence is not sent.
- `none`: no summaries or gists are written or derived. A demotion then keeps the verbatim text as the
  lower tier's text (nothing lossy is stored; a demoted memory saves no context space).

Summaries stored by the summarizer of earlier releases (summary_by = "builtin") cut sentences and
names; contexts ignore them and the maintenance pass recomputes them (memsvc.lifecycle.decay).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from memsvc.llm.gateway import LLM, LLMOutputError, must_shrink
from memsvc.llm.summary import MAX_SHARE, faithful_summary, keyword_gist, split_units

SummarizerKind = Literal["auto", "none", "extractive", "llm"]
KINDS: tuple[str, ...] = ("auto", "none", "extractive", "llm")
EXTRACTIVE = "extractive"  # memories.summary_by of the offline summarizer
NONE = "none"
LEGACY_BUILTIN = "builtin"  # memories.summary_by of the old summarizer: stale, recomputed


@runtime_checkable
class Summarizer(Protocol):
    name: str  # what memories.summary_by records
    inline: bool  # cheap and offline: may run when a memory is written and on the request path

    def summarize(self, text: str) -> str | None: ...

    def gist(self, text: str) -> str | None: ...


class NoSummarizer:
    name = NONE
    inline = True

    def summarize(self, text: str) -> str | None:
        return None

    def gist(self, text: str) -> str | None:
        return None


class ExtractiveSummarizer:
    name = EXTRACTIVE
    inline = True

    def summarize(self, text: str) -> str | None:
        return faithful_summary(text)

    def gist(self, text: str) -> str | None:
        return keyword_gist(text)


class LLMSummarizer:
    """Summaries by a model through the litellm gateway, held to the same rules as the extractive one
    where they can be checked: nothing for a text of one sentence, nothing not materially shorter."""

    inline = False

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.name = str(getattr(llm, "model", EXTRACTIVE))

    def summarize(self, text: str) -> str | None:
        if not must_shrink(text) or len(split_units(text)) <= 1:
            return None  # one sentence: nothing to leave out, the text is its own summary (and no call is paid)
        try:
            summary = self.llm.summarize(text).strip()
        except LLMOutputError:
            return None  # the model gave no usable answer after its retries: better none than a bad one
        return summary if summary and len(summary) <= MAX_SHARE * len(" ".join(text.split())) else None

    def gist(self, text: str) -> str | None:
        if not must_shrink(text):
            return None
        try:
            return self.llm.gist(text).strip() or None
        except LLMOutputError:
            return None


def resolve_kind(kind: str | None, llm_configured: bool) -> str:
    """The summarizer a setting names; `auto` (and unset) is `llm` with a model configured, else `extractive`."""
    kind = (kind or "auto").strip().lower()
    if kind not in KINDS:
        raise ValueError(f"MEMSVC_SUMMARIZER must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind == "auto":
        return "llm" if llm_configured else "extractive"
    return kind


def get_summarizer(kind: str | None = None, llm: LLM | None = None) -> Summarizer:
    """The one place a summarizer is chosen. `kind` defaults to MEMSVC_SUMMARIZER; `llm` is the model for
    `llm` (default: MEMSVC_LLM_MODEL through memsvc.llm.get_llm). A given hosted `llm` makes `auto` mean
    `llm`, as the configured model does; the built-in LLM makes it `extractive`."""
    from memsvc.config import get_settings
    from memsvc.llm import BuiltinLLM, get_llm

    settings = get_settings()
    hosted = llm is not None and not isinstance(llm, BuiltinLLM)
    chosen = resolve_kind(kind if kind is not None else settings.summarizer,
                          hosted or (llm is None and bool((settings.llm_model or "").strip())))
    if chosen == "none":
        return NoSummarizer()
    if chosen == "extractive":
        return ExtractiveSummarizer()
    model = llm if hosted else get_llm(settings.llm_model)
    if isinstance(model, BuiltinLLM):
        raise ValueError("MEMSVC_SUMMARIZER=llm needs MEMSVC_LLM_MODEL (a litellm model name)")
    assert model is not None
    return LLMSummarizer(model)


def inline_summarizer() -> Summarizer:
    """The summarizer for the write path and the request path: the configured one when it is inline,
    else (llm) the extractive one, whose summary stands in until the model's is stored."""
    from memsvc.config import get_settings

    settings = get_settings()
    kind = resolve_kind(settings.summarizer, bool((settings.llm_model or "").strip()))
    return NoSummarizer() if kind == "none" else ExtractiveSummarizer()


def write_summary(text: str, kind: str | None = None, llm_model: str | None = None) -> tuple[str | None, str | None]:
    """(summary, summary_by) to store with a memory when it is written: the extractive summary (None
    where the text is its own), or nothing yet for `none` and `llm` (summary_by NULL: the maintenance
    pass fills it in with the model, or when the setting changes)."""
    from memsvc.config import get_settings

    if kind is None:
        settings = get_settings()
        kind, llm_model = settings.summarizer, settings.llm_model
    if resolve_kind(kind, bool((llm_model or "").strip())) != "extractive":
        return None, None
    return faithful_summary(text), EXTRACTIVE

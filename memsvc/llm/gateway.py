"""The LLM seam: the `LLM` protocol, its plain data types, usage accounting, and the litellm gateway.

Every generation in memsvc goes through an `LLM`; `get_llm` (memsvc.llm) picks the litellm
gateway when a model is configured and the offline built-in otherwise.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memsvc.errors import MemsvcError
from memsvc.llm.episodes import speaks_for_user, strip_wrapper

# litellm fetches its model price map from GitHub when first imported unless told otherwise (and
# retries for seconds offline). memsvc must not touch the network by itself, and the bundled map
# is what cost accounting uses. Set here, at import of the LLM package, so it is in place before
# anything imports litellm; an explicit setting in the environment wins.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# ---------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True, slots=True)
class Episode:
    """One thing that happened (usually an episodic memory): the input to fact extraction."""

    id: str
    text: str
    occurred_at: datetime
    speaker: str | None = None  # who said it (a name): first-person statements are about this one
    user: str | None = None  # whose memory this is, when that differs from the speaker
    # Who spoke, from structured fields only (metadata "role"; never parsed from the content):
    # "user", "assistant", "tool", "system", or None for a note written without one (the user's own).
    role: str | None = None


@dataclass(slots=True)
class Fact:
    """An atomic, self-contained statement derived from episodes.

    Contradiction detection: `key` = (subject, attribute) names a single-valued slot
    ("melanie", "residence"); a newer fact with the same key and a different `value` supersedes
    the older one. Facts without an attribute are never considered contradictory (only deduped).
    Multi-valued relations get the object into the attribute ("opinion:pizza" -> "positive"), so
    "likes pizza" vs "hates pizza" conflict while "likes pizza" vs "likes tea" do not.
    """

    text: str
    subject: str  # normalized (normalize_key): lowercase words, e.g. "melanie", "melanie's sister"
    attribute: str | None = None  # normalized (normalize_attribute): e.g. "residence", "opinion:pizza"
    value: str | None = None  # normalized value: "boston", "not boston", "positive"
    source_ids: list[str] = field(default_factory=list)
    confidence: float = 0.5
    valid_from: datetime | None = None  # when it became true as far as we know (latest source)

    @property
    def key(self) -> tuple[str, str] | None:
        return (self.subject, self.attribute) if self.attribute else None

    def contradicts(self, other: Fact) -> bool:
        """Same single-valued slot, different value. Which one wins is the caller's call
        (normally the later valid_from)."""
        return self.key is not None and self.key == other.key and self.value != other.value


# Canonical attribute names, shared by the built-in extractor and the gateway prompt so both
# produce the same keys.
CANONICAL_ATTRIBUTES: dict[str, str] = {
    "residence": "city/place where the subject lives now (also from 'moved to X')",
    "employer": "organisation the subject works at/for",
    "occupation": "job title",
    "name": "the subject's name",
    "age": "age in years",
    "relationship_status": "single / married / married to <name> / engaged / divorced / widowed",
    "origin": "where the subject is from",
    "diet": "vegetarian / vegan / pescatarian",
    "studies": "field of study",
    "children_count": "number of children",
    "favorite_<thing>": "favorite thing of a kind, e.g. favorite_color",
    "<thing>": "what 'my <thing> is Y' names, when the subject has one: wife, birthday, dog_name, phone_number",
    "opinion:<object>": "value 'positive' or 'negative' (likes / hates <object>)",
    "allergy:<thing>": "value 'yes'",
    "pet:<pet's name>": "value: the kind of animal",
}


# Names earlier releases stored (the old built-in and prompt), read as today's so their facts stay in
# the same slot: a new "residence" closes a stored "lives_in".
ATTRIBUTE_ALIASES: dict[str, str] = {"lives_in": "residence", "works_at": "employer"}


def canonical_attribute(name: str) -> str:
    return ATTRIBUTE_ALIASES.get(name, name)


def normalize_key(text: str) -> str:
    """Lowercase words separated by single spaces; keeps apostrophes ("melanie's sister")."""
    text = text.lower().replace("\u2019", "'")
    words = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text)
    while words and words[0] in {"the", "a", "an"}:
        words = words[1:]
    return " ".join(words)


def normalize_attribute(text: str) -> str:
    """snake_case, with an optional ':<object>' part normalized the same way."""
    head, sep, obj = text.partition(":")
    head = "_".join(normalize_key(head).replace("'", "").split())
    return f"{head}:{normalize_key(obj)}" if sep else head


class LLMOutputError(MemsvcError):
    """The model kept answering with something we cannot use (invalid JSON, wrong schema, empty)."""

    status, code = 502, "llm_output_invalid"


class LLMCallError(MemsvcError):
    """The model could not be called (network, auth, rate limit...). `retryable` says whether
    trying again later can help, for the worker's backoff."""

    status, code = 502, "llm_call_failed"

    def __init__(self, message: str, *, retryable: bool, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retryable = retryable


# ---------------------------------------------------------------------------------------------
# Usage accounting


@dataclass(slots=True)
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    rejected_outputs: int = 0  # answers we could not use and asked again for

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.rejected_outputs += other.rejected_outputs

    def as_dict(self) -> dict[str, float | int]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "total_tokens": self.total_tokens,
                "cost_usd": round(self.cost_usd, 8), "rejected_outputs": self.rejected_outputs}


# A context variable rather than a field to reset: one gateway may serve several jobs (threads,
# tasks) at once, and each job must see only its own calls.
_TRACKERS: ContextVar[tuple[Usage, ...]] = ContextVar("memsvc_llm_usage", default=())


@contextmanager
def track_usage() -> Iterator[Usage]:
    """Collect the usage of every LLM call made inside the block (in this thread/context):

        with track_usage() as used:
            facts = llm.extract_facts(episodes)
        job.record(tenant, used.as_dict())
    """
    usage = Usage()
    token = _TRACKERS.set((*_TRACKERS.get(), usage))
    try:
        yield usage
    finally:
        _TRACKERS.reset(token)


class UsageMeter:
    """Mixin: a lifetime total per instance plus the active `track_usage` blocks."""

    def __init__(self) -> None:
        self.usage = Usage()
        self._usage_lock = threading.Lock()

    def _record(self, delta: Usage) -> None:
        with self._usage_lock:
            self.usage.add(delta)
        for tracker in _TRACKERS.get():
            tracker.add(delta)


@runtime_checkable
class LLM(Protocol):
    usage: Usage

    def summarize(self, text: str) -> str: ...

    def gist(self, text: str) -> str: ...

    def extract_facts(self, episodes: Sequence[Episode]) -> list[Fact]: ...


# Shared by the built-in and the gateway's validation, so a tier's text is always shorter.
SHORT_TEXT_WORDS = 8  # at or below this, a text is its own summary
GIST_MAX_WORDS = 20


def must_shrink(text: str) -> bool:
    return len(text.split()) > SHORT_TEXT_WORDS


# ---------------------------------------------------------------------------------------------
# litellm gateway


class _SummaryOut(BaseModel):
    summary: str = Field(min_length=1)


class _GistOut(BaseModel):
    gist: str = Field(min_length=1)


class _FactOut(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    attribute: str | None = None
    value: str | None = None
    source_ids: list[str] = Field(min_length=1)
    confidence: float = Field(ge=0.0, le=1.0)


class _FactsOut(BaseModel):
    facts: list[_FactOut]


class _Reject(Exception):
    """An answer we cannot use; the message is fed back to the model."""


T = TypeVar("T")

_SYSTEM = ("You are the memory consolidation component of a long-term memory service. "
           "Answer with one JSON object only, no prose, no code fences.")

_FACTS_PROMPT = """Extract atomic, self-contained facts from the episodes below.
Each episode has a role and a speaker:
- role "user" or null: the speaker said it. "I"/"me"/"my" in it means the speaker.
- role "assistant", "tool" or "system": an AI assistant's reply, a tool's output or a system message.
  These are context only (they may explain what a user's short answer refers to). Never make a fact
  whose only sources are such episodes, and never state what the assistant or a tool is, can or
  cannot do. Statements are attributed to who said them, never to someone else.
Rules:
- One fact = one short declarative sentence that is understandable on its own, in the language of
  its episode, grammatical, and true to what the speaker said.
- Use names instead of pronouns: never "I", "me", "my", "you", "he", "she" in a fact.
- Turn relative dates (yesterday, last week, two days ago, next month, on Friday) into absolute
  dates using the episode's date, e.g. "7 May 2023".
- Skip greetings, questions, plans, wishes, hypotheticals, anything uncertain, and text that only
  quotes or lists remembered things ("Related things X remembers:", "Long-term memory ...").
- Fewer true facts are better than many doubtful ones; an empty list is a fine answer.
- subject: the person or thing the fact is about (a name, e.g. "Melanie" or "Melanie's sister").
- attribute: when the fact fills a slot, one of:
{attributes}
  otherwise null. A newer value of the same (subject, attribute) replaces the older one, so use
  a single-valued attribute only where one value at a time is true. value: the slot's value,
  short ("Lisbon"). Use null for both when no slot fits.
- source_ids: ids of the episodes the fact comes from. confidence: 0..1.
Answer: {{"facts": [{{"text": str, "subject": str, "attribute": str|null, "value": str|null,
"source_ids": [str], "confidence": float}}]}}

Episodes:
{episodes}"""


# English first and second person in a fact: "I", "my", "you"... ("I" case-sensitive: "i.e." is fine).
_PRONOUN = re.compile(r"\bI\b|\b(?i:me|my|mine|myself|you|your|yours|yourself)\b")
_PRONOUNS = frozenset({"i", "me", "my", "you", "your", "he", "she", "they", "we", "it", "him", "her", "them"})


def _import_litellm() -> Any:
    # Imported on first use: litellm takes seconds to import and the built-in path never needs it.
    import litellm

    litellm.suppress_debug_info = True
    return litellm


class LiteLLMGateway(UsageMeter):
    """`LLM` over any litellm model, with JSON output validated by pydantic.

    An answer that is empty, not JSON or not the schema is sent back to the model with the
    reason, up to max_retries times; then LLMOutputError says what was wrong.

    completion_kwargs go to every litellm.completion call as they are (api_base, api_key, ...).
    """

    def __init__(
        self,
        model: str,
        max_retries: int = 2,
        *,
        temperature: float = 0.0,
        timeout_s: float = 120.0,
        **completion_kwargs: Any,
    ) -> None:
        super().__init__()
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.model = model
        self.max_retries = max_retries
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.completion_kwargs = completion_kwargs

    # -- the three tasks ---------------------------------------------------------------------

    def summarize(self, text: str) -> str:
        if not must_shrink(text):  # a few words are their own summary: no call, no cost
            return text.strip()
        prompt = ("Summarize the text below in at most 40% of its length, keeping names, dates, "
                  f'numbers and decisions. Answer: {{"summary": str}}\n\nText:\n{text}')

        def parse(data: Any) -> str:
            summary = _validate(_SummaryOut, data).summary.strip()
            if len(summary) >= len(text.strip()):
                raise _Reject(f"summary must be shorter than the text ({len(text.strip())} chars), "
                              f"got {len(summary)} chars")
            return summary

        return self._ask("summarize", prompt, parse)

    def gist(self, text: str) -> str:
        if not must_shrink(text):
            return text.strip()
        prompt = (f"Give the gist of the text below in 12 to {GIST_MAX_WORDS} words, keeping the key "
                  f'names, entities and numbers. Answer: {{"gist": str}}\n\nText:\n{text}')

        def parse(data: Any) -> str:
            gist = _validate(_GistOut, data).gist.strip()
            n = len(gist.split())
            if n > GIST_MAX_WORDS + 5:  # some slack: models count words loosely
                raise _Reject(f"gist must be at most {GIST_MAX_WORDS} words, got {n}")
            return gist

        return self._ask("gist", prompt, parse)

    def extract_facts(self, episodes: Sequence[Episode]) -> list[Fact]:
        # A context block pasted into a turn restates memories; it is not what the speaker said.
        episodes = [e for e in episodes if strip_wrapper(e.text).strip()]
        if not any(speaks_for_user(e.role) for e in episodes):
            return []  # only assistant/tool/system turns: nothing can be a fact, no call, no cost
        by_id = {e.id: e for e in episodes}
        lines = [json.dumps({"id": e.id, "date": _human_date(e.occurred_at), "role": e.role, "speaker": e.speaker,
                             "text": strip_wrapper(e.text).strip()}, ensure_ascii=False) for e in episodes]
        attributes = "\n".join(f"    {name}: {meaning}" for name, meaning in CANONICAL_ATTRIBUTES.items())
        prompt = _FACTS_PROMPT.format(attributes=attributes,
                                      episodes="\n".join(lines))

        def parse(data: Any) -> list[Fact]:
            out = _validate(_FactsOut, data)
            facts: list[Fact] = []
            for i, f in enumerate(out.facts):
                unknown = sorted(set(f.source_ids) - by_id.keys())
                if unknown:
                    raise _Reject(f"facts[{i}].source_ids has ids that are not episodes: {unknown}")
                if f.attribute and not (f.value and f.value.strip()):
                    raise _Reject(f"facts[{i}] has attribute {f.attribute!r} but no value")
                if not any(speaks_for_user(by_id[s].role) for s in f.source_ids):
                    raise _Reject(f"facts[{i}] comes only from assistant/tool/system episodes; facts come from "
                                  "what users say")
                if _PRONOUN.search(f.text) or normalize_key(f.subject) in _PRONOUNS:
                    raise _Reject(f"facts[{i}] uses a pronoun ({f.text!r}, subject {f.subject!r}); use names")
                facts.append(Fact(
                    text=f.text.strip(),
                    subject=normalize_key(f.subject),
                    attribute=canonical_attribute(normalize_attribute(f.attribute)) if f.attribute else None,
                    value=normalize_key(f.value) if f.attribute and f.value else None,
                    source_ids=list(dict.fromkeys(f.source_ids)),
                    confidence=f.confidence,
                    valid_from=max(by_id[s].occurred_at for s in f.source_ids),
                ))
            return facts

        return self._ask("extract_facts", prompt, parse)

    # -- plumbing ----------------------------------------------------------------------------

    def _complete(self, messages: list[dict[str, str]]) -> tuple[str, Usage]:
        litellm = _import_litellm()
        kwargs: dict[str, Any] = {
            "model": self.model, "messages": messages, "temperature": self.temperature,
            "response_format": {"type": "json_object"}, "timeout": self.timeout_s,
            # Providers without JSON mode get the prompt alone instead of an error.
            "drop_params": True, **self.completion_kwargs,
        }
        import openai  # litellm's exceptions all derive from openai.APIError

        try:
            resp = litellm.completion(**kwargs)
        except openai.APIError as e:
            status = getattr(e, "status_code", None)
            retryable = status is None or status in (408, 409, 429) or int(status) >= 500
            raise LLMCallError(f"LLM call to {self.model} failed: {type(e).__name__}: {e}",
                               retryable=retryable, details={"model": self.model, "status": status}) from e
        content = resp.choices[0].message.content if resp.choices else None
        u = getattr(resp, "usage", None)
        cost = (getattr(resp, "_hidden_params", None) or {}).get("response_cost")
        delta = Usage(calls=1, prompt_tokens=int(getattr(u, "prompt_tokens", 0) or 0),
                      completion_tokens=int(getattr(u, "completion_tokens", 0) or 0),
                      cost_usd=float(cost or 0.0))
        return content or "", delta

    def _ask(self, task: str, prompt: str, parse: Callable[[Any], T]) -> T:
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}]
        reasons: list[str] = []
        for _attempt in range(self.max_retries + 1):
            content, delta = self._complete(messages)
            try:
                return parse(_load_json(content))
            except _Reject as e:
                reasons.append(str(e))
                delta.rejected_outputs += 1
                messages += [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": f"That answer was rejected: {e}. Answer again with "
                                                "only the JSON object described above."},
                ]
            finally:
                self._record(delta)
        raise LLMOutputError(
            f"{self.model} gave no usable answer for {task} after {len(reasons)} attempts: {reasons[-1]}",
            details={"model": self.model, "task": task, "reasons": reasons},
        )


def _load_json(content: str) -> Any:
    text = content.strip()
    if not text:
        raise _Reject("empty answer")
    # Models asked for bare JSON still wrap it in a code fence now and then; that is not worth a retry.
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
    if fence:
        text = fence.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _Reject(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def _validate(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                             for err in e.errors()[:5])
        raise _Reject(f"wrong schema: {problems}") from None


def _human_date(d: datetime) -> str:
    return f"{d.day} {d:%B %Y}"

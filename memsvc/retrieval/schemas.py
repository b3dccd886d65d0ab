"""API types of /v1/search and /v1/context (kept here, beside the code they describe)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memsvc.retrieval.search import SearchFilters
from memsvc.retrieval.service import query_from_messages
from memsvc.schemas import NOT_BLANK, Kind, MemoryOut, RequestModel, ScopeId, Tag, Text, Timestamp, Word
from memsvc.validation import check_text

Mode = Literal["hybrid", "dense", "sparse"]
Section = Literal["profile", "facts", "episodes"]
Fidelity = Literal["verbatim", "summary", "excerpt", "gist", "tokens"]
MAX_BUDGET_TOKENS = 1_000_000  # far beyond any model's window: a larger number is a mistake, not a wish

_ID = Field(default=None, min_length=1, max_length=200)


class RetrievalFilters(RequestModel):
    user_id: ScopeId | None = _ID
    agent_id: ScopeId | None = _ID
    session_id: ScopeId | None = _ID
    kinds: list[Kind] | None = Field(default=None, description="Only these kinds of memory.")
    tags: list[Tag] | None = Field(default=None, max_length=50, description="Memories with any of these tags.")
    occurred_after: Timestamp | None = Field(default=None, description="Event time >= this.")
    occurred_before: Timestamp | None = Field(default=None, description="Event time < this.")
    as_of: Timestamp | None = Field(
        default=None, description="Return what was valid at this time (valid_from <= as_of < valid_to), "
        "including facts superseded since. Default: what is valid now.")
    asked_at: Timestamp | None = Field(default=None, description=(
        "When the question is asked (default: now). Time phrases in the query ('a week ago', 'last Friday', "
        "'in March', English) are read against it: memories of that time rank higher; none are filtered out."))
    include_superseded: bool = Field(default=False, description="Also return superseded / expired memories.")
    include_archived: bool = Field(default=False, description="Also return archived memories.")
    mode: Mode = Field(default="hybrid", description="hybrid (default), or one signal alone: dense / sparse.")
    recipe: str | None = Field(default=None, min_length=1, max_length=100, description=(
        "The retrieval recipe to rank with (GET /v1/recipes); default: the tenant's policy, else the "
        "deployment's (`general`)."))


class SearchRequest(RetrievalFilters):
    query: Word = Field(max_length=4000)
    limit: int = Field(default=10, ge=1, le=100)


class SearchHit(BaseModel):
    memory: MemoryOut
    score: float
    signals: dict[str, float] = Field(
        description="Additive contributions to score: dense / sparse (rank fusion), retention, importance.")
    dense_rank: int | None = Field(default=None, description="Position in the vector candidate list.")
    sparse_rank: int | None = Field(default=None, description="Position in the BM25 candidate list.")
    learned_sparse_rank: int | None = Field(
        default=None, description="Position in the learned-sparse (SPLADE) candidate list, when that list is on.")
    learned_sparse_score: float | None = Field(
        default=None, description="Inner product of its SPLADE term weights with the query's.")
    dense_similarity: float | None = None
    bm25: float | None = None
    reason: str = Field(description="Which signal put it here, in words.")


class Duplicate(BaseModel):
    id: uuid.UUID
    duplicate_of: uuid.UUID


class SearchResult(BaseModel):
    hits: list[SearchHit]
    duplicates_removed: list[Duplicate] = Field(default_factory=list)
    recipe: str = Field(description="The recipe that ranked these hits.")
    timings_ms: dict[str, float] = Field(default_factory=dict)


class Message(RequestModel):
    role: str = Field(min_length=1, max_length=50)
    content: Text = Field(max_length=32_000)


class ContextRequest(RetrievalFilters):
    # The query, else the messages' text (_needs_query), as the document states it.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["query"], "properties": {"query": {"type": "string", "pattern": NOT_BLANK}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array", "contains": {
            "type": "object", "properties": {"content": {"type": "string", "pattern": NOT_BLANK}}}}}},
    ]})
    query: Text | None = Field(default=None, max_length=4000, description="What the context is for.")
    messages: list[Message] | None = Field(
        default=None, max_length=200, description="Recent conversation; used as the query when none is given.")
    budget_tokens: int = Field(ge=0, le=MAX_BUDGET_TOKENS, description="Hard upper bound on the context's "
                               "token count under `model`'s tokenizer.")
    model: str = Field(default="cl100k_base", min_length=1, max_length=200, description="Target model or encoding "
                       "(gpt-4o, cl100k_base, o200k_base, SmolLM2...); unknown names get a conservative counter.")
    sections: list[Section] | None = Field(default=None, description="Which sections to include (default all).")
    format: Literal["markdown", "plain"] = "markdown"
    max_candidates: int | None = Field(default=None, ge=1, le=500, description="Candidates the packer weighs.")
    memory_tokens: bool = Field(default=True, description=(
        "For a local model (`local/<name>`): let memories with a verified memory-token set of that model go in "
        "as their vectors (fidelity `tokens`, a marker in `context` that the local backend replaces), when the "
        "tenant's memory-token policy opts in (`in_context`)."))

    @model_validator(mode="after")
    def _needs_query(self) -> ContextRequest:
        if not (self.query and self.query.strip()) and not any(m.content.strip() for m in self.messages or []):
            raise ValueError("give a non-empty query or messages")
        return self


class ContextItem(BaseModel):
    id: uuid.UUID
    kind: Kind
    section: Section
    fidelity: Fidelity
    tokens: int = Field(description="Tokens of this item's line (alone; the whole is counted separately).")
    score: float = Field(description="Retrieval score (fusion of signals).")
    value: float = Field(description="Value the packer credited: rank weight x fidelity value.")
    reason: str
    vectors: int | None = Field(default=None, description=(
        "Fidelity `tokens`: the memory went in as this many trained vectors (its marker in `context`)."))


class LeftOut(BaseModel):
    id: uuid.UUID
    score: float
    reason: str


class ContextResult(BaseModel):
    context: str
    token_count: int = Field(description="Exact count of `context` under the tokenizer (never above the budget).")
    budget_tokens: int
    model: str
    tokenizer: str
    exact: bool = Field(description="False when the model is unknown and a conservative counter was used.")
    items: list[ContextItem]
    left_out: list[LeftOut]
    recipe: str = Field(description="The recipe that ranked the candidates.")
    memory_tokens_model: str | None = Field(default=None, description=(
        "The local model identity (name@weights-hash) whose memory-token sets could stand in for texts (null: "
        "texts only: another model, memory_tokens false, or the memory-token policy's in_context off)."))
    timings_ms: dict[str, float] = Field(default_factory=dict)


def to_search_filters(request: RetrievalFilters) -> SearchFilters:
    """API filters -> core filters, checking the free text Postgres would choke on (NUL, surrogates)."""
    from memsvc.store import as_utc

    for i, tag in enumerate(request.tags or []):
        check_text(tag, f"tags[{i}]", max_chars=100)
    for name in ("user_id", "agent_id", "session_id"):
        value = getattr(request, name)
        if value is not None:
            check_text(value, name)
    return SearchFilters(
        user_id=request.user_id, agent_id=request.agent_id, session_id=request.session_id,
        kinds=tuple(request.kinds) if request.kinds else None, tags=tuple(request.tags) if request.tags else None,
        occurred_after=as_utc(request.occurred_after, "occurred_after"),
        occurred_before=as_utc(request.occurred_before, "occurred_before"),
        as_of=as_utc(request.as_of, "as_of"), asked_at=as_utc(request.asked_at, "asked_at"),
        include_superseded=request.include_superseded,
        include_archived=request.include_archived,
    )


def context_query_text(request: ContextRequest) -> str:
    """The query, or else what the conversation asks (the same rule as the chat endpoint's)."""
    if request.query and request.query.strip():
        return check_text(request.query, "query")
    return check_text(query_from_messages((m.role, m.content) for m in request.messages or []), "messages")

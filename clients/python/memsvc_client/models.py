"""Typed request and response models (pydantic), mirroring the server's OpenAPI schemas.

Response models accept fields they do not know (`extra="allow"`), so a newer server does not break
an older client; request models forbid unknown fields and check locally what can be checked.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Kind = Literal["episodic", "semantic", "procedural", "profile"]
Tier = Literal["verbatim", "summary", "gist", "archived"]
Scope = Literal["read", "write", "admin", "root"]

_ID = Field(default=None, min_length=1, max_length=200)


def check_text(value: str, field: str) -> str:
    """The checks the server would make on any text, done before a request is sent."""
    if not value.strip():
        raise ValueError(f"{field} must not be empty or whitespace")
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character (\\u0000); remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{field} contains an unpaired surrogate at position {exc.start}") from None
    return value


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- requests ---------------------------------------------------------------------------------
class NewMemory(_Request):
    """One memory to store (`add` takes the same fields as keyword arguments)."""

    content: str
    kind: Kind = "episodic"
    user_id: str | None = _ID
    agent_id: str | None = _ID
    session_id: str | None = _ID
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    occurred_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=50)
    embedding: list[float] | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        return check_text(value, "content")

    @field_validator("user_id", "agent_id", "session_id")
    @classmethod
    def _ids(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else check_text(value, info.field_name)

    def body(self) -> dict[str, Any]:
        # Defaults stay in: an empty metadata/tags is still a valid, explicit value.
        return self.model_dump(mode="json", exclude_none=True)


class MemoryPatch(_Request):
    content: str | None = None
    kind: Kind | None = None
    importance: float | None = Field(default=None, ge=0.0, le=1.0)
    occurred_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    embedding: list[float] | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "content")

    def body(self) -> dict[str, Any]:
        # Only the fields the caller set: PATCH semantics.
        return self.model_dump(mode="json", exclude_unset=True)


class RetrievalFilters(_Request):
    """Filters shared by search and context. Unset (None) fields are not sent: the server's defaults apply."""

    user_id: str | None = _ID
    agent_id: str | None = _ID
    session_id: str | None = _ID
    kinds: list[Kind] | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None
    as_of: datetime | None = None
    asked_at: datetime | None = None  # when the question is asked: what "a week ago" in it is read against
    include_superseded: bool | None = None
    include_archived: bool | None = None
    mode: Literal["hybrid", "dense", "sparse"] | None = None


class SearchQuery(RetrievalFilters):
    query: str = Field(min_length=1, max_length=4000)
    limit: int = Field(default=10, ge=1, le=100)

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return check_text(value, "query")


class ChatMessage(_Request):
    role: str = Field(min_length=1, max_length=50)
    content: str = Field(max_length=32_000)


class ContextQuery(RetrievalFilters):
    query: str | None = Field(default=None, max_length=4000)
    messages: list[ChatMessage] | None = Field(default=None, max_length=200)
    budget_tokens: int = Field(ge=0, le=1_000_000)
    model: str = Field(default="cl100k_base", min_length=1, max_length=200)
    sections: list[Literal["profile", "facts", "episodes"]] | None = None
    format: Literal["markdown", "plain"] | None = None
    max_candidates: int | None = Field(default=None, ge=1, le=500)
    memory_tokens: bool | None = None  # local models: let verified memory-token sets stand in for texts

    @model_validator(mode="after")
    def _needs_query(self) -> ContextQuery:
        if not (self.query and self.query.strip()) and not any(m.content.strip() for m in self.messages or []):
            raise ValueError("give a non-empty query or messages")
        if self.query:
            check_text(self.query, "query")
        return self


class ScopeSelector(_Request):
    user_id: str | None = _ID
    agent_id: str | None = _ID
    session_id: str | None = _ID


class TenantCreate(_Request):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class KeyCreate(_Request):
    name: str = Field(default="", max_length=200)
    scopes: list[Scope] = Field(min_length=1)
    user_ids: list[str] | None = None
    agent_ids: list[str] | None = None
    tenant_id: uuid.UUID | None = None


# ---- responses --------------------------------------------------------------------------------
class MemoryTokenStatus(_Response):
    """One trained memory-token set of a memory, for one local model (name@weights-hash)."""

    model_id: str
    verified: bool  # a greedy decode of the stored vectors reproduced the content exactly
    current: bool  # trained on the memory's present content
    vectors: int
    content_tokens: int
    train_steps: int
    train_seconds: float
    trained_at: datetime
    note: str | None = None


class MemoryTokenStatusList(_Response):
    memory_id: uuid.UUID
    items: list[MemoryTokenStatus]


class DecodedTokens(_Response):
    memory_id: uuid.UUID
    model_id: str
    text: str  # what greedy decoding from the stored vectors alone produces
    exact: bool  # == the memory's content
    verified: bool


class MemoryTokenPolicy(_Response):
    """Which memories get memory tokens, for which local model."""

    enabled: bool = False
    model: str = "smollm2"
    kinds: list[str] = Field(default_factory=list)
    min_importance: float = 0.0
    max_tokens: int = 128
    tokens_per_vector: int = 16
    min_vectors: int = 1
    in_context: bool = False  # verified sets may stand in for texts in contexts for the local model (opt-in)


class TrainTokensQuery(ScopeSelector):
    memory_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    model: str | None = Field(default=None, max_length=200)
    retrain: bool = False


class Memory(_Response):
    id: uuid.UUID
    kind: Kind
    content: str
    summary: str | None = None
    summary_by: str | None = None  # "extractive" or the LLM model that made the summary
    gist: str | None = None
    tier: Tier
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    importance: float
    strength: float
    access_count: int
    retention: float | None = None
    last_accessed_at: datetime
    occurred_at: datetime
    recorded_at: datetime
    updated_at: datetime
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    superseded_by: uuid.UUID | None = None
    content_hash: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    memory_tokens: list[MemoryTokenStatus] | None = None  # get() only: trained memory-token sets


class MemoryPage(_Response):
    items: list[Memory]
    next_cursor: str | None = None


class BatchResult(_Response):
    items: list[Memory]
    count: int


class SearchHit(_Response):
    memory: Memory
    score: float
    signals: dict[str, float] = Field(default_factory=dict)
    reason: str | None = None


class SearchResult(_Response):
    hits: list[SearchHit]
    timings_ms: dict[str, float] = Field(default_factory=dict)


class ContextItem(_Response):
    id: uuid.UUID
    kind: Kind
    section: str
    fidelity: str
    tokens: int
    score: float
    value: float | None = None
    reason: str = ""
    vectors: int | None = None  # fidelity "tokens": the memory went in as this many trained vectors


class LeftOut(_Response):
    id: uuid.UUID
    score: float
    reason: str


class ContextResult(_Response):
    context: str
    token_count: int
    budget_tokens: int
    model: str
    tokenizer: str
    exact: bool = True
    items: list[ContextItem] = Field(default_factory=list)
    left_out: list[LeftOut] = Field(default_factory=list)
    memory_tokens_model: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)


class DeletionReport(_Response):
    deleted: list[uuid.UUID]
    derived_deleted: list[uuid.UUID] = Field(default_factory=list)
    derived_orphaned: list[uuid.UUID] = Field(default_factory=list)
    links_removed: int = 0
    jobs_removed: int = 0
    idempotency_records_removed: int = 0
    memory_tokens_removed: int = 0


class Tenant(_Response):
    id: uuid.UUID
    name: str
    created_at: datetime


class ApiKey(_Response):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    user_ids: list[str] | None = None
    agent_ids: list[str] | None = None
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The secret; shown once.")


class Health(_Response):
    status: str


class Readiness(_Response):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status == "ready"


# ---- lifecycle: jobs, consolidation, policy, retention ----------------------------------------
class ConsolidateQuery(_Request):
    user_id: str | None = _ID
    agent_id: str | None = _ID
    session_id: str | None = _ID
    reprocess: bool | None = None


class Job(_Response):
    id: uuid.UUID
    kind: str
    status: str = Field(description="queued | running | succeeded | failed")
    scope: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0
    error: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    run_after: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")


class JobPage(_Response):
    items: list[Job]
    next_cursor: str | None = None


class JobAccepted(_Response):
    job_id: uuid.UUID
    status: str
    job: Job


class Policy(_Response):
    """The tenant's lifecycle policy (forgetting curve, tier thresholds, TTL); the server validates it."""

    tau0_days: float
    alpha: float
    max_strength: float
    negative_feedback_factor: float
    summary_threshold: float
    gist_threshold: float
    archive_threshold: float
    min_age_hours: float
    keep_originals: bool
    ttl_days: int | None = None


class RetrievalPolicy(_Response):
    """The tenant's retrieval policy: its default recipe and full-text language (None: the deployment's)."""

    recipe: str | None = None
    language: str | None = None
    reindex_job_id: str | None = None  # set when a new language started a reindex job


class Recipe(_Response):
    """A named set of ranking and packing settings (GET /v1/recipes)."""

    name: str
    description: str
    default: bool
    tenant_default: bool
    settings: dict[str, Any]


class RecipeList(_Response):
    items: list[Recipe]


class RetentionPoint(_Response):
    t_days: float
    at: datetime
    retention: float


class RetentionCurve(_Response):
    memory_id: uuid.UUID
    tier: str
    strength: float
    importance: float
    tau0_days: float
    last_accessed_at: datetime
    retention_now: float
    points: list[RetentionPoint]


# ---- dashboard data: stats and lineage ----------------------------------------------------------
class TierKindCount(_Response):
    tier: str
    kind: str
    count: int


class ScopeValue(_Response):
    value: str
    count: int


class Stats(_Response):
    total: int
    by_tier: dict[str, int] = Field(default_factory=dict)
    by_kind: dict[str, int] = Field(default_factory=dict)
    by_tier_kind: list[TierKindCount] = Field(default_factory=list)
    top_scopes: dict[str, list[ScopeValue]] = Field(default_factory=dict)


class LinkedMemory(_Response):
    id: uuid.UUID
    kind: str
    tier: str
    preview: str
    occurred_at: datetime
    valid_to: datetime | None = None


class LineageLink(_Response):
    relation: str = Field(description="derived_from | supersedes | merged_into")
    direction: str = Field(description="out: this memory <relation> other; in: other <relation> this")
    memory: LinkedMemory


class Lineage(_Response):
    memory_id: uuid.UUID
    links: list[LineageLink]

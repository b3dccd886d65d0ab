"""Pydantic types shared by the core, the API and (mirrored) the SDK."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from memsvc.validation import text_problem

Kind = Literal["episodic", "semantic", "procedural", "profile"]
Tier = Literal["verbatim", "summary", "gist", "archived"]
Scope = Literal["read", "write", "admin", "root"]


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PydanticCustomError("text_not_storable", problem)
    return value


# A string of a request that is stored or compared in Postgres: a NUL or an unpaired surrogate is a 422 naming
# the field, for every model that uses it (rather than a 500 from the database).
Text = Annotated[str, AfterValidator(_storable)]
ScopeId = Text  # user/agent/session identifiers are free-form strings chosen by the caller

_ID = Field(default=None, min_length=1, max_length=200)


class MemoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(description="The text to remember. Non-empty, at most MEMSVC_MAX_CONTENT_CHARS.")
    kind: Kind = "episodic"
    user_id: ScopeId | None = _ID
    agent_id: ScopeId | None = _ID
    session_id: ScopeId | None = _ID
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    occurred_at: datetime | None = Field(default=None, description="When it happened; defaults to now.")
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=50)
    embedding: list[float] | None = Field(
        default=None, description="Optional precomputed embedding; must match the server's dimension."
    )


class MemoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str | None = None
    kind: Kind | None = None
    importance: float | None = Field(default=None, ge=0.0, le=1.0)
    occurred_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    embedding: list[float] | None = None


class MemoryTokenStatus(BaseModel):
    """One trained memory-token set of a memory (memsvc.memtokens)."""

    model_id: str = Field(description="name@weights-hash of the local model the vectors belong to.")
    verified: bool = Field(description="A greedy decode of the stored float16 vectors reproduced the content.")
    current: bool = Field(description="Trained on the memory's present content (false: it will not be used).")
    vectors: int
    content_tokens: int
    train_steps: int
    train_seconds: float
    trained_at: datetime
    note: str | None = Field(default=None, description="Why the set is not verified.")


class MemoryOut(BaseModel):
    id: uuid.UUID
    kind: Kind
    content: str
    summary: str | None = None
    # Who made the summary: "extractive" (offline, whole sentences of the text), the LLM model that was asked,
    # or "none" (a demoted memory under MEMSVC_SUMMARIZER=none: the text itself); "builtin": an earlier
    # release's summarizer (recomputed by the maintenance pass). No summary with "extractive": the text is its own.
    summary_by: str | None = None
    gist: str | None = None
    tier: Tier
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    importance: float
    strength: float
    access_count: int
    retention: float | None = Field(default=None, description="Forgetting-curve retention now, in [0, 1].")
    last_accessed_at: datetime
    occurred_at: datetime
    recorded_at: datetime
    updated_at: datetime
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    superseded_by: uuid.UUID | None = None
    content_hash: str
    metadata: dict[str, Any]
    tags: list[str]
    memory_tokens: list[MemoryTokenStatus] | None = Field(default=None, description=(
        "Trained memory-token sets (GET /v1/memories/{id} only; listings leave it out)."))


class MemoryPage(BaseModel):
    items: list[MemoryOut]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= to get the next page.")


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[MemoryCreate] = Field(min_length=1, description="1 to MEMSVC_MAX_BATCH_ITEMS memories.")


class BatchResult(BaseModel):
    items: list[MemoryOut]
    count: int


class ScopeSelector(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: ScopeId | None = _ID
    agent_id: ScopeId | None = _ID
    session_id: ScopeId | None = _ID


class DeletionReport(BaseModel):
    deleted: list[uuid.UUID] = Field(description="Memories removed at the caller's request.")
    derived_deleted: list[uuid.UUID] = Field(
        default_factory=list, description="Derived memories removed because all their sources went."
    )
    derived_orphaned: list[uuid.UUID] = Field(
        default_factory=list, description="Derived memories that lost a source but keep others (re-derive)."
    )
    links_removed: int = 0
    jobs_removed: int = 0
    memory_tokens_removed: int = Field(default=0, description="Trained memory-token sets of the removed memories.")
    idempotency_records_removed: int = Field(default=0, description=(
        "Stored Idempotency-Key responses that named a removed memory or job (a retry of those writes is new)."))


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(default="", max_length=200)
    scopes: list[Scope] = Field(min_length=1)
    user_ids: list[ScopeId] | None = Field(default=None, description="Restrict the key to these user_ids.")
    agent_ids: list[ScopeId] | None = Field(default=None, description="Restrict the key to these agent_ids.")
    tenant_id: uuid.UUID | None = Field(default=None, description="Another tenant (root keys only).")


class KeyOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    user_ids: list[str] | None
    agent_ids: list[str] | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret. Shown once; only its hash is stored.")

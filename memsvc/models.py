"""ORM tables. The schema itself changes only through Alembic migrations (migrations/versions)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import HALFVEC, SPARSEVEC, Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REGCONFIG, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SPARSE_DIM = 30522  # sparse_embedding's dimension: BERT's vocabulary, which SPLADE checkpoints share

KINDS = ("episodic", "semantic", "procedural", "profile")
TIERS = ("verbatim", "summary", "gist", "archived")
LINK_RELATIONS = ("derived_from", "supersedes", "merged_into")
SCOPES = ("read", "write", "admin", "root")


class Base(DeclarativeBase):
    pass


def _uuid() -> uuid.UUID:
    return uuid.uuid4()


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(32))  # shown in listings so people can tell keys apart
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    user_ids: Mapped[list[str] | None] = mapped_column(ARRAY(String(200)), nullable=True)
    agent_ids: Mapped[list[str] | None] = mapped_column(ARRAY(String(200)), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Memory(Base):
    __tablename__ = "memories"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="episodic")
    content: Mapped[str] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    # "extractive" (made offline at write time), the LLM model asked, "none", or "builtin" (an earlier release's,
    # recomputed by the maintenance pass); migration 0006. See memsvc/llm/summarizer.py.
    summary_by: Mapped[str | None] = mapped_column(Text, nullable=True)
    gist: Mapped[str | None] = mapped_column(Text, nullable=True)
    tier: Mapped[str] = mapped_column(String(16), default="verbatim")
    importance: Mapped[float] = mapped_column(Float, default=0.5)
    strength: Mapped[float] = mapped_column(Float, default=1.0)
    access_count: Mapped[int] = mapped_column(Integer, default=0)
    last_accessed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    superseded_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("memories.id", ondelete="SET NULL"), nullable=True
    )
    content_hash: Mapped[str] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict, server_default="{}")
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list, server_default="{}")
    # How full text parses this memory (migration 0009): the tenant's language when it was written.
    fts_config: Mapped[str] = mapped_column(REGCONFIG, server_default="simple")
    search_tsv: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector(fts_config, content)", persisted=True), deferred=True
    )
    embedding: Mapped[list[float] | None] = mapped_column(Vector(), nullable=True, deferred=True)
    embedding_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Learned-sparse terms (migration 0010, memsvc.sparse_encoder); NULL until computed (write path or backfill).
    sparse_embedding: Mapped[Any] = mapped_column(SPARSEVEC(SPARSE_DIM), nullable=True, deferred=True)
    sparse_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Lifecycle (migration 0002): an archived memory's vector lives here in half precision.
    embedding_half: Mapped[list[float] | None] = mapped_column(HALFVEC(), nullable=True, deferred=True)
    consolidated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    original_dropped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# embedding_model of a vector the writer supplied (the service cannot remake it: memsvc.reembed keeps it).
CLIENT_EMBEDDING = "client"


class MemoryLink(Base):
    __tablename__ = "memory_links"
    src_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True)
    dst_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True)
    relation: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    scope: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Lifecycle (migration 0002): scheduling, liveness and per-scope debounce.
    run_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    debounce_key: Mapped[str | None] = mapped_column(String(300), nullable=True)


class MemoryToken(Base):
    """One memory's k trained input vectors for one local model (migration 0011; memsvc.memtokens)."""

    __tablename__ = "memory_tokens"
    memory_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)  # name@weights-hash
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    vectors: Mapped[bytes] = mapped_column(LargeBinary)  # float16, n_vectors x hidden size
    n_vectors: Mapped[int] = mapped_column(Integer)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    train_steps: Mapped[int] = mapped_column(Integer, default=0)
    trained_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    content_hash: Mapped[str] = mapped_column(String(64), default="")  # the memory's, when trained
    n_tokens: Mapped[int] = mapped_column(Integer, default=0)
    train_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it is not verified


class IdempotencyRecord(Base):
    """A stored response for a write retried with the same Idempotency-Key."""

    __tablename__ = "idempotency_keys"
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[Any] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Every id the response names (migration 0012): erasure deletes the records that mention what it erased.
    mentions: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)), default=list, server_default="{}")


class TextStats(Base):
    """BM25 collection statistics of one tenant, recounted by maintenance (migration 0004)."""

    __tablename__ = "text_stats"
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    docs: Mapped[int] = mapped_column(Integer)
    total_len: Mapped[int] = mapped_column(BigInteger)
    min_df: Mapped[int] = mapped_column(Integer)  # lexemes rarer than this were not stored
    len_quantiles: Mapped[list[int]] = mapped_column(ARRAY(Integer), default=list, server_default="{}")
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LexemeStats(Base):
    """Document frequency of one lexeme in one tenant, as of its TextStats.refreshed_at."""

    __tablename__ = "lexeme_stats"
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    df: Mapped[int] = mapped_column(Integer)


class DeploymentSecret(Base):
    """A secret of this deployment (memsvc.deployment), made at random on first use (migration 0013)."""

    __tablename__ = "deployment_secrets"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


__all__ = [
    "Base", "Tenant", "ApiKey", "Memory", "MemoryLink", "Job", "MemoryToken", "IdempotencyRecord", "TextStats",
    "LexemeStats", "DeploymentSecret", "KINDS", "TIERS", "LINK_RELATIONS", "SCOPES", "CLIENT_EMBEDDING",
]

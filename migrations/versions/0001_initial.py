"""Initial schema: tenants, api_keys, memories (pgvector + tsvector), memory_links, jobs,
memory_tokens, idempotency_keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UUID = pg.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "tenants",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("policy", pg.JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("tenant_id", UUID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("scopes", pg.ARRAY(sa.String(16)), nullable=False),
        sa.Column("user_ids", pg.ARRAY(sa.String(200)), nullable=True),
        sa.Column("agent_ids", pg.ARRAY(sa.String(200)), nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("last_used_at", TS, nullable=True),
    )
    op.create_table(
        "memories",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("tenant_id", UUID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("agent_id", sa.String(200), nullable=True),
        sa.Column("session_id", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False, server_default="episodic"),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("gist", sa.Text, nullable=True),
        sa.Column("tier", sa.String(16), nullable=False, server_default="verbatim"),
        sa.Column("importance", sa.Float, nullable=False, server_default="0.5"),
        sa.Column("strength", sa.Float, nullable=False, server_default="1.0"),
        sa.Column("access_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_accessed_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("occurred_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("valid_from", TS, nullable=True),
        sa.Column("valid_to", TS, nullable=True),
        sa.Column("superseded_by", UUID, sa.ForeignKey("memories.id", ondelete="SET NULL"), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default="{}"),
        sa.Column("tags", pg.ARRAY(sa.String(100)), nullable=False, server_default="{}"),
        sa.Column(
            "search_tsv",
            pg.TSVECTOR,
            sa.Computed("to_tsvector('english', content)", persisted=True),
        ),
        sa.Column("embedding", Vector(384), nullable=True),
        sa.Column("embedding_model", sa.String(200), nullable=True),
        sa.CheckConstraint("kind IN ('episodic','semantic','procedural','profile')", name="memories_kind_check"),
        sa.CheckConstraint("tier IN ('verbatim','summary','gist','archived')", name="memories_tier_check"),
        sa.CheckConstraint("importance >= 0 AND importance <= 1", name="memories_importance_check"),
    )
    op.create_index("ix_memories_scope", "memories", ["tenant_id", "user_id", "agent_id", "session_id"])
    op.create_index("ix_memories_page", "memories", ["tenant_id", "recorded_at", "id"])
    op.create_index("ix_memories_hash", "memories", ["tenant_id", "content_hash"])
    op.create_index("ix_memories_tier", "memories", ["tenant_id", "tier"])
    op.create_index("ix_memories_tsv", "memories", ["search_tsv"], postgresql_using="gin")
    op.create_index("ix_memories_tags", "memories", ["tags"], postgresql_using="gin")
    op.execute(
        "CREATE INDEX ix_memories_embedding ON memories USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 64)"
    )
    op.create_table(
        "memory_links",
        sa.Column("src_id", UUID, sa.ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("dst_id", UUID, sa.ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("relation", sa.String(32), primary_key=True),
        sa.Column("tenant_id", UUID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "relation IN ('derived_from','supersedes','merged_into')", name="memory_links_relation_check"
        ),
    )
    op.create_index("ix_memory_links_dst", "memory_links", ["dst_id"])
    op.create_table(
        "jobs",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("tenant_id", UUID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True, index=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("scope", pg.JSONB, nullable=False, server_default="{}"),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("result", pg.JSONB, nullable=False, server_default="{}"),
        sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('queued','running','succeeded','failed')", name="jobs_status_check"
        ),
    )
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant_id", "created_at"])
    op.create_table(
        "memory_tokens",
        sa.Column("memory_id", UUID, sa.ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model_id", sa.String(200), primary_key=True),
        sa.Column("vectors", sa.LargeBinary, nullable=False),
        sa.Column("n_vectors", sa.Integer, nullable=False),
        sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("train_steps", sa.Integer, nullable=False, server_default="0"),
        sa.Column("trained_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", UUID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", pg.JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    for table in ("idempotency_keys", "memory_tokens", "jobs", "memory_links", "memories", "api_keys", "tenants"):
        op.drop_table(table)

"""Lifecycle: archived vectors in half precision, consolidation bookkeeping, debounced/scheduled jobs.

- memories.embedding_half halfvec(384): an archived memory's vector moves here (half the bytes) and
  leaves the full-precision HNSW index (embedding := NULL, which HNSW does not index). A binary-
  quantized HNSW index over it finds candidates for "include archived" searches, which are then
  re-scored exactly on the half-precision vectors. A small graph (m 8, ef_construction 32) because
  every archived row is one insert into it: measured here 0.29 ms per row vs 1.3 ms at m 16 /
  ef_construction 64; the exact re-score over an oversampled candidate list makes up for it.
- memories.consolidated_at: when consolidation took this episode in. Deliberately not indexed (see
  below); consolidation finds a scope's waiting episodes through the scope index.
- memories.original_dropped_at: set when a tenant policy with keep_originals=false replaced the
  verbatim text by its summary.
- HOT updates: the lifecycle rewrites tier, strength, last_accessed_at, summary, gist and
  consolidated_at of many rows. A row update that changes no indexed column and fits on its page
  is a HOT update: no index is touched. Otherwise *every* index gets a new entry, including the
  HNSW graph (measured here: ~12 ms per row at 100k rows, vs ~0.03 ms for a HOT update). So this
  migration drops ix_memories_tier (a b-tree on a 4-value column that no query needs: retrieval
  filters on tier inside the vector/full-text scans) and leaves free space on each page
  (fillfactor 70). Keep those columns out of indexes (keys and predicates) in later migrations.
- jobs.params / run_after / debounce_key: a job's arguments; a queued job runs no earlier than
  run_after; at most one *queued* job per debounce_key (per-scope debounce of consolidation).
  (A running job's liveness is a Postgres advisory lock held by its worker's connection, which
  dies with the worker, so no heartbeat column is needed.)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute("ALTER TABLE memories ADD COLUMN embedding_half halfvec(384)")
    op.add_column("memories", sa.Column("consolidated_at", TS, nullable=True))
    op.add_column("memories", sa.Column("original_dropped_at", TS, nullable=True))
    op.execute(
        "CREATE INDEX ix_memories_embedding_bq ON memories USING hnsw "
        "((binary_quantize(embedding_half)::bit(384)) bit_hamming_ops) WITH (m = 8, ef_construction = 32)"
    )
    op.drop_index("ix_memories_tier", table_name="memories")
    op.execute("ALTER TABLE memories SET (fillfactor = 70)")
    op.execute(
        "CREATE INDEX ix_memories_fact_key ON memories "
        "(tenant_id, (metadata->'fact'->>'subject'), (metadata->'fact'->>'attribute')) "
        "WHERE kind = 'semantic'"
    )
    op.add_column("jobs", sa.Column("run_after", TS, nullable=True))
    op.add_column("jobs", sa.Column("params", pg.JSONB, nullable=False, server_default="{}"))
    op.add_column("jobs", sa.Column("debounce_key", sa.String(300), nullable=True))
    op.execute(
        "CREATE UNIQUE INDEX ux_jobs_debounce_queued ON jobs (debounce_key) "
        "WHERE status = 'queued' AND debounce_key IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_jobs_status_run_after ON jobs (status, run_after) WHERE status IN ('queued','running')")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_jobs_status_run_after")
    op.execute("DROP INDEX IF EXISTS ux_jobs_debounce_queued")
    op.drop_column("jobs", "debounce_key")
    op.drop_column("jobs", "params")
    op.drop_column("jobs", "run_after")
    op.execute("DROP INDEX IF EXISTS ix_memories_fact_key")
    op.execute("ALTER TABLE memories RESET (fillfactor)")
    op.create_index("ix_memories_tier", "memories", ["tenant_id", "tier"])
    op.execute("DROP INDEX IF EXISTS ix_memories_embedding_bq")
    # Archived vectors come back to full precision before their half-precision column goes.
    op.execute(
        "UPDATE memories SET embedding = embedding_half::vector(384) "
        "WHERE embedding IS NULL AND embedding_half IS NOT NULL"
    )
    op.drop_column("memories", "original_dropped_at")
    op.drop_column("memories", "consolidated_at")
    op.drop_column("memories", "embedding_half")

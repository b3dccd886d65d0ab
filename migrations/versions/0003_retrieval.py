"""Retrieval index: a tenant's profile memories.

The context builder puts a tenant's profile/core memories first on every request; without this
(partial, so tiny) index that is a scan of every memory of the tenant (100k rows).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_memories_profile ON memories (tenant_id, importance DESC, recorded_at DESC) "
        "WHERE kind = 'profile'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_memories_profile")

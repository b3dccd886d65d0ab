"""Session order index: the turns just before and after a memory in its session.

Search spreads full-text evidence to neighbouring turns and the context builder adds the neighbours of
its best hits (memsvc.retrieval.adjacency); each is one short range scan on this index instead of
numbering every turn of the session. Partial: memories without a session never have neighbours.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_memories_session_order ON memories (tenant_id, session_id, occurred_at) "
        "WHERE session_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_memories_session_order")

"""An index of the verbatim memories that have no summary yet, for the hourly fill pass.

`fill_builtin_summaries` looks for memories written before summaries were made at write time (0006).
Without an index it read a tenant's rows in sequence every hour to find, once they are filled, none.
The index holds only rows still waiting, so it is empty in steady state and costs writes nothing.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_memories_unsummarised ON memories (tenant_id) "
               "WHERE tier = 'verbatim' AND summary IS NULL AND summary_by IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_memories_unsummarised")

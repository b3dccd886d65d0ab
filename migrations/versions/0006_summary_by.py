"""Who made a memory's summary: "builtin" (the offline summarizer, at write time) or the LLM's model.

Every memory now gets the built-in summary when it is written, so a context never derives one per
request. A demotion with a hosted LLM configured replaces a built-in summary with the LLM's; the
column tells them apart. Summaries made before this revision were made by a demotion (NULL: kept).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE memories ADD COLUMN IF NOT EXISTS summary_by text")


def downgrade() -> None:
    op.execute("ALTER TABLE memories DROP COLUMN IF EXISTS summary_by")

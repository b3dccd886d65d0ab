"""Full text at scale: a tenant-aware GIN index and per-tenant lexeme document frequencies.

- ix_memories_tsv becomes GIN (tenant_id, search_tsv) (btree_gin). Every full-text query is scoped to
  one tenant, but a GIN over search_tsv alone returns the matching rows of *all* tenants, and each is a
  heap fetch before the tenant filter throws it away: with 100k memories of the queried tenant in a
  1M-row table that was ~75% of the full-text time (EXPLAIN: 36k rows fetched to keep 9k). With the
  tenant as a GIN key the index intersects both, and only the tenant's rows reach the heap. The name is
  kept: it is the full-text index, as before.
- ix_memories_tsv_len (tenant_id, length(search_tsv)): BM25 favours short memories, so a memory that
  holds only common query terms can reach the top k only if it is short; this lets the full-text
  search fetch just those (a bitmap OR of "holds these terms" and "at most this long").
- lexeme_stats (tenant_id, lexeme, df) and text_stats (tenant_id, docs, total_len, len_quantiles):
  BM25's document frequencies, collection size and lengths for large scopes, recounted per tenant by
  the periodic maintenance (decay) job. Counting them per query meant reading every row that holds
  any query term (tens of thousands at 100k memories). Only lexemes in at least a few memories are kept;
  rarer ones are counted exactly at query time, which is cheap because they are rare (see
  memsvc/retrieval/fulltext.py).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # btree_gin is a trusted extension (PG 13+): a database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")  # a 1M-row GIN build otherwise spills
    op.execute("DROP INDEX IF EXISTS ix_memories_tsv")
    op.execute("CREATE INDEX ix_memories_tsv ON memories USING gin (tenant_id, search_tsv)")
    op.execute("CREATE INDEX IF NOT EXISTS ix_memories_tsv_len ON memories (tenant_id, length(search_tsv))")
    op.create_table(
        "text_stats",
        sa.Column("tenant_id", pg.UUID(as_uuid=True), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("docs", sa.Integer, nullable=False),
        sa.Column("total_len", sa.BigInteger, nullable=False),
        sa.Column("min_df", sa.Integer, nullable=False),
        # Memory lengths (lexemes) at the percentiles 0, 1, ..., 100: how many rows a length cap keeps.
        sa.Column("len_quantiles", pg.ARRAY(sa.Integer), nullable=False, server_default="{}"),
        sa.Column("refreshed_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "lexeme_stats",
        sa.Column("tenant_id", pg.UUID(as_uuid=True), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("lexeme", sa.Text, primary_key=True),
        sa.Column("df", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lexeme_stats")
    op.drop_table("text_stats")
    op.execute("DROP INDEX IF EXISTS ix_memories_tsv_len")
    op.execute("DROP INDEX IF EXISTS ix_memories_tsv")
    op.execute("CREATE INDEX ix_memories_tsv ON memories USING gin (search_tsv)")
    # btree_gin stays: other objects may use it, and leaving an extension installed is harmless.

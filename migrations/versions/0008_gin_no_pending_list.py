"""GIN indexes without a pending list: every search read up to 4 MB of unmerged entries.

With `fastupdate` on (Postgres' default) a GIN index queues new entries in a pending list and merges
them at the next vacuum or once the list reaches `gin_pending_list_limit` (4 MB). Every scan of the
index reads the whole list. On a tenant that is written to, the list is usually part full: at 100k
memories with 443 pending pages, looking up one lexeme read 452 buffers (1.3-2 ms) instead of a few,
and a context request runs several such scans (BM25 statistics, the pruned pool, its arms). Measured
in-process on 200 contexts: the statistics statement 5.7 -> 0.9 ms median, the scoring one 5.9 -> 3.0.

Off, each insert updates the index directly: +0.15 ms a row in batches of 500 (0.18 -> 0.33 ms), small
beside embedding the memory. Reads are what this service is for.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_INDEXES = ("ix_memories_tsv", "ix_memories_tags")


def upgrade() -> None:
    for index in _INDEXES:
        op.execute(f"ALTER INDEX {index} SET (fastupdate = off)")
        # What is already queued stays queued (and read by every scan) until merged: merge it now.
        op.execute(f"SELECT gin_clean_pending_list('{index}'::regclass)")


def downgrade() -> None:
    for index in _INDEXES:
        op.execute(f"ALTER INDEX {index} RESET (fastupdate)")

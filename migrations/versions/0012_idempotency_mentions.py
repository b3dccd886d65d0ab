"""Idempotency records know what they mention, and age out.

* `mentions`: every id (memory, job) the stored response names, so erasing a memory finds and deletes the
  records whose replay would hand its content back (GIN, for `mentions && :erased_ids`). Written once per
  keyed write and read only by erasure, so the index keeps Postgres' default pending list (cheap inserts).
  Rows stored before this migration have none: they age out within the TTL.
* (tenant_id, created_at): the maintenance pass deletes a tenant's records older than
  MEMSVC_IDEMPOTENCY_TTL_SECONDS without scanning the table.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE idempotency_keys ADD COLUMN mentions uuid[] NOT NULL DEFAULT '{}'")
    op.execute("CREATE INDEX ix_idempotency_keys_mentions ON idempotency_keys USING gin (mentions)")
    op.execute("CREATE INDEX ix_idempotency_keys_age ON idempotency_keys (tenant_id, created_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_idempotency_keys_age")
    op.execute("DROP INDEX IF EXISTS ix_idempotency_keys_mentions")
    op.execute("ALTER TABLE idempotency_keys DROP COLUMN mentions")

"""deployment_secrets: values one deployment keeps, the same for all its processes (memsvc.deployment).

Holds the secret that signs pagination cursors, made at random by the first process that needs it; before
this, every deployment without MEMSVC_CURSOR_SECRET signed with the same constant, so one deployment
accepted another's (or anyone's forged) cursors. Cursors handed out before the upgrade fail once with a 400
that says to start again without a cursor.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE deployment_secrets (
            name varchar(100) PRIMARY KEY,
            value text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS deployment_secrets")

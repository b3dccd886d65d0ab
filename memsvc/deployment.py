"""Values one deployment keeps in its database, the same for every process on it: the cursor-signing secret.

A deployment is a database: several API processes on one database sign and accept each other's cursors,
and a cursor from another deployment (or a forged one) fails the signature check. The secret is made at
random by the first process that needs it (INSERT ... ON CONFLICT DO NOTHING, so racing processes agree on
the first one committed) and never leaves the database; MEMSVC_CURSOR_SECRET overrides it.
"""

from __future__ import annotations

import secrets

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from memsvc.models import DeploymentSecret

CURSOR = "cursor"


def cursor_secret(session: Session, configured: str | None = None) -> bytes:
    """The key that signs pagination cursors (memsvc.pagination): `configured` when set, else this database's."""
    if configured:
        return configured.encode()
    return _get_or_create(session, CURSOR).encode()


def _get_or_create(session: Session, name: str) -> str:
    query = select(DeploymentSecret.value).where(DeploymentSecret.name == name)
    value = session.scalar(query)
    if value is not None:
        return value
    # Committed on a connection of its own: the caller's transaction may be a read that is rolled back,
    # and a secret that vanished with it would invalidate the cursor just handed out.
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    with engine.begin() as conn:
        conn.execute(insert(DeploymentSecret).values(name=name, value=secrets.token_urlsafe(32))
                     .on_conflict_do_nothing(index_elements=["name"]))
    value = session.scalar(query)
    if value is None:  # pragma: no cover - only if the row is deleted again in between
        raise RuntimeError(f"deployment secret {name!r} could not be stored")
    return value

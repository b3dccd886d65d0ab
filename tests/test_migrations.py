"""Migrations are the only way the schema changes: upgrade and downgrade must both work, repeatedly."""

from __future__ import annotations

import uuid

import psycopg
from sqlalchemy import create_engine, inspect, pool

from memsvc import migrate


def _fresh_database(database_url: str) -> str:
    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = database_url.replace("postgresql+psycopg://", "postgresql://")
    base, _, query = admin.partition("?")
    server = base.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres?{query}", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server.replace('postgresql://', 'postgresql+psycopg://')}/{name}?{query}"


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url):
    url = _fresh_database(database_url)
    migrate.upgrade(url)
    head = migrate.current(url)
    assert head is not None
    assert {"tenants", "api_keys", "memories", "memory_links", "jobs", "memory_tokens"} <= _tables(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("memories")}
    engine.dispose()
    assert {"ix_memories_embedding", "ix_memories_tsv", "ix_memories_scope"} <= indexes

    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    assert _tables(url) <= {"alembic_version"}

    migrate.upgrade(url)
    assert migrate.current(url) == head


def _pending_pages(conn: psycopg.Connection, index: str) -> int:
    return int(conn.execute("SELECT pending_pages FROM pgstatginindex(%s::regclass)", (index,)).fetchone()[0])


def test_written_memories_leave_no_gin_pending_list(database_url, client, key):
    """0008: a memory's lexemes and tags go straight into their GIN indexes. With a pending list (the
    Postgres default) every full-text search reads all of it, up to 4 MB, until a vacuum merges it."""
    from tests.conftest import auth

    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        conn.execute("SELECT gin_clean_pending_list('ix_memories_tsv'::regclass)")
        items = [{"content": f"note {i} about zebra{i} and quokka", "tags": [f"t{i}"]} for i in range(40)]
        client.post("/v1/memories/batch", json={"items": items}, headers=auth(key)).raise_for_status()
        assert _pending_pages(conn, "ix_memories_tsv") == 0
        assert _pending_pages(conn, "ix_memories_tags") == 0
        # The same write with the default setting would have queued them (so the test can fail).
        conn.execute("ALTER INDEX ix_memories_tsv SET (fastupdate = on)")
        try:
            client.post("/v1/memories/batch", json={"items": items[:5]}, headers=auth(key)).raise_for_status()
            assert _pending_pages(conn, "ix_memories_tsv") > 0
        finally:
            conn.execute("ALTER INDEX ix_memories_tsv SET (fastupdate = off)")
            conn.execute("SELECT gin_clean_pending_list('ix_memories_tsv'::regclass)")

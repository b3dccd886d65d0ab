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

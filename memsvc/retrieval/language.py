"""Which language full text parses a tenant's memories in (Postgres text-search configurations).

A memory's `fts_config` is set when it is written (a BEFORE INSERT trigger, migration 0009, so every
write path agrees), from the tenant's retrieval policy `language`
(`simple` when the tenant has not said: it lower-cases and splits words in any script, without stemming
or stop words, so it never parses German as English). Queries are parsed with the tenant's language in
the same statement that reads it (`QUERY_CONFIG_SQL`). When a tenant changes its language, `realign`
re-parses its memories (a `reindex_fulltext` job, and every maintenance pass for stragglers).
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

UNKNOWN = "simple"


def config_sql(tenant: str) -> str:
    """The tenant's configuration as SQL, the tenant id being the placeholder `tenant`: a name that is no
    configuration (a hand-edited policy, a dropped dictionary) falls back to `simple` instead of failing."""
    return (f"coalesce((SELECT c.oid::regconfig FROM tenants t JOIN pg_ts_config c ON c.cfgname = "
            f"t.policy->'retrieval'->>'language' WHERE t.id = {tenant}), 'simple'::regconfig)")


QUERY_CONFIG_SQL = config_sql("%(p_tenant)s")  # for the search statements (psycopg parameters)


def available(session: Session) -> list[str]:
    """The text-search configurations this database has (english, german, russian, simple, ...)."""
    return sorted(session.scalars(text("SELECT cfgname::text FROM pg_ts_config")))


def realign(session: Session, tenant_id: uuid.UUID, batch: int = 5_000) -> int:
    """Re-parse the tenant's memories whose configuration is not the tenant's (in batches, each its own
    statement, so a large tenant does not hold one long lock). Returns how many were re-parsed."""
    total = 0
    while True:
        done = session.execute(text(f"""
            WITH cfg AS (SELECT {config_sql(":t")} AS c),
                 todo AS (SELECT m.id FROM memories m, cfg WHERE m.tenant_id = :t AND m.fts_config <> cfg.c
                          LIMIT :n FOR UPDATE SKIP LOCKED)
            UPDATE memories m SET fts_config = cfg.c FROM todo, cfg WHERE m.id = todo.id"""),
            {"t": tenant_id, "n": batch}).rowcount
        total += max(done or 0, 0)
        if not done or done < batch:
            return total

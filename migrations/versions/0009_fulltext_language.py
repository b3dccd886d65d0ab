"""Full text in the tenant's language: each memory's text-search configuration is a column.

The generated `search_tsv` was `to_tsvector('english', content)` for every memory, so a German or Russian
note was stemmed (and stop-worded) as English: its words matched nothing a German query asked for. Now
`fts_config` (a regconfig) says how each memory is parsed, set at write time from the tenant's retrieval
policy (`language`; `simple`, which only lower-cases, when the tenant has not said) by a BEFORE INSERT
trigger, so every way a memory is written (API, consolidation, imports) agrees; the query is parsed with
the same configuration (memsvc/retrieval/language.py).

Existing rows keep English, and existing tenants get `language: english` in their policy, so nothing a
tenant already had changes its behaviour. A tenant that changes its language gets its memories re-parsed
by a `reindex_fulltext` job (and by the periodic maintenance pass, which realigns any stragglers).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# The tenant's language if it names a configuration this database has, else simple (never an error).
_SET_CONFIG = ("NEW.fts_config := coalesce((SELECT c.oid::regconfig FROM tenants t JOIN pg_ts_config c "
               "ON c.cfgname = t.policy->'retrieval'->>'language' WHERE t.id = NEW.tenant_id), 'simple'::regconfig);")


def _search_tsv(expression: str) -> None:
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    op.execute("ALTER TABLE memories DROP COLUMN search_tsv")  # drops ix_memories_tsv and ix_memories_tsv_len
    op.execute(f"ALTER TABLE memories ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS ({expression}) STORED")
    op.execute("CREATE INDEX ix_memories_tsv ON memories USING gin (tenant_id, search_tsv) WITH (fastupdate = off)")
    op.execute("CREATE INDEX ix_memories_tsv_len ON memories (tenant_id, length(search_tsv))")


def upgrade() -> None:
    # Existing rows were parsed as English: the column's value for them (a fast default, no rewrite)...
    op.execute("ALTER TABLE memories ADD COLUMN fts_config regconfig NOT NULL DEFAULT 'english'")
    # ...and new rows are parsed as their tenant says (the write path sets it); `simple` otherwise.
    op.execute("ALTER TABLE memories ALTER COLUMN fts_config SET DEFAULT 'simple'")
    _search_tsv("to_tsvector(fts_config, content)")
    op.execute(f"CREATE FUNCTION memsvc_fts_config() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {_SET_CONFIG} "
               "RETURN NEW; END $$")
    op.execute("CREATE TRIGGER memories_fts_config BEFORE INSERT ON memories FOR EACH ROW "
               "EXECUTE FUNCTION memsvc_fts_config()")
    op.execute("""UPDATE tenants SET policy = jsonb_set(coalesce(policy, '{}'::jsonb), '{retrieval}',
                  coalesce(policy->'retrieval', '{}'::jsonb) || '{"language": "english"}'::jsonb)
                  WHERE NOT coalesce(policy->'retrieval', '{}'::jsonb) ? 'language'""")
    op.execute("ANALYZE memories")


def downgrade() -> None:
    op.execute("DROP TRIGGER memories_fts_config ON memories")
    op.execute("DROP FUNCTION memsvc_fts_config()")
    _search_tsv("to_tsvector('english', content)")
    op.execute("ALTER TABLE memories DROP COLUMN fts_config")
    op.execute("UPDATE tenants SET policy = policy #- '{retrieval,language}' WHERE policy ? 'retrieval'")

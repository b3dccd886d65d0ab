"""Ingest throughput: memories/s through POST /v1/memories/batch, embedding included.

Usage: python bench/ingest.py [--total 5000] [--batch-sizes 50,200,1000]
"""

from __future__ import annotations

import argparse
import time

from corpus import sentences
from harness import print_table, running_server
from tqdm import tqdm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=4000, help="memories per batch size")
    parser.add_argument("--batch-sizes", default="50,200,1000")
    args = parser.parse_args()
    texts = sentences(args.total)
    rows = []
    with running_server() as server:
        key = server.new_tenant_key()
        with server.client(key) as client:
            client.post("/v1/memories", json={"content": "warm-up"}).raise_for_status()
            for size in (int(s) for s in args.batch_sizes.split(",")):
                start = time.perf_counter()
                for i in tqdm(range(0, len(texts), size), desc=f"batch={size}", unit="batch"):
                    chunk = [{"content": t, "user_id": "u1", "session_id": f"b{size}"} for t in texts[i:i + size]]
                    client.post("/v1/memories/batch", json={"items": chunk}).raise_for_status()
                elapsed = time.perf_counter() - start
                rows.append([size, len(texts), elapsed, len(texts) / elapsed])
    print_table("Ingest through /v1/memories/batch (MiniLM embedding, real Postgres + pgvector)",
                ["batch size", "memories", "seconds", "memories/s"], rows)


if __name__ == "__main__":
    main()

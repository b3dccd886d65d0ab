"""Ingest throughput: memories/s through POST /v1/memories/batch, embedding included, and where the time goes.

Usage: python bench/ingest.py [--total 4000] [--batch-sizes 50,200,1000] [--chars 0,1000] [--thread]

`memsvc serve --no-workers` runs in its own process (as deployed; --thread puts it on a thread of this one)
with its default models: the dense embedder and, when installed, the learned-sparse (SPLADE) encoder. Texts
are the synthetic corpus sentences (~115 characters; `--chars 0`) or chat-turn-like texts of about N
characters built from them (`--chars 1000`). Every row says memories/s, and from the server's /metrics how
many seconds per 1,000 memories went to the dense model, to the sparse model and to the rest (validation,
summaries, SQL and index inserts, HTTP), so a figure can be read against the work it stands for.
"""

from __future__ import annotations

import argparse
import re
import time

import httpx
from corpus import sentences
from harness import print_table, running_server
from tqdm import tqdm

_SUM = re.compile(r'^memsvc_embedding_duration_seconds_sum\{op="(\w+)"\} ([0-9.e+-]+)$', re.M)


def texts_of(n: int, chars: int) -> list[str]:
    """n texts: corpus sentences, or (chars > 0) runs of them cut at a word boundary near `chars`."""
    if chars <= 0:
        return sentences(n)
    pool = sentences(n * (chars // 100 + 2), seed=13)
    out, i = [], 0
    for _ in range(n):
        text = ""
        while len(text) < chars:
            text += (" " if text else "") + pool[i % len(pool)]
            i += 1
        out.append(text[:chars].rsplit(" ", 1)[0])
    return out


def model_seconds(client: httpx.Client) -> dict[str, float]:
    """Seconds the server spent in each embedding operation so far (its /metrics)."""
    body = client.get("/metrics").text
    return {op: float(value) for op, value in _SUM.findall(body)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=4000, help="memories per row")
    parser.add_argument("--batch-sizes", default="50,200,1000")
    parser.add_argument("--chars", default="0,1000", help="text lengths: 0 = corpus sentences, N = ~N characters")
    parser.add_argument("--thread", action="store_true", help="serve on a thread of this process")
    args = parser.parse_args()
    rows = []
    with running_server(process=not args.thread) as server:
        key = server.new_tenant_key()
        with server.client(key) as client:
            client.post("/v1/memories", json={"content": "warm-up"}).raise_for_status()
            for chars in (int(c) for c in args.chars.split(",")):
                texts = texts_of(args.total, chars)
                mean_chars = sum(map(len, texts)) / len(texts)
                for size in (int(s) for s in args.batch_sizes.split(",")):
                    before = model_seconds(client)
                    start = time.perf_counter()
                    for i in tqdm(range(0, len(texts), size), desc=f"{mean_chars:.0f} chars, batch={size}",
                                  unit="batch"):
                        chunk = [{"content": t, "user_id": "u1", "session_id": f"b{size}-{chars}"}
                                 for t in texts[i:i + size]]
                        client.post("/v1/memories/batch", json={"items": chunk}).raise_for_status()
                    elapsed = time.perf_counter() - start
                    after = model_seconds(client)
                    dense = after.get("store", 0.0) - before.get("store", 0.0)
                    sparse = after.get("sparse_store", 0.0) - before.get("sparse_store", 0.0)
                    per_k = 1000 / len(texts)
                    rows.append([f"{mean_chars:.0f}", size, len(texts), f"{elapsed:.1f}",
                                 f"{len(texts) / elapsed:.0f}", f"{dense * per_k:.1f}", f"{sparse * per_k:.1f}",
                                 f"{(elapsed - dense - sparse) * per_k:.1f}"])
    print_table("Ingest through /v1/memories/batch (real Postgres + pgvector; seconds per 1,000 memories by part)",
                ["chars", "batch", "memories", "seconds", "memories/s", "dense s/1k", "sparse s/1k", "rest s/1k"],
                rows)


if __name__ == "__main__":
    main()

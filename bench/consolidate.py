"""Consolidation throughput with the built-in extractor, on LoCoMo dialogue turns as episodes.

Each LoCoMo conversation is one scope (user_id = sample id), each turn one episodic memory dated by
its session. The pass consolidates every scope (facts embedded with the default MiniLM model, deduped,
linked); the second pass reprocesses everything and must create nothing.

Data: ../shared/bench/locomo/locomo_dev.json (CC BY-NC 4.0; read in place, never copied).
Usage: python bench/consolidate.py [--conversations 8] [--batch 50] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness import print_table
from lifecycle_common import bench_database, new_tenant
from locomo_turns import conversations, load_turns


class Timed:
    """Wraps an LLM or an embedder and adds up the seconds spent in it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50, help="episodes per consolidation step")
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args()

    from memsvc.db import session_factory
    from memsvc.embeddings import get_embedder
    from memsvc.lifecycle.consolidate import ConsolidationScope, consolidate
    from memsvc.lifecycle.settings import LifecycleSettings
    from memsvc.llm import BuiltinLLM

    convs = conversations()[: args.conversations]
    embedder = get_embedder()
    embedder.embed(["warm-up"])
    settings = LifecycleSettings(consolidate_batch=args.batch, consolidate_max_batches=10_000)
    rows = []
    with bench_database(args.state_dir) as engine:
        sessions = session_factory(engine)
        tenant = new_tenant(engine, "consolidate")
        episodes = sum(load_turns(engine, tenant, conv, embed=False) for conv in convs)
        for label, reprocess in (("first pass", False), ("re-run (reprocess)", True)):
            llm, emb = Timed(BuiltinLLM()), Timed(embedder)
            totals = {"episodes": 0, "facts": 0, "created": 0, "duplicates": 0, "superseded": 0, "links": 0}
            start = time.perf_counter()
            for conv in convs:
                report = consolidate(sessions, ConsolidationScope(tenant, conv["sample_id"]), llm=llm,  # type: ignore[arg-type]
                                     embedder=emb, settings=settings, reprocess=reprocess)  # type: ignore[arg-type]
                totals["episodes"] += report.episodes
                totals["facts"] += report.facts_extracted
                totals["created"] += len(report.created)
                totals["duplicates"] += report.duplicates
                totals["superseded"] += len(report.superseded)
                totals["links"] += report.links_added
            total = time.perf_counter() - start
            rows.append([label, totals["episodes"], totals["facts"], totals["created"], totals["duplicates"],
                         totals["superseded"], totals["links"], total, llm.seconds, emb.seconds,
                         total - llm.seconds - emb.seconds, totals["episodes"] / total])
        print(f"{len(convs)} conversations, {episodes} episodes")
    print_table(f"Consolidation with the built-in extractor ({len(convs)} LoCoMo conversations, batch {args.batch})",
                ["pass", "episodes", "facts out", "created", "duplicates", "superseded", "links", "total s",
                 "extract s", "embed s", "db s", "episodes/s"], rows)


if __name__ == "__main__":
    main()

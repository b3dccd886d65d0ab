"""Tier distribution after a simulated 90 days of a LoCoMo conversation.

The clock starts at the conversation's first session. Each day: the sessions of that day are ingested
at their own timestamps (each turn one episodic memory), the scope is consolidated (built-in
extractor) right after, and at the end of the day the decay pass runs. With --use (default), each
new turn "uses" the 3 earlier memories that match it best in full text (a stand-in for the context
builder, which reinforces what it packs), so topics that come back stay fresh.

Data: ../shared/bench/locomo/locomo_dev.json (CC BY-NC 4.0; read in place, never copied).
Usage: python bench/lifecycle_locomo.py [--conversation 0] [--days 90] [--tau0-days 30,7] [--no-use]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta

from harness import print_table
from lifecycle_common import TIERS, bench_database, new_tenant
from locomo_turns import conversations, insert_session, sessions_of
from sqlalchemy import Engine, func, select, text

CHECKPOINTS = (7, 30, 60, 90)


def _use(engine: Engine, tenant: uuid.UUID, user: str, new_ids: list[uuid.UUID], at: datetime) -> int:
    """Reinforce the top-3 earlier memories (full-text rank) for each new turn; returns how many uses."""
    from sqlalchemy.orm import Session

    from memsvc.lifecycle.feedback import reinforce_used
    from memsvc.scoping import MemoryScope

    hits = text("""
        SELECT m.id FROM memories n,
        LATERAL (SELECT id FROM memories m
                 WHERE m.tenant_id = :t AND m.user_id = :u AND m.id <> n.id AND m.recorded_at < n.recorded_at
                   AND m.search_tsv @@ to_tsquery('english', replace(plainto_tsquery('english', n.content)::text,
                                                                     '&', '|'))
                 ORDER BY ts_rank_cd(m.search_tsv, to_tsquery('english', replace(
                          plainto_tsquery('english', n.content)::text, '&', '|'))) DESC LIMIT 3) m
        WHERE n.id = ANY(:ids) AND plainto_tsquery('english', n.content)::text <> ''
    """)
    with Session(engine) as session, session.begin():
        used = [row[0] for row in session.execute(hits, {"t": tenant, "u": user, "ids": new_ids})]
        if used:
            reinforce_used(session, MemoryScope(tenant), used, now=at)
    return len(used)


def simulate(engine: Engine, conv: dict, days: int, tau0_days: float, use: bool) -> tuple[list, dict]:  # type: ignore[type-arg]
    from sqlalchemy.orm import Session

    from memsvc.db import session_factory
    from memsvc.embeddings import get_embedder
    from memsvc.lifecycle.consolidate import ConsolidationScope, consolidate
    from memsvc.lifecycle.decay import run_decay
    from memsvc.lifecycle.policy import put_policy
    from memsvc.llm import BuiltinLLM
    from memsvc.models import Memory

    sessions = session_factory(engine)
    tenant, user = new_tenant(engine, "locomo-life"), conv["sample_id"]
    with sessions() as s, s.begin():
        policy = put_policy(s, tenant, {"tau0_days": tau0_days})
    llm, embedder = BuiltinLLM(), get_embedder()
    plan = sessions_of(conv)
    start = plan[0][0].replace(hour=0, minute=0, second=0, microsecond=0)
    stats: Counter[str] = Counter()
    rows = []
    for day in range(days + 1):
        day_start, day_end = start + timedelta(days=day), start + timedelta(days=day, hours=23, minutes=59)
        for at, turns in plan:
            if day_start <= at <= day_end:
                ids = insert_session(engine, tenant, user, at, turns)
                stats["sessions"] += 1
                stats["turns"] += len(ids)
                if use:
                    stats["uses"] += _use(engine, tenant, user, ids, at)
                report = consolidate(sessions, ConsolidationScope(tenant, user), llm=llm, embedder=embedder,
                                     now=at + timedelta(minutes=len(turns) + 1))
                stats["facts created"] += len(report.created)
                stats["facts superseded"] += len(report.superseded)
        started = time.perf_counter()
        run_decay(sessions, tenant, day_end, policy=policy, llm=llm)
        stats["decay seconds"] += time.perf_counter() - started  # type: ignore[assignment]
        if day in CHECKPOINTS:
            with Session(engine) as s:
                counts = Counter({(k, t): n for k, t, n in s.execute(
                    select(Memory.kind, Memory.tier, func.count()).where(Memory.tenant_id == tenant)
                    .group_by(Memory.kind, Memory.tier))})
            for kind in ("episodic", "semantic"):
                rows.append([tau0_days, day, kind, *(counts[(kind, t)] for t in TIERS)])
    return rows, dict(stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversation", type=int, default=0)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--tau0-days", default="30,7")
    parser.add_argument("--no-use", action="store_true")
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args()
    conv = conversations()[args.conversation]
    table, totals = [], []
    with bench_database(args.state_dir) as engine:
        for tau0 in (float(t) for t in args.tau0_days.split(",")):
            rows, stats = simulate(engine, conv, args.days, tau0, not args.no_use)
            table += rows
            totals.append([tau0, stats.get("sessions", 0), stats.get("turns", 0), stats.get("uses", 0),
                           stats.get("facts created", 0), stats.get("facts superseded", 0),
                           float(stats.get("decay seconds", 0.0))])
    span = sessions_of(conv)
    first, last = span[0][0], span[-1][0]
    print(f"conversation {conv['sample_id']}: {len(span)} sessions from {first:%d %b %Y} to {last:%d %b %Y}")
    print_table(f"Simulated {args.days} days of LoCoMo {conv['sample_id']} (default thresholds, built-in LLM; "
                f"{'with' if not args.no_use else 'without'} use)", ["tau0 days", "sessions", "turns", "uses",
                                                                      "facts created", "superseded",
                                                                      "decay s (all passes)"], totals)
    print_table("Tier distribution by day", ["tau0 days", "day", "kind", *TIERS], table)


if __name__ == "__main__":
    main()

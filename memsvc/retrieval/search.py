"""Hybrid candidate search in SQL: pgvector HNSW (cosine) + Postgres full text, fused by reciprocal rank."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import Text, func, text
from sqlalchemy.orm import Session

from memsvc.embeddings import Embedder
from memsvc.models import Memory
from memsvc.scoping import MemoryScope


@dataclass(frozen=True)
class SearchFilters:
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    kinds: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    include_archived: bool = False


@dataclass(frozen=True)
class SearchSettings:
    candidates_per_signal: int = 50
    rrf_k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    hnsw_ef_search: int = 100


@dataclass
class Candidate:
    id: uuid.UUID
    score: float
    signals: dict[str, float] = field(default_factory=dict)


def or_tsquery(query_text: str):  # type: ignore[no-untyped-def]
    """Any-term match: plainto_tsquery ANDs every word, too strict for natural-language questions."""
    return func.to_tsquery(
        "english", func.replace(func.plainto_tsquery("english", query_text).cast(Text), "&", "|")
    )


def _filtered(scope: MemoryScope, filters: SearchFilters, *cols):  # type: ignore[no-untyped-def]
    query = scope.select(*cols)
    for column, value in ((Memory.user_id, filters.user_id), (Memory.agent_id, filters.agent_id),
                          (Memory.session_id, filters.session_id)):
        if value is not None:
            query = query.where(column == value)
    if filters.kinds:
        query = query.where(Memory.kind.in_(filters.kinds))
    if filters.tags:
        query = query.where(Memory.tags.overlap(list(filters.tags)))
    if not filters.include_archived:
        query = query.where(Memory.tier != "archived")
    return query


def hybrid_search(
    session: Session, scope: MemoryScope, embedder: Embedder, query_text: str, filters: SearchFilters,
    limit: int, settings: SearchSettings = SearchSettings(),
) -> list[Candidate]:
    vector = embedder.embed([query_text])[0].tolist()
    k = max(settings.candidates_per_signal, limit)
    # pgvector 0.8: keep scanning the HNSW graph until enough rows pass the scope filters.
    session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    session.execute(text(f"SET LOCAL hnsw.ef_search = {int(settings.hnsw_ef_search)}"))
    distance = Memory.embedding.cosine_distance(vector)
    dense = session.execute(
        _filtered(scope, filters, Memory.id, distance.label("d"))
        .where(Memory.embedding.is_not(None)).order_by(distance).limit(k)
    ).all()
    tsq = or_tsquery(query_text)
    rank = func.ts_rank_cd(Memory.search_tsv, tsq)
    sparse = session.execute(
        _filtered(scope, filters, Memory.id, rank.label("r"))
        .where(Memory.search_tsv.op("@@")(tsq)).order_by(rank.desc(), Memory.id).limit(k)
    ).all()
    fused: dict[uuid.UUID, Candidate] = {}
    for signal, rows, weight in (("dense", dense, settings.dense_weight), ("sparse", sparse, settings.sparse_weight)):
        for position, row in enumerate(rows, start=1):
            candidate = fused.setdefault(row.id, Candidate(row.id, 0.0))
            contribution = weight / (settings.rrf_k + position)
            candidate.signals[signal] = contribution
            candidate.score += contribution
    ranked = sorted(fused.values(), key=lambda c: (-c.score, str(c.id)))
    return ranked[:limit]


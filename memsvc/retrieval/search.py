"""Hybrid candidates in one SQL statement: pgvector HNSW (cosine) + BM25 over Postgres full text.

Every query starts from the caller's `MemoryScope`; filters (kind, tags, time range, validity "as of"
a time, archived tier) are applied inside both candidate lists, so the HNSW scan and the full-text
pool only ever see rows the caller may read. Fusion, MMR and the score breakdown live in `rank`.

The full-text list (BM25) comes from `fulltext`: exact for small scopes, from per-tenant statistics and
pruned to the rows that can reach the top k for large ones. Both lists reach the main statement as
arrays of (id, score), which fetches the candidate rows once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import Float, and_, bindparam, cast, func, null, or_, select, text, union, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from memsvc.embeddings import Embedder
from memsvc.errors import InvalidInput
from memsvc.lifecycle import archive
from memsvc.lifecycle.retention import retention_at
from memsvc.models import EMBEDDING_DIM, Memory
from memsvc.retrieval import adjacency, fulltext
from memsvc.retrieval.rank import Ranked, fuse, mmr, named_in, rrf_only, with_priors, with_session_context
from memsvc.retrieval.settings import DEFAULT_SETTINGS, RetrievalSettings
from memsvc.scoping import MemoryScope
from memsvc.turns import speaker_of

Mode = Literal["hybrid", "dense", "sparse"]
MAX_QUERY_TERMS = 32  # a pasted document as a query must not build a 1,000-column statement
# What a candidate row carries (enough to rank, pack and render it).
ROW_COLUMNS = ("id", "kind", "content", "summary", "summary_by", "gist", "tier", "importance", "strength",
               "last_accessed_at", "occurred_at", "session_id", "content_hash", "valid_from")


@dataclass(frozen=True)
class SearchFilters:
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    kinds: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None  # any of these tags
    occurred_after: datetime | None = None  # inclusive
    occurred_before: datetime | None = None  # exclusive
    # Validity: by default only what is valid now (not superseded, not expired). With as_of, what
    # was valid at that time (valid_from <= as_of < valid_to), superseded since or not.
    as_of: datetime | None = None
    include_superseded: bool = False
    include_archived: bool = False

    def key(self) -> str:
        return repr(self)


@dataclass
class SearchOutcome:
    hits: list[Ranked]
    duplicates: list[tuple[Ranked, uuid.UUID]]  # (near-duplicate, the kept memory it repeats)
    rows: dict[uuid.UUID, Any]  # candidate rows (ROW_COLUMNS), not ORM objects
    timings: dict[str, float]


def filter_clauses(filters: SearchFilters, now: datetime) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    for column, value in ((Memory.user_id, filters.user_id), (Memory.agent_id, filters.agent_id),
                          (Memory.session_id, filters.session_id)):
        if value is not None:
            clauses.append(column == value)
    if filters.kinds:
        clauses.append(Memory.kind.in_(filters.kinds))
    if filters.tags:
        clauses.append(Memory.tags.overlap(list(filters.tags)))
    if filters.occurred_after is not None:
        clauses.append(Memory.occurred_at >= filters.occurred_after)
    if filters.occurred_before is not None:
        clauses.append(Memory.occurred_at < filters.occurred_before)
    if filters.occurred_after and filters.occurred_before and filters.occurred_after >= filters.occurred_before:
        raise InvalidInput("occurred_after must be before occurred_before", details={"field": "occurred_after"})
    if not filters.include_archived:
        clauses.append(Memory.tier != "archived")
    if filters.as_of is not None:
        clauses.append(or_(Memory.valid_from.is_(None), Memory.valid_from <= filters.as_of))
        clauses.append(or_(Memory.valid_to.is_(None), Memory.valid_to > filters.as_of))
        if not filters.include_superseded:
            # Superseded without a closing time: we cannot say when it stopped being true.
            clauses.append(or_(Memory.superseded_by.is_(None), Memory.valid_to.is_not(None)))
    elif not filters.include_superseded:
        clauses.append(Memory.superseded_by.is_(None))
        clauses.append(or_(Memory.valid_to.is_(None), Memory.valid_to > now))
    return clauses


# ---- scope size (plan choices, BM25's N on the exact path); cached briefly -------------------------
_N_CACHE: dict[tuple[Any, ...], tuple[float, int]] = {}
_N_LOCK = threading.Lock()
_N_TTL_SECONDS = 60.0


def _estimated_rows(session: Session, where: list[Any]) -> float:
    """The planner's row estimate for the scope (EXPLAIN, no execution: ~0.3 ms)."""
    compiled = select(Memory.id).where(*where).compile(dialect=session.get_bind().dialect,
                                                       compile_kwargs={"render_postcompile": True})
    plan = session.connection().exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params).scalar()
    return float(plan[0]["Plan"]["Plan Rows"])


def _scope_size(session: Session, scope: MemoryScope, filters: SearchFilters, where: list[Any],
                settings: RetrievalSettings) -> int:
    """Memories in the filtered scope: counted when small, the planner's estimate when large (counting
    100k rows costs ~90 ms, and a large scope's plans and statistics do not need the exact number)."""
    key = (scope, filters.key())
    now = time.monotonic()
    with _N_LOCK:
        hit = _N_CACHE.get(key)
    if hit and now - hit[0] < _N_TTL_SECONDS:
        return hit[1]
    estimate = _estimated_rows(session, where)
    if estimate >= settings.scope_estimate_min_rows:
        n = int(estimate)
    else:
        n = int(session.scalar(scope.select(func.count()).where(*where)) or 0)
    with _N_LOCK:
        if len(_N_CACHE) > 10_000:
            _N_CACHE.clear()
        _N_CACHE[key] = (now, n)
    return n


def prepare(session: Session, query_text: str, settings: RetrievalSettings) -> list[str]:
    """One round trip: HNSW scan settings for this transaction, and the query's lexemes (under the same
    text-search configuration as the stored tsvector)."""
    ef = str(max(int(settings.hnsw_ef_search), int(settings.dense_k)))
    row = session.execute(select(
        # pgvector 0.8: keep walking the graph until enough rows pass the scope filters.
        func.set_config("hnsw.iterative_scan", "relaxed_order", True),
        func.set_config("hnsw.ef_search", ef, True),
        # psycopg prepares a statement after 5 runs, and Postgres may then switch to a generic plan that
        # knows neither the query vector nor the terms (measured: 8 ms custom vs 170 ms generic here).
        func.set_config("plan_cache_mode", "force_custom_plan", True),
        func.tsvector_to_array(func.to_tsvector("english", query_text)).label("terms"),
    )).one()
    return sorted(row.terms or [])[:MAX_QUERY_TERMS]


def query_terms(session: Session, query_text: str) -> list[str]:
    return prepare(session, query_text, RetrievalSettings())


_TABLE_TTL_SECONDS = 300.0
_TABLE: dict[str, float] = {"at": -1e9, "rows": 0.0}


def _table_rows(session: Session) -> float:
    now = time.monotonic()
    if now - _TABLE["at"] > _TABLE_TTL_SECONDS:
        rows = session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'memories'::regclass"))
        _TABLE.update(at=now, rows=float(rows or 0.0))
    return _TABLE["rows"]


def _prefer_graph(session: Session, scope: MemoryScope, filters: SearchFilters, where: list[Any],
                  settings: RetrievalSettings) -> bool:
    """Whether to make Postgres walk the HNSW graph rather than compare every vector of the scope.

    The planner prefers the exact scan (scope rows by B-tree, then sort by distance) whenever the
    tenant filter looks selective; at 100k memories in a 1M table that costs 100k distance computations
    (~300 ms here) where the graph needs ~1k. For small scopes the exact scan is cheap and exact; for a
    scope that is a tiny share of the table the graph walk would have to skip nearly everything.
    """
    n_scope = _scope_size(session, scope, filters, where, settings)
    return n_scope >= settings.graph_scan_min_rows and n_scope >= settings.graph_scan_min_share * _table_rows(session)


def _graph_scan(session: Session, nearest: Any) -> list[Any]:
    """Run the nearest-neighbour query with bitmap and sequential scans off (this transaction only),
    which leaves the HNSW index scan as the planner's choice; then put the settings back."""
    before = session.execute(select(
        func.current_setting("enable_bitmapscan").label("bitmap"), func.current_setting("enable_seqscan").label("seq"),
        func.set_config("enable_bitmapscan", "off", True), func.set_config("enable_seqscan", "off", True),
    )).one()
    try:
        return list(session.execute(nearest).all())
    finally:
        session.execute(select(func.set_config("enable_bitmapscan", before.bitmap, True),
                               func.set_config("enable_seqscan", before.seq, True)))


def _with_archived(session: Session, scope: MemoryScope, vector: list[float], where: list[Any],
                   found: list[tuple[uuid.UUID, float]], k: int) -> list[tuple[uuid.UUID, float]]:
    """The nearest `k` (id, cosine distance) of the hot index's hits and the archived vectors' (which
    left that index for the binary-quantized one, lifecycle.archive), by exact cosine distance."""
    archived = archive.search_archived(session, scope, vector, k, extra_where=where)
    merged = dict(found)
    for hit in archived:
        merged[hit.id] = min(hit.distance, merged.get(hit.id, hit.distance))
    return sorted(merged.items(), key=lambda kv: (kv[1], str(kv[0])))[:k]


def _listed(name: str, column: str, pairs: list[tuple[uuid.UUID, float]]) -> Any:
    """A candidate list found by an earlier statement, as a CTE of (id, `column`) for the main one."""
    table = func.unnest(
        bindparam(f"{name}_ids", [i for i, _ in pairs], type_=ARRAY(PG_UUID(as_uuid=True))),
        bindparam(f"{name}_{column}", [float(v) for _, v in pairs], type_=ARRAY(Float)),
    ).table_valued("id", column).render_derived(name=f"{name}_found")
    return select(table.c.id, table.c[column]).cte(name)


def _spread_to_neighbours(session: Session, scope: MemoryScope, where: list[Any],
                          found: list[tuple[uuid.UUID, float]], settings: RetrievalSettings,
                          ) -> list[tuple[uuid.UUID, float]]:
    """BM25 of each turn plus a share of its neighbours' (adjacency.spread_to_neighbours), best first.

    LoCoMo, offline replica over 8 conversations: weight 0.4 lifts recall@30 by 4 points; a reply that
    shares no word with the question is found through the turn it answers.
    """
    if settings.sparse_neighbour_weight <= 0 or not found:
        return found
    scores = dict(found)
    pairs = set()
    for hit, _, row in adjacency.neighbours(session, scope, where, list(scores), ("id",)):
        pairs.update({(row.id, hit), (hit, row.id)})
    spread = adjacency.spread_to_neighbours(scores, sorted(pairs), settings.sparse_neighbour_weight)
    return sorted(spread.items(), key=lambda kv: (-kv[1], str(kv[0])))[: settings.sparse_k]


def candidates(
    session: Session, scope: MemoryScope, vector: list[float] | None, terms: list[str], filters: SearchFilters,
    settings: RetrievalSettings, now: datetime, *, with_embeddings: bool,
) -> tuple[list[Ranked], dict[uuid.UUID, Any]]:
    """Dense and BM25 candidate lists in one statement; each row comes back with both ranks."""
    where = [*scope.where(), *filter_clauses(filters, now)]
    parts = []
    dense = sparse = None
    own_bm25: dict[uuid.UUID, float] = {}
    if vector is not None and settings.dense_k > 0:
        distance = Memory.embedding.cosine_distance(vector)
        nearest = (select(Memory.id.label("id"), distance.label("d")).where(*where, Memory.embedding.is_not(None))
                   .order_by(distance).limit(settings.dense_k))
        graph = _prefer_graph(session, scope, filters, where, settings)
        if graph or filters.include_archived:
            rows = _graph_scan(session, nearest) if graph else session.execute(nearest).all()
            found = [(row.id, float(row.d)) for row in rows]
            if filters.include_archived:
                found = _with_archived(session, scope, vector, where, found, settings.dense_k)
            dense = _listed("dense", "d", found)
        else:
            dense = nearest.cte("dense")
        parts.append(select(dense.c.id))
    if terms and settings.sparse_k > 0:
        n_scope = _scope_size(session, scope, filters, where, settings)
        own = fulltext.top(session, scope.tenant_id, where, terms, n_scope, settings)
        found_s = _spread_to_neighbours(session, scope, where, own, settings)
        own_bm25 = dict(own)
        sparse = _listed("sparse", "s", found_s)
        parts.append(select(sparse.c.id))
    if not parts:
        return [], {}
    ids = (union(*parts) if len(parts) > 1 else parts[0]).cte("ids")
    # Plain columns, not ORM objects: the context builder needs only these, and building ~100 entities
    # per request costs more than the SQL. /v1/search loads full rows for the hits it returns.
    cols: list[Any] = [getattr(Memory, name) for name in ROW_COLUMNS]
    cols.append(dense.c.d if dense is not None else cast(null(), Float).label("d"))
    cols.append(sparse.c.s if sparse is not None else cast(null(), Float).label("s"))
    cols.append(func.length(Memory.search_tsv).label("lexemes"))
    query = select(*cols).select_from(ids).join(Memory, and_(Memory.id == ids.c.id, *scope.where()))
    if dense is not None:
        query = query.outerjoin(dense, dense.c.id == ids.c.id)
    if sparse is not None:
        query = query.outerjoin(sparse, sparse.c.id == ids.c.id)
    if with_embeddings:
        query = query.add_columns(Memory.embedding)
    elif settings.duplicate_threshold < 1.0:
        # Near-duplicate pairs among the candidates, computed where the vectors are (no vector transfer).
        # The cast detoasts each vector once (comparing stored vectors pairwise re-reads TOAST per pair).
        cand = select(Memory.id.label("id"), cast(Memory.embedding, HALFVEC(EMBEDDING_DIM)).label("e")).select_from(
            ids).join(
            Memory, and_(Memory.id == ids.c.id, *scope.where())).cte("cand")
        a, b = cand.alias("a"), cand.alias("b")
        # Each unordered pair once (a.id < b.id), then both ways round: half the distance computations
        # (200 candidates: 20k instead of 40k, ~5 ms).
        pairs = (select(a.c.id.label("x"), b.c.id.label("y"))
                 .select_from(a.join(b, and_(a.c.id < b.c.id, a.c.e.op("<=>", return_type=Float)(b.c.e)
                                             <= 1.0 - settings.duplicate_threshold))).cte("pairs"))
        both = union_all(select(pairs.c.x.label("id"), pairs.c.y.label("twin")),
                         select(pairs.c.y, pairs.c.x)).subquery("both_ways")
        twins = (select(both.c.id, func.array_agg(both.c.twin).label("twins"))
                 .group_by(both.c.id).cte("twins"))
        query = query.add_columns(twins.c.twins).outerjoin(twins, twins.c.id == ids.c.id)
    rows = session.execute(query).all()

    ranked: list[Ranked] = []
    memories: dict[uuid.UUID, Any] = {}
    for row in rows:
        memories[row.id] = row
        ranked.append(Ranked(
            id=row.id, dense_similarity=None if row.d is None else 1.0 - float(row.d),
            sparse_score=None if row.s is None else float(row.s),
            retention=retention_at(now, row.last_accessed_at, row.strength, settings.tau0_seconds),
            importance=float(row.importance), content_hash=row.content_hash,
            embedding=row.embedding if with_embeddings else None,
            twins=frozenset(getattr(row, "twins", None) or ()), speaker=speaker_of(row.content),
            session_id=row.session_id, lexemes=int(row.lexemes or 0), sparse_raw=own_bm25.get(row.id),
        ))
    for position, c in enumerate(sorted((c for c in ranked if c.dense_similarity is not None),
                                        key=lambda c: (-c.dense_similarity, str(c.id))), start=1):  # type: ignore[operator]
        c.dense_rank = position
    for position, c in enumerate(sorted((c for c in ranked if c.sparse_score is not None),
                                        key=lambda c: (-c.sparse_score, str(c.id))), start=1):  # type: ignore[operator]
        c.sparse_rank = position
    return ranked, memories


_QV_CACHE: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
_QV_LOCK = threading.Lock()
_QV_SIZE = 2048


def query_vector(embedder: Embedder, query_text: str) -> list[float]:
    """The query's embedding; recent ones are kept (an agent asks about the same turn several times)."""
    key = (embedder.name, query_text)
    with _QV_LOCK:
        if key in _QV_CACHE:
            _QV_CACHE.move_to_end(key)
            return _QV_CACHE[key]
    vector = embedder.embed([query_text])[0].tolist()
    with _QV_LOCK:
        _QV_CACHE[key] = vector
        while len(_QV_CACHE) > _QV_SIZE:
            _QV_CACHE.popitem(last=False)
    return vector


def _hybrid_order(ranked: list[Ranked], settings: RetrievalSettings, named: frozenset[str]) -> list[Ranked]:
    return with_priors(with_session_context(fuse(ranked, settings, named), settings), settings, named)


def search(
    session: Session, scope: MemoryScope, embedder: Embedder, query_text: str, filters: SearchFilters,
    limit: int, settings: RetrievalSettings = DEFAULT_SETTINGS, *, mode: Mode = "hybrid",
    now: datetime | None = None,
) -> SearchOutcome:
    """Ranked, de-duplicated memories for a query: candidates -> fusion -> MMR -> the first `limit`."""
    now = now or datetime.now(UTC)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    vector = query_vector(embedder, query_text) if mode != "sparse" else None
    t1 = time.perf_counter()
    pool_settings = settings.with_(dense_k=max(settings.dense_k, limit), sparse_k=max(settings.sparse_k, limit))
    terms = prepare(session, query_text, pool_settings)
    if mode == "dense":
        terms = []
    # MMR needs the vectors; plain near-duplicate removal only needs the pairs (computed in SQL).
    diverse = settings.mmr_lambda < 1.0
    ranked, rows = candidates(session, scope, vector, terms, filters, pool_settings, now, with_embeddings=diverse)
    named = named_in(query_text)
    ordered = _hybrid_order(ranked, settings, named) if mode == "hybrid" else rrf_only(ranked, mode)
    if mode == "hybrid" and settings.prf_docs > 0 and vector is not None and ordered:
        # Pseudo-relevance feedback (Rocchio): move the query vector toward the best first-pass hits and
        # search again; finds turns that answer the question without sharing its words.
        top = [c.id for c in ordered[: settings.prf_docs]]
        vecs = [np.asarray(v, dtype=np.float32) for v in session.scalars(
            scope.select(Memory.embedding).where(Memory.id.in_(top), Memory.embedding.is_not(None)))]
        if vecs:
            moved = np.asarray(vector, dtype=np.float32) + settings.prf_weight * np.mean(vecs, axis=0)
            vector = (moved / max(float(np.linalg.norm(moved)), 1e-9)).tolist()
            ranked, rows = candidates(session, scope, vector, terms, filters, pool_settings, now,
                                      with_embeddings=diverse)
            ordered = _hybrid_order(ranked, settings, named)
    t2 = time.perf_counter()
    hits, duplicates = mmr(ordered, limit, settings)
    t3 = time.perf_counter()
    timings.update(embed_ms=(t1 - t0) * 1e3, sql_ms=(t2 - t1) * 1e3, rank_ms=(t3 - t2) * 1e3)
    return SearchOutcome(hits=hits, duplicates=duplicates, rows=rows, timings=timings)


def hybrid_search(  # the original entry point, kept for callers written against it
    session: Session, scope: MemoryScope, embedder: Embedder, query_text: str, filters: SearchFilters,
    limit: int, settings: RetrievalSettings = DEFAULT_SETTINGS,
) -> list[Ranked]:
    return search(session, scope, embedder, query_text, filters, limit, settings).hits

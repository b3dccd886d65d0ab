"""Hybrid candidates: pgvector HNSW (cosine) + BM25 over Postgres full text, their rows in one statement.

Every query starts from the caller's `MemoryScope`; filters (kind, tags, time range, validity "as of"
a time, archived tier) are applied inside both candidate lists, so the HNSW scan and the full-text
pool only ever see rows the caller may read. Fusion, MMR and the score breakdown live in `rank`.

The full-text list (BM25) comes from `fulltext`: exact for small scopes, from per-tenant statistics and
pruned to the rows that can reach the top k for large ones. The query is embedded on another thread
meanwhile; then the nearest vectors are found. Both lists reach the main statement as arrays of (id,
score), which fetches the candidate rows once. The statements are SQL text (`sqltext`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from memsvc.embeddings import Embedder
from memsvc.errors import InvalidInput
from memsvc.lifecycle import archive
from memsvc.lifecycle.retention import retention_at
from memsvc.models import Memory
from memsvc.retrieval import adjacency, fulltext, language, sqltext
from memsvc.retrieval.rank import Ranked, fuse, mmr, named_in, rrf_only, with_priors, with_session_context
from memsvc.retrieval.settings import DEFAULT_SETTINGS, RetrievalSettings
from memsvc.retrieval.sqltext import Where
from memsvc.retrieval.timeframe import Window, window_of
from memsvc.scoping import MemoryScope
from memsvc.sparse_encoder import SparseEncoder, SparseVector, get_sparse_encoder, sparse_text

Mode = Literal["hybrid", "dense", "sparse"]
MAX_QUERY_TERMS = 32  # a pasted document as a query must not build a 1,000-column statement
# What a candidate row carries (enough to rank, pack and render it).
ROW_COLUMNS = ("id", "kind", "content", "summary", "summary_by", "gist", "tier", "importance", "strength",
               "last_accessed_at", "occurred_at", "session_id", "content_hash", "valid_from", "speaker", "role")


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
    # When the question is asked: what its time phrases ("a week ago") are read against (retrieval.timeframe).
    asked_at: datetime | None = None
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


@dataclass(frozen=True)
class Prepared:
    terms: list[str]  # the query's lexemes
    planner: tuple[str, str]  # enable_bitmapscan, enable_seqscan as they were (a graph scan puts them back)


def prepare(session: Session, tenant_id: uuid.UUID, query_text: str, settings: RetrievalSettings) -> Prepared:
    """One round trip: HNSW scan settings for this transaction, the planner switches a graph scan turns
    off (to put them back), and the query's lexemes (parsed in the tenant's full-text language)."""
    row = sqltext.rows(session, f"""
        SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true) AS iterative,
               set_config('hnsw.ef_search', %(p_ef)s, true) AS ef,
               set_config('plan_cache_mode', 'force_custom_plan', true) AS plans,
               current_setting('enable_bitmapscan') AS bitmap, current_setting('enable_seqscan') AS seq,
               tsvector_to_array(to_tsvector({language.QUERY_CONFIG_SQL}, %(p_q)s)) AS terms""",
        # pgvector 0.8 iterative scan: keep walking the graph until enough rows pass the scope filters.
        # Custom plans: psycopg prepares a statement after 5 runs, and Postgres may then switch to a generic
        # plan that knows neither the query vector nor the terms (measured: 8 ms custom vs 170 ms generic).
        p_ef=str(max(int(settings.hnsw_ef_search), int(settings.dense_k))), p_q=query_text, p_tenant=tenant_id)[0]
    terms = list(row.terms or [])
    if len(terms) > MAX_QUERY_TERMS:  # a pasted document: its rarest words say what it is about
        terms = fulltext.rarest(session, tenant_id, terms, MAX_QUERY_TERMS)
    return Prepared(sorted(terms), (row.bitmap, row.seq))


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


@dataclass(frozen=True)
class Nearest:
    """One nearest-neighbour list: the k rows of the scope with the smallest `column operator vector`."""

    vector: str  # the query vector in pgvector's text form, cast to `cast` in the statement
    k: int
    column: str = "embedding"
    operator: str = "<=>"
    cast: str = "vector"


_GRAPH_ON = ("SELECT set_config('enable_bitmapscan', 'off', true) AS bitmap, "
             "set_config('enable_seqscan', 'off', true) AS seq")
_GRAPH_OFF = ("SELECT set_config('enable_bitmapscan', %(p_bitmap)s, true) AS bitmap, "
              "set_config('enable_seqscan', %(p_seq)s, true) AS seq")


def _nearest(session: Session, where: Where, lists: Sequence[Nearest], *, graph: bool, planner: tuple[str, str],
             ) -> list[list[tuple[uuid.UUID, float]]]:
    """Each list's k nearest (id, distance) in the scope, all in one round trip. With `graph`, bitmap and
    sequential scans are off for these statements (then put back, in the same round trip), which leaves the
    HNSW index scan as the planner's choice. (An error aborts the transaction, so nothing after it runs
    either way.)"""
    statements: list[sqltext.Statement] = [(_GRAPH_ON, None, {})] if graph else []
    for n in lists:
        statements.append((
            f"SELECT memories.id, memories.{n.column} {n.operator} %(p_vec)s::{n.cast} AS d FROM memories "
            f"WHERE {where.sql} AND memories.{n.column} IS NOT NULL "
            f"ORDER BY memories.{n.column} {n.operator} %(p_vec)s::{n.cast} LIMIT %(p_k)s",
            where, {"p_vec": n.vector, "p_k": int(n.k)}))
    if graph:
        statements.append((_GRAPH_OFF, None, {"p_bitmap": planner[0], "p_seq": planner[1]}))
    found = sqltext.pipelined(session, statements)
    return [[(row.id, float(row.d)) for row in rows] for rows in (found[1:-1] if graph else found)]


def _with_archived(session: Session, scope: MemoryScope, vector: list[float], clauses: list[Any],
                   found: list[tuple[uuid.UUID, float]], k: int) -> list[tuple[uuid.UUID, float]]:
    """The nearest `k` (id, cosine distance) of the hot index's hits and the archived vectors' (which
    left that index for the binary-quantized one, lifecycle.archive), by exact cosine distance."""
    archived = archive.search_archived(session, scope, vector, k, extra_where=clauses)
    merged = dict(found)
    for hit in archived:
        merged[hit.id] = min(hit.distance, merged.get(hit.id, hit.distance))
    return sorted(merged.items(), key=lambda kv: (kv[1], kv[0]))[:k]


def _spread_to_neighbours(session: Session, scope: MemoryScope, where: Where,
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
    ordered = sorted(pairs, key=lambda pair: (pair[0].int, pair[1].int))  # a fixed order of float sums
    spread = adjacency.spread_to_neighbours(scores, ordered, settings.sparse_neighbour_weight)
    return sorted(spread.items(), key=lambda kv: (-kv[1], kv[0]))[: settings.sparse_k]


@dataclass(frozen=True)
class Lists:
    """The two candidate lists: (id, cosine distance) nearest first, (id, score) best first."""

    dense: list[tuple[uuid.UUID, float]] | None  # None: no dense side (sparse mode, or no vector)
    sparse: list[tuple[uuid.UUID, float]] | None  # after the neighbour spread; None: no full-text side
    own_bm25: dict[uuid.UUID, float]  # each memory's own BM25, before the spread
    learned: list[tuple[uuid.UUID, float]] | None = None  # (id, SPLADE inner product) best first; None: off
    timed: list[tuple[uuid.UUID, float]] | None = None  # nearest of the query's time window; None: no window
    vector: list[float] | None = None  # the query's vector and SPLADE terms (sparsevec text), for complete_pool
    learned_query: str | None = None


def sparse_list(session: Session, scope: MemoryScope, clauses: list[Any], where: Where, terms: list[str],
                filters: SearchFilters, settings: RetrievalSettings,
                ) -> tuple[list[tuple[uuid.UUID, float]] | None, dict[uuid.UUID, float]]:
    if not terms or settings.sparse_k <= 0:
        return None, {}
    n_scope = _scope_size(session, scope, filters, clauses, settings)
    own = fulltext.top(session, scope.tenant_id, where, terms, n_scope, settings)
    return _spread_to_neighbours(session, scope, where, own, settings), dict(own)


def _dense_spec(vector: list[float] | None, settings: RetrievalSettings) -> Nearest | None:
    return None if vector is None or settings.dense_k <= 0 else Nearest(sqltext.vector_text(vector), settings.dense_k)


def _learned_spec(terms: SparseVector | None, dim: int, settings: RetrievalSettings) -> Nearest | None:
    if not terms or settings.learned_sparse_k <= 0:
        return None
    return Nearest(sparse_text(terms, dim), settings.learned_sparse_k, "sparse_embedding", "<#>", "sparsevec")


def nearest_lists(session: Session, scope: MemoryScope, clauses: list[Any], where: Where, vector: list[float] | None,
                  terms: SparseVector | None, dim: int, filters: SearchFilters, settings: RetrievalSettings,
                  planner: tuple[str, str],
                  ) -> tuple[list[tuple[uuid.UUID, float]] | None, list[tuple[uuid.UUID, float]] | None]:
    """The dense list ((id, cosine distance) nearest first; None without a vector or with dense_k 0) and the
    learned-sparse list ((id, SPLADE inner product) best first; None without query terms or with
    learned_sparse_k 0, [] for a query with no term), both statements in one round trip.

    Large scopes walk the HNSW graphs (`vector_cosine_ops`, `sparsevec_ip_ops`; `<#>` is the negative inner
    product), small ones compare every vector of the scope (see _prefer_graph)."""
    specs = {name: spec for name, spec in (("dense", _dense_spec(vector, settings)),
                                           ("learned", _learned_spec(terms, dim, settings))) if spec is not None}
    found: dict[str, list[tuple[uuid.UUID, float]]] = {}
    if specs:
        graph = _prefer_graph(session, scope, filters, clauses, settings)
        found = dict(zip(specs, _nearest(session, where, list(specs.values()), graph=graph, planner=planner),
                         strict=True))
    dense = found.get("dense")
    if dense is not None and filters.include_archived:
        dense = _with_archived(session, scope, vector, clauses, dense, settings.dense_k)  # type: ignore[arg-type]
    learned = None if terms is None or settings.learned_sparse_k <= 0 else [
        (i, -d) for i, d in found.get("learned", []) if d < 0]  # no term shared with the query: 0, not a match
    return dense, learned


def timed_list(session: Session, clauses: list[Any], vector: list[float] | None, window: Window | None,
               settings: RetrievalSettings, planner: tuple[str, str]) -> list[tuple[uuid.UUID, float]] | None:
    """The memories nearest the query among those that occurred in its time window ((id, cosine distance)), or
    None without a window. The planner is left to choose: a narrow window's few rows through ix_memories_occurred,
    compared exactly (a graph walk filtered to them would visit most of the graph), a wide one through HNSW."""
    if window is None or vector is None or settings.time_k <= 0:
        return None
    where = sqltext.where_of(session, [*clauses, Memory.occurred_at >= window.start, Memory.occurred_at < window.end])
    spec = Nearest(sqltext.vector_text(vector), settings.time_k)
    return _nearest(session, where, [spec], graph=False, planner=planner)[0]


def dense_list(session: Session, scope: MemoryScope, clauses: list[Any], where: Where, vector: list[float] | None,
               filters: SearchFilters, settings: RetrievalSettings, planner: tuple[str, str],
               ) -> list[tuple[uuid.UUID, float]] | None:
    return nearest_lists(session, scope, clauses, where, vector, None, 0, filters, settings, planner)[0]


def candidates(session: Session, where: Where, lists: Lists, settings: RetrievalSettings,
               now: datetime) -> tuple[list[Ranked], dict[uuid.UUID, Any]]:
    """The candidate rows of both lists in one statement (inside `where`, which carries the caller's
    scope), each with its dense and sparse score and its vector (for near-duplicates and MMR, compared
    in numpy: pairwise in SQL cost ~10 ms for 200).

    Plain rows, not ORM objects: the context builder needs only these columns, and building ~100
    entities per request costs more than the SQL; /v1/search loads full rows for the hits it returns.
    """
    dense, sparse, learned, timed = lists.dense or [], lists.sparse or [], lists.learned or [], lists.timed or []
    if not dense and not sparse and not learned and not timed:
        return [], {}
    # The time list adds ids only (its ranks are its order), and only when there is one: most queries name no time.
    timed_ids = "UNION SELECT unnest(%(p_timed_ids)s::uuid[])" if timed else ""
    fill_learned = settings.complete_pool and lists.learned is not None and lists.learned_query is not None
    learned_fill = ("CASE WHEN learned.ls IS NULL THEN -(m.sparse_embedding <#> %(p_learned_q)s::sparsevec) END"
                    if fill_learned else "NULL::float8")
    found = sqltext.rows(session, f"""
        WITH dense(id, d) AS (SELECT * FROM unnest(%(p_dense_ids)s::uuid[], %(p_dense_d)s::float8[])),
             sparse(id, s) AS (SELECT * FROM unnest(%(p_sparse_ids)s::uuid[], %(p_sparse_s)s::float8[])),
             learned(id, ls) AS (SELECT * FROM unnest(%(p_learned_ids)s::uuid[], %(p_learned_s)s::float8[])),
             ids AS (SELECT id FROM dense UNION SELECT id FROM sparse UNION SELECT id FROM learned {timed_ids})
        SELECT {sqltext.select_list("m", ROW_COLUMNS)}, dense.d, sparse.s, learned.ls, {learned_fill} AS ls_fill,
               length(m.search_tsv) AS lexemes,
               m.embedding::halfvec AS vector
        FROM ids JOIN memories m ON m.id = ids.id
        LEFT JOIN dense ON dense.id = ids.id LEFT JOIN sparse ON sparse.id = ids.id
        LEFT JOIN learned ON learned.id = ids.id
        WHERE {where.on("m")}""", where,
        p_dense_ids=[i for i, _ in dense], p_dense_d=[float(v) for _, v in dense],
        p_sparse_ids=[i for i, _ in sparse], p_sparse_s=[float(v) for _, v in sparse],
        p_learned_ids=[i for i, _ in learned], p_learned_s=[float(v) for _, v in learned],
        p_timed_ids=[i for i, _ in timed], p_learned_q=lists.learned_query)
    ranked: list[Ranked] = []
    memories: dict[uuid.UUID, Any] = {}
    for row in found:
        memories[row.id] = row
        ranked.append(Ranked(
            id=row.id, dense_similarity=None if row.d is None else 1.0 - float(row.d),
            sparse_score=None if row.s is None else float(row.s),
            learned_sparse_score=float(row.ls) if row.ls is not None else (
                float(row.ls_fill) if row.ls_fill is not None and row.ls_fill > 0 else None),
            retention=retention_at(now, row.last_accessed_at, row.strength, settings.tau0_seconds),
            importance=float(row.importance), content_hash=row.content_hash, embedding=_unpacked(row.vector),
            speaker=label(row.speaker), role=label(row.role), session_id=row.session_id,
            lexemes=int(row.lexemes or 0), sparse_raw=lists.own_bm25.get(row.id),
        ))
    if settings.complete_pool and lists.dense is not None and lists.vector is not None:
        query = np.asarray(lists.vector, dtype=np.float32)
        query /= max(float(np.linalg.norm(query)), 1e-9)
        for c in ranked:
            if c.dense_similarity is None and c.embedding is not None:
                c.dense_similarity = float(c.embedding @ query) / max(float(np.linalg.norm(c.embedding)), 1e-9)
    for position, c in enumerate(sorted((c for c in ranked if c.dense_similarity is not None),
                                        key=lambda c: (-c.dense_similarity, c.id)), start=1):  # type: ignore[operator]
        c.dense_rank = position
    for position, c in enumerate(sorted((c for c in ranked if c.sparse_score is not None),
                                        key=lambda c: (-c.sparse_score, c.id)), start=1):  # type: ignore[operator]
        c.sparse_rank = position
    for position, c in enumerate(sorted((c for c in ranked if c.learned_sparse_score is not None),
                                        key=lambda c: (-c.learned_sparse_score, c.id)), start=1):  # type: ignore[operator]
        c.learned_sparse_rank = position
    timed_rank = {memory_id: position for position, (memory_id, _) in enumerate(timed, start=1)}
    for c in ranked:
        c.time_rank = timed_rank.get(c.id)
    return ranked, memories


def label(value: object) -> str | None:
    """A speaker or role as the writer set it in metadata (not a string, "" and whitespace: none)."""
    return value.strip() or None if isinstance(value, str) else None


def _unpacked(sent: bytes | None) -> np.ndarray | None:
    """A halfvec's binary form: int16 dimensions, int16 unused, then big-endian float16s (half the bytes
    of the full vector; near-duplicates at cosine 0.97 do not need more precision)."""
    return None if sent is None else np.frombuffer(sent, dtype=">f2", offset=4).astype(np.float32)


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
    vector = embedder.embed_query(query_text).tolist()
    with _QV_LOCK:
        _QV_CACHE[key] = vector
        while len(_QV_CACHE) > _QV_SIZE:
            _QV_CACHE.popitem(last=False)
    return vector


def _hybrid_order(ranked: list[Ranked], settings: RetrievalSettings, named: frozenset[str]) -> list[Ranked]:
    return with_priors(with_session_context(fuse(ranked, settings, named), settings), settings, named)


# The query is embedded on one of these threads while the full-text side runs on the request's thread:
# both wait mostly outside Python (ONNX Runtime or torch; the database), so the two overlap on two cores.
_EMBEDDING = ThreadPoolExecutor(max_workers=4, thread_name_prefix="memsvc-query-embed")


def _timed_query_terms(encoder: SparseEncoder, query_text: str) -> tuple[SparseVector, float]:
    started = time.perf_counter()
    terms = encoder.encode_query(query_text)
    return terms, (time.perf_counter() - started) * 1e3


def _timed_query_vector(embedder: Embedder, query_text: str) -> tuple[list[float], float]:
    started = time.perf_counter()
    vector = query_vector(embedder, query_text)
    return vector, (time.perf_counter() - started) * 1e3


def search(
    session: Session, scope: MemoryScope, embedder: Embedder, query_text: str, filters: SearchFilters,
    limit: int, settings: RetrievalSettings = DEFAULT_SETTINGS, *, mode: Mode = "hybrid",
    now: datetime | None = None, learned_encoder: SparseEncoder | None = None,
) -> SearchOutcome:
    """Ranked, de-duplicated memories for a query: candidates -> fusion -> MMR -> the first `limit`."""
    now = now or datetime.now(UTC)
    t0 = time.perf_counter()
    clauses = [*scope.where(), *filter_clauses(filters, now)]  # raises on bad filters before any work starts
    embedding: Future[tuple[list[float], float]] | None = (
        _EMBEDDING.submit(_timed_query_vector, embedder, query_text) if mode != "sparse" else None)
    # The learned-sparse query terms on another thread too (hybrid only; the configured model unless given).
    learned_encoder = (learned_encoder or get_sparse_encoder()) if mode == "hybrid" and settings.learned_sparse_k > 0 \
        else None
    learning: Future[tuple[SparseVector, float]] | None = (
        _EMBEDDING.submit(_timed_query_terms, learned_encoder, query_text) if learned_encoder is not None else None)
    # Enough candidates for `limit` hits: the nearest neighbours alone provide them in hybrid mode, where
    # full text adds its best sparse_k (LoCoMo contexts of 100 candidates: 60 full-text matches rather than
    # 100 left ER@512/1024 at 72.2/79.5 against 71.9/79.4, and read 40% fewer rows); a one-signal mode
    # takes `limit` of its own.
    pool_settings = settings.with_(dense_k=max(settings.dense_k, limit),
                                   sparse_k=max(settings.sparse_k, limit) if mode == "sparse" else settings.sparse_k)
    where = sqltext.where_of(session, clauses)
    steps: dict[str, float] = {}  # each SQL step's ms (the breakdown of sql_ms that bench/latency.py prints)
    mark = time.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        now_ = time.perf_counter()
        steps[name] = steps.get(name, 0.0) + (now_ - mark) * 1e3
        mark = now_

    prepared = prepare(session, scope.tenant_id, query_text, pool_settings)
    step("prepare_ms")
    sparse, own_bm25 = (None, {}) if mode == "dense" else sparse_list(
        session, scope, clauses, where, prepared.terms, filters, pool_settings)
    step("fulltext_ms")
    waited = time.perf_counter()
    vector, embed_ms = embedding.result() if embedding is not None else (None, 0.0)
    query_terms, learned_ms = learning.result() if learning is not None else (None, 0.0)
    waited = time.perf_counter() - waited
    mark = time.perf_counter()
    # Both nearest-neighbour statements in one round trip.
    dense, learned = nearest_lists(session, scope, clauses, where, vector, query_terms,
                                   learned_encoder.dim if learned_encoder is not None else 0, filters,
                                   pool_settings, prepared.planner)
    step("nearest_sql_ms")
    learned_query = (sparse_text(query_terms, learned_encoder.dim)
                     if settings.complete_pool and query_terms and learned_encoder else None)
    window = window_of(query_text, filters.asked_at or now) if mode == "hybrid" and settings.time_k > 0 else None
    timed = timed_list(session, clauses, vector, window, settings, prepared.planner)
    if window is not None:
        step("time_window_sql_ms")

    def ranked_for(dense: list[tuple[uuid.UUID, float]] | None,
                   dense_query: list[float] | None) -> tuple[list[Ranked], dict[uuid.UUID, Any]]:
        found = candidates(session, where, Lists(dense, sparse, own_bm25, learned, timed, dense_query, learned_query),
                           pool_settings, now)
        step("rows_sql_ms")
        return found

    ranked, rows = ranked_for(dense, vector)
    named = named_in(query_text)
    ordered = _hybrid_order(ranked, settings, named) if mode == "hybrid" else rrf_only(ranked, mode)
    step("fuse_ms")
    if mode == "hybrid" and settings.prf_docs > 0 and vector is not None and ordered:
        # Pseudo-relevance feedback (Rocchio): move the query vector toward the best first-pass hits and
        # search again; finds turns that answer the question without sharing its words.
        vecs = [c.embedding for c in ordered[: settings.prf_docs] if c.embedding is not None]
        if vecs:
            moved = np.asarray(vector, dtype=np.float32) + settings.prf_weight * np.mean(vecs, axis=0)
            moved_vector = (moved / max(float(np.linalg.norm(moved)), 1e-9)).tolist()
            ranked, rows = ranked_for(dense_list(session, scope, clauses, where, moved_vector, filters, pool_settings,
                                                 prepared.planner), moved_vector)
            ordered = _hybrid_order(ranked, settings, named)
    t1 = time.perf_counter()
    hits, duplicates = mmr(ordered, limit, settings)
    t2 = time.perf_counter()
    # The embedding ran beside the full-text statements: sql_ms leaves out only the wait for it.
    timings = {"embed_ms": embed_ms, "learned_sparse_encode_ms": learned_ms, "embed_wait_ms": waited * 1e3,
               "sql_ms": (t1 - t0 - waited) * 1e3,
               "rank_ms": (t2 - t1) * 1e3, **steps}
    return SearchOutcome(hits=hits, duplicates=duplicates, rows=rows, timings=timings)

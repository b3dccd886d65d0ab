"""BM25 over Postgres full text: the sparse candidate list of `search.candidates`.

Scored with BM25 rather than `ts_rank_cd`, because `ts_rank_cd` has no inverse document frequency: a
speaker's name in every turn would weigh as much as the one rare word that matters. Presence-only
(tf = 1): memories are short, and repeated words in them are rare and mostly noise.

Two ways to get the top `sparse_k`, by scope size:

- Small scopes (< sparse_exact_max_rows): exact. Every row holding any query term is scored, and the
  document frequencies are counted inside that pool (it holds every row with a query term, so that is
  the whole filtered scope's count). Cheap while the scope is small.
- Large scopes: document frequencies, collection size and lengths come from `lexeme_stats` /
  `text_stats`, recounted per tenant by maintenance (`refresh_text_stats`, run by the decay job); a
  lexeme too rare to be stored there is counted at query time (it is rare, so that is cheap). Then
  only rows that can reach the top k are read (MaxScore with length bounds): first every row holding
  one of the rarest terms (up to about sparse_pool_target rows), which gives a k-th score theta. A row
  holding none of the rare terms scores at most `length factor(its length) * sum of the idf of the
  terms it holds`; so among the others only rows holding enough of the remaining terms *and* short
  enough to beat theta are fetched, through a bitmap OR of the GIN index (which terms) and a (tenant,
  length) B-tree (how long). Rows holding more terms are fetched first, as they raise theta most; where
  theta is still too low to bound a large group, that group's k shortest rows come first (an index
  scan in length order), and a group whose rows all hold the same terms needs nothing more. Given the
  statistics the result is the exact BM25 top k; only the statistics are approximate (as of the last
  recount: a memory written since is found and scored like the others, but counts in no df).
Without statistics for the tenant (before its first maintenance run) large scopes use the exact path.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from memsvc.retrieval import sqltext
from memsvc.retrieval.settings import DEFAULT_SETTINGS, RetrievalSettings
from memsvc.retrieval.sqltext import Where

Scored = list[tuple[uuid.UUID, float]]


def tsquery_text(terms: list[str]) -> str:
    """An OR of exact lexemes, quoted so that nothing re-parses or re-stems them."""
    return " | ".join(_quote(t) for t in terms)


def _quote(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


# ---- near-stopwords from the planner's statistics (the exact path; the statistics path has its own df) --
_COMMON: dict[str, Any] = {"at": -1e9, "freqs": {}}
_COMMON_TTL_SECONDS = 300.0
_COMMON_LOCK = threading.Lock()


def common_lexemes(session: Session) -> dict[str, float]:
    """Share of all memories holding each of the most common lexemes, from the planner's statistics
    (pg_stats.most_common_elems of search_tsv, kept by ANALYZE / autovacuum; table-wide, not per tenant).
    Cached for a few minutes: statistics move slowly and this must not cost a query per search."""
    now = time.monotonic()
    if now - _COMMON["at"] < _COMMON_TTL_SECONDS:
        return _COMMON["freqs"]  # type: ignore[no-any-return]
    row = session.execute(text(
        "SELECT most_common_elems::text::text[] AS elems, most_common_elem_freqs AS freqs FROM pg_stats "
        "WHERE tablename = 'memories' AND attname = 'search_tsv' AND schemaname = current_schema()"
    )).first()
    freqs: dict[str, float] = {}
    if row is not None and row.elems and row.freqs:
        freqs = {e: float(f) for e, f in zip(row.elems, row.freqs, strict=False)}  # freqs carries 3 extra stats
    with _COMMON_LOCK:
        _COMMON.update(at=now, freqs=freqs)
    return freqs


def prune_common(terms: list[str], freqs: dict[str, float], max_freq: float) -> list[str]:
    """Drop near-stopwords (in more than max_freq of memories): BM25 gives them almost no weight, but
    each one can pull most of a large scope into the full-text pool. The rarest term always stays."""
    kept = [t for t in terms if freqs.get(t, 0.0) <= max_freq]
    return kept or [min(terms, key=lambda t: freqs.get(t, 0.0))]


def rarest(session: Session, tenant_id: uuid.UUID, terms: list[str], k: int,
           cap: int = DEFAULT_SETTINGS.sparse_df_count_cap) -> list[str]:
    """The k query terms in the fewest of the tenant's memories, ties to the longer term. For long queries:
    keeping the alphabetically first k terms of a pasted paragraph kept its "a..." words and lost what it
    was about. Document frequencies come from the tenant's recounted statistics; a term not in them (too
    rare to be kept, or no recount yet) is counted, up to `cap` rows (cheap: it is rare, or the tenant small)."""
    found = session.execute(text("""
        SELECT t.lexeme, coalesce(ls.df, (SELECT count(*) FROM (SELECT 1 FROM memories m WHERE m.tenant_id = :t
                                          AND m.search_tsv @@ t.q::tsquery LIMIT :cap) AS hits)) AS df
        FROM unnest(CAST(:terms AS text[]), CAST(:queries AS text[])) AS t(lexeme, q)
        LEFT JOIN lexeme_stats ls ON ls.tenant_id = :t AND ls.lexeme = t.lexeme"""),
        {"t": tenant_id, "terms": list(terms), "queries": [_quote(x) for x in terms], "cap": int(cap)})
    df = {row.lexeme: int(row.df) for row in found}
    return sorted(terms, key=lambda t: (df.get(t, 0), -len(t), t))[:k]


def idf(df: float, n: float) -> float:
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


# ---- small scopes: exact ----------------------------------------------------------------------------
def exact_top(session: Session, where: Where, terms: list[str], n_scope: int, settings: RetrievalSettings) -> Scored:
    """Exact BM25 over every row holding a query term, document frequencies counted in that pool."""
    if settings.sparse_common_freq < 1.0:
        terms = prune_common(terms, common_lexemes(session), settings.sparse_common_freq)
    params: dict[str, Any] = {f"p_q{i}": _quote(t) for i, t in enumerate(terms)}
    dfs = ", ".join(f"count(*) FILTER (WHERE v @@ %(p_q{i})s::tsquery) AS df{i}" for i in range(len(terms)))
    idf_sum = " + ".join(
        f"CASE WHEN v @@ %(p_q{i})s::tsquery THEN ln(1.0 + (greatest(%(p_n)s::float8, n) - df{i} + 0.5) "
        f"/ (df{i} + 0.5)) ELSE 0 END" for i in range(len(terms)))
    found = sqltext.rows(session, f"""
        WITH pool AS (SELECT memories.id, memories.search_tsv AS v, length(memories.search_tsv) AS len
                      FROM memories WHERE {where.sql} AND memories.search_tsv @@ %(p_any)s::tsquery
                      LIMIT %(p_pool)s),
             stats AS (SELECT count(*) AS n, avg(len) AS avglen, {dfs} FROM pool)
        SELECT pool.id, ({idf_sum}) * {_length_factor_sql("len", "greatest(avglen, 1.0)")} AS s
        FROM pool, stats ORDER BY s DESC, pool.id LIMIT %(p_k)s""", where,
        **params, p_any=tsquery_text(terms), p_pool=int(settings.sparse_pool_limit), p_n=float(n_scope),
        p_k=int(settings.sparse_k), p_k1=float(settings.bm25_k1), p_b=float(settings.bm25_b))
    return [(r.id, float(r.s)) for r in found]


def _length_factor(length: float, avg_len: float, settings: RetrievalSettings) -> float:
    """BM25's length normalisation with tf = 1 (`_length_factor_sql` is the same in SQL)."""
    k1, b = float(settings.bm25_k1), float(settings.bm25_b)
    return (k1 + 1) / (1 + k1 * (1 - b + b * length / avg_len))


def _length_factor_sql(length: str, avg_len: str) -> str:
    """BM25's length normalisation (tf = 1) as SQL over a length and a mean length expression."""
    k1, b = "%(p_k1)s::float8", "%(p_b)s::float8"
    return f"({k1} + 1) / (1 + {k1} * (1 - {b} + {b} * {length} / {avg_len}))"


# ---- large scopes: statistics + MaxScore --------------------------------------------------------------
@dataclass(frozen=True)
class Collection:
    docs: float  # N
    avg_len: float  # mean lexemes per memory
    len_quantiles: tuple[int, ...]  # memory lengths at percentiles 0..100 (estimates how many rows a cap keeps)
    df: dict[str, float]  # per query term


def collection(session: Session, tenant_id: uuid.UUID, where: Where, terms: list[str],
               settings: RetrievalSettings) -> Collection | None:
    """BM25 statistics for the query terms, in one statement; None if the tenant has none yet.

    N, df and lengths are the tenant's at the last recount, also for a scope narrowed by a key's user
    restriction or by filters (the usual global-statistics approximation). A term absent from the store
    was in fewer than `min_df` memories then, or is new: it is counted in the scope now (it is rare, so
    that is cheap; counting stops at sparse_df_count_cap rows)."""
    found = sqltext.rows(session, f"""
        SELECT t.lexeme, ls.df AS stored, ts.docs, ts.total_len, ts.len_quantiles,
               CASE WHEN ts.docs IS NOT NULL AND ls.df IS NULL THEN
                 (SELECT count(*) FROM (SELECT 1 FROM memories WHERE {where.sql}
                                        AND memories.search_tsv @@ t.q::tsquery LIMIT %(p_cap)s) AS hits)
               END AS counted
        FROM unnest(%(p_terms)s::text[], %(p_queries)s::text[]) AS t(lexeme, q)
        LEFT JOIN text_stats ts ON ts.tenant_id = %(p_tenant)s
        LEFT JOIN lexeme_stats ls ON ls.tenant_id = %(p_tenant)s AND ls.lexeme = t.lexeme""", where,
        p_terms=list(terms), p_queries=[_quote(x) for x in terms], p_tenant=tenant_id,
        p_cap=int(settings.sparse_df_count_cap))
    if not found or not found[0].docs or not found[0].len_quantiles:
        return None
    first = found[0]
    df = {r.lexeme: float(r.stored if r.stored is not None else (r.counted or 0)) for r in found}
    return Collection(docs=float(first.docs), avg_len=max(1.0, first.total_len / first.docs),
                      len_quantiles=tuple(first.len_quantiles), df=df)


def _longest(weight: float, theta: float, avg_len: float, settings: RetrievalSettings) -> float:
    """The longest memory whose length factor times `weight` still exceeds theta (inf: any length)."""
    if theta <= 0.0:
        return math.inf
    k1, b = float(settings.bm25_k1), float(settings.bm25_b)
    return ((k1 + 1) * weight / theta - 1 - k1 * (1 - b)) * avg_len / (k1 * b)


def _share_up_to(length: float, quantiles: tuple[int, ...]) -> float:
    return 1.0 if length == math.inf else sum(q <= length for q in quantiles) / len(quantiles)


Arm = tuple[list[tuple[str, ...]], float]  # (term sets, a row must hold all of one; longest length)


def _last(rest: list[str], settings: RetrievalSettings) -> int:
    """Number of terms per set in the last arm: as many as sparse_combo_terms and sparse_combo_clauses allow."""
    last = 1
    for m in range(2, min(settings.sparse_combo_terms, len(rest)) + 1):
        if math.comb(len(rest), m) > settings.sparse_combo_clauses:
            break
        last = m
    return last


def _arm(rest: list[str], m: int, last: int, weight: dict[str, float], theta: float, avg_len: float,
         settings: RetrievalSettings) -> Arm | None:
    """Arm m (m < last): the rows holding m or more of the `rest` terms that are short enough for the best
    m of them to beat theta; the last arm: rows with at least `last` terms, short enough for all of
    `rest` together. A row holding exactly j terms is in arm j (or the last), so nothing that can reach
    the top k is missed. None when no row of the arm can beat theta."""
    by_weight = sorted((weight[t] for t in rest), reverse=True)
    longest = _longest(sum(by_weight if m == last else by_weight[:m]), theta, avg_len, settings)
    if longest < 1.0:
        return None
    return list(itertools.combinations(rest, m)), longest if longest == math.inf else math.floor(longest + 1e-9)


def _arms(rest: list[str], weight: dict[str, float], theta: float, avg_len: float,
          settings: RetrievalSettings) -> list[Arm]:
    """Every arm that can still hold a row beating theta (see `_arm`)."""
    if not rest:
        return []
    last = _last(rest, settings)
    return [arm for m in range(1, last + 1) if (arm := _arm(rest, m, last, weight, theta, avg_len, settings))]


def _held(sets: list[tuple[str, ...]]) -> str:
    """A tsquery text: the row holds every term of one of the sets."""
    return " | ".join("(" + " & ".join(_quote(t) for t in c) + ")" for c in sets)


def _uniform(arm: Arm, rest: list[str]) -> bool:
    """Whether every row of the arm holds the same terms of `rest`: one set, and it is all of them.

    Then a row of it that holds none of the pooled rare terms scores (sum of the rest's idf) x its length
    factor, which falls with length alone, so the arm's k shortest rows (ties by id, as the final order
    breaks them) are its best k; a row that also holds a rare term was scored in full by the pool. The
    common tail case: one frequent term left after the pool, where reading the arm after its k shortest
    doubled the cost of the full-text step (~9 ms at 100k)."""
    sets = arm[0]
    return len(sets) == 1 and len(sets[0]) == len(rest)


def pruned_top(session: Session, where: Where, terms: list[str], stats: Collection,
               settings: RetrievalSettings) -> Scored:
    """The BM25 top k under `stats`, reading only rows that can be in it (see the module docstring)."""
    n = stats.docs
    kept = [t for t in terms if stats.df[t] <= settings.sparse_common_freq * n]  # near-stopwords out
    terms = kept or [min(terms, key=lambda t: stats.df[t])]
    weight = {t: idf(stats.df[t], n) for t in terms}
    order = sorted(terms, key=lambda t: (stats.df[t], t))  # rarest first
    k = settings.sparse_k
    scoring: dict[str, Any] = {"p_k": int(k), "p_k1": float(settings.bm25_k1), "p_b": float(settings.bm25_b),
                               "p_avg": float(stats.avg_len)}
    for i, t in enumerate(terms):
        scoring.update({f"p_q{i}": _quote(t), f"p_w{i}": weight[t]})
    score = "(" + " + ".join(f"CASE WHEN memories.search_tsv @@ %(p_q{i})s::tsquery THEN %(p_w{i})s::float8 ELSE 0 END"
                             for i in range(len(terms))) + ") * " + \
        _length_factor_sql("length(memories.search_tsv)", "%(p_avg)s::float8")

    def scored(condition: str, order_by: str, **params: Any) -> Scored:
        found = sqltext.rows(session, f"SELECT memories.id, {score} AS s FROM memories WHERE {where.sql} "
                                      f"AND ({condition}) ORDER BY {order_by} LIMIT %(p_k)s", where,
                             **scoring, **params)
        return [(r.id, float(r.s)) for r in found]

    def run(arms: list[Arm]) -> Scored:
        conditions, params = [], {}
        for j, (sets, longest) in enumerate(arms):
            params[f"p_h{j}"] = _held(sets)
            held = f"memories.search_tsv @@ %(p_h{j})s::tsquery"
            if longest != math.inf:
                held += f" AND length(memories.search_tsv) <= %(p_l{j})s::int"
                params[f"p_l{j}"] = int(longest)
            conditions.append(f"({held})")
        return scored(" OR ".join(conditions), "s DESC, memories.id", **params)

    def rows_of(arms: list[Arm]) -> float:  # expected rows, terms taken as independent
        return sum(n * math.prod(stats.df[t] / n for t in c) * _share_up_to(longest, stats.len_quantiles)
                   for sets, longest in arms for c in sets)

    def shortest(arm: Arm) -> Scored:  # the k shortest rows of an arm: BM25 favours short memories
        return scored("memories.search_tsv @@ %(p_h)s::tsquery", "length(memories.search_tsv), memories.id",
                      p_h=_held(arm[0]))

    def merged(*lists: Scored) -> Scored:
        best: dict[uuid.UUID, float] = {}
        for found in lists:
            best.update(found)
        return sorted(best.items(), key=lambda r: (-r[1], r[0]))[:k]

    e, pooled = 1, stats.df[order[0]]
    while e < len(order) and pooled + stats.df[order[e]] <= settings.sparse_pool_target:
        pooled += stats.df[order[e]]
        e += 1
    rest = order[e:]
    found = run([([(t,) for t in order[:e]], math.inf)])
    last = _last(rest, settings) if rest else 0
    # Arms with more terms per row first: they are small and their rows score high, which raises theta
    # and so shortens the length bound of the next (larger) arms.
    for m in range(last, 0, -1):
        theta = found[k - 1][1] if len(found) >= k else 0.0
        arm = _arm(rest, m, last, weight, theta, stats.avg_len, settings)
        if arm is not None and rows_of([arm]) > settings.sparse_pool_target:
            # Theta is too low to bound this arm well: its k shortest rows (an index scan in length
            # order) raise it first.
            found = merged(found, shortest(arm))
            if _uniform(arm, rest):
                continue  # its k shortest are its best k: reading the rest of it cannot change the top k
            theta = found[k - 1][1] if len(found) >= k else 0.0
            arm = _arm(rest, m, last, weight, theta, stats.avg_len, settings)
        if arm is not None:
            found = merged(found, run([arm]))
    return found


def top(session: Session, tenant_id: uuid.UUID, where: Where, terms: list[str], n_scope: int,
        settings: RetrievalSettings) -> Scored:
    """The sparse candidate list: (memory id, BM25 score), best first, at most sparse_k."""
    if not terms or settings.sparse_k <= 0:
        return []
    if n_scope >= settings.sparse_exact_max_rows:
        stats = collection(session, tenant_id, where, terms, settings)
        if stats is not None:
            return pruned_top(session, where, terms, stats, settings)
    return exact_top(session, where, terms, n_scope, settings)


# ---- maintenance ---------------------------------------------------------------------------------------
def refresh_text_stats(session: Session, tenant_id: uuid.UUID,
                       min_df: int = DEFAULT_SETTINGS.sparse_stats_min_df) -> dict[str, Any]:
    """Recount one tenant's BM25 statistics (the memories a default search sees: not archived, not
    superseded). One transaction: searches see the old numbers until it commits. Serialised per tenant
    (two recounts racing would both insert the same lexemes)."""
    started = time.perf_counter()
    params = {"t": tenant_id, "min_df": max(1, int(min_df))}
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('text_stats:' || :t, 0))"), params)
    visible = "m.tenant_id = :t AND m.tier <> 'archived' AND m.superseded_by IS NULL"
    session.execute(text("DELETE FROM lexeme_stats WHERE tenant_id = :t"), params)
    lexemes = session.execute(text(
        "INSERT INTO lexeme_stats (tenant_id, lexeme, df) "
        "SELECT :t, lexeme, count(*) FROM memories m CROSS JOIN LATERAL unnest(tsvector_to_array(m.search_tsv)) "
        f"AS lexeme WHERE {visible} GROUP BY lexeme HAVING count(*) >= :min_df"), params).rowcount
    row = session.execute(text(
        "SELECT count(*) AS docs, coalesce(sum(length(m.search_tsv)), 0) AS total_len, "
        "percentile_disc("
        "  (SELECT array_agg(p / 100.0) FROM generate_series(0, 100) AS p)) WITHIN GROUP "
        f"  (ORDER BY length(m.search_tsv)) AS quantiles FROM memories m WHERE {visible}"),
        params).one()
    session.execute(text(
        "INSERT INTO text_stats (tenant_id, docs, total_len, min_df, len_quantiles, refreshed_at) "
        "VALUES (:t, :docs, :total_len, :min_df, :quantiles, now()) ON CONFLICT (tenant_id) DO UPDATE "
        "SET docs = EXCLUDED.docs, total_len = EXCLUDED.total_len, "
        "min_df = EXCLUDED.min_df, len_quantiles = EXCLUDED.len_quantiles, refreshed_at = EXCLUDED.refreshed_at"),
        {**params, "docs": int(row.docs), "total_len": int(row.total_len),
         "quantiles": list(row.quantiles or [])})
    return {"docs": int(row.docs), "lexemes": int(lexemes or 0),
            "seconds": round(time.perf_counter() - started, 3)}

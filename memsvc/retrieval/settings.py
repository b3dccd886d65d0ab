"""Every weight and limit of retrieval (search, fusion, MMR, context packing) in one object.

Nothing in memsvc.retrieval hard-codes a tuning number: search, rank and context all read a
`RetrievalSettings`, so a benchmark or a tenant can change one field and know it reaches every step.
The defaults are the `general` recipe; named recipes (`recipes.py`) are these settings with a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

FIDELITIES = ("verbatim", "summary", "excerpt", "gist")
FUSIONS = ("rrf", "scores")


def _fidelity_values() -> dict[str, float]:
    # What a memory is worth in a context at each fidelity, as a share of its full value. The built-in
    # chat-turn summary keeps a turn's statements in ~64% of its tokens; a gist is a reminder that the
    # memory exists. LoCoMo (8 conversations), summary 0.8 -> 0.9: ER@512 71.3 -> 72.9, ER@1024
    # 78.4 -> 79.6, AC -0.5 / -0.2; 0.95 gains more ER (74.0 / 80.4) but loses 1.9 AC@512: answers
    # start to fall out of summarised top hits.
    # "tokens": a memory as its memory-token vectors for a local model (only verified sets, which decode to
    # the exact text, and only where the tenant's memory-token policy opts in). Worth little: in the
    # reading test (docs/memtokens.md) SmolLM2 answered 0/8 questions from the spliced vectors, as from
    # nothing, against 8/8 from the text; it recites them rather than reads them. Above 0 so an opted-in
    # tenant gets them where no text fits, below a gist so any text form the budget allows wins.
    # "excerpt": the sentences of a long memory that hold the query's terms, gaps marked (retrieval/excerpt.py),
    # made per request. It finds what the question's words point at, not what its ordinals or hypernyms do, so
    # it is worth well below a summary: taken where nothing fuller fits. LongMemEval-S dev, 60 questions (24 not
    # used to choose), ER@1024/2048/4096 and short-answer AC@1024: off 81.5/87.0/95.4, AC 71.4; 0.85 77.8/87.0/
    # 95.4 (held-out 24: -6.7 at 1,024: cheap excerpts of long replies crowd out short user turns); 0.6
    # 81.5/87.0/94.4, AC 76.2; 0.5 the same within a turn. LoCoMo: no turn is long enough to have one.
    return {"verbatim": 1.0, "summary": 0.9, "excerpt": 0.6, "gist": 0.35, "tokens": 0.1}


@dataclass(frozen=True)
class RetrievalSettings:
    # --- candidates (SQL) ---------------------------------------------------------------------
    dense_k: int = 60  # nearest neighbours taken from the HNSW index
    sparse_k: int = 60  # best full-text matches taken (hybrid: whatever the limit; full text alone: at least limit)
    # Best learned-sparse (SPLADE, memsvc.sparse_encoder) matches by inner product, a third list; 0 = off
    # (also off when no sparse model is configured). Hybrid mode only.
    learned_sparse_k: int = 0
    hnsw_ef_search: int = 100
    # Walk the HNSW graph (rather than let the planner compare every vector in scope) once the scope has
    # this many memories and is at least this share of the table (see search._prefer_graph).
    graph_scan_min_rows: int = 10_000
    graph_scan_min_share: float = 0.02
    # A scope the planner estimates at this many memories or more is not counted (its size only picks
    # plans, and BM25's N before the tenant's full-text statistics exist): counting 100k rows is ~90 ms.
    scope_estimate_min_rows: int = 50_000
    # Full text ranks every row that matches any query term (BM25 needs them all for document
    # frequencies); past this many matches the pool is cut (latency bound for huge scopes).
    sparse_pool_limit: int = 20_000
    # Query terms found in more than this share of all memories (planner statistics) are left out of
    # full text: near-stopwords, worth ~nothing to BM25 but able to pull a whole scope into the pool.
    sparse_common_freq: float = 0.2
    # Large scopes (at least this many memories) take BM25's document frequencies from the per-tenant
    # statistics that maintenance recounts (retrieval/fulltext.py) instead of counting them per query.
    sparse_exact_max_rows: int = 10_000
    # ...and score only the memories that can reach the top sparse_k: first those holding the rarest
    # terms (up to about this many rows), then those holding enough of the other terms, and short
    # enough, to beat the k-th score found (sets of up to sparse_combo_terms terms, at most
    # sparse_combo_clauses sets per group; a group expected to be larger than sparse_pool_target rows
    # first has its shortest rows read, which raises the k-th score and so shrinks the group). The result
    # is the same top k whatever the target; it moves only the cost: at 100k memories, 200 queries, the
    # full-text step took p95 12.5 ms at 4,000, 16.4 at 2,000, 19-22 at 1,000 and 8,000.
    sparse_pool_target: int = 4_000
    sparse_combo_terms: int = 3
    sparse_combo_clauses: int = 24
    # Lexemes in fewer memories than this are not stored in the statistics (counted when queried, up to
    # sparse_df_count_cap rows: a lexeme that was rare at the last recount is cheap to count).
    sparse_stats_min_df: int = 5
    sparse_df_count_cap: int = 2_000
    bm25_k1: float = 1.2
    bm25_b: float = 0.75

    # A query's time phrase ("a week ago", "last Friday", "in March": retrieval.timeframe, read against the request's
    # asked_at) adds the time_k memories nearest the query among those of that time as one more RRF list, weighted
    # time_weight on top of the others (a bonus: no memory is filtered out). 0 = off, the default: it ranks by when a
    # memory was written, and people often tell later what happened then ("a few months ago my car did 30 mpg",
    # said in May). LongMemEval-S, 20 temporal and multi-session questions: ER@1024/2048 67.3/75.0 -> 63.5/76.9
    # with time_k 20 (weights 0.25-1 alike), R@10 51.9 -> 48.1; LoCoMo (absolute dates only) +0.2 ER@1024.
    time_k: int = 0
    time_weight: float = 1.0

    # Pseudo-relevance feedback: 0 = off; else the query vector moves toward the first-pass top hits.
    prf_docs: int = 0
    prf_weight: float = 0.5

    # --- fusion -------------------------------------------------------------------------------
    # Score every candidate on the dense and learned-sparse lists it was not found by (its cosine from the vector
    # it is fetched with anyway, its SPLADE product in the same statement), so a memory full text found ranks on
    # the vector side by its real similarity instead of counting nothing there.
    complete_pool: bool = False
    # "rrf": each list adds weight / (rrf_k + rank); "scores": each adds weight x its score scaled to 0..1 over the
    # candidates (cosine min-max, BM25 and SPLADE over their best), so how much better the first hit is counts too.
    # Both off in every recipe: on LoCoMo dev `general` ER@512/1024 63.7/73.1 -> 64.7/73.9 (R@10 61.7 -> 63.4)
    # with both, 63.4/72.6 with the complete pool alone, `conversation` 78.3 -> 77.1 at 1,024 (its priors are in
    # RRF units); on LongMemEval-S (36 questions) `general` ER@1024/2048/4096 82.5/88.9/96.8 -> 77.8/88.9/93.7.
    fusion: str = "rrf"
    rrf_k: int = 20  # LoCoMo: 20 beat 60 by 1.5 points of ER@1024 (the top ranks matter most)
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    learned_sparse_weight: float = 1.0  # the learned-sparse list's RRF weight (when learned_sparse_k > 0)
    # Added to the (0..1-normalised) relevance: small, so they order near-ties and do not
    # override relevance. Retention is the forgetting curve's R, importance the stored 0..1.
    # Conversation signals, all off here (the `general` recipe); the `conversation` recipe
    # (memsvc/retrieval/recipes.py) turns them on, with what each gained on LoCoMo. A memory's speaker and
    # role are its metadata `speaker` / `role`, never parsed from its text.
    # A turn spoken by the one person the query names, with a full-text match: relevance x (1 + this).
    speaker_boost: float = 0.0
    # A turn's BM25 plus this share of its session neighbours' (search._spread_to_neighbours).
    sparse_neighbour_weight: float = 0.0
    # Session context: + weight x mean score of the best `session_top` candidates of the same session.
    session_weight: float = 0.0
    session_top: int = 3
    # Priors on top of the fused score (rank.with_priors; 0 turns one off), in its units (about 0..1.5).
    # They reorder the candidate pool (dense top-k and full-text top-k), nothing outside it.
    length_weight: float = 0.0  # x ln(1 + distinct lexemes), turns with a speaker or role only
    other_speaker_penalty: float = 0.0
    session_text_weight: float = 0.0
    retention_weight: float = 0.05
    importance_weight: float = 0.05
    tau0_seconds: float = 30 * 86_400.0

    # --- near-duplicates / diversity (MMR) ----------------------------------------------------
    duplicate_threshold: float = 0.97  # cosine similarity above which a candidate is a near-duplicate
    mmr_lambda: float = 1.0  # 1.0 = relevance only (near-duplicates still removed); lower = more diverse

    # --- context builder ----------------------------------------------------------------------
    # Ranked candidates the packer considers (the dense list shrinks with it). 60 rather than 100: LoCoMo dev
    # (8 conversations) ER@512/1024 63.2/72.3 -> 63.0/72.8, LongMemEval-S (18 questions) 90.9/97.0/100.0 at
    # 1,024/2,048/4,096 either way; /v1/context at 100k p50/p95 56.6/75.4 -> 48.8/64.6 ms (fewer rows to fetch,
    # count and pack). An earlier run on 3 conversations had put 100 1.6 points ahead.
    context_candidates: int = 60
    rank_value_offset: float = 2.0  # packer weight of the hit at rank r: ((1 + c) / (r + c)) ** power
    # 1/rank-like: memories of very different lengths (notes, long assistant replies, short user turns) need
    # a curve that lets a few shorter hits outbid one long hit ranked above them. LongMemEval-S dev (60
    # questions, bench/longmemeval.py) ER@1024/2048/4096 75.0/78.7/85.2 at power 2 -> 80.6/85.2/90.7 at 1;
    # LoCoMo (8 conversations, short turns of similar length) ER@512/1024 61.8/70.7 -> 61.2/69.9. The
    # `conversation` recipe keeps 2 (there the odds of evidence fall ~10x from rank 3 to 15: +2.5 ER@1024).
    rank_value_power: float = 1.0
    fidelity_values: dict[str, float] = field(default_factory=_fidelity_values)
    # Fidelities derived on the fly (the configured summarizer, memsvc.llm.summarizer) for memories that
    # have none stored yet (written before their summary was made, or under an old summarizer). The
    # extractive summary is stored when a memory is written (memories.summary_by = "extractive"); it keeps
    # whole sentences only, and a text with nothing to drop has none (it is its own summary). Gists stay
    # stored-only: on the fly they cost 1 point of ER@1024 (they crowd out verbatim text). Stored
    # summaries and gists (lifecycle demotion, LLM) are always offered.
    derive_fidelities: tuple[str, ...] = ("summary",)
    # Query-focused excerpts of memories of at least excerpt_min_chars characters (0 = none): the sentences
    # holding the query's terms, at most excerpt_max_chars and excerpt_max_share of the text.
    excerpt_min_chars: int = 800
    excerpt_max_chars: int = 480
    excerpt_max_share: float = 0.4
    excerpt_candidates: int = 40  # only the most valuable long candidates (by packer worth) get one
    profile_limit: int = 20  # profile/core memories considered for every context
    profile_boost: float = 2.0  # value multiplier: the profile is what every answer needs
    # Neighbouring episodes (same session, adjacent in time) of the top hits join the candidates.
    # Off by default since search spreads full-text evidence to neighbours (sparse_neighbour_weight):
    # with it, adding the neighbours of the top hits costs 1.6 ER@1024 on LoCoMo (it was +1.9 without).
    neighbour_hits: int = 0
    neighbour_window: int = 1
    neighbour_weight: float = 0.5  # a neighbour's score = weight * its hit's score
    # Sources of a retrieved fact (derived_from links) join the candidates, and vice versa.
    link_weight: float = 0.7
    # Facts as pointers: a retrieved fact is replaced by its source episodes (at the fact's weight).
    facts_as_pointers: bool = False
    # An episode whose text starts with "[its own date]" is shown without it: its day header says it.
    strip_own_date: bool = True
    # Candidate lines are counted exactly, most valuable first, until their cheapest forms add up to this many
    # budgets; the rest get an estimate from their bytes (context._costed), counted only if chosen. LoCoMo:
    # 1.25, 2 and all-exact give the same ER@256-2048 (64.6/72.3/79.1/85.8) and AC within 0.1 point; at 100k
    # memories a 1,024-token context then tokenizes ~36 lines instead of ~120.
    exact_count_budgets: float = 1.25
    # After packing, at most this many left-out memories are added to fill the slack (then one recount).
    fill_attempts: int = 24

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")

    def with_(self, **changes: Any) -> RetrievalSettings:
        return replace(self, **changes)


DEFAULT_SETTINGS = RetrievalSettings()

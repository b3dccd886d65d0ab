"""Pure ranking policy: reciprocal-rank fusion with retention and importance, then MMR.

Plain values in, plain values out (no database), so every rule here is unit-tested on its own.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from memsvc.retrieval.settings import RetrievalSettings


@dataclass
class Ranked:
    """One candidate with the signals that found it and the score they add up to."""

    id: uuid.UUID
    dense_rank: int | None = None  # 1-based position in the vector list, None if absent
    sparse_rank: int | None = None
    dense_similarity: float | None = None  # cosine similarity to the query
    sparse_score: float | None = None  # BM25 score
    retention: float = 1.0
    importance: float = 0.5
    content_hash: str | None = None
    embedding: np.ndarray | None = None
    speaker: str | None = None  # who said it: the memory's metadata "speaker", as the writer set it
    role: str | None = None  # metadata "role" (user / assistant / tool / ...): it is a turn of a conversation
    session_id: str | None = None
    lexemes: int = 0  # distinct full-text lexemes of the text (length(search_tsv))
    sparse_raw: float | None = None  # its own BM25, before neighbours' shares were added
    learned_sparse_rank: int | None = None  # 1-based position in the learned-sparse (SPLADE) list
    learned_sparse_score: float | None = None  # inner product of SPLADE term weights with the query's
    time_rank: int | None = None  # 1-based position among the nearest of the query's time window (timeframe)
    score: float = 0.0
    signals: dict[str, float] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """Which signal put it here, in words (the largest contribution first)."""
        found = [name for name in ("dense", "sparse") if self.signals.get(name)]
        parts = []
        if self.dense_rank is not None:
            parts.append(f"vector #{self.dense_rank} (cos {self.dense_similarity:.2f})")
        if self.sparse_rank is not None:
            parts.append(f"full text #{self.sparse_rank} (bm25 {self.sparse_score:.2f})")
        if self.learned_sparse_rank is not None:
            parts.append(f"learned sparse #{self.learned_sparse_rank} (splade {self.learned_sparse_score:.2f})")
        for name, value in self.signals.items():
            if name not in ("dense", "sparse", "learned_sparse", "retention", "importance", "length") and value:
                parts.append(name.replace("_", " "))
        return ("both signals: " if len(found) == 2 else "") + ", ".join(parts) if parts else "filter match"


_NAME = re.compile(r"\b[A-Z][\w'-]+")


def named_in(query: str) -> frozenset[str]:
    """Capitalised words of the query (possessives trimmed): the people it may be about."""
    return frozenset(w.removesuffix("'s").removesuffix("'") for w in _NAME.findall(query))


def fuse(candidates: Sequence[Ranked], settings: RetrievalSettings,
         named: frozenset[str] = frozenset()) -> list[Ranked]:
    """Weighted RRF, normalised to [0, 1] (1 = first in every list), plus small retention/importance terms.

    A turn spoken by the one person the query names, and matching the query's words, gets
    `speaker_boost` times its relevance on top: questions about someone are mostly answered by what
    they said themselves (LoCoMo: 97% of the evidence of such questions). With two or more people
    named, nobody is preferred.
    `signals` holds each term's contribution, so score == sum(signals.values()).
    """
    # The learned-sparse list counts only when it is on, so turning it off gives the same scores as before.
    learned_weight = settings.learned_sparse_weight if settings.learned_sparse_k > 0 else 0.0
    best = (settings.dense_weight + settings.sparse_weight + learned_weight) / (settings.rrf_k + 1)
    norm = 1.0 / best if best > 0 else 0.0
    relevance_share = max(0.0, 1.0 - settings.retention_weight - settings.importance_weight)
    speakers_named = one_named_speaker(candidates, named)
    scaled = _scaled_scores(candidates) if settings.fusion == "scores" else None
    for c in candidates:
        signals: dict[str, float] = {}
        for name, rank, weight in (("dense", c.dense_rank, settings.dense_weight),
                                   ("sparse", c.sparse_rank, settings.sparse_weight),
                                   ("learned_sparse", c.learned_sparse_rank, learned_weight),
                                   # A bonus beyond the lists' best (not in `best`): most queries name no time.
                                   ("time_window", c.time_rank, settings.time_weight)):
            if rank is None or weight <= 0:
                continue
            if scaled is not None and name in scaled:
                signals[name] = relevance_share * norm * weight * scaled[name][c.id] / (settings.rrf_k + 1)
            else:
                signals[name] = relevance_share * norm * weight / (settings.rrf_k + rank)
        # Only with a full-text match beyond the name: a short "Jon: Thanks!" is near any question
        # about Jon in vector space, and boosting it would crowd out the turns that say something.
        if (settings.speaker_boost and c.speaker and c.sparse_rank is not None
                and c.speaker.split()[0] in speakers_named):
            signals["named_speaker"] = settings.speaker_boost * (signals.get("dense", 0.0) + signals.get("sparse", 0.0)
                                                                 + signals.get("learned_sparse", 0.0))
        signals["retention"] = settings.retention_weight * min(1.0, max(0.0, c.retention))
        signals["importance"] = settings.importance_weight * min(1.0, max(0.0, c.importance))
        c.signals = signals
        c.score = sum(signals.values())
    return best_first(candidates)


def _scaled_scores(candidates: Sequence[Ranked]) -> dict[str, dict[uuid.UUID, float]]:
    """Each list's scores scaled to 0..1 over the candidates: cosine from the lowest to the highest, BM25 and
    SPLADE (0 = no shared term) over the highest."""
    out: dict[str, dict[uuid.UUID, float]] = {}
    dense = {c.id: c.dense_similarity for c in candidates if c.dense_similarity is not None}
    if dense:
        low, high = min(dense.values()), max(dense.values())
        out["dense"] = {i: (s - low) / (high - low) if high > low else 1.0 for i, s in dense.items()}
    for name, attr in (("sparse", "sparse_score"), ("learned_sparse", "learned_sparse_score")):
        values = {c.id: getattr(c, attr) for c in candidates if getattr(c, attr) is not None}
        high = max(values.values(), default=0.0)
        if high > 0:
            out[name] = {i: max(0.0, s) / high for i, s in values.items()}
    return out


def best_first(ranked: Sequence[Ranked]) -> list[Ranked]:
    """Highest score first. Equal scores are common in a small scope, where one memory is first by vector
    and second by full text and another the reverse: then the one matching more of the query's words
    (own BM25) goes first, then the nearer vector, and only then the id, so the order means something
    and does not change when the same memories are written again under new ids. Scores are compared to
    six decimals: memories written seconds apart differ in retention by ~1e-9 of a score, which is not a
    reason (an hour apart is ~1e-4; neighbouring ranks differ by more than 1e-5)."""
    return sorted(ranked, key=lambda c: (-round(c.score, 6), -(c.sparse_raw or 0.0),
                                         -(-1.0 if c.dense_similarity is None else c.dense_similarity), c.id))


def one_named_speaker(candidates: Sequence[Ranked], named: frozenset[str]) -> frozenset[str]:
    """The one speaker among the candidates whom the query names ({} when it names none or several)."""
    present = named & {c.speaker.split()[0] for c in candidates if c.speaker}
    return present if len(present) == 1 else frozenset()


def with_priors(ranked: Sequence[Ranked], settings: RetrievalSettings,
                named: frozenset[str] = frozenset()) -> list[Ranked]:
    """Three priors on top of the fused score, each a signal (LoCoMo: a logistic regression over 21
    features, trained on 4 conversations and scored on the other 4, found these to carry the gain:
    +6 recall@10, +4.5 @30, +4.3 @60, multi-hop +7 @30. The defaults are half its weights, which keep
    nearly all of it (+4.7 @10, +3.1 @30, +2.5 @60 in the offline replica, pool 100) and lean less on
    a property of one data set):

    - `length`: length_weight x ln(1 + distinct lexemes), for conversation turns (a speaker or role is set):
      a short "Thanks!" sits near any question in vector space and is almost never what the question
      needs. Notes and facts do not get it: among a handful of them it would outweigh meaning.
    - `other_speaker`: -other_speaker_penalty for a turn said by someone else when the query names one
      speaker (the speaker boost rewards that person's matching turns; this demotes the others').
    - `session_text`: session_text_weight x the best own BM25 in the memory's session, relative to the
      query's best: a conversation that says the question's words holds its answer, word-matched or not.
    """
    if not (settings.length_weight or settings.other_speaker_penalty or settings.session_text_weight):
        return list(ranked)
    speakers_named = one_named_speaker(ranked, named)
    best_raw = max((c.sparse_raw for c in ranked if c.sparse_raw), default=0.0)
    session_best: dict[str, float] = {}
    for c in ranked:
        if c.session_id and c.sparse_raw:
            session_best[c.session_id] = max(session_best.get(c.session_id, 0.0), c.sparse_raw)
    for c in ranked:
        if settings.length_weight and c.lexemes > 0 and (c.speaker or c.role):
            c.signals["length"] = settings.length_weight * math.log1p(c.lexemes)
        if speakers_named and c.speaker and c.speaker.split()[0] not in speakers_named:
            c.signals["other_speaker"] = -settings.other_speaker_penalty
        if best_raw > 0 and c.session_id in session_best:
            c.signals["session_text"] = settings.session_text_weight * session_best[c.session_id] / best_raw
        c.score = sum(c.signals.values())
    return best_first(ranked)


def with_session_context(ranked: Sequence[Ranked], settings: RetrievalSettings) -> list[Ranked]:
    """Add `session_weight` x the mean score of the best `session_top` candidates of each memory's session.

    Evidence clusters: a session that holds several good hits is probably the conversation the question
    is about, so its weaker hits deserve a place over an equally weak hit alone in another session.
    """
    if settings.session_weight <= 0:
        return list(ranked)
    by_session: dict[str, list[float]] = {}
    for c in ranked:
        if c.session_id:
            by_session.setdefault(c.session_id, []).append(c.score)
    top = max(settings.session_top, 1)
    context = {sid: sum(sorted(scores, reverse=True)[:top]) / top for sid, scores in by_session.items()}
    for c in ranked:
        if c.session_id and len(by_session[c.session_id]) > 1:
            c.signals["session"] = settings.session_weight * context[c.session_id]
            c.score = sum(c.signals.values())
    return best_first(ranked)


def _units(pool: Sequence[Ranked], dim: int) -> np.ndarray:
    """Each candidate's vector scaled to length 1, one row each; zeros (similar to nothing) for a memory
    without one. Normalised as one matrix: per vector, numpy's call overhead was most of the cost."""
    vectors = np.zeros((len(pool), dim), np.float32)
    for i, c in enumerate(pool):
        if c.embedding is not None:
            vectors[i] = c.embedding
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def mmr(
    ranked: Sequence[Ranked], limit: int, settings: RetrievalSettings
) -> tuple[list[Ranked], list[tuple[Ranked, uuid.UUID]]]:
    """Maximal marginal relevance over `ranked` (sorted by score, best first).

    Returns (kept, dropped) where dropped pairs each near-duplicate with the kept memory it repeats
    (same text, or cosine >= duplicate_threshold). With mmr_lambda < 1, the pick order also trades
    relevance against similarity to what is already kept; scores themselves are left unchanged.
    """
    pool = list(ranked)
    if not pool:
        return [], []
    dim = next((len(c.embedding) for c in pool if c.embedding is not None), 1)
    units = _units(pool, dim)
    similar = units @ units.T
    # Which candidates have a near-duplicate ranked above them at all: only those need a look at what
    # was kept (most have none, and a per-candidate lookup is what costs).
    twinned = np.triu(similar >= settings.duplicate_threshold, 1).any(axis=0)
    scale = 1.0 / pool[0].score if pool[0].score > 0 else 1.0
    relevance = np.array([c.score * scale for c in pool])
    waiting = list(range(len(pool)))  # indexes into pool, best first
    kept_at: list[int] = []
    kept: list[Ranked] = []
    dropped: list[tuple[Ranked, uuid.UUID]] = []
    hashes: dict[str, uuid.UUID] = {}
    diverse = settings.mmr_lambda < 1.0
    while waiting and len(kept) < limit:
        index = 0
        if diverse and kept_at:
            nearest_kept = similar[np.ix_(waiting, kept_at)].max(axis=1)
            value = settings.mmr_lambda * relevance[waiting] - (1 - settings.mmr_lambda) * nearest_kept
            index = int(np.argmax(value))  # the first of equals: the better ranked
        i = waiting.pop(index)
        c = pool[i]
        if c.content_hash and c.content_hash in hashes:
            dropped.append((c, hashes[c.content_hash]))
            continue
        if kept_at and (diverse or twinned[i]):
            sims = similar[i, kept_at]
            j = int(np.argmax(sims))
            if float(sims[j]) >= settings.duplicate_threshold:
                dropped.append((c, kept[j].id))
                continue
        kept.append(c)
        kept_at.append(i)
        if c.content_hash:
            hashes[c.content_hash] = c.id
    return kept, dropped


def rrf_only(candidates: Sequence[Ranked], signal: str) -> list[Ranked]:
    """Order by one signal alone (the BM25-only / dense-only baselines)."""
    key = (lambda c: c.dense_rank) if signal == "dense" else (lambda c: c.sparse_rank)
    present = [c for c in candidates if key(c) is not None]
    for c in present:
        c.score = 1.0 / (1 + key(c))  # type: ignore[operator]
        c.signals = {signal: c.score}
    return sorted(present, key=lambda c: key(c))  # type: ignore[arg-type,return-value]

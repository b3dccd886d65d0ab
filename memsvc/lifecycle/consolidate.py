"""Consolidation: episodes of a scope -> atomic semantic facts, with lineage and time.

One step takes up to `consolidate_batch` episodes of a scope (tenant, user_id, agent_id) that were
not consolidated yet, asks the LLM (gateway or built-in) for facts *outside* any transaction, then
applies them in one transaction under a per-scope advisory lock:

- same text (hash) as any fact of the scope, superseded ones included -> nothing new, only
  `derived_from` links to the new sources (this is what makes re-runs create nothing);
- same (subject, attribute) slot as a current fact:
    same value -> duplicate (links only);
    another value, newer -> insert, close the old one (valid_to, superseded_by), link `supersedes`;
    another value, older (episodes arriving out of order) -> insert as already closed by the current one;
- no slot, embedding within `dedupe_similarity` of a current fact -> duplicate (links only); a fact
  with a slot is told apart by its value instead ("likes tea" / "likes coffee" embed as near-twins);
- otherwise a new semantic memory, `derived_from` each source episode.

The episodes are marked consolidated in that same transaction, so a worker killed anywhere leaves
either the whole step or nothing, and the re-run finds the same episodes again: no fact lost, none
doubled. An LLM that gives up (LLMOutputError) fails the step before anything is written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from memsvc.config import get_settings
from memsvc.embeddings import Embedder
from memsvc.lifecycle.retention import initial_strength
from memsvc.lifecycle.scope import ConsolidationScope
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.llm import LLM, Episode, Fact, track_usage
from memsvc.llm.gateway import canonical_attribute
from memsvc.models import Memory, MemoryLink
from memsvc.scoping import MemoryScope
from memsvc.store import MemoryStore, content_hash

log = logging.getLogger(__name__)

Checkpoint = Callable[[str], None]


def _no_checkpoint(stage: str) -> None:
    return None


@dataclass
class ConsolidationReport:
    steps: int = 0
    episodes: int = 0
    facts_extracted: int = 0
    created: list[str] = field(default_factory=list)
    duplicates: int = 0
    links_added: int = 0
    superseded: list[dict[str, str]] = field(default_factory=list)  # {"old", "new"}
    historical: int = 0  # older facts inserted already closed by a current one
    more_waiting: bool = False  # stopped at consolidate_max_batches; a follow-up job takes the rest
    llm_usage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def consolidate(
    sessions: sessionmaker[Session], scope: ConsolidationScope, *, llm: LLM, embedder: Embedder,
    settings: LifecycleSettings | None = None, reprocess: bool = False, now: datetime | None = None,
    checkpoint: Checkpoint = _no_checkpoint,
) -> ConsolidationReport:
    """Consolidate the scope's waiting episodes (or, with reprocess, all of them again)."""
    settings = settings or get_settings().lifecycle
    report = ConsolidationReport()
    after: tuple[datetime, uuid.UUID] | None = None  # keyset position when reprocessing
    with track_usage() as usage:
        for _ in range(settings.consolidate_max_batches):
            with sessions() as session:
                episodes = _read_episodes(session, scope, settings.consolidate_batch, reprocess, after)
            if not episodes:
                break
            after = (episodes[-1].occurred_at, episodes[-1].id)
            checkpoint("extracting")
            facts = llm.extract_facts([_episode(m) for m in episodes])
            vectors = _embed_new(sessions, scope, facts, embedder)
            checkpoint("writing")
            with sessions() as session, session.begin():
                _apply(session, scope, episodes, facts, vectors, embedder, now or datetime.now(UTC),
                       settings, report, checkpoint)
            report.steps += 1
            report.episodes += len(episodes)
            report.facts_extracted += len(facts)
        else:
            with sessions() as session:
                report.more_waiting = bool(_read_episodes(session, scope, 1, reprocess, after))
    report.llm_usage = usage.as_dict()
    return report


def _embed_new(sessions: sessionmaker[Session], scope: ConsolidationScope, facts: Sequence[Fact],
               embedder: Embedder) -> list[Any]:
    """Vectors for the facts whose text the scope does not know yet (None for the others): a re-run
    over known episodes costs no embedding at all."""
    if not facts:
        return []
    hashes = [content_hash(f.text) for f in facts]
    with sessions() as session:
        known = set(session.scalars(select(Memory.content_hash).where(
            *scope.owner_where(), Memory.kind == "semantic", Memory.content_hash.in_(set(hashes)))))
    todo = [i for i, h in enumerate(hashes) if h not in known]
    vectors: list[Any] = [None] * len(facts)
    for i, vector in zip(todo, embedder.embed([facts[i].text for i in todo]) if todo else [], strict=True):
        vectors[i] = vector
    return vectors


def _read_episodes(
    session: Session, scope: ConsolidationScope, limit: int, reprocess: bool,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Memory]:
    query = select(Memory).where(*scope.owner_where(), Memory.kind == "episodic")
    if scope.session_id is not None:
        query = query.where(Memory.session_id == scope.session_id)
    if not reprocess:
        query = query.where(Memory.consolidated_at.is_(None))
    elif after is not None:
        query = query.where(tuple_(Memory.occurred_at, Memory.id) > tuple_(*after))
    return list(session.scalars(query.order_by(Memory.occurred_at, Memory.id).limit(limit)))


def _episode(m: Memory) -> Episode:
    """Who said it comes from structured fields only: metadata `role` and `speaker`, else the scope.
    A user's turn (or a note without a role) is spoken by its `speaker`, else the memory's user;
    an assistant's by the agent. Never from a "Name:" in the content."""
    meta = m.metadata_ or {}
    role = str(meta["role"]).strip().lower() if isinstance(meta.get("role"), str) and meta["role"].strip() else None
    speaker = meta.get("speaker") if isinstance(meta.get("speaker"), str) and meta["speaker"].strip() else None
    if speaker is None:
        speaker = m.user_id if role in (None, "user") else (m.agent_id or role)
    return Episode(id=str(m.id), text=m.content, occurred_at=m.occurred_at, speaker=speaker, user=m.user_id,
                   role=role)


def _lock_scope(session: Session, scope: ConsolidationScope) -> None:
    # Two jobs of one scope (a retry racing a redelivery) apply one after the other, each seeing
    # the other's facts, so dedupe holds across them.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": scope.key()})


def _fact_meta(fact: Fact) -> dict[str, Any]:
    return {"fact": {"subject": fact.subject, "attribute": fact.attribute, "value": fact.value},
            "confidence": fact.confidence, "derived_by": "consolidation"}


def _apply(
    session: Session, scope: ConsolidationScope, episodes: Sequence[Memory], facts: Sequence[Fact],
    vectors: Sequence[Any], embedder: Embedder, now: datetime, settings: LifecycleSettings,
    report: ConsolidationReport, checkpoint: Checkpoint,
) -> None:
    _lock_scope(session, scope)
    by_id = {str(m.id): m for m in episodes}
    # Same text twice in one answer: one fact with the union of the sources.
    merged: dict[str, tuple[Fact, Any]] = {}
    for fact, vector in zip(facts, vectors, strict=True):
        h = content_hash(fact.text)
        if h in merged:
            merged[h][0].source_ids[:] = list(dict.fromkeys([*merged[h][0].source_ids, *fact.source_ids]))
        else:
            merged[h] = (fact, vector)
    # hash -> (id, is current); a current fact wins over closed ones with the same text.
    by_hash: dict[str, tuple[uuid.UUID, bool]] = {}
    for h, mid, is_current in session.execute(
        select(Memory.content_hash, Memory.id, Memory.valid_to.is_(None)).where(
            *scope.owner_where(), Memory.kind == "semantic", Memory.content_hash.in_(list(merged)))
    ):
        if h not in by_hash or (is_current and not by_hash[h][1]):
            by_hash[h] = (mid, bool(is_current))
    subjects = sorted({f.subject for f, _ in merged.values() if f.key})
    current: dict[tuple[str, str], Memory] = {}
    if subjects:
        subject_col = Memory.metadata_["fact"]["subject"].astext
        for row in session.scalars(select(Memory).where(
            *scope.owner_where(), Memory.kind == "semantic", Memory.valid_to.is_(None),
            subject_col.in_(subjects), Memory.metadata_["fact"]["attribute"].astext.is_not(None),
        ).order_by(Memory.valid_from)):
            fact_meta = (row.metadata_ or {}).get("fact") or {}
            current[(fact_meta["subject"], canonical_attribute(fact_meta["attribute"]))] = row
    session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    ordered = sorted(merged.items(), key=lambda kv: (kv[1][0].valid_from or now, kv[0]))
    for i, (h, (fact, vector)) in enumerate(ordered):
        if i == len(ordered) // 2:
            checkpoint("writing-facts")
        sources = [by_id[s] for s in fact.source_ids if s in by_id]
        valid_from = fact.valid_from or max((m.occurred_at for m in sources), default=now)
        holder = current.get(fact.key) if fact.key else None  # the slot's current fact, if any
        holder_value = ((holder.metadata_ or {}).get("fact") or {}).get("value") if holder is not None else None
        existing_id: uuid.UUID | None = None
        if h in by_hash:
            hit_id, hit_current = by_hash[h]
            # The text of a closed fact, stated again after the slot changed ("moved back"), is news.
            back_again = (not hit_current and holder is not None and holder_value != fact.value
                          and holder.valid_from is not None and valid_from > holder.valid_from)
            existing_id = None if back_again else hit_id
        elif holder is not None and holder_value == fact.value:
            existing_id = holder.id
        if vector is None and existing_id is None:  # known text, yet news ("moved back"): embed it now
            vector = embedder.embed([fact.text])[0]
        # A keyed fact is identified by its slot and value (handled above): "Alice likes tea." and
        # "Alice likes coffee." embed within any useful threshold of each other, yet both are news.
        if existing_id is None and holder is None and h not in by_hash and fact.key is None:
            existing_id = _similar_current(session, scope, vector, settings.dedupe_similarity)
        if existing_id is not None:
            report.duplicates += 1
            report.links_added += _link(session, scope, existing_id, sources, "derived_from")
            continue
        new = Memory(
            id=uuid.uuid4(), tenant_id=scope.tenant_id, user_id=scope.user_id, agent_id=scope.agent_id,
            kind="semantic", content=fact.text, tier="verbatim",
            importance=max([0.5, *(m.importance for m in sources)]),
            access_count=0, last_accessed_at=now, occurred_at=valid_from, recorded_at=now, updated_at=now,
            valid_from=valid_from, content_hash=h, metadata_=_fact_meta(fact), tags=[],
            embedding=list(map(float, vector)), embedding_model=embedder.name,
        )
        new.strength = initial_strength(new.importance)
        old = holder
        if old is not None and old.valid_from is not None and valid_from < old.valid_from:
            # Learned late about an older state of the slot: it is history, closed by the current one.
            new.valid_to, new.superseded_by = old.valid_from, old.id
            report.historical += 1
            session.add(new)
            session.flush()
            _link(session, scope, old.id, [new], "supersedes")
        else:
            session.add(new)
            session.flush()
            if old is not None:
                session.execute(update(Memory).where(Memory.id == old.id).values(
                    valid_to=valid_from, superseded_by=new.id))
                _link(session, scope, new.id, [old], "supersedes")
                report.superseded.append({"old": str(old.id), "new": str(new.id)})
            if fact.key:
                current[fact.key] = new
        by_hash[h] = (new.id, new.valid_to is None)
        report.created.append(str(new.id))
        report.links_added += _link(session, scope, new.id, sources, "derived_from")
    session.execute(update(Memory).where(Memory.id.in_([m.id for m in episodes])).values(consolidated_at=now)
                    .execution_options(synchronize_session=False))


def _similar_current(session: Session, scope: ConsolidationScope, vector: Any, threshold: float) -> uuid.UUID | None:
    distance = Memory.embedding.cosine_distance(list(map(float, vector)))
    row = session.execute(
        select(Memory.id, distance.label("d")).where(
            *scope.owner_where(), Memory.kind == "semantic", Memory.valid_to.is_(None),
            Memory.embedding.is_not(None),
        ).order_by(distance).limit(1)
    ).first()
    return row.id if row is not None and 1.0 - float(row.d) >= threshold else None


def _link(session: Session, scope: ConsolidationScope, src: uuid.UUID, dsts: Sequence[Memory], relation: str) -> int:
    if not dsts:
        return 0
    inserted = session.execute(
        insert(MemoryLink).values([
            {"src_id": src, "dst_id": d.id, "relation": relation, "tenant_id": scope.tenant_id} for d in dsts
        ]).on_conflict_do_nothing().returning(MemoryLink.dst_id)
    ).all()
    return len(inserted)


# ---- re-derivation of facts that lost a source --------------------------------------------------


@dataclass
class RederiveReport:
    kept: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    removed_derived: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # already gone when the job ran
    llm_usage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rederive(
    sessions: sessionmaker[Session], tenant_id: uuid.UUID, ids: Sequence[uuid.UUID], *, llm: LLM,
    embedder: Embedder, now: datetime | None = None,
) -> RederiveReport:
    """For each derived memory that lost some sources: extract again from the sources left. Still
    produced (same text, or same slot and value) -> kept; same slot, another text -> rewritten in
    place (id and links kept); no longer supported -> removed, with its own dependents (cascade)."""
    report = RederiveReport()
    now = now or datetime.now(UTC)
    with track_usage() as usage:
        for memory_id in dict.fromkeys(ids):
            with sessions() as session:
                derived = session.get(Memory, memory_id)
                if derived is None or derived.tenant_id != tenant_id:
                    report.missing.append(str(memory_id))
                    continue
                sources = list(session.scalars(select(Memory).join(
                    MemoryLink, (MemoryLink.dst_id == Memory.id) & (MemoryLink.relation == "derived_from")
                ).where(MemoryLink.src_id == memory_id, Memory.tenant_id == tenant_id).order_by(Memory.occurred_at)))
            facts = llm.extract_facts([_episode(m) for m in sources]) if sources else []
            meta = (derived.metadata_ or {}).get("fact") or {}
            key = (meta.get("subject"), canonical_attribute(meta["attribute"])) if meta.get("attribute") else None
            same = [f for f in facts if content_hash(f.text) == derived.content_hash
                    or (key is not None and f.key == key and f.value == meta.get("value"))]
            slot = [f for f in facts if key is not None and f.key == key]
            with sessions() as session, session.begin():
                if same:
                    report.kept.append(str(memory_id))
                elif slot:
                    fact = slot[-1]
                    session.execute(update(Memory).where(Memory.id == memory_id).values(
                        content=fact.text, content_hash=content_hash(fact.text), summary=None, gist=None,
                        tier="verbatim", updated_at=now, metadata_={**(derived.metadata_ or {}), **_fact_meta(fact)},
                        embedding=embedder.embed([fact.text])[0].tolist(), embedding_model=embedder.name,
                    ))
                    report.rewritten.append(str(memory_id))
                else:
                    deletion = MemoryStore(session, MemoryScope(tenant_id))._delete_with_cascade([memory_id])
                    report.removed.append(str(memory_id))
                    report.removed_derived += [str(i) for i in deletion.derived_deleted]
    report.llm_usage = usage.as_dict()
    return report


# ---- reading facts as of a time ---------------------------------------------------------------


def facts_as_of(session: Session, scope: ConsolidationScope, at: datetime, subject: str | None = None) -> list[Memory]:
    """The scope's semantic facts that were true at `at` (valid_from <= at < valid_to)."""
    query = select(Memory).where(
        *scope.owner_where(), Memory.kind == "semantic",
        (Memory.valid_from.is_(None)) | (Memory.valid_from <= at),
        (Memory.valid_to.is_(None)) | (Memory.valid_to > at),
    )
    if subject is not None:
        query = query.where(Memory.metadata_["fact"]["subject"].astext == subject)
    return list(session.scalars(query.order_by(Memory.valid_from, Memory.id)))


def scopes_waiting(session: Session, tenant_id: uuid.UUID | None = None, limit: int = 1000) -> list[ConsolidationScope]:
    """Scopes with episodes not consolidated yet (the beat's safety net behind write triggers)."""
    query = select(Memory.tenant_id, Memory.user_id, Memory.agent_id).where(
        Memory.kind == "episodic", Memory.consolidated_at.is_(None)).distinct().limit(limit)
    if tenant_id is not None:
        query = query.where(Memory.tenant_id == tenant_id)
    return [ConsolidationScope(t, u, a) for t, u, a in session.execute(query)]

"""The periodic decay pass of one tenant: TTL (only when the policy sets one), then the summaries and
gists that demotions need, then the tier moves, all at an explicit `now`.

Decisions are set-based SQL built from the same formulas as the pure policy (retention_sql,
tier_case_sql): Postgres evaluates the forgetting curve on every row, Python never loops over rows
to decide. Python touches rows only to *write text* (the LLM gateway or the built-in makes the
summary/gist a demotion needs), in batches, and only for rows that are about to move.

Every statement is its own short transaction over at most `decay_chunk_rows` rows, so a pass over
millions of rows neither holds locks for long nor loses its progress if the worker dies. Tier moves
are written as HOT updates (no indexed column changes; see migration 0002); archiving moves the
vector to half precision (memsvc.lifecycle.archive), which does touch the indexes, once per memory.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, literal, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from memsvc.config import get_settings
from memsvc.lifecycle.archive import archive_vector_values
from memsvc.lifecycle.policy import get_policy
from memsvc.lifecycle.retention import elapsed_seconds_sql, retention_sql
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.lifecycle.tiers import Tier, TierPolicy, representations_needed, tier_case_sql, tier_rank_sql
from memsvc.llm import LLM, BuiltinLLM, LLMCallError, track_usage
from memsvc.llm.summarizer import EXTRACTIVE, LEGACY_BUILTIN, NoSummarizer, Summarizer, get_summarizer
from memsvc.models import Memory
from memsvc.scoping import MemoryScope
from memsvc.store import MemoryStore

log = logging.getLogger(__name__)

# Profile memories are the user's core facts ("profile/core memories first" in every context):
# they never fade. Everything else decays.
EXEMPT_KINDS = ("profile",)
RANK = {t.value: i for i, t in enumerate((Tier.VERBATIM, Tier.SUMMARY, Tier.GIST, Tier.ARCHIVED))}
SAMPLE_IDS = 50


@dataclass
class DecayReport:
    tenant_id: str
    now: str
    moved: dict[str, int] = field(default_factory=dict)  # "verbatim->summary": n
    archived: int = 0
    originals_dropped: int = 0
    representations_made: int = 0
    representations_failed: int = 0
    representations_deferred: bool = False  # the per-pass budget ran out; the rest moves next pass
    representation_errors: list[str] = field(default_factory=list)
    ttl_days: int | None = None
    ttl_deleted: int = 0
    ttl_derived_deleted: int = 0
    ttl_deleted_sample: list[str] = field(default_factory=list)
    ttl_orphaned: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    llm_usage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_tier_sql(now: datetime, policy: TierPolicy) -> Any:
    """The tier each row's score calls for at `now` (the SQL twin of tiers.target_tier)."""
    r = retention_sql(now, Memory.last_accessed_at, Memory.strength, policy.tau0_seconds)
    return tier_case_sql(r, Memory.importance, elapsed_seconds_sql(now, Memory.recorded_at), policy)


def _base_where(tenant_id: uuid.UUID) -> list[Any]:
    return [Memory.tenant_id == tenant_id, Memory.tier != Tier.ARCHIVED.value, Memory.kind.not_in(EXEMPT_KINDS)]


def run_decay(
    sessions: sessionmaker[Session], tenant_id: uuid.UUID, now: datetime, *, policy: TierPolicy | None = None,
    llm: LLM | None = None, settings: LifecycleSettings | None = None,
    on_orphans: Callable[[Session, list[uuid.UUID]], None] | None = None,
) -> DecayReport:
    """One decay pass of one tenant at `now`. on_orphans(session, ids): derived memories that lost a
    source to TTL deletion (to schedule their re-derivation in the same transaction)."""
    settings = settings or get_settings().lifecycle
    llm = llm or BuiltinLLM()
    if policy is None:
        with sessions() as session:
            policy = get_policy(session, tenant_id)
    report = DecayReport(tenant_id=str(tenant_id), now=now.isoformat(), ttl_days=policy.ttl_days)
    with track_usage() as usage:
        started = time.perf_counter()
        if policy.ttl_days is not None:
            _expire_ttl(sessions, tenant_id, now, policy, settings, report, on_orphans)
        report.seconds["ttl"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        _make_representations(sessions, tenant_id, now, policy, llm, settings, report)
        report.seconds["representations"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        _move_tiers(sessions, tenant_id, now, policy, settings, report)
        report.seconds["tiers"] = round(time.perf_counter() - started, 3)
    report.llm_usage = usage.as_dict()
    return report


def _expire_ttl(
    sessions: sessionmaker[Session], tenant_id: uuid.UUID, now: datetime, policy: TierPolicy,
    settings: LifecycleSettings, report: DecayReport,
    on_orphans: Callable[[Session, list[uuid.UUID]], None] | None,
) -> None:
    """Delete what the tenant's explicit TTL says, with the usual cascade through derived memories."""
    assert policy.ttl_days is not None
    cutoff = now - timedelta(days=policy.ttl_days)
    scope = MemoryScope(tenant_id)
    while True:
        with sessions() as session, session.begin():
            ids = list(session.scalars(
                select(Memory.id).where(Memory.tenant_id == tenant_id, Memory.recorded_at <= cutoff)
                .limit(min(settings.decay_chunk_rows, 5_000))
            ))
            if not ids:
                return
            deletion = MemoryStore(session, scope)._delete_with_cascade(ids)
            report.ttl_deleted += len(deletion.deleted)
            report.ttl_derived_deleted += len(deletion.derived_deleted)
            room = SAMPLE_IDS - len(report.ttl_deleted_sample)
            report.ttl_deleted_sample += [str(i) for i in deletion.deleted[:max(0, room)]]
            if deletion.derived_orphaned:
                report.ttl_orphaned += [str(i) for i in deletion.derived_orphaned]
                if on_orphans is not None:
                    on_orphans(session, list(deletion.derived_orphaned))


def _make_representations(
    sessions: sessionmaker[Session], tenant_id: uuid.UUID, now: datetime, policy: TierPolicy, llm: LLM,
    settings: LifecycleSettings, report: DecayReport,
) -> None:
    """Summaries and gists for the rows about to be demoted past them, made once and kept."""
    target = target_tier_sql(now, policy).label("target")
    rank = tier_rank_sql(target)
    # The summarizer MEMSVC_SUMMARIZER names (a hosted `llm` makes `auto` mean the model). The extractive
    # summary stored at write time serves a demotion unless a model can do better; the old summarizer's
    # (summary_by "builtin") never does.
    summarizer = get_summarizer(llm=llm)
    author = summarizer.name
    stale = [LEGACY_BUILTIN] if summarizer.inline else [LEGACY_BUILTIN, EXTRACTIVE]
    missing_summary = or_(Memory.summary.is_(None), Memory.summary_by.in_(stale))
    needs = or_(and_(rank >= RANK["summary"], missing_summary),
                and_(rank >= RANK["gist"], Memory.gist.is_(None)))
    write = (
        update(Memory.__table__)
        .where(Memory.__table__.c.id == bindparam("b_id"))
        .values(summary=bindparam("b_summary"), summary_by=bindparam("b_summary_by"), gist=bindparam("b_gist"))
    )
    last_id: uuid.UUID | None = None
    budget = settings.max_representations_per_pass
    while True:
        with sessions() as session:
            query = (
                select(Memory.id, Memory.content, Memory.tier, Memory.summary, Memory.summary_by, Memory.gist,
                       target)
                .where(*_base_where(tenant_id), rank > tier_rank_sql(Memory.tier), needs)
                .order_by(Memory.id).limit(settings.representation_batch)
            )
            if last_id is not None:
                query = query.where(Memory.id > last_id)
            rows = session.execute(query).all()
        if not rows:
            return
        last_id = rows[-1].id
        updates = []
        for row in rows:
            if budget <= 0:
                report.representations_deferred = True
                break
            replaced = row.summary_by in stale
            have = [t for t, v in (("summary", None if replaced else row.summary), ("gist", row.gist))
                    if v is not None]
            produced = {"summary": row.summary, "gist": row.gist}
            summary_by = row.summary_by
            try:
                for tier in representations_needed(row.tier, row.target, have):
                    # Where the summarizer has no summary (one statement; MEMSVC_SUMMARIZER=none) the lower
                    # tier keeps the verbatim text: nothing a demotion stores is lossy by default.
                    made = (summarizer.summarize if tier == "summary" else summarizer.gist)(row.content)
                    produced[tier] = made or row.content
                    summary_by = author if tier == "summary" else summary_by
                    report.representations_made += 1
                    budget -= 1
            except Exception as exc:  # one bad text (or an LLM that gave up) must not stop the pass
                report.representations_failed += 1
                if len(report.representation_errors) < 5:
                    report.representation_errors.append(f"{row.id}: {type(exc).__name__}: {exc}"[:500])
                continue
            updates.append({"b_id": row.id, "b_summary": produced["summary"], "b_summary_by": summary_by,
                            "b_gist": produced["gist"]})
        if updates:
            with sessions() as session, session.begin():
                session.connection().execute(write, updates)
        if report.representations_deferred:
            return


# Tenants this process found without summaries of the old summarizer: there is no index on summary_by,
# so the look for them (a pass over the tenant's rows) is made once per tenant and process, not hourly.
_NO_LEGACY: set[uuid.UUID] = set()


def fill_builtin_summaries(sessions: sessionmaker[Session], tenant_id: uuid.UUID, max_rows: int = 5_000,
                           batch: int = 500, summarizer: Summarizer | None = None) -> int:
    """Summaries for verbatim memories that have none yet, and new ones for the old summarizer's.

    None yet: written before summaries were made at write time (0006), or under MEMSVC_SUMMARIZER=llm
    (the model is asked here, in batches, never on the write path); found through the partial index of
    migration 0007. The old summarizer's (summary_by "builtin") cut sentences and names: recomputed from
    the original text, a demoted memory's too (its tier's text becomes the new summary, or the text
    itself); under `none` a verbatim memory's is dropped. Until then contexts derive one on the fly.
    Up to max_rows per tenant and pass; returns how many rows it looked at.
    """
    summarizer = summarizer or get_summarizer()
    done = 0
    none = isinstance(summarizer, NoSummarizer)
    waiting = and_(Memory.tenant_id == tenant_id, Memory.tier == "verbatim", Memory.summary.is_(None),
                   Memory.summary_by.is_(None))
    legacy = and_(Memory.tenant_id == tenant_id, Memory.summary_by == LEGACY_BUILTIN,
                  Memory.tier.in_(("verbatim", "summary")), Memory.original_dropped_at.is_(None))
    write = (update(Memory.__table__).where(Memory.__table__.c.id == bindparam("b_id"))
             .values(summary=bindparam("b_summary"), summary_by=bindparam("b_summary_by")))
    for where in ([] if none else [waiting]) + ([] if tenant_id in _NO_LEGACY else [legacy]):
        while done < max_rows:
            with sessions() as session:
                rows = session.execute(select(Memory.id, Memory.content, Memory.tier).where(where)
                                       .limit(min(batch, max_rows - done))).all()
            if not rows:
                if where is legacy:
                    _NO_LEGACY.add(tenant_id)
                break
            updates = []
            for r in rows:
                try:
                    summary = summarizer.summarize(r.content)
                except LLMCallError as exc:  # the model is out of reach: the rest waits for the next pass
                    log.warning("summaries of tenant %s wait for the next pass: %s", tenant_id, exc)
                    max_rows = done
                    break
                verbatim = r.tier == "verbatim"  # else a demoted memory's: its tier needs a text
                updates.append({"b_id": r.id, "b_summary": summary if verbatim else summary or r.content,
                                "b_summary_by": None if none and verbatim else summarizer.name})
            if updates:
                with sessions() as session, session.begin():
                    session.connection().execute(write, updates)
            done += len(updates)
    return done


def _move_tiers(
    sessions: sessionmaker[Session], tenant_id: uuid.UUID, now: datetime, policy: TierPolicy,
    settings: LifecycleSettings, report: DecayReport,
) -> None:
    """Forward-only tier moves for every row whose representations exist, chunk by chunk."""
    target = target_tier_sql(now, policy)
    rank = tier_rank_sql(target)
    ready = and_(or_(rank < RANK["summary"], Memory.summary.is_not(None)),
                 or_(rank < RANK["gist"], Memory.gist.is_not(None)))
    moved: Counter[str] = Counter()
    # Until a chunk comes back empty: a row changed under us (reinforced) or locked is left for the
    # next pass, and every row that moves leaves the candidate set, so this ends.
    while True:
        cand = (
            select(Memory.id.label("id"), Memory.tier.label("old"), Memory.last_accessed_at.label("la"),
                   target.label("target"))
            .where(*_base_where(tenant_id), rank > tier_rank_sql(Memory.tier), ready)
            .limit(settings.decay_chunk_rows)
            .with_for_update(skip_locked=True)
            .cte("cand")
        )
        archiving = cand.c.target == Tier.ARCHIVED.value
        values: dict[str, Any] = {"tier": cand.c.target, **archive_vector_values(archiving)}
        if not policy.keep_originals:
            # Dropping originals (tenant's choice): the verbatim text becomes the summary.
            drop = Memory.original_dropped_at.is_(None) & (tier_rank_sql(cand.c.target) >= RANK["summary"])
            values["content"] = case((drop, Memory.summary), else_=Memory.content)
            values["original_dropped_at"] = case((drop, literal(now)), else_=Memory.original_dropped_at)
        stmt = (
            update(Memory)
            # A memory used (reinforced) since the candidates were read keeps its tier.
            .where(Memory.id == cand.c.id, Memory.tier == cand.c.old, Memory.last_accessed_at == cand.c.la)
            .values(**values)
            .returning(cand.c.old, cand.c.target, Memory.original_dropped_at == literal(now))
            .execution_options(synchronize_session=False)
        )
        with sessions() as session, session.begin():
            rows = session.execute(stmt).all()
        if not rows:
            break
        for old, new, dropped in rows:
            moved[f"{old}->{new}"] += 1
            report.archived += new == Tier.ARCHIVED.value
            report.originals_dropped += bool(dropped) and not policy.keep_originals
    report.moved = dict(sorted(moved.items()))


def tier_counts(session: Session, tenant_id: uuid.UUID) -> dict[str, int]:
    from sqlalchemy import func

    rows = session.execute(
        select(Memory.tier, func.count()).where(Memory.tenant_id == tenant_id).group_by(Memory.tier)
    ).all()
    return {tier: int(n) for tier, n in rows}


__all__ = ["DecayReport", "EXEMPT_KINDS", "run_decay", "target_tier_sql", "tier_counts"]

"""Read-only views for the dashboard: memory counts by tier and kind, and a memory's lineage.

Both start from the caller's `MemoryScope`, like every memory query, so a key sees only its own
tenant (and, for a restricted key, only its users/agents) in counts and in lineage: a link whose
other end the key may not see is left out rather than shown as a bare id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from memsvc.errors import NotFound
from memsvc.models import KINDS, TIERS, Memory, MemoryLink
from memsvc.scoping import MemoryScope
from memsvc.validation import check_text

# How many distinct user/agent/session ids the stats name (most memories first): enough for the
# dashboard's scope pickers, bounded so a tenant with a million users does not get a huge reply.
TOP_SCOPE_VALUES = 50
PREVIEW_CHARS = 240

Direction = Literal["out", "in"]


@dataclass(frozen=True)
class StatsFilters:
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("user_id", "agent_id", "session_id"):
            value = getattr(self, name)
            if value is not None:
                check_text(value, name)


class TierKindCount(BaseModel):
    tier: str
    kind: str
    count: int


class ScopeValue(BaseModel):
    value: str
    count: int


class Stats(BaseModel):
    total: int
    by_tier: dict[str, int] = Field(description="Every tier, zero included, in lifecycle order.")
    by_kind: dict[str, int] = Field(description="Every kind, zero included.")
    by_tier_kind: list[TierKindCount] = Field(description="Non-zero (tier, kind) cells.")
    top_scopes: dict[str, list[ScopeValue]] = Field(
        description=f"Per scope column (user_id, agent_id, session_id): up to {TOP_SCOPE_VALUES} values "
        "with the most memories (null values left out).")


class LinkedMemory(BaseModel):
    id: uuid.UUID
    kind: str
    tier: str
    preview: str = Field(description=f"The first {PREVIEW_CHARS} characters of its content.")
    occurred_at: datetime
    valid_to: datetime | None = None


class LineageLink(BaseModel):
    relation: str = Field(description="derived_from | supersedes | merged_into")
    direction: Direction = Field(description="out: this memory <relation> other (e.g. this derived_from other); "
                                 "in: other <relation> this (e.g. other supersedes this).")
    memory: LinkedMemory


class Lineage(BaseModel):
    memory_id: uuid.UUID
    links: list[LineageLink]


def _filtered(scope: MemoryScope, filters: StatsFilters, *entities):  # type: ignore[no-untyped-def]
    query = scope.select(*entities)
    for column, value in ((Memory.user_id, filters.user_id), (Memory.agent_id, filters.agent_id),
                          (Memory.session_id, filters.session_id)):
        if value is not None:
            query = query.where(column == value)
    return query


def memory_stats(session: Session, scope: MemoryScope, filters: StatsFilters | None = None) -> Stats:
    """Counts by tier and kind (one GROUP BY over the scope's rows) and the busiest scope values."""
    filters = filters or StatsFilters()
    cells = session.execute(
        _filtered(scope, filters, Memory.tier, Memory.kind, func.count()).group_by(Memory.tier, Memory.kind)
    ).all()
    by_tier = dict.fromkeys(TIERS, 0)
    by_kind = dict.fromkeys(KINDS, 0)
    matrix = []
    for tier, kind, count in cells:
        # Unknown values (a future tier or kind) are still counted rather than dropped.
        by_tier[tier] = by_tier.get(tier, 0) + count
        by_kind[kind] = by_kind.get(kind, 0) + count
        matrix.append(TierKindCount(tier=tier, kind=kind, count=count))
    order = {t: i for i, t in enumerate(by_tier)}
    matrix.sort(key=lambda c: (order[c.tier], c.kind))
    top: dict[str, list[ScopeValue]] = {}
    for name in ("user_id", "agent_id", "session_id"):
        column = getattr(Memory, name)
        rows = session.execute(
            _filtered(scope, filters, column, func.count()).where(column.is_not(None))
            .group_by(column).order_by(func.count().desc(), column).limit(TOP_SCOPE_VALUES)
        ).all()
        top[name] = [ScopeValue(value=value, count=count) for value, count in rows]
    return Stats(total=sum(by_tier.values()), by_tier=by_tier, by_kind=by_kind, by_tier_kind=matrix,
                 top_scopes=top)


def lineage(session: Session, scope: MemoryScope, memory_id: uuid.UUID) -> Lineage:
    """Every link of a memory, both directions, with the other end's headline.

    Also reports `memories.superseded_by` as a supersedes link, so a supersession recorded only in
    that column (and not in memory_links) still shows up; the same link recorded both ways is shown once.
    404 when the memory is not visible to the scope (another tenant's id included: ids do not leak).
    """
    memory = session.scalar(scope.select().where(Memory.id == memory_id))
    if memory is None:
        raise NotFound(f"memory {memory_id} not found")
    edges: dict[tuple[uuid.UUID, uuid.UUID, str], None] = {}
    rows = session.execute(
        select(MemoryLink.src_id, MemoryLink.dst_id, MemoryLink.relation).where(
            MemoryLink.tenant_id == scope.tenant_id,
            or_(MemoryLink.src_id == memory_id, MemoryLink.dst_id == memory_id),
        ).order_by(MemoryLink.created_at, MemoryLink.relation)
    ).all()
    for src, dst, relation in rows:
        edges[(src, dst, relation)] = None
    if memory.superseded_by is not None:
        edges.setdefault((memory.superseded_by, memory.id, "supersedes"), None)
    for newer in session.scalars(scope.select(Memory.id).where(Memory.superseded_by == memory.id)):
        edges.setdefault((memory.id, newer, "supersedes"), None)
    others = {dst if src == memory_id else src for src, dst, _ in edges}
    # The other ends go through the scope too: a restricted key does not see other users' memories.
    visible = {m.id: m for m in session.scalars(scope.select().where(Memory.id.in_(others)))} if others else {}
    links = []
    for src, dst, relation in edges:
        direction: Direction = "out" if src == memory_id else "in"
        other = visible.get(dst if direction == "out" else src)
        if other is None or other.id == memory_id:
            continue
        links.append(LineageLink(relation=relation, direction=direction, memory=LinkedMemory(
            id=other.id, kind=other.kind, tier=other.tier, preview=other.content[:PREVIEW_CHARS],
            occurred_at=other.occurred_at, valid_to=other.valid_to,
        )))
    return Lineage(memory_id=memory_id, links=links)

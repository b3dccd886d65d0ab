"""Neighbouring turns: the episodes just before and after a memory in the same session.

Conversation turns rarely stand alone: the answer to "What did Caroline research?" is often the reply
to the turn that names the topic. Search spreads full-text evidence to neighbours
(`spread_to_neighbours`), and the context builder adds the neighbours of its top hits. Both ask
here, and the question is answered by index range scans (migration 0005's (tenant, session, time)
index), one per side and hit, not by numbering whole sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

from sqlalchemy import Integer, literal, select, tuple_, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql.util import ClauseAdapter

from memsvc.models import Memory
from memsvc.scoping import MemoryScope


def neighbours(session: Session, scope: MemoryScope, where: Sequence[Any], ids: Sequence[uuid.UUID],
               columns: Sequence[str], window: int = 1) -> list[tuple[uuid.UUID, int, Any]]:
    """(hit id, offset, neighbour row) for up to `window` episodes on each side of each hit in its
    session (offset -1 = the turn before). `where` holds the caller's scope and filter clauses, so a
    neighbour the caller may not read is never returned. Hits without a session have none."""
    if not ids or window < 1:
        return []
    hits = select(Memory.id, Memory.session_id, Memory.occurred_at).where(
        *scope.where(), Memory.id.in_(list(ids)), Memory.session_id.is_not(None)).cte("hits")
    other = Memory.__table__.alias("neighbour")
    cols = [other.c[_column(name)].label(name) for name in columns]
    sides = []
    here = tuple_(hits.c.occurred_at, hits.c.id)
    there = tuple_(other.c.occurred_at, other.c.id)  # the id orders turns written at the same instant
    for sign, before in ((-1, True), (1, False)):
        order = (other.c.occurred_at.desc(), other.c.id.desc()) if before else (other.c.occurred_at, other.c.id)
        nearest = (select(*cols, other.c.occurred_at.label("at_"), literal(sign, Integer).label("side"))
                   .where(other.c.tenant_id == scope.tenant_id, other.c.session_id == hits.c.session_id,
                          there < here if before else there > here,
                          *[ClauseAdapter(other).traverse(clause) for clause in where])
                   .order_by(*order).limit(window).lateral(f"side{sign + 1}"))
        sides.append(select(hits.c.id.label("hit_id"), nearest).select_from(hits.join(nearest, literal(True))))
    rows = session.execute(union_all(*sides)).all()
    out: list[tuple[uuid.UUID, int, Any]] = []
    for (hit, side), group in groupby(sorted(rows, key=lambda r: (str(r.hit_id), r.side)),
                                      key=lambda r: (r.hit_id, r.side)):
        nearest_first = sorted(group, key=lambda r: (r.at_, str(r.id)), reverse=side < 0)
        out.extend((hit, side * step, row) for step, row in enumerate(nearest_first, start=1))
    return out


def _column(attribute: str) -> str:
    """ORM attribute name -> table column name (`metadata_` is stored as "metadata")."""
    return Memory.__mapper__.attrs[attribute].columns[0].name  # type: ignore[union-attr,no-any-return]


def spread_to_neighbours(scores: Mapping[uuid.UUID, float], pairs: Sequence[tuple[uuid.UUID, uuid.UUID]],
                         weight: float) -> dict[uuid.UUID, float]:
    """Each memory's score plus `weight` x the scores of its neighbours (pure).

    `pairs` are (memory, its neighbour) both ways round. A memory that matched nothing itself but sits
    next to a strong match gets a share of it: its words answer what its neighbour's words asked.
    """
    out = dict(scores)
    if weight <= 0:
        return out
    for memory, neighbour in pairs:
        gain = weight * scores.get(neighbour, 0.0)
        if gain > 0:
            out[memory] = out.get(memory, 0.0) + gain
    return out


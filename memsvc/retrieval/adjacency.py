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

from sqlalchemy.orm import Session

from memsvc.retrieval import sqltext
from memsvc.retrieval.sqltext import Where
from memsvc.scoping import MemoryScope


def neighbours(session: Session, scope: MemoryScope, where: Where, ids: Sequence[uuid.UUID],
               columns: Sequence[str], window: int = 1) -> list[tuple[uuid.UUID, int, Any]]:
    """(hit id, offset, neighbour row) for up to `window` episodes on each side of each hit in its
    session (offset -1 = the turn before). `where` holds the caller's scope and filter clauses, so a
    neighbour the caller may not read is never returned. Hits without a session have none."""
    if not ids or window < 1:
        return []
    cols = sqltext.select_list("n", columns)
    sides = []
    for side, before in ((-1, True), (1, False)):
        # The id orders turns written at the same instant.
        cmp, order = ("<", "DESC") if before else (">", "ASC")
        sides.append(
            f"(SELECT {cols}, n.occurred_at AS at_, {side} AS side FROM memories n "
            f"WHERE n.tenant_id = h.tenant_id AND n.session_id = h.session_id "
            f"AND (n.occurred_at, n.id) {cmp} (h.occurred_at, h.id) AND {where.on('n')} "
            f"ORDER BY n.occurred_at {order}, n.id {order} LIMIT %(p_window)s)")
    found = sqltext.rows(
        session,
        f"SELECT h.id AS hit_id, s.* FROM memories h CROSS JOIN LATERAL ({' UNION ALL '.join(sides)}) s "
        "WHERE h.id = ANY(%(p_ids)s) AND h.tenant_id = %(p_tenant)s AND h.session_id IS NOT NULL",
        where, p_ids=list(ids), p_tenant=scope.tenant_id, p_window=window)
    out: list[tuple[uuid.UUID, int, Any]] = []
    for (hit, side), group in groupby(sorted(found, key=lambda r: (r.hit_id, r.side)),
                                      key=lambda r: (r.hit_id, r.side)):
        nearest_first = sorted(group, key=lambda r: (r.at_, r.id), reverse=side < 0)
        out.extend((hit, side * step, row) for step, row in enumerate(nearest_first, start=1))
    return out


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


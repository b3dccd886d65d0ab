"""Reinforcement and weakening, as set-based SQL over the same formulas as memsvc.lifecycle.retention.

`reinforce_used` is what every "this memory was used" path calls (the context builder, search hits
a caller acted on, positive feedback, fetching an archived memory): one UPDATE for any number of ids.
Contexts reach it through `usage.UsageRecorder`, which gathers their uses and writes them in batches.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import Float, case, func, literal, update
from sqlalchemy.orm import Session

from memsvc.lifecycle.policy import get_policy
from memsvc.lifecycle.retention import MIN_STRENGTH, retention_sql
from memsvc.lifecycle.tiers import STRENGTH_CAP, TIERS, Tier, TierPolicy
from memsvc.models import Memory
from memsvc.scoping import MemoryScope


def promote_on_use_sql(tier_col: Any, has_original: Any) -> Any:
    """SQL twin of tiers.promote_on_use: one step toward verbatim; without the original text a
    memory comes back only as far as summary."""
    step = {TIERS[i].value: TIERS[i - 1].value for i in range(1, len(TIERS))}
    return case(
        (tier_col == Tier.SUMMARY.value,
         case((has_original, literal(Tier.VERBATIM.value)), else_=literal(Tier.SUMMARY.value))),
        (tier_col.in_([Tier.GIST.value, Tier.ARCHIVED.value]), case(step, value=tier_col)),
        else_=tier_col,
    )


def reinforce_sql(strength_col: Any, retention_expr: Any, alpha: float, max_strength: float) -> Any:
    """SQL twin of retention.reinforce: least(max, greatest(strength, MIN) + alpha * (1 - R))."""
    r = func.least(func.greatest(retention_expr, literal(0.0, Float)), literal(1.0, Float))
    gain = literal(max(0.0, alpha), Float) * (literal(1.0, Float) - r)
    return func.least(literal(float(max_strength), Float),
                      func.greatest(strength_col, literal(MIN_STRENGTH, Float)) + gain)


def reinforce_used(
    session: Session, scope: MemoryScope, ids: Sequence[uuid.UUID], now: datetime | None = None,
    policy: TierPolicy | None = None, uses: int = 1,
) -> dict[uuid.UUID, str]:
    """Mark memories as used at `now`: strength += alpha * (1 - R) (spacing effect), retention back
    to 1, `uses` more accesses, and one tier back toward verbatim (an archived memory re-enters the hot
    index: its half-precision vector returns to the full-precision column).

    Ids outside the scope are ignored. Returns {id: tier after}. The caller commits.
    """
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    now = now or datetime.now(UTC)
    policy = policy or get_policy(session, scope.tenant_id)
    r_now = retention_sql(now, Memory.last_accessed_at, Memory.strength, policy.tau0_seconds)
    archived = Memory.tier == Tier.ARCHIVED.value
    rows = session.execute(
        update(Memory)
        .where(*scope.where(), Memory.id.in_(ids))
        .values(
            strength=reinforce_sql(Memory.strength, r_now, policy.alpha, policy.max_strength),
            last_accessed_at=func.greatest(Memory.last_accessed_at, now),
            access_count=Memory.access_count + max(1, int(uses)),
            tier=promote_on_use_sql(Memory.tier, Memory.original_dropped_at.is_(None)),
            embedding=case((archived & Memory.embedding.is_(None), Memory.embedding_half.cast(Vector())),
                           else_=Memory.embedding),
            embedding_half=case((archived, None), else_=Memory.embedding_half),
        )
        .returning(Memory.id, Memory.tier)
        .execution_options(synchronize_session=False)
    ).all()
    _expire(session, [row.id for row in rows])
    return {row.id: row.tier for row in rows}


def weaken_memory(
    session: Session, scope: MemoryScope, memory_id: uuid.UUID, policy: TierPolicy | None = None,
) -> bool:
    """Negative feedback: strength *= negative_feedback_factor (floored). The memory then fades
    sooner; it is not deleted or demoted right away (the decay pass does that in its time)."""
    policy = policy or get_policy(session, scope.tenant_id)
    # A factor below MIN_STRENGTH / STRENGTH_CAP floors every strength anyway; raised to that, the product
    # cannot underflow a double (0.05 * 5e-324 does: Postgres refuses it, a 500 found by the fuzz run).
    factor = literal(max(policy.negative_feedback_factor, MIN_STRENGTH / STRENGTH_CAP), Float)
    # RETURNING, not rowcount: this driver pairing reports -1 for some statements, which is truthy.
    weakened = session.scalar(
        update(Memory).where(*scope.where(), Memory.id == memory_id)
        .values(strength=func.greatest(literal(MIN_STRENGTH, Float), Memory.strength * factor))
        .returning(Memory.id)
        .execution_options(synchronize_session=False)
    )
    _expire(session, [memory_id])
    return weakened is not None


def _expire(session: Session, ids: Sequence[uuid.UUID]) -> None:
    # Objects already loaded in this session must not show pre-update values.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Memory) and obj.id in ids:
            session.expire(obj)


def promote_if_archived(session: Session, scope: MemoryScope, memory: Memory, policy: TierPolicy | None = None) -> bool:
    """Fetching an archived memory is a use: it is reinforced and comes back into the hot index
    (one tier up). Other fetches change nothing (reading is not remembering). The caller commits."""
    if memory.tier != Tier.ARCHIVED.value:
        return False
    reinforce_used(session, scope, [memory.id], policy=policy)
    return True

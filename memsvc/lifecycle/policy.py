"""Per-tenant lifecycle policy, stored in tenants.policy (jsonb) under "lifecycle" and validated by
`TierPolicy` (memsvc.lifecycle.tiers). Reads never fail on an old or hand-edited row: what does not
validate any more falls back to the defaults, field by field, and the API shows the effective policy.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from memsvc import tenant_policy
from memsvc.errors import InvalidInput, NotFound
from memsvc.lifecycle.tiers import TierPolicy
from memsvc.models import Tenant

log = logging.getLogger(__name__)
POLICY_KEY = "lifecycle"


def _effective(stored: Mapping[str, Any] | None) -> TierPolicy:
    # Fields that no longer validate fall back to their defaults, one by one (logged, not fatal).
    return tenant_policy.effective(TierPolicy, (stored or {}).get(POLICY_KEY), POLICY_KEY)


def get_policy(session: Session, tenant_id: uuid.UUID) -> TierPolicy:
    stored = session.scalar(select(Tenant.policy).where(Tenant.id == tenant_id))
    if stored is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return _effective(stored)


def get_policies(session: Session, tenant_ids: Iterable[uuid.UUID] | None = None) -> dict[uuid.UUID, TierPolicy]:
    query = select(Tenant.id, Tenant.policy)
    if tenant_ids is not None:
        query = query.where(Tenant.id.in_(list(tenant_ids)))
    return {tid: _effective(policy) for tid, policy in session.execute(query)}


def put_policy(session: Session, tenant_id: uuid.UUID, data: Any, *, merge: bool = False) -> TierPolicy:
    """Replace (PUT) or merge into (PATCH) the tenant's policy. Unknown fields, wrong types and
    thresholds out of order are a 422 listing every problem; nothing is stored then."""
    if not isinstance(data, Mapping):
        raise InvalidInput("the policy must be a JSON object", details={"field": None})
    base = get_policy(session, tenant_id) if merge else None
    policy = TierPolicy.from_input(data, base)
    stored = session.scalar(select(Tenant.policy).where(Tenant.id == tenant_id).with_for_update()) or {}
    # Only the fields the tenant chose are stored, so a later change of a default reaches them.
    chosen = policy.model_dump(exclude_defaults=True)
    session.execute(update(Tenant).where(Tenant.id == tenant_id).values(policy={**stored, POLICY_KEY: chosen}))
    session.flush()
    return policy

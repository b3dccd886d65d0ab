"""Turning rows into the public shapes (one place, so the API, SDK and dashboard agree)."""

from __future__ import annotations

from datetime import UTC, datetime

from memsvc.lifecycle.retention import retention
from memsvc.models import ApiKey, Memory
from memsvc.schemas import KeyOut, MemoryOut


def memory_out(memory: Memory, *, tau0_seconds: float, now: datetime | None = None) -> MemoryOut:
    """The public shape; retention uses the tenant policy's tau0 (no default, so no caller forgets it)."""
    now = now or datetime.now(UTC)
    elapsed = (now - memory.last_accessed_at).total_seconds()
    return MemoryOut(
        id=memory.id, kind=memory.kind, content=memory.content, summary=memory.summary, summary_by=memory.summary_by,
        gist=memory.gist, tier=memory.tier, user_id=memory.user_id, agent_id=memory.agent_id,
        session_id=memory.session_id,
        importance=memory.importance, strength=memory.strength, access_count=memory.access_count,
        retention=retention(elapsed, memory.strength, tau0_seconds),
        last_accessed_at=memory.last_accessed_at, occurred_at=memory.occurred_at, recorded_at=memory.recorded_at,
        updated_at=memory.updated_at, valid_from=memory.valid_from, valid_to=memory.valid_to,
        superseded_by=memory.superseded_by, content_hash=memory.content_hash, metadata=memory.metadata_ or {},
        tags=list(memory.tags or []),
    )


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id, tenant_id=key.tenant_id, name=key.name, prefix=key.prefix, scopes=list(key.scopes),
        user_ids=key.user_ids, agent_ids=key.agent_ids, created_at=key.created_at, revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )

"""Whose memories a consolidation job reads and whose facts it writes. Its own module: the write path's hooks
(memsvc.lifecycle.hooks, which the store calls) name a scope without importing consolidation itself."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from memsvc.models import Memory


@dataclass(frozen=True)
class ConsolidationScope:
    """Whose facts: a tenant's (user_id, agent_id) pair, either may be None. session_id only narrows
    which episodes are read; the facts belong to the user/agent."""

    tenant_id: uuid.UUID
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None

    def key(self) -> str:
        return f"consolidate:{self.tenant_id}:{self.user_id or ''}:{self.agent_id or ''}"

    def as_dict(self) -> dict[str, str | None]:
        return {"user_id": self.user_id, "agent_id": self.agent_id, "session_id": self.session_id}

    def owner_where(self) -> list[Any]:
        return [Memory.tenant_id == self.tenant_id, Memory.user_id.is_not_distinct_from(self.user_id),
                Memory.agent_id.is_not_distinct_from(self.agent_id)]

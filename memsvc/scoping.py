"""The one place where every memory query is scoped to a tenant (and to a key's allowed users/agents).

Store, retrieval and lifecycle code start their queries from `MemoryScope.select()` or
`MemoryScope.where()`, never from a bare `select(Memory)`, so no handler has to remember to filter.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.sql.elements import ColumnElement

from memsvc.errors import Forbidden
from memsvc.models import Memory
from memsvc.tenancy import Principal


@dataclass(frozen=True)
class MemoryScope:
    tenant_id: uuid.UUID
    user_ids: tuple[str, ...] | None = None
    agent_ids: tuple[str, ...] | None = None

    @classmethod
    def of(cls, principal: Principal) -> MemoryScope:
        return cls(principal.tenant_id, principal.user_ids, principal.agent_ids)

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = [Memory.tenant_id == self.tenant_id]
        if self.user_ids is not None:
            clauses.append(Memory.user_id.in_(self.user_ids))
        if self.agent_ids is not None:
            clauses.append(Memory.agent_id.in_(self.agent_ids))
        return clauses

    def select(self, *entities: Any) -> Select[Any]:
        return select(*(entities or (Memory,))).where(*self.where())

    def check_writable(self, user_id: str | None, agent_id: str | None) -> None:
        """A restricted key may only write memories inside its restriction."""
        if self.user_ids is not None and user_id not in self.user_ids:
            raise Forbidden(
                "this key may only write memories for user_ids " + ", ".join(self.user_ids),
                details={"user_id": user_id, "allowed": list(self.user_ids)},
            )
        if self.agent_ids is not None and agent_id not in self.agent_ids:
            raise Forbidden(
                "this key may only write memories for agent_ids " + ", ".join(self.agent_ids),
                details={"agent_id": agent_id, "allowed": list(self.agent_ids)},
            )

"""A tenant's retrieval policy: which recipe ranks its searches and contexts, and its full-text language.

Stored in tenants.policy (jsonb) under "retrieval", beside the lifecycle policy; `GET/PUT/PATCH
/v1/policy/retrieval`. Unset fields mean "the deployment's default" (MEMSVC_RECIPE; `simple` parsing).
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from memsvc import tenant_policy
from memsvc.errors import InvalidInput

POLICY_KEY = "retrieval"


class RetrievalPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    recipe: str | None = Field(default=None, max_length=100, description=(
        "The recipe (GET /v1/recipes) that ranks this tenant's searches and contexts when a request names "
        "none; unset: the deployment's default (MEMSVC_RECIPE, `general`)."))
    language: str | None = Field(default=None, max_length=63, description=(
        "Postgres text-search configuration full text parses memories and queries with (english, german, "
        "russian, french, ... or simple); unset: simple (no stemming, any language). A change re-parses "
        "the tenant's memories in a reindex_fulltext job."))


def get_policy(session: Session, tenant_id: uuid.UUID) -> RetrievalPolicy:
    return tenant_policy.read_section(session, tenant_id, POLICY_KEY, RetrievalPolicy)


def put_policy(session: Session, tenant_id: uuid.UUID, data: Any, *, recipes: Container[str],
               languages: Sequence[str], merge: bool = False) -> tuple[RetrievalPolicy, bool]:
    """Replace (PUT) or merge into (PATCH) the policy. Returns it and whether the language changed.
    An unknown field, recipe or language is a 422 naming what to send instead; nothing is stored then."""
    def check(policy: RetrievalPolicy) -> None:
        if policy.recipe is not None and policy.recipe not in recipes:
            raise InvalidInput(f"unknown recipe {policy.recipe!r} (GET /v1/recipes lists them)",
                               details={"field": "recipe"})
        if policy.language is not None and policy.language not in languages:
            raise InvalidInput(f"unknown language {policy.language!r}; this database has: {', '.join(languages)}",
                               details={"field": "language"})

    before, policy = tenant_policy.write_section(session, tenant_id, POLICY_KEY, RetrievalPolicy, data, merge=merge,
                                                 check=check)
    return policy, (policy.language or "simple") != (before.language or "simple")

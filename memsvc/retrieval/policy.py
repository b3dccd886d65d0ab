"""A tenant's retrieval policy: which recipe ranks its searches and contexts, and its full-text language.

Stored in tenants.policy (jsonb) under "retrieval", beside the lifecycle policy; `GET/PUT/PATCH
/v1/policy/retrieval`. Unset fields mean "the deployment's default" (MEMSVC_RECIPE; `simple` parsing).
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from memsvc.errors import InvalidInput, NotFound
from memsvc.models import Tenant

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


def _stored(session: Session, tenant_id: uuid.UUID, lock: bool = False) -> dict[str, Any]:
    query = select(Tenant.policy).where(Tenant.id == tenant_id)
    stored = session.scalar(query.with_for_update() if lock else query)
    if stored is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return dict(stored)


def get_policy(session: Session, tenant_id: uuid.UUID) -> RetrievalPolicy:
    data = _stored(session, tenant_id).get(POLICY_KEY) or {}
    try:
        return RetrievalPolicy.model_validate(data)
    except ValidationError:
        return RetrievalPolicy()  # a hand-edited row: the defaults, rather than failing every search


def put_policy(session: Session, tenant_id: uuid.UUID, data: Any, *, recipes: Container[str],
               languages: Sequence[str], merge: bool = False) -> tuple[RetrievalPolicy, bool]:
    """Replace (PUT) or merge into (PATCH) the policy. Returns it and whether the language changed.
    An unknown field, recipe or language is a 422 naming what to send instead; nothing is stored then."""
    if not isinstance(data, Mapping):
        raise InvalidInput("the retrieval policy must be a JSON object", details={"field": None})
    stored = _stored(session, tenant_id, lock=True)
    try:
        before = RetrievalPolicy.model_validate(stored.get(POLICY_KEY) or {})
    except ValidationError:  # a hand-edited row: replaced by what is sent now
        before = RetrievalPolicy()
    try:
        policy = RetrievalPolicy.model_validate({**(before.model_dump(exclude_none=True) if merge else {}), **data})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error.get("loc", ())) or None
        raise InvalidInput(f"{field}: {error.get('msg')}", details={"field": field}) from None
    if policy.recipe is not None and policy.recipe not in recipes:
        raise InvalidInput(f"unknown recipe {policy.recipe!r} (GET /v1/recipes lists them)",
                           details={"field": "recipe"})
    if policy.language is not None and policy.language not in languages:
        raise InvalidInput(f"unknown language {policy.language!r}; this database has: {', '.join(languages)}",
                           details={"field": "language"})
    session.execute(update(Tenant).where(Tenant.id == tenant_id).values(
        policy={**stored, POLICY_KEY: policy.model_dump(exclude_none=True)}))
    session.flush()
    return policy, (policy.language or "simple") != (before.language or "simple")

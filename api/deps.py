"""Request-scoped dependencies: a database session per request and the authenticated principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from sqlalchemy.orm import Session

from memsvc.config import Settings
from memsvc.embeddings import Embedder
from memsvc.errors import InvalidInput
from memsvc.lifecycle.policy import get_policy
from memsvc.lifecycle.tiers import TierPolicy
from memsvc.models import Memory
from memsvc.schemas import MemoryOut
from memsvc.scoping import MemoryScope
from memsvc.store import MemoryStore
from memsvc.tenancy import Principal, authenticate
from memsvc.validation import text_problem
from memsvc.views import memory_out


def get_session(request: Request) -> Iterator[Session]:
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()  # anything a handler did not commit is rolled back here


async def check_params(request: Request) -> None:
    """Every query and path parameter of every route (installed on the app), for what Postgres can neither
    store nor compare: a NUL or an unpaired surrogate is a 422 naming the parameter, never a database error."""
    for where, params in (("query", request.query_params.multi_items()), ("path", list(request.path_params.items()))):
        for name, value in params:
            problem = text_problem(value) if isinstance(value, str) else None
            if problem is not None:
                raise InvalidInput(f"{where} parameter {name} {problem}", details={"field": name, "in": where})


def _id_path(what: str) -> Any:
    # Documented as a UUID; the route parses it (memsvc.store.parse_uuid), so a malformed one is a 422 naming it.
    return Path(description=f"The {what} (a UUID).", json_schema_extra={"format": "uuid"})


MemoryId = Annotated[str, _id_path("memory's id")]
JobId = Annotated[str, _id_path("job's id")]
KeyId = Annotated[str, _id_path("API key's id")]


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_embedder_dep(request: Request) -> Embedder:
    return request.app.state.embedder()


def get_principal(
    # Documented as the bearer security scheme (api.openapi), not as a header parameter.
    authorization: str | None = Header(default=None, include_in_schema=False),
    session: Session = Depends(get_session),
) -> Principal:
    token = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    return authenticate(session, token)


def requires(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    # async: a check of a set, run on the event loop (a sync dependency costs a hop to a worker thread).
    async def dependency(principal: Principal = Depends(get_principal)) -> Principal:
        principal.require(scope)
        return principal

    dependency.__name__ = f"requires_{scope}"
    return dependency


def get_store(
    request: Request, session: Session = Depends(get_session), principal: Principal = Depends(get_principal)
) -> MemoryStore:
    from api.lifecycle_deps import get_lifecycle_hooks

    return MemoryStore(session, MemoryScope.of(principal), request.app.state.embedder(), request.app.state.settings,
                       hooks=get_lifecycle_hooks(request))


async def raw_body(request: Request) -> bytes:
    return await request.body()


def get_tenant_policy(store: MemoryStore = Depends(get_store)) -> TierPolicy:
    return get_policy(store.session, store.scope.tenant_id)


Presenter = Callable[[Memory], MemoryOut]


def get_presenter(policy: TierPolicy = Depends(get_tenant_policy)) -> Presenter:
    """Rows -> MemoryOut with retention under the caller's tenant policy."""
    return partial(memory_out, tau0_seconds=policy.tau0_seconds)

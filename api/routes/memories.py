"""/v1/memories: create, batch, list, get, update, delete, and erase a whole scope."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.deps import MemoryId, Presenter, get_presenter, get_store, get_tenant_policy, raw_body, requires
from api.openapi import errors
from api.writes import commit_write
from memsvc.lifecycle.feedback import promote_if_archived
from memsvc.lifecycle.tiers import TierPolicy
from memsvc.memtokens import service as memtokens
from memsvc.schemas import (
    BatchCreate,
    BatchResult,
    DeletionReport,
    EraseRequest,
    Kind,
    MemoryCreate,
    MemoryOut,
    MemoryPage,
    MemoryUpdate,
    Tier,
)
from memsvc.store import ListFilters, MemoryStore, parse_uuid
from memsvc.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["memories"])
IDEMPOTENCY_DOC = "Send an Idempotency-Key header to make retries of this write safe."


@router.post("/memories", status_code=201, response_model=MemoryOut, responses=errors(409),
             description=IDEMPOTENCY_DOC)
def create_memory(
    item: MemoryCreate, request: Request, body: bytes = Depends(raw_body),
    principal: Principal = Depends(requires("write")), store: MemoryStore = Depends(get_store),
    present: Presenter = Depends(get_presenter),
) -> JSONResponse:
    return commit_write(request, store.session, principal, body, 201, lambda: present(store.add(item)))


@router.post("/memories/batch", status_code=201, response_model=BatchResult, responses=errors(409), description=(
    "Store 1-1,000 memories in one call, all or nothing: if any item is invalid, none is stored and the "
    "error names the item's index. " + IDEMPOTENCY_DOC
))
def create_memories(
    batch: BatchCreate, request: Request, body: bytes = Depends(raw_body),
    principal: Principal = Depends(requires("write")), store: MemoryStore = Depends(get_store),
    present: Presenter = Depends(get_presenter),
) -> JSONResponse:
    def produce() -> BatchResult:
        rows = store.add_batch(batch.items)
        return BatchResult(items=[present(r) for r in rows], count=len(rows))

    return commit_write(request, store.session, principal, body, 201, produce)


@router.get("/memories", response_model=MemoryPage, responses=errors(400))
def list_memories(
    user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
    kind: Kind | None = None, tier: Tier | None = None, tag: str | None = None,
    cursor: str | None = Query(default=None, description="next_cursor from the previous page"),
    limit: int = Query(default=50, ge=1, le=200),
    _: Principal = Depends(requires("read")), store: MemoryStore = Depends(get_store),
    present: Presenter = Depends(get_presenter),
) -> MemoryPage:
    filters = ListFilters(user_id, agent_id, session_id, kind, tier, tag)
    rows, next_cursor = store.list(filters, cursor, limit)
    return MemoryPage(items=[present(r) for r in rows], next_cursor=next_cursor)


@router.get("/memories/{memory_id}", response_model=MemoryOut, responses=errors(404))
def get_memory(
    memory_id: MemoryId, _: Principal = Depends(requires("read")), store: MemoryStore = Depends(get_store),
    policy: TierPolicy = Depends(get_tenant_policy), present: Presenter = Depends(get_presenter),
) -> MemoryOut:
    memory = store.get(parse_uuid(memory_id))
    if promote_if_archived(store.session, store.scope, memory, policy):  # fetching an archived memory is a use
        store.session.commit()
        memory = store.get(memory.id)
    out = present(memory)
    out.memory_tokens = memtokens.token_statuses(store.session, store.scope, memory.id)
    return out


@router.patch(
    "/memories/{memory_id}", response_model=MemoryOut, responses=errors(404, 409),
    description="Partial update; new content is re-embedded.",
)
def update_memory(
    memory_id: MemoryId, patch: MemoryUpdate, request: Request, body: bytes = Depends(raw_body),
    principal: Principal = Depends(requires("write")), store: MemoryStore = Depends(get_store),
    present: Presenter = Depends(get_presenter),
) -> JSONResponse:
    mid = parse_uuid(memory_id)
    return commit_write(request, store.session, principal, body, 200, lambda: present(store.update(mid, patch)))


@router.delete("/memories/{memory_id}", response_model=DeletionReport, responses=errors(404, 409), description=(
    "Delete one memory. Derived memories whose every source is gone are deleted too; the report lists them."
))
def delete_memory(
    memory_id: MemoryId, request: Request, principal: Principal = Depends(requires("write")),
    store: MemoryStore = Depends(get_store),
) -> JSONResponse:
    mid = parse_uuid(memory_id)
    return commit_write(request, store.session, principal, b"", 200, lambda: store.delete(mid))


@router.post("/erase", response_model=DeletionReport, tags=["memories"], responses=errors(409), description=(
    "Erase every memory of a user, agent and/or session (at least one), with the cascade report."
))
def erase_scope(
    selector: EraseRequest, request: Request, body: bytes = Depends(raw_body),
    principal: Principal = Depends(requires("write")), store: MemoryStore = Depends(get_store),
) -> JSONResponse:
    return commit_write(request, store.session, principal, body, 200, lambda: store.erase(selector))

"""Memory tokens over HTTP: the tenant's policy, training a scope (a job), a memory's token status, and
decoding a stored set back to text so anyone can check it. The rules live in memsvc.memtokens."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import MemoryId, get_session, get_store, raw_body, requires
from api.lifecycle_deps import get_job_queue
from api.openapi import body_schema, errors
from api.writes import commit_write
from memsvc import jobs, tenant_policy
from memsvc.errors import InvalidInput
from memsvc.memtokens import service
from memsvc.memtokens.local_models import LocalModels
from memsvc.memtokens.policy import POLICY_KEY, MemoryTokenPolicy, get_policy, refusal
from memsvc.queue import JobQueue
from memsvc.schemas import MemoryTokenStatus, RequestId, ScopeSelector
from memsvc.store import MemoryStore, parse_uuid
from memsvc.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["memory tokens"])


class TrainRequest(ScopeSelector):
    memory_ids: list[RequestId] | None = Field(default=None, max_length=1000, description=(
        "These memories (each must qualify under the policy, or the request is refused saying why)."))
    model: str | None = Field(default=None, max_length=200, description=(
        "Local model (`smollm2` or `local/smollm2`); default: the policy's."))
    retrain: bool = Field(default=False, description="Train again memories that already have a set.")


class TokenStatusList(BaseModel):
    memory_id: uuid.UUID
    items: list[MemoryTokenStatus]


class DecodeOut(BaseModel):
    memory_id: uuid.UUID
    model_id: str
    text: str = Field(description="What greedy decoding from the stored vectors alone produces.")
    exact: bool = Field(description="`text` is the memory's content, character for character.")
    verified: bool


def _models(request: Request) -> LocalModels:
    return request.app.state.retrieval.local_models


@router.get("/policy/memory-tokens", response_model=MemoryTokenPolicy, description=(
    "Which of the tenant's memories get memory tokens (kinds, importance, length) and for which local model."))
def get_memtoken_policy(principal: Principal = Depends(requires("read")),
                        session: Session = Depends(get_session)) -> MemoryTokenPolicy:
    return get_policy(session, principal.tenant_id)


def _put(request: Request, principal: Principal, session: Session, data: Any, merge: bool) -> MemoryTokenPolicy:
    models = _models(request)

    def check(policy: MemoryTokenPolicy) -> None:
        models.get(policy.model)  # an unknown local model is a 400 naming the ones served

    _, after = tenant_policy.write_section(session, principal.tenant_id, POLICY_KEY, MemoryTokenPolicy, data,
                                           merge=merge, check=check)
    session.commit()
    return after


@router.put("/policy/memory-tokens", response_model=MemoryTokenPolicy, openapi_extra=body_schema(MemoryTokenPolicy),
            description=(
    "Replace the tenant's memory-token policy (fields left out go back to the defaults)."))
def put_memtoken_policy(request: Request, data: dict[str, Any] = Body(...),
                        principal: Principal = Depends(requires("admin")),
                        session: Session = Depends(get_session)) -> MemoryTokenPolicy:
    return _put(request, principal, session, data, merge=False)


@router.patch("/policy/memory-tokens", response_model=MemoryTokenPolicy,
              openapi_extra=body_schema(MemoryTokenPolicy), description=(
    "Change some fields of the tenant's memory-token policy."))
def patch_memtoken_policy(request: Request, data: dict[str, Any] = Body(...),
                          principal: Principal = Depends(requires("admin")),
                          session: Session = Depends(get_session)) -> MemoryTokenPolicy:
    return _put(request, principal, session, data, merge=True)


@router.post("/memory-tokens/train", status_code=202, response_model=jobs.JobAccepted, responses=errors(404, 409),
             description=(
    "Train memory tokens (k input vectors per memory, the local model frozen, until a greedy decode "
    "reproduces the text exactly) for the named memories, or for every memory of the user/agent/session "
    "(or the whole tenant) that the policy selects and that has no set yet. Runs as a "
    "`train_memory_tokens` job (GET /v1/jobs/{job_id}: progress, then per-memory outcomes); the same request "
    "while its job is queued returns that job."))
def train(
    request: Request, body_in: TrainRequest, body: bytes = Depends(raw_body),
    principal: Principal = Depends(requires("write")), store_: MemoryStore = Depends(get_store),
    queue: JobQueue = Depends(get_job_queue),
) -> JSONResponse:
    session = store_.session
    policy = get_policy(session, principal.tenant_id)
    spec = _models(request).get(body_in.model or policy.model)
    ids = tuple(dict.fromkeys(body_in.memory_ids or ()))
    if ids:
        _check_named(store_, ids, policy, spec)

    def produce() -> jobs.JobAccepted:
        selection = service.Selection(body_in.user_id, body_in.agent_id, body_in.session_id, ids, body_in.retrain)
        job = service.schedule(session, queue, store_.scope, selection, spec)
        return jobs.JobAccepted(job_id=job.id, status=job.status, job=jobs.job_out(job))

    return commit_write(request, session, principal, body, 202, produce)


def _check_named(store_: MemoryStore, ids: tuple[uuid.UUID, ...], policy: MemoryTokenPolicy, spec: Any) -> None:
    """Named memories that the policy refuses are a 422 saying why, before any job exists."""
    counter = spec.counter()
    for memory in store_.get_many(ids):
        why = refusal(memory.kind, memory.importance, memory.tier, counter.count(memory.content), policy)
        if why is not None:
            raise InvalidInput(f"memory {memory.id} does not qualify for memory tokens: {why}",
                               code="not_qualified", details={"field": "memory_ids", "id": str(memory.id)})


@router.get("/memories/{memory_id}/tokens", response_model=TokenStatusList, responses=errors(404), description=(
    "The memory's token sets: per local model, whether verified, on its present content, and the training."))
def token_status(memory_id: MemoryId, _: Principal = Depends(requires("read")),
                 store_: MemoryStore = Depends(get_store)) -> TokenStatusList:
    memory = store_.get(parse_uuid(memory_id))
    return TokenStatusList(memory_id=memory.id, items=service.token_statuses(store_.session, store_.scope, memory.id))


@router.post("/memories/{memory_id}/tokens/decode", response_model=DecodeOut, responses=errors(404), description=(
    "Decode the memory's stored token set back to text (greedy, from the vectors alone) and say whether it "
    "is the content exactly. Runs the local model in this process: seconds on a CPU."))
def decode(request: Request, memory_id: MemoryId,
           model: str | None = Body(default=None, embed=True, max_length=200),
           _: Principal = Depends(requires("read")), store_: MemoryStore = Depends(get_store)) -> DecodeOut:
    mid = parse_uuid(memory_id)
    spec = _models(request).get(model or get_policy(store_.session, store_.scope.tenant_id).model)
    out = service.decode(store_.session, store_.scope, mid, spec)
    return DecodeOut(memory_id=out.memory_id, model_id=out.model_id, text=out.text, exact=out.exact,
                     verified=out.verified)

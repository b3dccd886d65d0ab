"""Lifecycle endpoints: consolidate (202 + job), feedback, tenant policy, retention curves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import MemoryId, Presenter, get_presenter, get_session, get_store, get_tenant_policy, raw_body, requires
from api.lifecycle_deps import get_job_queue
from api.openapi import body_schema, errors
from api.writes import commit_write
from memsvc import jobs
from memsvc.lifecycle import feedback, policy
from memsvc.lifecycle.consolidate import ConsolidationScope
from memsvc.lifecycle.hooks import schedule_consolidation
from memsvc.lifecycle.retention import SECONDS_PER_DAY, retention_at, retention_curve
from memsvc.lifecycle.retention import retention as retention_of
from memsvc.lifecycle.schemas import ConsolidateRequest, FeedbackRequest, RetentionCurve, RetentionPoint
from memsvc.lifecycle.tiers import TierPolicy
from memsvc.models import Job
from memsvc.queue import JobQueue
from memsvc.schemas import MemoryOut
from memsvc.store import MemoryStore, parse_uuid
from memsvc.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["lifecycle"])


@router.post("/consolidate", status_code=202, response_model=jobs.JobAccepted, responses=errors(409), description=(
    "Consolidate a scope's episodes into semantic facts in the background. Returns the job at once; "
    "follow it at GET /v1/jobs/{job_id}. Send an Idempotency-Key header to make retries safe."
))
def consolidate(
    body_in: ConsolidateRequest, request: Request, body: bytes = Depends(raw_body),
    principal: Principal = Depends(requires("write")), store: MemoryStore = Depends(get_store),
    queue: JobQueue = Depends(get_job_queue),
) -> JSONResponse:
    store.scope.check_writable(body_in.user_id, body_in.agent_id)
    scope = ConsolidationScope(principal.tenant_id, body_in.user_id, body_in.agent_id, body_in.session_id)

    def produce() -> jobs.JobAccepted:
        job_id, _ = schedule_consolidation(store.session, queue, scope, delay_s=0.0, reprocess=body_in.reprocess,
                                           expedite=True)
        job = store.session.get(Job, job_id)
        assert job is not None
        return jobs.JobAccepted(job_id=job.id, status=job.status, job=jobs.job_out(job))

    # A debounced job already waiting for this scope is brought forward instead of doubled.
    return commit_write(request, store.session, principal, body, 202, produce)


@router.post("/memories/{memory_id}/feedback", response_model=MemoryOut, responses=errors(404), description=(
    "Say whether a memory was useful: useful=true reinforces it as a use (more when it was close to "
    "being forgotten) and brings it one tier back toward verbatim; false weakens it."
))
def give_feedback(
    memory_id: MemoryId, item: FeedbackRequest, _: Principal = Depends(requires("write")),
    store: MemoryStore = Depends(get_store), current: TierPolicy = Depends(get_tenant_policy),
    present: Presenter = Depends(get_presenter),
) -> MemoryOut:
    mid = parse_uuid(memory_id)
    memory = store.get(mid)
    store.scope.check_writable(memory.user_id, memory.agent_id)
    if item.useful:
        feedback.reinforce_used(store.session, store.scope, [mid], policy=current)
    else:
        feedback.weaken_memory(store.session, store.scope, mid, policy=current)
    store.session.commit()
    return present(store.get(mid))


@router.get("/policy", response_model=TierPolicy, description="The tenant's effective lifecycle policy.")
def get_policy(principal: Principal = Depends(requires("read")), session: Session = Depends(get_session)) -> TierPolicy:
    return policy.get_policy(session, principal.tenant_id)


def _put(principal: Principal, session: Session, data: Any, merge: bool) -> TierPolicy:
    result = policy.put_policy(session, principal.tenant_id, data, merge=merge)
    session.commit()
    return result


@router.put("/policy", response_model=TierPolicy, openapi_extra=body_schema(TierPolicy), description=(
    "Replace the tenant's lifecycle policy (fields left out take their defaults). Thresholds must satisfy "
    "summary > gist > archive; ttl_days (delete memories older than this) is off unless set."
))
def put_policy(
    data: dict[str, Any] = Body(...), principal: Principal = Depends(requires("admin")),
    session: Session = Depends(get_session),
) -> TierPolicy:
    return _put(principal, session, data, merge=False)


@router.patch("/policy", response_model=TierPolicy, openapi_extra=body_schema(TierPolicy),
              description="Change some fields of the lifecycle policy.")
def patch_policy(
    data: dict[str, Any] = Body(...), principal: Principal = Depends(requires("admin")),
    session: Session = Depends(get_session),
) -> TierPolicy:
    return _put(principal, session, data, merge=True)


@router.get("/memories/{memory_id}/retention", response_model=RetentionCurve, responses=errors(404), description=(
    "Retention now and over the next horizon_days if the memory is not used (what the dashboard plots)."
))
def retention(
    memory_id: MemoryId, horizon_days: float = Query(default=90.0, gt=0, le=36_500),
    points: int = Query(default=50, ge=2, le=1000),
    _: Principal = Depends(requires("read")), store: MemoryStore = Depends(get_store),
    current: TierPolicy = Depends(get_tenant_policy),
) -> RetentionCurve:
    memory = store.get(parse_uuid(memory_id))
    now = datetime.now(UTC)
    elapsed0 = max(0.0, (now - memory.last_accessed_at).total_seconds())
    curve = retention_curve(memory.strength, current.tau0_seconds, horizon_days * SECONDS_PER_DAY, points)
    return RetentionCurve(
        memory_id=memory.id, tier=memory.tier, strength=memory.strength, importance=memory.importance,
        tau0_days=current.tau0_days, last_accessed_at=memory.last_accessed_at,
        retention_now=retention_at(now, memory.last_accessed_at, memory.strength, current.tau0_seconds),
        points=[RetentionPoint(t_days=t / SECONDS_PER_DAY, at=now + timedelta(seconds=t),
                               retention=retention_of(elapsed0 + t, memory.strength, current.tau0_seconds))
                for t, _ in curve],
    )

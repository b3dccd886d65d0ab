"""/v1/maintenance/sparse-backfill: learned-sparse vectors for the tenant's memories that have none."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import get_session, raw_body, requires
from api.lifecycle_deps import get_job_queue
from api.openapi import errors
from api.writes import commit_write
from memsvc import jobs, sparse_backfill
from memsvc.errors import InvalidInput
from memsvc.queue import JobQueue
from memsvc.sparse_encoder import encoder_for
from memsvc.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["maintenance"])


@router.post("/maintenance/sparse-backfill", status_code=202, response_model=jobs.JobAccepted, responses=errors(409),
             description=(
    "Encode every memory of the tenant that has no learned-sparse (SPLADE) vector yet: written before the "
    "channel existed, while it was off, or by consolidation. With reencode=true, also those another sparse "
    "model encoded. Returns the job at once (GET /v1/jobs/{job_id}); a job still queued is returned instead "
    "of a second one. The periodic maintenance pass fills a few thousand a run on its own."
))
def backfill(
    request: Request, reencode: bool = Body(default=False, embed=True, strict=True), body: bytes = Depends(raw_body),
    principal: Principal = Depends(requires("admin")), session: Session = Depends(get_session),
    queue: JobQueue = Depends(get_job_queue),
) -> JSONResponse:
    if encoder_for(request.app.state.settings) is None:
        raise InvalidInput("no learned-sparse model is configured (MEMSVC_SPARSE_MODEL=none)",
                           code="sparse_model_off")

    def produce() -> jobs.JobAccepted:
        job = sparse_backfill.schedule(session, queue, principal.tenant_id, reencode=reencode)
        return jobs.JobAccepted(job_id=job.id, status=job.status, job=jobs.job_out(job))

    return commit_write(request, session, principal, body, 202, produce)

"""/v1/jobs: background jobs of the caller's tenant (a key restricted to some users sees theirs)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from api.deps import JobId, get_session, requires
from api.openapi import errors
from memsvc import deployment, jobs
from memsvc.store import parse_uuid
from memsvc.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.get("/jobs", response_model=jobs.JobPage, responses=errors(400),
            description="Newest first; filter by kind and status.")
def list_jobs(
    request: Request, kind: str | None = Query(default=None, max_length=64),
    status: Literal["queued", "running", "succeeded", "failed"] | None = Query(default=None),
    cursor: str | None = Query(default=None, description="next_cursor from the previous page"),
    limit: int = Query(default=50, ge=1, le=200),
    principal: Principal = Depends(requires("read")), session: Session = Depends(get_session),
) -> jobs.JobPage:
    rows, next_cursor = jobs.list_jobs(
        session, principal.tenant_id, user_ids=principal.user_ids, agent_ids=principal.agent_ids, kind=kind,
        status=status, cursor=cursor, limit=limit,
        secret=deployment.cursor_secret(session, request.app.state.settings.cursor_secret),
    )
    return jobs.JobPage(items=[jobs.job_out(j) for j in rows], next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=jobs.JobOut, responses=errors(404))
def get_job(
    job_id: JobId, principal: Principal = Depends(requires("read")), session: Session = Depends(get_session),
) -> jobs.JobOut:
    job = jobs.get_job(session, principal.tenant_id, parse_uuid(job_id, "job id"), principal.user_ids,
                       principal.agent_ids)
    return jobs.job_out(job)

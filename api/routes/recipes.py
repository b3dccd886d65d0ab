"""Retrieval recipes (GET /v1/recipes) and the tenant's retrieval policy (GET/PUT/PATCH /v1/policy/retrieval)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import get_session, requires
from api.lifecycle_deps import get_job_queue
from api.openapi import body_schema
from memsvc import jobs
from memsvc.queue import JobQueue
from memsvc.retrieval import language, policy
from memsvc.retrieval.policy import RetrievalPolicy
from memsvc.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["retrieval"])


class RecipeOut(BaseModel):
    name: str
    description: str
    default: bool = Field(description="The deployment's default (MEMSVC_RECIPE).")
    tenant_default: bool = Field(description="The caller's tenant ranks with it when a request names none.")
    settings: dict[str, Any] = Field(description="Every ranking and packing setting of the recipe.")


class RecipeList(BaseModel):
    items: list[RecipeOut]


class RetrievalPolicyOut(RetrievalPolicy):
    reindex_job_id: str | None = Field(default=None, description=(
        "When `language` changed: the reindex_fulltext job that re-parses the tenant's memories (GET /v1/jobs/{id})."))


@router.get("/recipes", response_model=RecipeList, description=(
    "The retrieval recipes: named sets of ranking and packing settings a request (`recipe`) or the tenant's "
    "policy picks. `general` assumes nothing about memories; `conversation` adds speaker, session and "
    "length signals for chat transcripts whose turns carry metadata speaker/role."))
def list_recipes(request: Request, principal: Principal = Depends(requires("read")),
                 session: Session = Depends(get_session)) -> RecipeList:
    service = request.app.state.retrieval
    chosen = service.recipe(session, principal.tenant_id, None).name
    return RecipeList(items=[
        RecipeOut(name=r.name, description=r.description, default=r.name == service.recipes.default,
                  tenant_default=r.name == chosen, settings=asdict(r.settings))
        for r in service.recipes])


@router.get("/policy/retrieval", response_model=RetrievalPolicyOut, description=(
    "The tenant's retrieval policy: its recipe and full-text language (unset: the deployment's defaults)."))
def get_retrieval_policy(principal: Principal = Depends(requires("read")),
                         session: Session = Depends(get_session)) -> RetrievalPolicyOut:
    return RetrievalPolicyOut(**policy.get_policy(session, principal.tenant_id).model_dump())


def _put(request: Request, principal: Principal, session: Session, queue: JobQueue, data: Any,
         merge: bool) -> RetrievalPolicyOut:
    names = [r.name for r in request.app.state.retrieval.recipes]
    chosen, relanguaged = policy.put_policy(session, principal.tenant_id, data, recipes=names,
                                            languages=language.available(session), merge=merge)
    job_id = None
    if relanguaged:
        job, _ = jobs.create_job(session, tenant_id=principal.tenant_id, kind="reindex_fulltext",
                                 params={"language": chosen.language or language.UNKNOWN},
                                 debounce_key="reindex_fulltext", queue=queue)
        job_id = str(job.id)
    session.commit()
    return RetrievalPolicyOut(**chosen.model_dump(), reindex_job_id=job_id)


@router.put("/policy/retrieval", response_model=RetrievalPolicyOut, openapi_extra=body_schema(RetrievalPolicy),
            description=(
    "Replace the tenant's retrieval policy (fields left out go back to the defaults). A new language "
    "re-parses the tenant's memories in a background job."))
def put_retrieval_policy(request: Request, data: dict[str, Any] = Body(...),
                         principal: Principal = Depends(requires("admin")), session: Session = Depends(get_session),
                         queue: JobQueue = Depends(get_job_queue)) -> RetrievalPolicyOut:
    return _put(request, principal, session, queue, data, merge=False)


@router.patch("/policy/retrieval", response_model=RetrievalPolicyOut,
              openapi_extra=body_schema(RetrievalPolicy), description=(
    "Change some fields of the tenant's retrieval policy."))
def patch_retrieval_policy(request: Request, data: dict[str, Any] = Body(...),
                           principal: Principal = Depends(requires("admin")), session: Session = Depends(get_session),
                           queue: JobQueue = Depends(get_job_queue)) -> RetrievalPolicyOut:
    return _put(request, principal, session, queue, data, merge=True)

"""Liveness and readiness probes (no auth, as load balancers and compose healthchecks expect)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description="database, schema (its migration), embedder, reinforcement.")
    reinforcement: dict[str, int] = Field(description="What contexts used, written in batches: pending, ...")
    components: dict[str, dict[str, Any]] | None = Field(default=None, description=(
        "What `memsvc serve` started and watches (embedded Postgres, broker, worker, beat), by name."))


_NOT_READY = {503: {"model": Readiness, "description": "Not ready (yet): the checks say why; retry after Retry-After.",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}}}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses=_NOT_READY)
def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with request.app.state.sessions() as session:
            revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
            checks["database"] = "ok"
            checks["schema"] = revision or "missing"
    except Exception as exc:  # readiness must answer, whatever is broken
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["embedder"] = "loaded" if request.app.state.embedder_loaded() else "loading"
    usage = request.app.state.usage.stats()  # reinforcement of what contexts used, written in batches
    checks["reinforcement"] = "ok" if usage.last_error is None else f"failing: {usage.last_error}"
    body_usage = {"pending": usage.pending, "reinforced": usage.reinforced, "failed_flushes": usage.failed_flushes,
                  "dropped": usage.dropped}
    # Not ready until the embedding model is loaded, so a load balancer never sends a write that would stall.
    ready = checks.get("database") == "ok" and checks.get("schema") not in (None, "missing") \
        and checks["embedder"] == "loaded"
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks,
                            "reinforcement": body_usage}
    # What `memsvc serve` started and watches (embedded Postgres, broker, worker, beat): one not running (dead,
    # or waiting for its restart) makes the whole not ready.
    components = getattr(request.app.state, "components", None)
    if components is not None:
        body["components"] = components()
        if any(c["state"] != "running" for c in body["components"].values()):
            body["status"], ready = "not_ready", False
    return JSONResponse(body, status_code=200 if ready else 503, headers=None if ready else {"Retry-After": "2"})

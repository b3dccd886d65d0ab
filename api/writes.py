"""Commit-and-respond for writes, with Idempotency-Key replay (one helper for every write route)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from memsvc import idempotency
from memsvc.tenancy import Principal


def commit_write(
    request: Request, session: Session, principal: Principal, body: bytes, status_code: int,
    produce: Callable[[], Any],
) -> JSONResponse:
    key = request.headers.get("idempotency-key")
    if key is None:
        payload = jsonable_encoder(produce())
        session.commit()
        return JSONResponse(payload, status_code=status_code)
    idempotency.check_key(key)
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, body)
    ttl = request.app.state.settings.idempotency_ttl_seconds
    stored = idempotency.claim(session, principal.tenant_id, key, fingerprint, ttl)
    if stored is not None:
        session.rollback()  # a replay writes nothing (and lets go of the record at once)
        return JSONResponse(stored.response, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"})
    payload = jsonable_encoder(produce())
    idempotency.complete(session, principal.tenant_id, key, status_code, payload)
    session.commit()
    return JSONResponse(payload, status_code=status_code)

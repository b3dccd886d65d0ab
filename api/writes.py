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
    stored = idempotency.replay(session, principal.tenant_id, key, fingerprint)
    if stored is None:
        payload = jsonable_encoder(produce())
        if idempotency.remember(session, principal.tenant_id, key, fingerprint, status_code, payload):
            session.commit()
            return JSONResponse(payload, status_code=status_code)
        # A concurrent retry with the same key won the race: drop our copy and answer with theirs.
        session.rollback()
        stored = idempotency.replay(session, principal.tenant_id, key, fingerprint)
        assert stored is not None
    return JSONResponse(stored[1], status_code=stored[0], headers={"Idempotent-Replayed": "true"})

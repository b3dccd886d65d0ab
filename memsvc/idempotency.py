"""Idempotency-Key support for writes: the first response is stored and replayed for retries."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from memsvc.errors import Conflict, InvalidInput
from memsvc.models import IdempotencyRecord


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def check_key(key: str) -> str:
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise InvalidInput("Idempotency-Key must be 1-200 printable characters", details={"header": "Idempotency-Key"})
    return key


def replay(session: Session, tenant_id: uuid.UUID, key: str, fingerprint: str) -> tuple[int, Any] | None:
    record = session.scalar(
        select(IdempotencyRecord).where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
    )
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise Conflict(
            "this Idempotency-Key was already used for a different request; use a new key for a new write",
            code="idempotency_key_reused",
        )
    return record.status_code, record.response


def remember(
    session: Session, tenant_id: uuid.UUID, key: str, fingerprint: str, status_code: int, response: Any
) -> bool:
    """Store the response in the caller's transaction. False when a concurrent twin stored one first."""
    result = session.execute(
        insert(IdempotencyRecord)
        .values(
            tenant_id=tenant_id, key=key, request_hash=fingerprint, status_code=status_code,
            response=json.loads(json.dumps(response, default=str)),
        )
        .on_conflict_do_nothing()
    )
    return bool(result.rowcount)

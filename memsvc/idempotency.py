"""Idempotency-Key support for writes: the first response is stored and replayed for retries.

Claim first: a keyed write takes its key (inserts its record) before it does anything else, in the same
transaction as the write. A concurrent retry with the same key then blocks on that record's unique index
entry until the first commits, and replays what it stored; if the first fails (rolls back), the retry takes
the key and writes. So a key stores its write once, whatever the timing, and nobody does the work twice.

Records expire (MEMSVC_IDEMPOTENCY_TTL_SECONDS): an expired one is taken over by the next write with its key
(a fresh write) and purged by the maintenance pass. Each record lists the ids its response names
(`mentions`), so erasing a memory also forgets the records that would replay it.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from memsvc.errors import Conflict, InvalidInput
from memsvc.models import IdempotencyRecord

# status_code of a claimed record whose write has not finished. Never committed as such (the write updates
# it first), so seeing one means something stored it by hand or a bug did: answered as "in progress".
PENDING = 0
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


@dataclass(frozen=True)
class Stored:
    status_code: int
    response: Any


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def check_key(key: str) -> str:
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise InvalidInput("Idempotency-Key must be 1-200 printable characters", details={"header": "Idempotency-Key"})
    return key


def claim(session: Session, tenant_id: uuid.UUID, key: str, fingerprint: str, ttl_seconds: float) -> Stored | None:
    """Take `key` for this request: None means go ahead, write, then `complete`; else the stored response to
    replay. Waits while a concurrent request holding the key is still writing. Raises Conflict when the key
    was used for another request. The caller's transaction holds the claim: rolling back releases it."""
    for _ in range(3):
        fresh = insert(IdempotencyRecord).values(
            tenant_id=tenant_id, key=key, request_hash=fingerprint, status_code=PENDING, response={}, mentions=[],
            created_at=func.now(),
        )
        taken = session.scalar(fresh.on_conflict_do_update(
            index_elements=[IdempotencyRecord.tenant_id, IdempotencyRecord.key],
            set_={"request_hash": fresh.excluded.request_hash, "status_code": PENDING, "response": {},
                  "mentions": [], "created_at": fresh.excluded.created_at},
            where=IdempotencyRecord.created_at <= func.now() - timedelta(seconds=ttl_seconds),  # expired
        ).returning(IdempotencyRecord.key))
        if taken is not None:
            return None
        record = session.execute(
            select(IdempotencyRecord.request_hash, IdempotencyRecord.status_code, IdempotencyRecord.response)
            .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
        ).one_or_none()
        if record is None:  # erased or purged between the two statements: claim again
            continue
        if record.request_hash != fingerprint:
            raise Conflict(
                "this Idempotency-Key was already used for a different request; use a new key for a new write",
                code="idempotency_key_reused",
            )
        if record.status_code == PENDING:
            break
        return Stored(record.status_code, record.response)
    raise Conflict("a request with this Idempotency-Key is still in progress; retry it in a moment",
                   code="idempotency_key_in_progress")


def complete(session: Session, tenant_id: uuid.UUID, key: str, status_code: int, response: Any) -> None:
    """Store the response of the write that claimed `key` (in its transaction, committed with the write)."""
    payload = json.loads(json.dumps(response, default=str))
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
        .values(status_code=status_code, response=payload, mentions=sorted(mentioned_ids(payload)))
    )


def mentioned_ids(payload: Any) -> set[uuid.UUID]:
    """Every UUID anywhere in a JSON response (ids of memories, jobs, links): what erasure looks records up by.
    A text that happens to hold a UUID only makes its record go a little sooner."""
    found: set[uuid.UUID] = set()
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.update(uuid.UUID(m) for m in _UUID.findall(value))
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def forget(session: Session, tenant_id: uuid.UUID, ids: Iterable[uuid.UUID]) -> int:
    """Delete the tenant's records whose response names any of `ids` (erasure). Returns how many."""
    ids = list(ids)
    if not ids:
        return 0
    return len(session.scalars(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.mentions.overlap(ids))
        .returning(IdempotencyRecord.key)
    ).all())


def purge_expired(session: Session, tenant_id: uuid.UUID, ttl_seconds: float) -> int:
    """Delete the tenant's records older than the TTL (the maintenance pass). Returns how many."""
    return len(session.scalars(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.tenant_id == tenant_id,
               IdempotencyRecord.created_at <= func.now() - timedelta(seconds=ttl_seconds))
        .returning(IdempotencyRecord.key)
    ).all())

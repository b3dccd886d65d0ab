"""The data layer of memory tokens: the memory_tokens rows of one tenant (and a key's allowed users).

Every query joins the memory through `MemoryScope`, so a token set is visible exactly when its memory
is, and a set whose memory's content changed since training (content_hash differs) counts as gone:
edits delete sets too (`remove`), this is the guard for a path that forgets. Vectors are float16,
row-major, n_vectors x hidden size.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from memsvc.models import Memory, MemoryToken
from memsvc.scoping import MemoryScope


@dataclass(frozen=True)
class TokenStatus:
    memory_id: uuid.UUID
    model_id: str
    verified: bool
    current: bool  # trained on the memory's present content
    n_vectors: int
    n_tokens: int
    train_steps: int
    train_seconds: float
    trained_at: datetime
    note: str | None


def to_bytes(vectors: np.ndarray) -> bytes:
    return np.ascontiguousarray(vectors, dtype="<f2").tobytes()


def from_bytes(data: bytes, n_vectors: int) -> np.ndarray:
    if n_vectors == 0:  # the trainer refused the memory: the row records why, no vectors
        return np.zeros((0, 0), dtype="<f2")
    return np.frombuffer(data, dtype="<f2").reshape(n_vectors, -1)


def _joined(scope: MemoryScope, *entities: object):  # type: ignore[no-untyped-def]
    return (select(*entities).join(Memory, Memory.id == MemoryToken.memory_id)
            .where(*scope.where(), MemoryToken.tenant_id == scope.tenant_id))


def verified_sets(session: Session, scope: MemoryScope, model_id: str,
                  ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """{memory id: vectors} of the usable token sets among `ids`: verified, for exactly this model, trained
    on the memory's present content."""
    if not ids:
        return {}
    rows = session.execute(_joined(scope, MemoryToken.memory_id, MemoryToken.n_vectors).where(
        MemoryToken.model_id == model_id, MemoryToken.verified.is_(True),
        MemoryToken.content_hash == Memory.content_hash, MemoryToken.memory_id.in_(list(ids))))
    return {memory_id: n for memory_id, n in rows}


def vectors(session: Session, scope: MemoryScope, model_id: str, ids: Sequence[uuid.UUID], *,
            verified_only: bool = True) -> dict[uuid.UUID, np.ndarray]:
    if not ids:
        return {}
    query = _joined(scope, MemoryToken.memory_id, MemoryToken.vectors, MemoryToken.n_vectors).where(
        MemoryToken.model_id == model_id, MemoryToken.content_hash == Memory.content_hash,
        MemoryToken.memory_id.in_(list(ids)))
    if verified_only:
        query = query.where(MemoryToken.verified.is_(True))
    return {memory_id: from_bytes(data, n) for memory_id, data, n in session.execute(query)}


def statuses(session: Session, scope: MemoryScope, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[TokenStatus]]:
    if not ids:
        return {}
    rows = session.execute(_joined(
        scope, MemoryToken.memory_id, MemoryToken.model_id, MemoryToken.verified,
        MemoryToken.content_hash == Memory.content_hash, MemoryToken.n_vectors, MemoryToken.n_tokens,
        MemoryToken.train_steps, MemoryToken.train_seconds, MemoryToken.trained_at, MemoryToken.note,
    ).where(MemoryToken.memory_id.in_(list(ids))).order_by(MemoryToken.memory_id, MemoryToken.model_id))
    out: dict[uuid.UUID, list[TokenStatus]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(TokenStatus(*row))
    return out


def save(session: Session, scope: MemoryScope, memory_id: uuid.UUID, model_id: str, content_hash: str, *,
         vectors: np.ndarray, verified: bool, steps: int, seconds: float, n_tokens: int, note: str | None) -> bool:
    """Store (or replace) one memory's set. False, and nothing stored, when the memory is gone or its content
    changed since `content_hash` was read (an edit during training): that set would be of the old text."""
    still = session.scalar(scope.select(Memory.id).where(Memory.id == memory_id,
                                                          Memory.content_hash == content_hash).with_for_update())
    if still is None:
        return False
    values = {"memory_id": memory_id, "model_id": model_id, "tenant_id": scope.tenant_id,
              "vectors": to_bytes(vectors), "n_vectors": int(vectors.shape[0]), "verified": verified,
              "train_steps": steps, "train_seconds": seconds, "content_hash": content_hash,
              "n_tokens": n_tokens, "note": note, "trained_at": func.now()}
    stmt = insert(MemoryToken).values(**values)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[MemoryToken.memory_id, MemoryToken.model_id],
        set_={k: stmt.excluded[k] for k in values if k not in ("memory_id", "model_id")}))
    return True


def remove(session: Session, tenant_id: uuid.UUID, memory_ids: Sequence[uuid.UUID]) -> int:
    """Delete every set of these memories (their content changed, or they are about to go)."""
    if not memory_ids:
        return 0
    return len(session.scalars(delete(MemoryToken).where(
        MemoryToken.tenant_id == tenant_id, MemoryToken.memory_id.in_(list(memory_ids)))
        .returning(MemoryToken.memory_id)).all())


def count(session: Session, tenant_id: uuid.UUID, memory_ids: Sequence[uuid.UUID]) -> int:
    if not memory_ids:
        return 0
    return int(session.scalar(select(func.count()).select_from(MemoryToken).where(
        MemoryToken.tenant_id == tenant_id, MemoryToken.memory_id.in_(list(memory_ids)))) or 0)


def remove_other_weights(session: Session, tenant_id: uuid.UUID, name: str, model_id: str) -> int:
    """Sets of the same model name trained on other weights: never usable again (identity changed)."""
    return len(session.scalars(delete(MemoryToken).where(
        MemoryToken.tenant_id == tenant_id, MemoryToken.model_id.like(f"{name}@%"),
        MemoryToken.model_id != model_id).returning(MemoryToken.memory_id)).all())


def trained(session: Session, scope: MemoryScope, model_id: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `ids` that already have a set for this model and their present content, verified or not
    (a set that failed is not retried unless asked: training is minutes of CPU)."""
    if not ids:
        return set()
    return set(session.scalars(_joined(scope, MemoryToken.memory_id).where(
        MemoryToken.model_id == model_id, MemoryToken.content_hash == Memory.content_hash,
        MemoryToken.memory_id.in_(list(ids)))))

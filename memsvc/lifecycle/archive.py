"""Archived vectors: half precision, out of the hot HNSW index, searchable when asked for.

An archived memory keeps its vector in `embedding_half` (halfvec) and has `embedding` NULL, so the
full-precision HNSW index (what default retrieval scans) no longer holds it. Asking for archived
memories runs a binary-quantized HNSW scan (`ix_memories_embedding_bq`, Hamming distance over
sign bits) for `oversample * limit` candidates and re-scores them exactly by cosine distance on
the half-precision vectors.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pgvector.sqlalchemy import BIT, HALFVEC
from sqlalchemy import case, cast, func, literal, select, text
from sqlalchemy.orm import Session

from memsvc.models import Memory
from memsvc.scoping import MemoryScope


def half_of(embedding_col: Any) -> Any:
    return embedding_col.cast(HALFVEC())


def archive_vector_values(is_archiving: Any) -> dict[str, Any]:
    """SET clauses for an UPDATE that archives the rows where `is_archiving` holds: the vector moves
    to half precision and leaves the hot index. Rows where it does not hold keep their values (an
    unchanged indexed value keeps the update HOT)."""
    return {
        "embedding_half": case((is_archiving, func.coalesce(Memory.embedding_half, half_of(Memory.embedding))),
                               else_=Memory.embedding_half),
        "embedding": case((is_archiving, None), else_=Memory.embedding),
    }


def _bq(expr: Any, dim: int) -> Any:
    # The cast's length must be the column's (memsvc.reembed builds the index at it), or the index is not used.
    return func.binary_quantize(expr).cast(BIT(dim))


@dataclass(frozen=True)
class ArchivedHit:
    id: uuid.UUID
    distance: float  # exact cosine distance on the half-precision vectors (0 = same direction)


def search_archived(
    session: Session, scope: MemoryScope, vector: Sequence[float], limit: int = 10, *, oversample: int = 10,
    extra_where: Sequence[Any] = (),
) -> list[ArchivedHit]:
    """Nearest archived memories of the scope to `vector`: binary-quantized candidates, exact re-score."""
    query_half = cast(literal(list(map(float, vector)), HALFVEC()), HALFVEC())
    # pgvector 0.8: keep walking the graph until enough rows pass the scope filters.
    session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    candidates = (
        scope.select(Memory.id.label("id"), Memory.embedding_half.label("v"))
        .where(Memory.tier == "archived", Memory.embedding_half.is_not(None), *extra_where)
        .order_by(_bq(Memory.embedding_half, len(vector)).op("<~>")(_bq(query_half, len(vector))))
        .limit(max(1, limit) * max(1, oversample))
        .subquery()
    )
    distance = candidates.c.v.cosine_distance(query_half)
    rows = session.execute(select(candidates.c.id, distance.label("d")).order_by(distance).limit(limit)).all()
    return [ArchivedHit(row.id, float(row.d)) for row in rows]

"""Filling in learned-sparse vectors: memories written before migration 0010, while the channel was off, or
by a path that does not encode (consolidation's facts), and re-encoding after a change of sparse model.

Two doors, one function: the `sparse_backfill` job (POST /v1/maintenance/sparse-backfill, visible in
/v1/jobs) works through a whole tenant; the periodic maintenance pass (the `decay` job) fills up to a few
thousand rows per tenant each run, so stragglers never wait for someone to ask. Both only touch rows that
still need it (NULL, or another model's vector when re-encoding), so running either twice is harmless.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from memsvc import jobs
from memsvc.batches import in_batches
from memsvc.models import Job, Memory
from memsvc.queue import JobQueue
from memsvc.sparse_encoder import SparseEncoder, sparsevec

KIND = "sparse_backfill"


def fill_sparse(sessions: sessionmaker[Session], tenant_id: uuid.UUID, encoder: SparseEncoder, *,
                max_rows: int | None = None, batch: int = 256, reencode: bool = False,
                progress: Any = None) -> int:
    """Encode the tenant's memories that have no learned-sparse vector (with `reencode`, also those another
    model made), `batch` rows a transaction, up to `max_rows` (None: all). Returns how many it wrote.

    Each batch is its own short transaction (memsvc.batches), so the next run starts where this one stopped."""
    need = Memory.sparse_embedding.is_(None)
    if reencode:
        need = or_(need, Memory.sparse_model.is_distinct_from(encoder.name))
    table = Memory.__table__
    statement = (update(table).where(table.c.id == bindparam("b_id"))
                 .values(sparse_embedding=bindparam("b_vec", type_=table.c.sparse_embedding.type),
                         sparse_model=encoder.name))
    done = 0
    query = select(Memory.id, Memory.content).where(Memory.tenant_id == tenant_id, need)
    for session, rows in in_batches(sessions, query, batch=batch, max_rows=max_rows):
        vectors = encoder.encode([r.content for r in rows])
        session.execute(statement, [{"b_id": r.id, "b_vec": sparsevec(v, encoder.dim)}
                                    for r, v in zip(rows, vectors, strict=True)])
        done += len(rows)
        if progress is not None:
            progress(done)
    return done


def missing(session: Session, tenant_id: uuid.UUID) -> int:
    """How many of the tenant's memories have no learned-sparse vector yet."""
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(Memory).where(
        Memory.tenant_id == tenant_id, Memory.sparse_embedding.is_(None))) or 0)


def schedule(session: Session, queue: JobQueue | None, tenant_id: uuid.UUID, *, reencode: bool = False) -> Job:
    """A backfill job for the tenant; while one is still queued, that one (it will see every row by then)."""
    job, _ = jobs.create_job(session, tenant_id=tenant_id, kind=KIND, params={"reencode": reencode},
                             debounce_key=f"{KIND}:{int(reencode)}", queue=queue)
    return job

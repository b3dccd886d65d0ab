"""The `jobs` table: every background job, visible through the API.

States: queued -> running -> succeeded | failed (a retried job goes back to queued with its last
error and a later run_after). Each state change is its own short transaction, so a job's row tells
the truth even while (or after) the work itself rolls back.

Liveness: a worker holds a Postgres advisory lock on the job for as long as it runs it (on its own
connection). The lock dies with the worker's connection, so `recover` can tell a running job from
one whose worker was killed without heartbeats or timeouts, and two deliveries of the same message
never run the same job at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Engine, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from memsvc import pagination
from memsvc.errors import InvalidInput, NotFound
from memsvc.models import Job
from memsvc.queue import JobQueue, enqueue_after_commit

STATUSES = ("queued", "running", "succeeded", "failed")
MAX_ERROR_CHARS = 4000


class JobOut(BaseModel):
    id: uuid.UUID
    kind: str
    status: str
    scope: dict[str, Any]
    params: dict[str, Any]
    attempts: int
    error: str | None = Field(default=None, description="Why the last attempt failed (kept after a retry).")
    result: dict[str, Any] = Field(description="What the job did: counts, ids, LLM usage (tokens, cost).")
    created_at: datetime
    run_after: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = None


class JobAccepted(BaseModel):
    job_id: uuid.UUID
    status: str
    job: JobOut


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id, kind=job.kind, status=job.status, scope=job.scope or {}, params=job.params or {},
        attempts=job.attempts, error=job.error, result=job.result or {}, created_at=job.created_at,
        run_after=job.run_after, started_at=job.started_at, finished_at=job.finished_at,
    )


# ---- creating ---------------------------------------------------------------------------------


def create_job(
    session: Session, *, tenant_id: uuid.UUID | None, kind: str, scope: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None, idempotency_key: str | None = None, debounce_key: str | None = None,
    run_after: datetime | None = None, queue: JobQueue | None = None,
) -> tuple[Job, bool]:
    """Insert a queued job; returns (job, created).

    idempotency_key: the same key (per tenant) returns the existing job, whatever its state.
    debounce_key: while a job with this key is still queued, return it instead of a new one (the
    queued job will see everything written up to when it starts).
    queue: enqueue once the caller's transaction commits (delay = run_after - now).
    """
    values: dict[str, Any] = {
        "id": uuid.uuid4(), "tenant_id": tenant_id, "kind": kind, "scope": scope or {}, "params": params or {},
        "status": "queued", "attempts": 0, "result": {}, "run_after": run_after,
        "idempotency_key": f"{tenant_id}:{idempotency_key}" if idempotency_key else None,
        "debounce_key": f"{tenant_id}:{debounce_key}" if debounce_key else None,
    }
    stmt = insert(Job).values(**values)
    if idempotency_key:
        stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
    elif debounce_key:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["debounce_key"],
            index_where=text("status = 'queued' AND debounce_key IS NOT NULL"),
        )
    new_id = session.scalar(stmt.returning(Job.id))
    created = new_id is not None
    if created:
        job = session.get(Job, new_id)
    elif idempotency_key:
        job = session.scalar(select(Job).where(Job.idempotency_key == values["idempotency_key"]))
    else:
        job = session.scalar(select(Job).where(
            Job.debounce_key == values["debounce_key"], Job.status == "queued"
        ))
    if job is None:  # the conflicting row finished between our insert and select: try once more
        return create_job(session, tenant_id=tenant_id, kind=kind, scope=scope, params=params,
                          idempotency_key=idempotency_key, debounce_key=debounce_key, run_after=run_after,
                          queue=queue)
    if created and queue is not None:
        delay = max(0.0, (run_after - datetime.now(UTC)).total_seconds()) if run_after else 0.0
        enqueue_after_commit(session, queue, job.id, delay)
    return job, created


# ---- state changes (each committed by the caller right away) ----------------------------------


def mark_running(session: Session, job_id: uuid.UUID, worker: str | None = None) -> Job | None:
    """queued/running -> running, one more attempt. None when the job is finished (or gone).
    worker: who runs this attempt (result.worker; which of several worker processes ran a job)."""
    values: dict[str, Any] = {"status": "running", "attempts": Job.attempts + 1,
                              "started_at": func.coalesce(Job.started_at, func.now()), "debounce_key": None}
    if worker:
        values["result"] = Job.result.op("||")({"worker": worker})
    row = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(("queued", "running"))).values(**values)
        .returning(Job.id)
    ).scalar()
    return session.get(Job, row, populate_existing=True) if row else None


def merge_result(session: Session, job_id: uuid.UUID, patch: dict[str, Any]) -> None:
    """Progress and partial results, visible while the job runs."""
    session.execute(update(Job).where(Job.id == job_id).values(result=Job.result.op("||")(patch)))


def mark_succeeded(session: Session, job_id: uuid.UUID, result: dict[str, Any]) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(
        status="succeeded", result=Job.result.op("||")(result), finished_at=func.now(), error=None,
    ))


def mark_failed(session: Session, job_id: uuid.UUID, error: str, result: dict[str, Any] | None = None) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(
        status="failed", error=error[:MAX_ERROR_CHARS], result=Job.result.op("||")(result or {}),
        finished_at=func.now(),
    ))


def mark_retry(session: Session, job_id: uuid.UUID, error: str, run_after: datetime) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(
        status="queued", error=error[:MAX_ERROR_CHARS], run_after=run_after,
    ))


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped."""
    return min(max_s, base_s * (2 ** max(0, attempt - 1)))


# ---- liveness -----------------------------------------------------------------------------------


def _lock_key(job_id: uuid.UUID) -> int:
    # Signed 64-bit from the uuid: advisory locks take a bigint.
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


@contextmanager
def job_lock(engine: Engine, job_id: uuid.UUID) -> Iterator[bool]:
    """Hold the job's advisory lock on a dedicated connection while the block runs.
    Yields False (and holds nothing) when another live worker already runs the job."""
    with engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _lock_key(job_id)}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(job_id)})
                conn.commit()


def recover(
    session: Session, queue: JobQueue, *, requeue_after_s: float, now: datetime | None = None
) -> list[uuid.UUID]:
    """Hand out again what a lost message or a killed worker left behind; returns the job ids.

    - running jobs whose advisory lock is free: their worker is gone -> queued again, now;
    - queued jobs whose run_after (or creation) passed requeue_after_s ago: the message was lost.
    A job that is in fact still moving through the broker just runs once more as a no-op, because
    every task first checks the row (`mark_running`) and takes the lock.
    """
    now = now or datetime.now(UTC)
    orphaned = []
    for job_id in session.scalars(select(Job.id).where(Job.status == "running")).all():
        key = {"k": _lock_key(job_id)}
        if session.execute(text("SELECT pg_try_advisory_lock(:k)"), key).scalar():
            # Free lock = its worker is gone. Let go at once; the next worker takes it.
            session.execute(text("SELECT pg_advisory_unlock(:k)"), key)
            orphaned.append(job_id)
    if orphaned:
        session.execute(update(Job).where(Job.id.in_(orphaned), Job.status == "running").values(
            status="queued", run_after=now, error="worker lost; re-enqueued"))
    cutoff = now - timedelta(seconds=requeue_after_s)
    stale = list(session.scalars(select(Job.id).where(
        Job.status == "queued", func.coalesce(Job.run_after, Job.created_at) <= cutoff,
    )))
    ids = list(dict.fromkeys(orphaned + stale))
    for job_id in ids:
        enqueue_after_commit(session, queue, job_id, 0.0)
    return ids


# ---- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    """What waits and runs now, deployment-wide (for /metrics)."""

    counts: dict[tuple[str, str], int]  # (kind, status) -> jobs, for queued and running
    due: int  # queued jobs whose run_after has come
    oldest_due_s: float  # how long the oldest of those has waited


def backlog(engine: Engine) -> Backlog:
    """Read through the partial index on unfinished jobs (finished ones are never scanned: they pile up)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT kind, status, count(*), "
            "       count(*) FILTER (WHERE status = 'queued' AND coalesce(run_after, created_at) <= now()), "
            "       extract(epoch FROM now() - min(coalesce(run_after, created_at)) "
            "               FILTER (WHERE status = 'queued' AND coalesce(run_after, created_at) <= now())) "
            "FROM jobs WHERE status IN ('queued', 'running') GROUP BY kind, status"
        )).all()
    waited = [float(r[4]) for r in rows if r[4] is not None]
    return Backlog(counts={(r[0], r[1]): int(r[2]) for r in rows}, due=sum(int(r[3]) for r in rows),
                   oldest_due_s=max(waited, default=0.0))



def _visible(tenant_id: uuid.UUID, user_ids: tuple[str, ...] | None, agent_ids: tuple[str, ...] | None) -> list[Any]:
    clauses: list[Any] = [Job.tenant_id == tenant_id]
    # A key restricted to some users/agents sees only the jobs about them.
    if user_ids is not None:
        clauses.append(Job.scope["user_id"].astext.in_(user_ids))
    if agent_ids is not None:
        clauses.append(Job.scope["agent_id"].astext.in_(agent_ids))
    return clauses


def delete_about(session: Session, tenant_id: uuid.UUID, scope: dict[str, str],
                 user_ids: tuple[str, ...] | None = None, agent_ids: tuple[str, ...] | None = None) -> list[uuid.UUID]:
    """Delete the jobs whose scope matches every field of `scope` (erasure), among those a key restricted to
    `user_ids`/`agent_ids` sees. Returns their ids."""
    query = delete(Job).where(*_visible(tenant_id, user_ids, agent_ids))
    for name, value in scope.items():
        query = query.where(Job.scope[name].astext == value)
    return list(session.scalars(query.returning(Job.id)))


def get_job(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID,
            user_ids: tuple[str, ...] | None = None, agent_ids: tuple[str, ...] | None = None) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, *_visible(tenant_id, user_ids, agent_ids)))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(
    session: Session, tenant_id: uuid.UUID, *, user_ids: tuple[str, ...] | None = None,
    agent_ids: tuple[str, ...] | None = None, kind: str | None = None, status: str | None = None,
    cursor: str | None = None, limit: int = 50, secret: bytes,
) -> tuple[list[Job], str | None]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", details={"field": "status"})
    limit = max(1, min(int(limit), 200))
    query = select(Job).where(*_visible(tenant_id, user_ids, agent_ids))
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None:
        query = query.where(Job.status == status)
    listing = f"jobs|{kind}|{status}"
    if cursor:
        pos = pagination.decode_cursor(secret, tenant_id, listing, cursor)
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(pos.recorded_at, pos.id))
    rows = list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = pagination.encode_cursor(
            secret, tenant_id, listing, pagination.Position(rows[-1].created_at, rows[-1].id))
    return rows, next_cursor


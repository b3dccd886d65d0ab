"""How the core hands a job to whoever runs jobs, without knowing it is Celery.

The API (and anything else that writes) is given a `JobQueue`; the Celery-backed one lives in
workers/queue.py. The jobs row in Postgres is the source of truth: a queue only carries a wake-up
call, so a lost message costs latency, never work (`memsvc.jobs.recover` re-enqueues it).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


@runtime_checkable
class JobQueue(Protocol):
    def enqueue(self, job_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        """Ask for job `job_id` (a committed jobs row) to run in about delay_s seconds."""
        ...


class NullQueue:
    """Enqueues nothing: jobs stay queued until `memsvc.jobs.recover` (beat) hands them out."""

    def enqueue(self, job_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        log.debug("job %s left queued (no queue configured)", job_id)


class RecordingQueue:
    """Remembers what was enqueued; for tests and for callers that run jobs themselves."""

    def __init__(self) -> None:
        self.enqueued: list[tuple[uuid.UUID, float]] = []

    def enqueue(self, job_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        self.enqueued.append((job_id, delay_s))


def enqueue_after_commit(session: Session, queue: JobQueue, job_id: uuid.UUID, delay_s: float = 0.0) -> None:
    """Enqueue once the surrounding transaction commits (a worker must find the row), and not at all
    if it rolls back. A broker that is down only delays the job: the row stays queued."""
    pending: dict[uuid.UUID, float] = session.info.setdefault("memsvc_pending_jobs", {})
    pending[job_id] = delay_s
    if session.info.get("memsvc_queue_hooked"):
        return
    session.info["memsvc_queue_hooked"] = True

    def after_commit(sess: Session) -> None:
        jobs = dict(sess.info.pop("memsvc_pending_jobs", {}))
        for jid, delay in jobs.items():
            try:
                queue.enqueue(jid, delay_s=delay)
            except Exception:  # the broker is down: the row stays queued and recovery picks it up
                log.warning("could not enqueue job %s; it stays queued for recovery", jid, exc_info=True)

    def after_rollback(sess: Session) -> None:
        sess.info.pop("memsvc_pending_jobs", None)

    listeners: list[tuple[str, Callable[[Session], None]]] = [
        ("after_commit", after_commit), ("after_soft_rollback", lambda s, _t: after_rollback(s)),
    ]
    for name, fn in listeners:
        event.listen(session, name, fn)

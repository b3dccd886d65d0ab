"""What the write path asks of the lifecycle: consolidation debounced per scope after writes, and the
re-derivation of derived memories that lost a source. Jobs rows are written in the caller's
transaction (so they exist exactly when the write does) and enqueued after it commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from memsvc import jobs
from memsvc.config import get_settings
from memsvc.lifecycle.scope import ConsolidationScope
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.queue import JobQueue, enqueue_after_commit

if TYPE_CHECKING:
    from memsvc.models import Memory
    from memsvc.schemas import DeletionReport
    from memsvc.scoping import MemoryScope


def schedule_consolidation(
    session: Session, queue: JobQueue | None, scope: ConsolidationScope, *, delay_s: float,
    reprocess: bool = False, idempotency_key: str | None = None, expedite: bool = False,
) -> tuple[uuid.UUID, bool]:
    """A consolidation job for the scope in delay_s seconds; while one is still queued for the scope,
    that one is returned instead (it will see this write too). expedite: an explicit request that
    finds such a queued job moves it to now rather than adding a second job. Reprocessing, a
    session-narrowed run or an idempotency key get their own job."""
    separate = reprocess or idempotency_key is not None or scope.session_id is not None
    now = datetime.now(UTC)
    job, created = jobs.create_job(
        session, tenant_id=scope.tenant_id, kind="consolidate", scope=scope.as_dict(),
        params={"reprocess": True} if reprocess else {},
        debounce_key=None if separate else scope.key(), idempotency_key=idempotency_key,
        run_after=now + timedelta(seconds=delay_s), queue=queue,
    )
    if not created and expedite and job.status == "queued" and (job.run_after is None or job.run_after > now):
        job.run_after = now
        session.flush()
        if queue is not None:
            # The debounced message still arrives later and finds the job done: a no-op.
            enqueue_after_commit(session, queue, job.id, 0.0)
    return job.id, created


def schedule_rederive(session: Session, queue: JobQueue | None, tenant_id: uuid.UUID,
                      ids: Sequence[uuid.UUID]) -> uuid.UUID | None:
    if not ids:
        return None
    job, _ = jobs.create_job(session, tenant_id=tenant_id, kind="rederive",
                             params={"ids": [str(i) for i in ids]}, queue=queue)
    return job.id


class LifecycleHooks:
    """Passed to MemoryStore by the API (with the Celery-backed queue); the store calls it after its
    writes, inside the request's transaction."""

    def __init__(self, queue: JobQueue | None, settings: LifecycleSettings | None = None) -> None:
        self.queue = queue
        self.settings = settings or get_settings().lifecycle

    def added(self, session: Session, scope: MemoryScope, rows: Sequence[Memory]) -> list[uuid.UUID]:
        if self.settings.consolidate_debounce_s <= 0:
            return []
        owners = dict.fromkeys((r.user_id, r.agent_id) for r in rows if r.kind == "episodic")
        return [
            schedule_consolidation(session, self.queue, ConsolidationScope(scope.tenant_id, user, agent),
                                   delay_s=self.settings.consolidate_debounce_s)[0]
            for user, agent in owners
        ]

    def deleted(self, session: Session, scope: MemoryScope, report: DeletionReport) -> uuid.UUID | None:
        return schedule_rederive(session, self.queue, scope.tenant_id, report.derived_orphaned)

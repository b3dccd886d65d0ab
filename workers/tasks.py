"""Celery tasks: thin calls into memsvc. Every task is safe to run twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import lru_cache

from memsvc.lifecycle.runner import RunContext
from workers.app import celery_app
from workers.queue import CeleryJobQueue


@lru_cache(maxsize=1)
def context() -> RunContext:
    """Built on first use inside each worker process (after the fork)."""
    from memsvc.config import get_settings
    from memsvc.db import get_engine

    return RunContext.default(get_engine(), CeleryJobQueue(get_settings().redis_url))


@celery_app.task(name="memsvc.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> str:
    from memsvc.lifecycle.runner import run_job as run

    return run(context(), uuid.UUID(job_id))


@celery_app.task(name="memsvc.schedule_decay")
def schedule_decay() -> int:
    from memsvc.lifecycle.runner import schedule_decay as schedule

    ctx = context()
    with ctx.sessions() as session, session.begin():
        return len(schedule(session, ctx.queue, datetime.now(UTC), ctx.settings.decay_interval_s))


@celery_app.task(name="memsvc.sweep_consolidation")
def sweep_consolidation() -> int:
    from memsvc.lifecycle.consolidate import scopes_waiting
    from memsvc.lifecycle.hooks import schedule_consolidation

    ctx = context()
    with ctx.sessions() as session, session.begin():
        scopes = scopes_waiting(session)
        for scope in scopes:
            schedule_consolidation(session, ctx.queue, scope, delay_s=0.0)
    return len(scopes)


def recover_now() -> list[str]:
    from memsvc import jobs

    ctx = context()
    with ctx.sessions() as session, session.begin():
        ids = jobs.recover(session, ctx.queue, requeue_after_s=ctx.settings.job_requeue_after_s)
    return [str(i) for i in ids]


@celery_app.task(name="memsvc.recover_jobs")
def recover_jobs() -> int:
    return len(recover_now())

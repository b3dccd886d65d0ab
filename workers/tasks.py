"""Celery tasks: thin calls into memsvc. Every task is safe to run twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from memsvc.lifecycle.consolidate import scopes_waiting
from memsvc.lifecycle.hooks import schedule_consolidation
from memsvc.lifecycle.runner import run_job as run
from memsvc.lifecycle.runner import schedule_decay as schedule
from workers.app import celery_app
from workers.context import context, recover_now


@celery_app.task(name="memsvc.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> str:
    return run(context(), uuid.UUID(job_id))


@celery_app.task(name="memsvc.schedule_decay")
def schedule_decay() -> int:
    ctx = context()
    with ctx.sessions() as session, session.begin():
        return len(schedule(session, ctx.queue, datetime.now(UTC), ctx.settings.decay_interval_s))


@celery_app.task(name="memsvc.sweep_consolidation")
def sweep_consolidation() -> int:
    ctx = context()
    with ctx.sessions() as session, session.begin():
        scopes = scopes_waiting(session)
        for scope in scopes:
            schedule_consolidation(session, ctx.queue, scope, delay_s=0.0)
    return len(scopes)


@celery_app.task(name="memsvc.recover_jobs")
def recover_jobs() -> int:
    return len(recover_now())

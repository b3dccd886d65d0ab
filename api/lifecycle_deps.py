"""The job queue the API hands to the core: Celery-backed when a broker is configured, else none
(jobs then wait in Postgres, visible through /v1/jobs, until a worker's recovery picks them up)."""

from __future__ import annotations

from fastapi import Request

from memsvc.lifecycle.hooks import LifecycleHooks
from memsvc.queue import JobQueue, NullQueue


def get_job_queue(request: Request) -> JobQueue:
    state = request.app.state
    queue = getattr(state, "job_queue", None)
    if queue is None:
        if state.settings.redis_url:
            from workers.queue import CeleryJobQueue

            queue = CeleryJobQueue(state.settings.redis_url)
        else:
            queue = NullQueue()
        state.job_queue = queue
    return queue


def get_lifecycle_hooks(request: Request) -> LifecycleHooks:
    return LifecycleHooks(get_job_queue(request))

"""The job queue the API hands to the core: the one create_app was given (Celery-backed when `memsvc serve`
has a broker), else none (jobs then wait in Postgres, visible through /v1/jobs, until a worker's recovery
picks them up). The API never builds a queue itself: it does not know Celery (workers/ does)."""

from __future__ import annotations

from fastapi import Request

from memsvc.lifecycle.hooks import LifecycleHooks
from memsvc.queue import JobQueue


def get_job_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.job_queue
    return queue


def get_lifecycle_hooks(request: Request) -> LifecycleHooks:
    return LifecycleHooks(get_job_queue(request), request.app.state.settings.lifecycle)

"""The Celery-backed JobQueue: one wake-up message per job id. The jobs row is the source of truth."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from memsvc.config import get_settings
from workers.config import make_celery

RUN_JOB = "memsvc.run_job"


class CeleryJobQueue:
    """Sends `memsvc.run_job(job_id)` to the broker at broker_url (by name: the process that enqueues never
    imports the task code)."""

    def __init__(self, broker_url: str | None = None, queue: str | None = None) -> None:
        self.broker_url = broker_url
        self.queue = queue or get_settings().lifecycle.celery_queue
        self._app: Any = None
        self._lock = threading.Lock()

    def _celery(self) -> Any:
        with self._lock:
            if self._app is None:
                self._app = make_celery(broker_url=self.broker_url, include_tasks=False)
            return self._app

    def enqueue(self, job_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        countdown = max(0.0, float(delay_s))
        self._celery().send_task(RUN_JOB, args=[str(job_id)], countdown=countdown or None, queue=self.queue)

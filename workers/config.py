"""The Celery application's configuration, with no task code: what the API side (workers.queue) needs to
send a job's wake-up message, and what workers.app starts its worker and beat from.

Delivery guarantees come from two places: Celery (acks_late + reject_on_worker_lost: a message is
acknowledged only after its task returned, so a killed worker's message is delivered again) and
Postgres (every job is a row; a worker holds the job's advisory lock while it runs it, and
`memsvc.jobs.recover` re-enqueues jobs whose worker vanished or whose message was lost). Tasks are
idempotent: they check the row first and the work itself is transactional.
"""

from __future__ import annotations

from celery import Celery

from memsvc.config import Settings, get_settings
from workers.schedule import beat_schedule


def make_celery(settings: Settings | None = None, *, broker_url: str | None = None,
                include_tasks: bool = True) -> Celery:
    """include_tasks: the worker's app, which imports workers.tasks (by name) and carries the beat schedule;
    without, an app that only sends messages."""
    settings = settings or get_settings()
    lifecycle = settings.lifecycle
    broker = broker_url or settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("memsvc", broker=broker, include=["workers.tasks"] if include_tasks else [])
    app.conf.update(
        task_acks_late=True,  # a task killed mid-way is redelivered, not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # long jobs: do not hoard messages another worker could run
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # Redelivery of un-acked messages; jobs longer than this just see a duplicate delivery,
        # which the job lock turns away.
        broker_transport_options={"visibility_timeout": lifecycle.broker_visibility_timeout_s},
        task_default_queue=lifecycle.celery_queue,
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
    )
    if include_tasks:
        app.conf.beat_schedule = beat_schedule(lifecycle)
    return app

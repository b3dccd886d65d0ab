"""The Celery application. Tasks live in workers.tasks and only call into memsvc.

Delivery guarantees come from two places: Celery (acks_late + reject_on_worker_lost: a message is
acknowledged only after its task returned, so a killed worker's message is delivered again) and
Postgres (every job is a row; a worker holds the job's advisory lock while it runs it, and
`memsvc.jobs.recover` re-enqueues jobs whose worker vanished or whose message was lost). Tasks are
idempotent: they check the row first and the work itself is transactional.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from memsvc.config import Settings, get_settings
from memsvc.lifecycle.settings import get_lifecycle_settings

log = logging.getLogger(__name__)


def make_celery(settings: Settings | None = None, *, broker_url: str | None = None,
                include_tasks: bool = True) -> Celery:
    settings = settings or get_settings()
    lifecycle = get_lifecycle_settings()
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
        from workers.schedule import beat_schedule

        app.conf.beat_schedule = beat_schedule(lifecycle)
    return app


celery_app = make_celery()


@signals.worker_process_init.connect
def _fresh_connections_in_child(**_: Any) -> None:
    # A forked pool process must not share the parent's database sockets.
    from memsvc import db

    with db._lock:
        for engine in db._engines.values():
            engine.dispose(close=False)
        db._engines.clear()


@signals.setup_logging.connect
def _log_like_every_memsvc_process(**_: Any) -> None:
    """A receiver here keeps Celery from configuring logging itself: its records go through memsvc's handler
    (text or JSON, redacted; memsvc.logformat) like the API's."""
    from memsvc.logformat import configure_logging

    configure_logging(get_settings())


@signals.worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """A worker that starts after a crash hands out what the crash left behind right away,
    instead of waiting for beat."""
    try:
        from workers.tasks import recover_now

        recovered = recover_now()
        if recovered:
            log.info("re-enqueued %d job(s) left behind: %s", len(recovered), recovered)
    except Exception:
        log.warning("job recovery at worker start failed; beat will retry", exc_info=True)


def _quiet(settings: Settings) -> list[str]:
    """Celery prints a banner to stdout at start; only a verbose run shows it."""
    return [] if settings.verbose else ["--quiet"]


def run_worker(settings: Settings, concurrency: int = 2, queues: str | None = None, pool: str = "prefork") -> int:
    argv = [*_quiet(settings), "worker", "--loglevel", settings.log_level, "--concurrency", str(concurrency),
            "--pool", pool, "--without-gossip", "--without-mingle"]
    if queues:
        argv += ["--queues", queues]
    celery_app.worker_main(argv)
    return 0


def run_beat(settings: Settings) -> int:
    schedule_file = settings.state_path / "celerybeat-schedule"
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    celery_app.start([*_quiet(settings), "beat", "--loglevel", settings.log_level, "--schedule", str(schedule_file)])
    return 0

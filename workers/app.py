"""The Celery application. Tasks live in workers.tasks and only call into memsvc."""

from __future__ import annotations

from celery import Celery

from memsvc.config import Settings, get_settings


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    broker = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("memsvc", broker=broker, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,  # a task killed mid-way is redelivered, not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 600},
        timezone="UTC",
    )
    return app


celery_app = make_celery()


def run_worker(settings: Settings, concurrency: int = 2, queues: str | None = None) -> int:
    argv = ["worker", "--loglevel", settings.log_level, "--concurrency", str(concurrency), "--pool", "prefork"]
    if queues:
        argv += ["--queues", queues]
    celery_app.worker_main(argv)
    return 0


def run_beat(settings: Settings) -> int:
    schedule_file = settings.state_path / "celerybeat-schedule"
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", "--loglevel", settings.log_level, "--schedule", str(schedule_file)])
    return 0

"""The worker's Celery application (configured in workers.config; its tasks live in workers.tasks and
only call into memsvc), its process signals, and the worker and beat entry points."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from memsvc.config import Settings, get_settings
from memsvc.db import dispose_engines
from memsvc.logformat import configure_logging
from workers.config import make_celery
from workers.context import recover_now

log = logging.getLogger(__name__)


celery_app = make_celery()


@signals.worker_process_init.connect
def _fresh_connections_in_child(**_: Any) -> None:
    # A forked pool process must not share the parent's database sockets.
    dispose_engines(close=False)


@signals.setup_logging.connect
def _log_like_every_memsvc_process(**_: Any) -> None:
    """A receiver here keeps Celery from configuring logging itself: its records go through memsvc's handler
    (text or JSON, redacted; memsvc.logformat) like the API's."""
    configure_logging(get_settings())


@signals.worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """A worker that starts after a crash hands out what the crash left behind right away,
    instead of waiting for beat."""
    try:
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

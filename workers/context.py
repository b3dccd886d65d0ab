"""What a worker process runs jobs with (built once per process, after the fork), and job recovery."""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from memsvc import jobs
from memsvc.config import get_settings
from memsvc.db import get_engine
from memsvc.lifecycle.runner import RunContext
from workers.queue import CeleryJobQueue

# This `memsvc worker` process, as its jobs record it (result.worker): set on import in the worker's main process,
# which imports this module before Celery forks its pool, so every pool process reports its worker.
WORKER = f"{socket.gethostname()}:{os.getpid()}"


@lru_cache(maxsize=1)
def context() -> RunContext:
    """Built on first use inside each worker process (after the fork)."""
    settings = get_settings()
    return RunContext.default(get_engine(), CeleryJobQueue(settings.redis_url, settings.lifecycle.celery_queue),
                              settings.lifecycle, worker=WORKER)


def recover_now() -> list[str]:
    """Hand out again the jobs whose message was lost or whose worker died (memsvc.jobs.recover)."""
    ctx = context()
    with ctx.sessions() as session, session.begin():
        ids = jobs.recover(session, ctx.queue, requeue_after_s=ctx.settings.job_requeue_after_s)
    return [str(i) for i in ids]

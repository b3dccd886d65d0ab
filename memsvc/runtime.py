"""What `memsvc serve` runs around the API: embedded servers when nothing is configured, migrations,
the admin key, and a Celery worker + beat as child processes. Leaving the context stops all of it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from types import TracebackType
from typing import Any

from memsvc.config import Settings

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, SIGTERM it when `memsvc serve` dies, even by SIGKILL,
    so no orphaned worker keeps consuming jobs for a server that is gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Runtime:
    def __init__(self, settings: Settings, *, start_workers: bool = True) -> None:
        self.settings = settings
        self.start_workers = start_workers
        self._broker: Any = None
        self._children: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Runtime:
        from memsvc.cli import prepare_database

        database_url = prepare_database(self.settings)
        redis_url = self.settings.redis_url
        if redis_url is None and self.start_workers:
            from memsvc.embedded import start_embedded_broker

            redis_url, self._broker = start_embedded_broker(self.settings.state_path)
            log.info("embedded broker at %s", redis_url)
        self.settings = self.settings.model_copy(update={"database_url": database_url, "redis_url": redis_url})
        if self.start_workers:
            env = {**os.environ, "MEMSVC_DATABASE_URL": database_url, "MEMSVC_REDIS_URL": redis_url or ""}
            for command in ("worker", "beat"):
                self._children.append(subprocess.Popen(
                    [sys.executable, "-m", "memsvc.cli", command], env=env, preexec_fn=_die_with_parent
                ))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self._children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        if self._broker is not None:
            self._broker.stop()

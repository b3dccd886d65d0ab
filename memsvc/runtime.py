"""What `memsvc serve` runs around the API: embedded servers when nothing is configured, migrations,
the admin key, and a Celery worker + beat as child processes, all watched by a supervisor that restarts
whatever dies (memsvc.supervisor). Leaving the context stops all of it."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import text

from memsvc import jobs, migrate, tenancy
from memsvc.config import Settings
from memsvc.db import dispose_engines, get_engine, normalize_url, resolve_database_url, session_scope
from memsvc.embedded import EmbeddedBroker, embedded_postgres
from memsvc.queue import JobQueue
from memsvc.supervisor import ChildProcess, Supervisor

log = logging.getLogger(__name__)

_BOOTSTRAP_LOCK = 0x6D656D737663 + 1  # next to memsvc.migrate's lock key ("memsvc")


def prepare_database(settings: Settings, *, embedded: bool | None = None) -> str:
    """Start/attach the database, apply migrations, make sure an admin key exists (printed once).
    embedded: the database is the embedded one (default: no database_url is configured)."""
    url = resolve_database_url(settings)
    migrate.upgrade(url, embedding_dim=settings.embedding_dim)
    with session_scope(get_engine(url)) as session:
        # Several API processes starting at once on one empty database (docker compose up --scale api=2) would
        # each create the default tenant, and all but one fail on its unique name: one at a time (the lock goes
        # with bootstrap's commit).
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _BOOTSTRAP_LOCK})
        secret = tenancy.bootstrap(session, settings.admin_key)
    if secret:
        bar = "=" * 72
        print(f"{bar}\nAdmin API key (shown once, only its hash is stored):\n\n    {secret}\n{bar}", flush=True)
        key_file = settings.state_path / "admin_key.txt"
        if embedded if embedded is not None else not settings.database_url:
            # Embedded default on a laptop: also keep it where only this user can read it.
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secret + "\n")
            key_file.chmod(0o600)
            print(f"(also written to {key_file})", flush=True)
    return url


class Runtime:
    """queue_factory: builds the job queue for a broker URL (the composition root hands in the Celery one);
    with it, jobs a restart may have lost are handed out again as soon as the restarted component is back."""

    def __init__(self, settings: Settings, *, start_workers: bool = True,
                 queue_factory: Callable[[str], JobQueue] | None = None) -> None:
        self.settings = settings
        self.start_workers = start_workers
        self.queue_factory = queue_factory
        self.supervisor = Supervisor(after_restart=self._requeue_lost_jobs)
        self._started = False

    def start(self) -> Runtime:
        """Start everything (once); on failure, stop what had started and raise."""
        if self._started:
            return self
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        dispose_engines()
        self.supervisor.stop()

    def __enter__(self) -> Runtime:
        return self.start()

    def _start(self) -> None:
        embedded = not self.settings.database_url
        if not embedded:
            database_url = normalize_url(self.settings.database_url)
        else:
            postgres = embedded_postgres(self.settings.state_path)
            self.supervisor.add(postgres, started=True)
            assert postgres.url is not None
            database_url = postgres.url
        self.settings = self.settings.model_copy(update={"database_url": database_url})
        prepare_database(self.settings, embedded=embedded)
        redis_url = self.settings.redis_url
        if redis_url is None and self.start_workers:
            broker = EmbeddedBroker(self.settings.state_path)
            self.supervisor.add(broker)
            redis_url = broker.url
            log.info("embedded broker on 127.0.0.1:%s (password in %s)", broker.port, broker.data_dir / "password")
        self.settings = self.settings.model_copy(update={"redis_url": redis_url})
        if self.start_workers:
            env = {**os.environ, "MEMSVC_DATABASE_URL": database_url, "MEMSVC_REDIS_URL": redis_url or ""}
            for command in ("worker", "beat"):
                self.supervisor.add(ChildProcess(command, [sys.executable, "-m", "memsvc.cli", command], env))
        self.supervisor.start()

    def components(self) -> dict[str, dict[str, Any]]:
        """What the supervisor watches, and in which state (for /readyz)."""
        return self.supervisor.status()

    def _requeue_lost_jobs(self, restarted: str) -> None:
        """A restarted broker lost its messages, a restarted database failed the deliveries of its outage, a
        killed worker took the messages it had reserved: hand out again every job whose time has come (a
        duplicate is harmless: each run first checks the job's row and takes its lock)."""
        if self.queue_factory is None or not self.settings.redis_url:
            return
        queue = self.queue_factory(self.settings.redis_url)
        with session_scope(get_engine(self.settings.database_url)) as session:
            ids = jobs.recover(session, queue, requeue_after_s=0)
        log.warning("after the restart of %s: %d job(s) handed out again", restarted, len(ids))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""Helpers and fixtures for the lifecycle tests (imported by the test modules that need them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select, text

from memsvc.models import Memory, Tenant

ROOT = Path(__file__).resolve().parent.parent


def new_tenant(sessions: Any) -> uuid.UUID:
    from memsvc import tenancy

    with sessions() as session, session.begin():
        return tenancy.create_tenant(session, f"lc-{uuid.uuid4().hex[:10]}").id


def unit_vector(rng: np.random.Generator, dim: int = 384) -> list[float]:
    v = rng.standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(float).tolist()


def insert_memory(
    session: Any, tenant_id: uuid.UUID, content: str, *, at: datetime, importance: float = 0.5,
    kind: str = "episodic", user_id: str | None = "u1", agent_id: str | None = None, strength: float | None = None,
    embedding: list[float] | None = None, metadata: dict[str, Any] | None = None,
) -> Memory:
    """A memory written at `at` (recorded, last accessed and occurred then): a controlled clock."""
    from memsvc.lifecycle.retention import initial_strength
    from memsvc.store import content_hash

    m = Memory(
        id=uuid.uuid4(), tenant_id=tenant_id, user_id=user_id, agent_id=agent_id, kind=kind, content=content,
        tier="verbatim", importance=importance,
        strength=initial_strength(importance) if strength is None else strength, access_count=0,
        last_accessed_at=at, occurred_at=at, recorded_at=at, updated_at=at, valid_from=at,
        content_hash=content_hash(content), metadata_=metadata or {}, tags=[], embedding=embedding,
        embedding_model="test" if embedding is not None else None,
    )
    session.add(m)
    session.flush()
    return m


def tenant_of_key(sessions: Any, key: str) -> uuid.UUID:
    from memsvc.tenancy import authenticate

    with sessions() as session:
        return authenticate(session, key).tenant_id


def tenant_exists(session: Any, tenant_id: uuid.UUID) -> bool:
    return session.scalar(select(Tenant.id).where(Tenant.id == tenant_id)) is not None


# ---- a real broker ------------------------------------------------------------------------------


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(state_dir: Path) -> Iterator[str]:
    """MEMSVC_REDIS_URL, else a Redis on 127.0.0.1:6379, else the embedded valkey broker."""
    url = os.environ.get("MEMSVC_REDIS_URL")
    if url:
        yield url
        return
    if _reachable("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    from memsvc.embedded import start_embedded_broker

    url, server = start_embedded_broker(state_dir / "broker")
    try:
        yield url
    finally:
        server.stop()


class Worker:
    """A real `memsvc worker` process (its own process group, so SIGKILL takes all of it)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **extra_env: str) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memsvc.cli", "worker", "--concurrency", "1"],
            env={**self.env, **extra_env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def kill(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@contextmanager
def table_locked(engine: Engine, table: str) -> Iterator[Callable[[], bool]]:
    """An EXCLUSIVE lock on `table` for the block (reads pass, writes wait): a job stops at its first write
    there, inside its transaction, so a test can kill it mid-write without any sleep in the code under test.
    Yields a predicate: another backend waits for the lock after writing something (it has a transaction id)."""

    def waiting() -> bool:
        with engine.connect() as conn:
            return bool(conn.scalar(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.relation = CAST(:t AS regclass) AND NOT l.granted AND a.backend_xid IS NOT NULL"),
                {"t": table}))

    with engine.connect() as conn:
        conn.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
        try:
            yield waiting
        finally:
            conn.rollback()


def wait_for(predicate: Any, timeout: float, what: str, worker: Worker | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\nworker log:\n{worker.log()}" if worker else ""))

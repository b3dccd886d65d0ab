"""The configured mode, for real: what docker-compose.yml runs, as processes of this machine.

A PostgreSQL 18 + pgvector server of its own (the embedded binary, started as a separate server), the machine's
Redis (a database number and a Celery queue of this test's own), two `memsvc serve --no-workers` on two ports,
two `memsvc worker` and one `memsvc beat`. Writes go through both APIs; consolidation (write-triggered) and decay
(beat) jobs run on both workers, each exactly once; one API killed, the other keeps serving. Every process the
test starts is stopped again, also when it fails."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from memsvc.models import Job, Memory
from tests.lifecycle_helpers import _reachable
from tests.test_serve import _free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "msk_configured_mode_" + uuid.uuid4().hex
REDIS_DB = 13  # not the suite's 0: kombu keeps its unacked messages in per-database keys
USERS = [f"user{i}" for i in range(8)]
ATTEMPT = re.compile(r"job ([0-9a-f-]{36}) \((\w+)\) attempt (\d+)")


class Process:
    """One `memsvc ...` process in its own process group (what it forks goes with it), output to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.log_path = name, logs / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "memsvc.cli", *args], env=env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, how: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, how)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # the group's stragglers (a worker's pool processes)
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture()
def deployment() -> Iterator[dict[str, Any]]:
    from memsvc.embedded import EmbeddedBroker, EmbeddedPostgres

    started: list[Any] = []
    redis_url, env = "", dict[str, str]()
    with tempfile.TemporaryDirectory(prefix="memsvc-configured-") as tmp:
        root = Path(tmp)
        try:
            postgres = EmbeddedPostgres(root / "postgres-server")
            started.append(postgres)
            postgres.start()
            if _reachable("127.0.0.1", 6379):
                redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
            else:  # no Redis on this machine: the embedded broker, as a server of its own all the same
                broker = EmbeddedBroker(root / "broker-server")
                started.append(broker)
                broker.start()
                redis_url = broker.url
            assert postgres.url is not None
            env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSVC_")}
            env.update(
                MEMSVC_DATABASE_URL=postgres.url, MEMSVC_REDIS_URL=redis_url, MEMSVC_ADMIN_KEY=ADMIN_KEY,
                MEMSVC_CELERY_QUEUE=f"memsvc-configured-{uuid.uuid4().hex[:12]}", MEMSVC_STATE_DIR=str(root / "state"),
                # Jobs soon enough for a test: consolidation 1 s after a scope's writes, a decay pass per second.
                MEMSVC_CONSOLIDATE_DEBOUNCE_S="1", MEMSVC_DECAY_INTERVAL_S="1",
                # Fewer models to load in five processes on two cores (what is measured here is the topology).
                MEMSVC_SPARSE_MODEL="none", MEMSVC_EMBEDDING_QUERY_RUNTIME="torch",
                HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
            )
            yield {"root": root, "env": env, "url": postgres.url, "started": started}
        finally:
            for item in reversed(started):
                item.stop()
            if redis_url.startswith("redis://127.0.0.1:6379/") and env:  # the machine's Redis: leave nothing of ours
                _forget_queue(redis_url, env["MEMSVC_CELERY_QUEUE"])


def _forget_queue(redis_url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _ready(base: str, proc: Process, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert proc.alive(), f"{proc.name} exited early:\n{proc.log()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"{proc.name} not ready in time:\n{proc.log()}")


def _jobs(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(Job.id, Job.kind, Job.status, Job.attempts, Job.result, Job.error)))


def _wait(predicate: Any, timeout: float, what: str, processes: list[Process]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    logs = "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in processes)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def test_two_apis_two_workers_and_beat_on_one_postgres_and_redis(deployment: dict[str, Any]) -> None:
    began = time.monotonic()
    root, env = deployment["root"], deployment["env"]
    ports = [_free_port(), _free_port()]
    processes: list[Process] = []
    try:
        # All at once, as a process manager starts them: both APIs migrate and bootstrap the same empty database.
        def start(name: str, *args: str) -> Process:
            processes.append(Process(name, list(args), env, root))  # listed at once: stopped whatever happens next
            return processes[-1]

        apis = [start(f"api{i}", "serve", "--no-workers", "--port", str(port)) for i, port in enumerate(ports)]
        workers = [start(f"worker{i}", "worker", "--concurrency", "1") for i in range(2)]
        beat = start("beat", "beat")
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        deadline = time.monotonic() + 240
        for base, api in zip(bases, apis, strict=True):
            _ready(base, api, deadline)
        started_s = time.monotonic() - began

        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        # Beat schedules one decay job per tenant a second: with four tenants, four at once each second, more
        # than one worker (one job at a time each) takes alone.
        for i in range(3):
            r = httpx.post(bases[i % 2] + "/v1/admin/tenants", headers=headers, json={"name": f"tenant{i}"}, timeout=30)
            assert r.status_code == 201, r.text
        statements = ["I live in Berlin.", "I work at Acme as an engineer."]
        written: list[str] = []
        for n, user in enumerate(USERS):
            for k, text in enumerate(statements):
                base = bases[(n + k) % 2]  # every user's memories through both APIs
                r = httpx.post(base + "/v1/memories", headers=headers, timeout=60,
                               json={"content": text, "user_id": user, "metadata": {"role": "user"}})
                assert r.status_code == 201, r.text
                written.append(r.json()["id"])

        engine = create_engine(deployment["url"])
        try:
            def consolidated() -> bool:
                jobs = _jobs(engine)
                done = [j for j in jobs if j.kind == "consolidate" and j.status == "succeeded"]
                pending = [j for j in jobs if j.kind == "consolidate" and j.status in ("queued", "running")]
                decays = [j for j in jobs if j.kind == "decay" and j.status == "succeeded"]
                return len(done) >= len(USERS) and not pending and len(decays) >= 12

            _wait(consolidated, 120, "consolidation of every user and three decay passes", processes)

            # One API killed outright: the other one still serves, everything written through either.
            apis[0].stop(signal.SIGKILL)
            with pytest.raises(httpx.TransportError):
                httpx.get(bases[0] + "/healthz", timeout=2)
            r = httpx.post(bases[1] + "/v1/memories", headers=headers, json={"content": "still here",
                                                                              "user_id": "late"})
            assert r.status_code == 201, r.text
            listed = httpx.get(bases[1] + "/v1/memories", headers=headers, params={"kind": "episodic", "limit": 200})
            assert listed.status_code == 200, listed.text
            assert set(written) <= {m["id"] for m in listed.json()["items"]}

            # No new jobs from here; let the workers finish what is due, then stop them so their logs are whole.
            beat.stop()

            def settled() -> bool:
                return not any(j.status in ("queued", "running") for j in _jobs(engine) if j.kind == "decay"
                               or j.kind == "consolidate")

            _wait(settled, 60, "the last jobs to finish", processes)
            for worker in workers:
                worker.stop()

            jobs = [j for j in _jobs(engine) if j.kind in ("consolidate", "decay")]
            with engine.connect() as conn:
                facts = list(conn.execute(select(Memory.user_id, Memory.content).where(Memory.kind == "semantic")))
        finally:
            engine.dispose()

        # Each job ran exactly once: succeeded at its first attempt, and one attempt line in one worker's log,
        # the log of the worker its row names.
        assert all(j.status == "succeeded" and j.attempts == 1 for j in jobs), \
            [(j.kind, j.status, j.attempts, j.error) for j in jobs if j.status != "succeeded" or j.attempts != 1]
        label = {f":{w.pid}": w.name for w in workers}
        ran_by = {str(j.id): next((name for suffix, name in label.items()
                                   if str((j.result or {}).get("worker", "")).endswith(suffix)), None) for j in jobs}
        assert None not in ran_by.values(), ran_by
        attempts = Counter()
        seen_in: dict[str, str] = {}
        for worker in workers:
            for job_id, _kind, attempt in ATTEMPT.findall(worker.log()):
                attempts[job_id] += 1
                seen_in[job_id] = worker.name
                assert attempt == "1", (job_id, attempt)
        assert {job_id: 1 for job_id in ran_by} == {job_id: attempts[job_id] for job_id in ran_by}
        assert {job_id: seen_in[job_id] for job_id in ran_by} == ran_by

        # Spread over both workers, for each kind of job.
        by_kind = Counter((kind, ran_by[str(i)]) for i, kind in ((j.id, j.kind) for j in jobs))
        for kind in ("consolidate", "decay"):
            assert {by_kind[(kind, w.name)] > 0 for w in workers} == {True}, by_kind

        # Consolidation wrote each user's facts once (two workers, two APIs, one truth).
        assert facts, "consolidation extracted no fact"
        assert len(facts) == len(set(facts)), Counter(facts).most_common(3)
        assert {user for user, _ in facts} == set(USERS)
        print(f"\nconfigured mode: started in {started_s:.1f} s, whole test {time.monotonic() - began:.1f} s; "
              f"jobs by kind and worker {dict(by_kind)}")
    except BaseException:
        for p in processes:
            print(f"--- {p.name} log:\n{p.log()[-4000:]}", file=sys.stderr)
        raise
    finally:
        for p in processes:
            p.stop(signal.SIGKILL, timeout=10)

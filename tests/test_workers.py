"""Real Celery worker processes (`python -m memsvc.cli worker`) on a real broker and Postgres."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from memsvc.db import session_factory
from memsvc.models import Job, Memory
from tests.conftest import auth
from tests.lifecycle_helpers import Worker, redis_url, table_locked, tenant_of_key, wait_for  # noqa: F401 - fixture

EPISODES = [
    # Each states one thing the built-in extractor understands (a closed set of patterns).
    ("I adopted a rescue cat named Luna last week.", "2023-05-08T10:00:00Z"),
    ("I work as a potter at the community center.", "2023-05-09T10:00:00Z"),
    ("My sister moved to Lisbon for her new job.", "2023-05-10T10:00:00Z"),
    ("I love running marathons.", "2023-05-11T10:00:00Z"),
    ("My favorite painting is a sunrise over the lake.", "2023-05-12T10:00:00Z"),
    ("I live in Boston.", "2023-05-13T10:00:00Z"),
]


@pytest.fixture()
def broker(client, redis_url: str, database_url: str, state_dir: Path) -> Iterator[dict[str, str]]:  # noqa: F811
    """A private Celery queue on the broker for this test, the app wired to it, and the env for workers."""
    from workers.queue import CeleryJobQueue

    queue = f"memsvc-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ, "MEMSVC_DATABASE_URL": database_url, "MEMSVC_REDIS_URL": redis_url,
        "MEMSVC_CELERY_QUEUE": queue, "MEMSVC_STATE_DIR": str(state_dir / queue),
        "MEMSVC_LOG_LEVEL": "INFO", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        # The database is shared by the whole test session, and jobs other tests queued (with no worker) are stale
        # by now: a worker would re-dispatch them all at start and the job under test waits behind minutes of
        # them. Orphaned *running* jobs are still recovered at once, which is what the kill test exercises.
        "MEMSVC_JOB_REQUEUE_AFTER_S": "86400",
    }
    env.pop("MEMSVC_LLM_MODEL", None)  # the built-in: offline and deterministic
    previous = getattr(client.app.state, "job_queue", None)
    client.app.state.job_queue = CeleryJobQueue(redis_url, queue=queue)
    try:
        yield env
    finally:
        client.app.state.job_queue = previous


def _write_episodes(client, key: str, user: str) -> None:  # type: ignore[no-untyped-def]
    items = [{"content": text, "user_id": user, "occurred_at": at, "metadata": {"speaker": user.title()}}
             for text, at in EPISODES]
    r = client.post("/v1/memories/batch", json={"items": items}, headers=auth(key))
    assert r.status_code == 201, r.text


def _job(client, key: str, job_id: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    r = client.get(f"/v1/jobs/{job_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()


def test_consolidate_endpoint_runs_on_a_worker(client, make_tenant, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    _write_episodes(client, key, "maria")
    r = client.post("/v1/consolidate", json={"user_id": "maria"}, headers={**auth(key), "Idempotency-Key": "c-1"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["status"] == "queued"
    replay = client.post("/v1/consolidate", json={"user_id": "maria"}, headers={**auth(key), "Idempotency-Key": "c-1"})
    assert replay.status_code == 202 and replay.json()["job_id"] == job_id
    worker = Worker(broker, tmp_path / "worker.log").start()
    try:
        done = wait_for(lambda: (j := _job(client, key, job_id))["status"] in ("succeeded", "failed") and j,
                        90, "the consolidation job", worker)
    finally:
        worker.stop()
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and done["result"]["episodes"] == len(EPISODES)
    assert len(done["result"]["created"]) >= len(EPISODES) - 1
    facts = client.get("/v1/memories?kind=semantic&limit=200", headers=auth(key)).json()["items"]
    assert {f["id"] for f in facts} == set(done["result"]["created"])
    assert all(f["user_id"] == "maria" for f in facts)
    listed = client.get("/v1/jobs?kind=consolidate", headers=auth(key)).json()["items"]
    assert job_id in {j["id"] for j in listed}
    # Another tenant sees none of it.
    other = make_tenant()
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(other)).status_code == 404
    assert client.get("/v1/jobs", headers=auth(other)).json()["items"] == []


def test_worker_killed_mid_consolidation_restarts_and_completes(client, make_tenant, broker, engine,
                                                                tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    tenant = tenant_of_key(session_factory(engine), key)
    _write_episodes(client, key, "maria")
    r = client.post("/v1/consolidate", json={"user_id": "maria"}, headers=auth(key))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    # Its links wait on a lock this test holds, so the kill lands inside the transaction that writes facts,
    # after its first fact row.
    with table_locked(engine, "memory_links") as blocked_mid_write:
        worker = Worker(broker, tmp_path / "worker.log").start()
        try:
            wait_for(blocked_mid_write, 90, "the job to block in the middle of its write", worker)
            assert _job(client, key, job_id)["result"].get("stage") == "writing"
            worker.kill()
        finally:
            worker.stop()
    sessions = session_factory(engine)
    with sessions() as s:
        job = s.get(Job, uuid.UUID(job_id))
        assert job.status == "running" and job.attempts == 1
        # The half-done write died with the worker: nothing partial is visible.
        assert s.scalar(select(func.count()).select_from(Memory).where(
            Memory.tenant_id == tenant, Memory.kind == "semantic")) == 0
    restarted = Worker(broker, tmp_path / "worker2.log").start()
    try:
        done = wait_for(lambda: (j := _job(client, key, job_id))["status"] in ("succeeded", "failed") and j,
                        90, "the recovered job", restarted)
    finally:
        restarted.stop()
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    with sessions() as s:
        facts = list(s.scalars(select(Memory).where(Memory.tenant_id == tenant, Memory.kind == "semantic")))
        episodes = list(s.scalars(select(Memory).where(Memory.tenant_id == tenant, Memory.kind == "episodic")))
    # Nothing lost: every episode was consolidated and every extracted fact exists, once.
    assert all(e.consolidated_at is not None for e in episodes)
    hashes = [f.content_hash for f in facts]
    assert len(hashes) == len(set(hashes)) == len(done["result"]["created"])
    from memsvc.lifecycle.consolidate import _episode
    from memsvc.llm import BuiltinLLM

    expected = {f.text for f in BuiltinLLM().extract_facts([_episode(e) for e in sorted(
        episodes, key=lambda e: (e.occurred_at, e.id))])}
    assert {f.content for f in facts} == expected


def test_serve_embedded_default_runs_lifecycle_jobs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`memsvc serve` with nothing configured: embedded Postgres and valkey broker, a worker and beat
    as children; a consolidation requested through the API runs on that worker."""
    import httpx

    from tests.test_serve import Served, _free_port

    served = Served(tmp_path / "state", _free_port())
    try:
        key = (tmp_path / "state" / "admin_key.txt").read_text().strip()
        client = httpx.Client(base_url=served.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        items = [{"content": text, "user_id": "maria", "occurred_at": at} for text, at in EPISODES[:3]]
        assert client.post("/v1/memories/batch", json={"items": items}).status_code == 201
        r = client.post("/v1/consolidate", json={"user_id": "maria"})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        done = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("succeeded", "failed")
                        and j, 120, f"the job on the embedded worker\n{served.output()}")
        assert done["status"] == "succeeded", done
        assert done["result"]["episodes"] == 3 and done["result"]["created"]
    finally:
        served.stop()

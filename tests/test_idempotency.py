"""Idempotency-Key: concurrent retries store once and answer alike; erasure forgets the records of what it
erased; records expire (a retry after expiry is a fresh write) and the maintenance pass purges them."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import auth

PAIRS = 12  # 24 requests at once: within the API's connection pool (30), so none waits for a connection


def _concurrent_pairs(url: str, key: str, path: str, bodies: list[dict]) -> list[tuple[httpx.Response, ...]]:
    """Each body sent twice at the same instant (a barrier per pair) with one Idempotency-Key per pair."""

    def send(body: dict, idem: str, barrier: threading.Barrier) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=120) as http:
            barrier.wait()
            return http.post(path, json=body, headers={**auth(key), "Idempotency-Key": idem})

    with httpx.Client(base_url=url, timeout=120) as http:  # the model loaded before the race starts
        assert http.post("/v1/memories", json={"content": "warm up"}, headers=auth(key)).status_code == 201
    with ThreadPoolExecutor(max_workers=2 * len(bodies)) as pool:
        futures = []
        for body in bodies:
            idem, barrier = f"pair-{uuid.uuid4()}", threading.Barrier(2)
            futures.append([pool.submit(send, body, idem, barrier) for _ in range(2)])
        return [tuple(f.result() for f in pair) for pair in futures]


def test_concurrent_retries_store_once_and_answer_alike(live_server, client, make_tenant):
    key = make_tenant()
    session = f"race-{uuid.uuid4().hex[:8]}"
    bodies = [{"content": f"concurrent retry {i}", "session_id": session} for i in range(PAIRS)]
    pairs = _concurrent_pairs(live_server.url, key, "/v1/memories", bodies)
    for first, second in pairs:
        assert {first.status_code, second.status_code} == {201}, (first.text, second.text)
        assert first.json() == second.json()
        assert sorted(r.headers.get("Idempotent-Replayed", "") for r in (first, second)) == ["", "true"]
    stored = client.get("/v1/memories", headers=auth(key), params={"session_id": session, "limit": 200}).json()
    contents = sorted(m["content"] for m in stored["items"])
    assert contents == sorted(b["content"] for b in bodies)  # one row per pair, none twice


def test_concurrent_batch_retries_store_once(live_server, client, make_tenant):
    key = make_tenant()
    session = f"race-batch-{uuid.uuid4().hex[:8]}"
    bodies = [{"items": [{"content": f"batch {i} item {j}", "session_id": session} for j in range(3)]}
              for i in range(10)]
    pairs = _concurrent_pairs(live_server.url, key, "/v1/memories/batch", bodies)
    for first, second in pairs:
        assert first.status_code == second.status_code == 201 and first.json() == second.json()
    stored = client.get("/v1/memories", headers=auth(key), params={"session_id": session, "limit": 200}).json()
    assert len(stored["items"]) == 30


def _records(engine, key: str) -> list[dict]:
    """The caller's tenant's stored responses (as text), newest last."""
    from sqlalchemy import text

    from memsvc.db import session_scope
    from memsvc.tenancy import hash_key

    with session_scope(engine) as session:
        return [dict(r._mapping) for r in session.execute(text(
            "SELECT i.key, i.response::text AS response, i.created_at FROM idempotency_keys i "
            "JOIN api_keys k ON k.tenant_id = i.tenant_id WHERE k.key_hash = :h ORDER BY i.created_at"),
            {"h": hash_key(key)})]


def _age(engine, key: str, hours: float) -> None:
    """Make the caller's tenant's records `hours` older."""
    from sqlalchemy import text

    from memsvc.db import session_scope
    from memsvc.tenancy import hash_key

    with session_scope(engine) as session:
        session.execute(text(
            "UPDATE idempotency_keys SET created_at = created_at - make_interval(secs => :s) "
            "WHERE tenant_id = (SELECT tenant_id FROM api_keys WHERE key_hash = :h)"),
            {"s": hours * 3600, "h": hash_key(key)})


def _keyed(client, key: str, method: str, path: str, idem: str, **kwargs):  # type: ignore[no-untyped-def]
    return client.request(method, path, headers={**auth(key), "Idempotency-Key": idem}, **kwargs)


def test_erasure_forgets_the_stored_responses_of_what_it_erased(client, make_tenant, engine):
    key = make_tenant()
    secret = "dana's locker code is 5522"
    first = _keyed(client, key, "POST", "/v1/memories", "w-1", json={"content": secret, "user_id": "dana"})
    batch = _keyed(client, key, "POST", "/v1/memories/batch", "w-2", json={"items": [
        {"content": "dana likes tea", "user_id": "dana"}, {"content": "eve likes tea", "user_id": "eve"}]})
    job = _keyed(client, key, "POST", "/v1/consolidate", "w-3", json={"user_id": "dana"})
    kept = _keyed(client, key, "POST", "/v1/memories", "w-4", json={"content": "eve's note", "user_id": "eve"})
    assert {r.status_code for r in (first, batch, job, kept)} == {201, 202}
    assert any(secret in r["response"] for r in _records(engine, key))

    report = client.post("/v1/erase", headers=auth(key), json={"user_id": "dana"}).json()
    assert report["idempotency_records_removed"] == 3  # the write, the batch naming dana's memory, the job
    assert all("dana" not in r["response"] for r in _records(engine, key))
    assert [r["key"] for r in _records(engine, key)] == ["w-4"]
    # Replaying the original write is a fresh write now: it does not hand the erased memory back.
    again = _keyed(client, key, "POST", "/v1/memories", "w-1", json={"content": secret, "user_id": "dana"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert _keyed(client, key, "POST", "/v1/memories", "w-4", json={"content": "eve's note", "user_id": "eve"}
                  ).headers.get("Idempotent-Replayed") == "true"


def test_deleting_one_memory_forgets_its_stored_responses(client, make_tenant, engine):
    key = make_tenant()
    created = _keyed(client, key, "POST", "/v1/memories", "d-1", json={"content": "to be deleted"}).json()
    patched = _keyed(client, key, "PATCH", f"/v1/memories/{created['id']}", "d-2", json={"content": "edited"})
    assert patched.status_code == 200
    report = client.delete(f"/v1/memories/{created['id']}", headers=auth(key)).json()
    assert report["idempotency_records_removed"] == 2 and _records(engine, key) == []


def test_records_expire_after_the_ttl(client, make_tenant, engine, settings):
    assert settings.idempotency_ttl_seconds == 24 * 3600  # the default
    key = make_tenant()
    first = _keyed(client, key, "POST", "/v1/memories", "e-1", json={"content": "expiring write"})
    _age(engine, key, 23)
    replay = _keyed(client, key, "POST", "/v1/memories", "e-1", json={"content": "expiring write"})
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json() == first.json()
    _age(engine, key, 2)  # 25 h old: expired, so the retry is a fresh write (and its record the new one)
    fresh = _keyed(client, key, "POST", "/v1/memories", "e-1", json={"content": "expiring write"})
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]
    other = _keyed(client, key, "POST", "/v1/memories", "e-1", json={"content": "another write, same key"})
    assert other.status_code == 409  # the key is taken again, by the fresh write
    assert len(_records(engine, key)) == 1


def test_the_maintenance_pass_purges_expired_records(client, make_tenant, engine):
    from memsvc import jobs
    from memsvc.db import session_factory
    from memsvc.lifecycle.runner import RunContext, run_job
    from memsvc.lifecycle.settings import LifecycleSettings
    from memsvc.llm import BuiltinLLM
    from memsvc.queue import RecordingQueue
    from memsvc.tenancy import hash_key

    key = make_tenant()
    _keyed(client, key, "POST", "/v1/memories", "p-old", json={"content": "old write"})
    _age(engine, key, 25)
    _keyed(client, key, "POST", "/v1/memories", "p-new", json={"content": "new write"})
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        from sqlalchemy import text

        tenant = s.scalar(text("SELECT tenant_id FROM api_keys WHERE key_hash = :h"), {"h": hash_key(key)})
        job, _ = jobs.create_job(s, tenant_id=tenant, kind="decay", idempotency_key=f"d:{uuid.uuid4()}")
        job_id = job.id
    ctx = RunContext(engine=engine, sessions=sessions, queue=RecordingQueue(), llm=BuiltinLLM,
                     embedder=lambda: None,  # type: ignore[arg-type,return-value]
                     settings=LifecycleSettings(job_backoff_s=0))
    assert run_job(ctx, job_id) == "succeeded"
    result = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()["result"]
    assert result["idempotency_records_expired"] == 1
    assert [r["key"] for r in _records(engine, key)] == ["p-new"]

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

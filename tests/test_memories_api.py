"""The memories API as a user drives it: CRUD, batch, list with cursors, erase, idempotency."""

from __future__ import annotations

import time
import uuid

from tests.conftest import auth


def test_create_get_update_delete_roundtrip(client, key):
    created = client.post(
        "/v1/memories", headers=auth(key),
        json={"content": "Alice moved to Berlin in 2021.", "user_id": "alice", "tags": ["move"],
              "metadata": {"source": "chat"}, "importance": 0.8, "occurred_at": "2021-03-01T10:00:00"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["tier"] == "verbatim" and body["user_id"] == "alice" and body["tags"] == ["move"]
    assert body["occurred_at"].startswith("2021-03-01T10:00:00")  # naive times are taken as UTC
    assert body["retention"] < 0.01  # it happened in 2021: imported history ages from when it happened

    fetched = client.get(f"/v1/memories/{body['id']}", headers=auth(key)).json()
    assert fetched["content"] == "Alice moved to Berlin in 2021."

    patched = client.patch(f"/v1/memories/{body['id']}", headers=auth(key), json={"content": "Alice moved to Paris."})
    assert patched.status_code == 200, patched.text
    assert patched.json()["content"] == "Alice moved to Paris."
    assert patched.json()["content_hash"] != body["content_hash"]
    # The new text was re-embedded: a search for Paris finds it first.
    hits = client.post("/v1/search", headers=auth(key), json={"query": "Paris"}).json()["hits"]
    assert hits[0]["memory"]["id"] == body["id"]

    deleted = client.delete(f"/v1/memories/{body['id']}", headers=auth(key))
    assert deleted.status_code == 200 and deleted.json()["deleted"] == [body["id"]]
    assert client.get(f"/v1/memories/{body['id']}", headers=auth(key)).status_code == 404


def test_batch_then_list_pages_cover_everything_once(client, key):
    items = [{"content": f"note number {i}", "session_id": "s1"} for i in range(23)]
    batch = client.post("/v1/memories/batch", headers=auth(key), json={"items": items})
    assert batch.status_code == 201, batch.text
    assert batch.json()["count"] == 23
    seen, cursor = [], None
    while True:
        params = {"limit": 5, "session_id": "s1", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/memories", headers=auth(key), params=params)
        assert page.status_code == 200, page.text
        seen += [m["content"] for m in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(i["content"] for i in items)


def test_list_filters(client, key):
    client.post("/v1/memories/batch", headers=auth(key), json={"items": [
        {"content": "likes tea", "user_id": "u1", "kind": "semantic", "tags": ["drink"]},
        {"content": "had tea today", "user_id": "u1"},
        {"content": "likes coffee", "user_id": "u2", "kind": "semantic"},
    ]})
    semantic_u1 = client.get("/v1/memories", headers=auth(key), params={"user_id": "u1", "kind": "semantic"}).json()
    assert [m["content"] for m in semantic_u1["items"]] == ["likes tea"]
    tagged = client.get("/v1/memories", headers=auth(key), params={"tag": "drink"}).json()
    assert [m["content"] for m in tagged["items"]] == ["likes tea"]


def test_idempotency_key_replays_instead_of_storing_twice(client, key):
    headers = {**auth(key), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    payload = {"items": [{"content": "only once", "session_id": "idem"}]}
    first = client.post("/v1/memories/batch", headers=headers, json=payload)
    second = client.post("/v1/memories/batch", headers=headers, json=payload)
    assert first.status_code == second.status_code == 201
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.json() == second.json()
    listed = client.get("/v1/memories", headers=auth(key), params={"session_id": "idem"}).json()["items"]
    assert len(listed) == 1
    reused = client.post("/v1/memories/batch", headers=headers, json={"items": [{"content": "something else"}]})
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"


def test_erase_scope_reports_and_keeps_others(client, key):
    client.post("/v1/memories/batch", headers=auth(key), json={"items": [
        {"content": "bob 1", "user_id": "bob"}, {"content": "bob 2", "user_id": "bob", "agent_id": "a"},
        {"content": "carol 1", "user_id": "carol"},
    ]})
    report = client.post("/v1/erase", headers=auth(key), json={"user_id": "bob"})
    assert report.status_code == 200, report.text
    assert len(report.json()["deleted"]) == 2
    left = client.get("/v1/memories", headers=auth(key), params={"user_id": "bob"}).json()["items"]
    assert left == []
    assert len(client.get("/v1/memories", headers=auth(key), params={"user_id": "carol"}).json()["items"]) == 1
    empty = client.post("/v1/erase", headers=auth(key), json={})
    assert empty.status_code == 422


def test_delete_cascades_through_derived_memories(client, key, engine):
    from memsvc.db import session_scope
    from memsvc.models import MemoryLink

    ids = [m["id"] for m in client.post("/v1/memories/batch", headers=auth(key), json={"items": [
        {"content": "episode one"}, {"content": "episode two"},
        {"content": "fact from one", "kind": "semantic"}, {"content": "fact from both", "kind": "semantic"},
    ]}).json()["items"]]
    one, two, fact_one, fact_both = (uuid.UUID(i) for i in ids)
    with session_scope(engine) as session:
        from memsvc.models import Memory

        tenant_id = session.get(Memory, one).tenant_id
        session.add_all([
            MemoryLink(src_id=fact_one, dst_id=one, relation="derived_from", tenant_id=tenant_id),
            MemoryLink(src_id=fact_both, dst_id=one, relation="derived_from", tenant_id=tenant_id),
            MemoryLink(src_id=fact_both, dst_id=two, relation="derived_from", tenant_id=tenant_id),
        ])
    report = client.delete(f"/v1/memories/{one}", headers=auth(key)).json()
    assert report["deleted"] == [str(one)]
    assert report["derived_deleted"] == [str(fact_one)]
    assert report["derived_orphaned"] == [str(fact_both)]
    assert report["links_removed"] == 2  # fact_both -> two survives with its remaining source
    assert client.get(f"/v1/memories/{fact_one}", headers=auth(key)).status_code == 404
    assert client.get(f"/v1/memories/{fact_both}", headers=auth(key)).status_code == 200


def test_client_supplied_embedding_is_used(client, key):
    vector = [0.0] * 384
    vector[7] = 1.0
    created = client.post("/v1/memories", headers=auth(key), json={"content": "precomputed", "embedding": vector})
    assert created.status_code == 201, created.text


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    deadline = time.time() + 60
    while (ready := client.get("/readyz")).status_code != 200 and time.time() < deadline:
        time.sleep(0.5)  # readiness waits for the embedding model to load
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready" and ready.json()["checks"]["database"] == "ok"


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/memories", "/v1/memories/batch", "/v1/memories/{memory_id}", "/v1/search", "/v1/erase",
                 "/v1/admin/tenants", "/v1/admin/keys", "/healthz", "/readyz"):
        assert path in spec["paths"], path

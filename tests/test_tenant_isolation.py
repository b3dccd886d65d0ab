"""A key of tenant A never reaches tenant B's memories, on any endpoint; restricted keys see only their users."""

from __future__ import annotations

import pytest

from tests.conftest import auth

SECRET = "tenant B's secret: the vault code is 4711"


@pytest.fixture()
def two_tenants(client, make_tenant):
    a, b = make_tenant(), make_tenant()
    created = client.post("/v1/memories", headers=auth(b), json={"content": SECRET, "user_id": "bob"})
    assert created.status_code == 201
    return a, b, created.json()["id"]


def test_other_tenants_memory_is_404_everywhere(client, two_tenants):
    a, b, bid = two_tenants
    not_found = [
        client.get(f"/v1/memories/{bid}", headers=auth(a)),
        client.patch(f"/v1/memories/{bid}", headers=auth(a), json={"content": "overwritten"}),
        client.delete(f"/v1/memories/{bid}", headers=auth(a)),
    ]
    for response in not_found:
        assert response.status_code == 404, response.text  # 404, not 403: ids do not leak
    assert client.get(f"/v1/memories/{bid}", headers=auth(b)).json()["content"] == SECRET


def test_list_search_and_erase_never_cross_tenants(client, two_tenants):
    a, b, bid = two_tenants
    client.post("/v1/memories", headers=auth(a), json={"content": "tenant A note", "user_id": "bob"})
    listed = client.get("/v1/memories", headers=auth(a), params={"user_id": "bob"}).json()["items"]
    assert [m["content"] for m in listed] == ["tenant A note"]
    hits = client.post("/v1/search", headers=auth(a), json={"query": "vault code 4711", "limit": 50}).json()["hits"]
    assert all(h["memory"]["id"] != bid for h in hits)
    assert SECRET not in str(hits)
    report = client.post("/v1/erase", headers=auth(a), json={"user_id": "bob"}).json()
    assert bid not in report["deleted"]
    assert client.get(f"/v1/memories/{bid}", headers=auth(b)).status_code == 200


def test_admin_of_a_tenant_cannot_touch_other_tenants_keys(client, make_tenant):
    admin_a, admin_b = make_tenant(("admin",)), make_tenant(("admin",))
    key_b = client.post("/v1/admin/keys", headers=auth(admin_b), json={"scopes": ["read"]}).json()
    assert client.delete(f"/v1/admin/keys/{key_b['id']}", headers=auth(admin_a)).status_code == 404
    listed_a = client.get("/v1/admin/keys", headers=auth(admin_a)).json()
    assert key_b["id"] not in {k["id"] for k in listed_a}
    tenant_b = key_b["tenant_id"]
    forged = client.post("/v1/admin/keys", headers=auth(admin_a), json={"scopes": ["read"], "tenant_id": tenant_b})
    assert forged.status_code == 403


def test_key_restricted_to_user_ids_sees_only_those(client, make_tenant):
    admin = make_tenant(("read", "write", "admin"))
    client.post("/v1/memories/batch", headers=auth(admin), json={"items": [
        {"content": "alice likes hiking", "user_id": "alice"},
        {"content": "bob likes hiking", "user_id": "bob"},
        {"content": "nobody's hiking note"},
    ]})
    restricted = client.post("/v1/admin/keys", headers=auth(admin),
                             json={"scopes": ["read", "write"], "user_ids": ["alice"]}).json()["key"]
    listed = client.get("/v1/memories", headers=auth(restricted)).json()["items"]
    assert [m["content"] for m in listed] == ["alice likes hiking"]
    hits = client.post("/v1/search", headers=auth(restricted), json={"query": "hiking"}).json()["hits"]
    assert {h["memory"]["user_id"] for h in hits} == {"alice"}
    context = client.post("/v1/context", headers=auth(restricted),
                          json={"query": "who likes hiking?", "budget_tokens": 500, "model": "gpt-4o"}).json()
    assert "alice likes hiking" in context["context"] and "bob" not in context["context"]
    assert "nobody" not in context["context"]
    bob_id = next(m["id"] for m in client.get("/v1/memories", headers=auth(admin), params={"user_id": "bob"})
                  .json()["items"])
    assert client.get(f"/v1/memories/{bob_id}", headers=auth(restricted)).status_code == 404
    assert client.delete(f"/v1/memories/{bob_id}", headers=auth(restricted)).status_code == 404
    # Writes outside the restriction are refused, and erasure stays inside it.
    def write(**fields: str) -> int:
        return client.post("/v1/memories", headers=auth(restricted), json={"content": "x", **fields}).status_code

    assert write(user_id="bob") == 403
    assert write() == 403
    assert write(user_id="alice") == 201
    report = client.post("/v1/erase", headers=auth(restricted), json={"user_id": "bob"}).json()
    assert report["deleted"] == []
    assert client.get(f"/v1/memories/{bob_id}", headers=auth(admin)).status_code == 200
    # A restricted key cannot mint an unrestricted one.
    assert client.post("/v1/admin/keys", headers=auth(restricted), json={"scopes": ["read"]}).status_code == 403

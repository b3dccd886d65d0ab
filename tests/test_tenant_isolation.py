"""A key of tenant A never reaches tenant B's memories, on any endpoint; restricted keys see only their users."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT_KEY, auth

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


def _jobs_about(client, admin: str, user: str) -> list[str]:
    listed = client.get("/v1/jobs", headers=auth(admin), params={"limit": 200}).json()["items"]
    return [j["id"] for j in listed if j["scope"].get("user_id") == user]


def test_restricted_erase_leaves_other_users_jobs_alone(client, make_tenant):
    admin = make_tenant()
    client.post("/v1/memories/batch", headers=auth(admin), json={"items": [
        {"content": "carol's first note", "user_id": "carol"}, {"content": "carol's second note", "user_id": "carol"},
        {"content": "alice's note", "user_id": "alice"},
    ]})
    for user in ("carol", "alice"):
        assert client.post("/v1/consolidate", headers=auth(admin), json={"user_id": user}).status_code == 202
    carol_jobs, alice_jobs = _jobs_about(client, admin, "carol"), _jobs_about(client, admin, "alice")
    assert carol_jobs and alice_jobs
    alice_key = client.post("/v1/admin/keys", headers=auth(admin),
                            json={"scopes": ["read", "write"], "user_ids": ["alice"]}).json()["key"]
    report = client.post("/v1/erase", headers=auth(alice_key), json={"user_id": "carol"}).json()
    assert report["deleted"] == [] and report["jobs_removed"] == 0
    assert _jobs_about(client, admin, "carol") == carol_jobs
    assert len(client.get("/v1/memories", headers=auth(admin), params={"user_id": "carol"}).json()["items"]) == 2
    # Inside its restriction the erasure is complete: alice's memories and the jobs about her go.
    report = client.post("/v1/erase", headers=auth(alice_key), json={"user_id": "alice"}).json()
    assert len(report["deleted"]) == 1 and report["jobs_removed"] == len(alice_jobs)
    assert _jobs_about(client, admin, "alice") == []


def test_restricted_erase_cascades_only_inside_the_restriction(client, make_tenant, engine):
    """A fact derived from agent a1's episodes but stored for the user across agents (agent_id NULL) is not
    a1's: a key restricted to a1 that erases the episodes neither deletes it nor names it."""
    from sqlalchemy import text

    from memsvc.db import session_scope

    admin = make_tenant()
    episode = client.post("/v1/memories", headers=auth(admin),
                          json={"content": "alice met a1 in Lisbon", "user_id": "alice", "agent_id": "a1"}).json()
    own_fact = client.post("/v1/memories", headers=auth(admin), json={
        "content": "alice has been to Lisbon (a1)", "user_id": "alice", "agent_id": "a1", "kind": "semantic"}).json()
    shared_fact = client.post("/v1/memories", headers=auth(admin), json={
        "content": "alice has been to Lisbon", "user_id": "alice", "kind": "semantic"}).json()
    with session_scope(engine) as session:
        for fact in (own_fact, shared_fact):
            session.execute(text(
                "INSERT INTO memory_links (src_id, dst_id, relation, tenant_id) "
                "SELECT :src, :dst, 'derived_from', tenant_id FROM memories WHERE id = :dst"),
                {"src": fact["id"], "dst": episode["id"]})
    a1_key = client.post("/v1/admin/keys", headers=auth(admin),
                         json={"scopes": ["read", "write"], "user_ids": ["alice"], "agent_ids": ["a1"]}).json()["key"]
    report = client.post("/v1/erase", headers=auth(a1_key), json={"user_id": "alice"}).json()
    assert set(report["deleted"]) | set(report["derived_deleted"]) == {episode["id"], own_fact["id"]}
    assert shared_fact["id"] not in report["derived_orphaned"]
    assert client.get(f"/v1/memories/{shared_fact['id']}", headers=auth(admin)).status_code == 200


def test_a_restricted_admin_key_cannot_act_tenant_wide(client, make_tenant, engine):
    """Such a key (made before restricted keys were refused the admin scope) keeps only its users' reads and
    writes: no key listing or revoking, no tenant policy, no tenant-wide maintenance."""
    from sqlalchemy import text

    from memsvc.db import session_scope

    admin = make_tenant()
    made = client.post("/v1/admin/keys", headers=auth(admin), json={"scopes": ["read", "write", "admin"]}).json()
    with session_scope(engine) as session:
        session.execute(text("UPDATE api_keys SET user_ids = '{alice}' WHERE id = :id"), {"id": made["id"]})
    alice_admin = made["key"]
    other_admin = client.post("/v1/admin/keys", headers=auth(admin), json={"scopes": ["admin"]}).json()
    before = client.get("/v1/policy", headers=auth(admin)).json(), client.get(
        "/v1/policy/retrieval", headers=auth(admin)).json()
    refused = [
        client.get("/v1/admin/keys", headers=auth(alice_admin)),
        client.delete(f"/v1/admin/keys/{other_admin['id']}", headers=auth(alice_admin)),
        client.post("/v1/admin/keys", headers=auth(alice_admin), json={"scopes": ["read"], "user_ids": ["alice"]}),
        client.put("/v1/policy", headers=auth(alice_admin), json={"tau0_days": 1}),
        client.patch("/v1/policy", headers=auth(alice_admin), json={"ttl_days": 1}),
        client.put("/v1/policy/retrieval", headers=auth(alice_admin), json={"recipe": "conversation"}),
        client.patch("/v1/policy/retrieval", headers=auth(alice_admin), json={"recipe": "conversation"}),
        client.post("/v1/maintenance/sparse-backfill", headers=auth(alice_admin), json={}),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert "restricted to user_ids alice" in response.json()["error"]["message"]
    after = client.get("/v1/policy", headers=auth(admin)).json(), client.get(
        "/v1/policy/retrieval", headers=auth(admin)).json()
    assert after == before
    assert client.get("/v1/admin/keys", headers=auth(other_admin["key"])).status_code == 200  # not revoked
    assert client.post("/v1/memories", headers=auth(alice_admin),
                       json={"content": "x", "user_id": "alice"}).status_code == 201
    # And no such key can be made any more: a restriction and the admin scope do not go together.
    error = client.post("/v1/admin/keys", headers=auth(admin),
                        json={"scopes": ["write", "admin"], "user_ids": ["alice"]})
    assert error.status_code == 422 and "admin" in error.json()["error"]["message"]


def test_the_last_admin_key_of_a_tenant_stays(client, make_tenant):
    admin = make_tenant(("admin",))
    keys = client.get("/v1/admin/keys", headers=auth(admin)).json()
    (own,) = keys
    response = client.delete(f"/v1/admin/keys/{own['id']}", headers=auth(admin))
    assert response.status_code == 409 and response.json()["error"]["code"] == "last_admin_key", response.text
    assert "create another" in response.json()["error"]["message"]
    # With a second admin key it may go (and the second then is the last).
    second = client.post("/v1/admin/keys", headers=auth(admin), json={"scopes": ["admin"]}).json()
    assert client.delete(f"/v1/admin/keys/{own['id']}", headers=auth(admin)).status_code == 200
    assert client.delete(f"/v1/admin/keys/{second['id']}", headers=auth(second["key"])).status_code == 409


def test_the_last_root_key_stays(engine):
    """Checked in a transaction that is rolled back, so a regression cannot revoke the suite's root key."""
    from sqlalchemy import func, select, update

    from memsvc import tenancy
    from memsvc.db import session_factory
    from memsvc.errors import Conflict
    from memsvc.models import ApiKey

    with session_factory(engine)() as session:
        last = session.scalar(select(ApiKey).where(ApiKey.key_hash == tenancy.hash_key(ROOT_KEY)))
        session.execute(update(ApiKey).where(ApiKey.scopes.contains(["root"]), ApiKey.id != last.id)
                        .values(revoked_at=func.now()))
        with pytest.raises(Conflict) as refused:
            tenancy.revoke_key(session, last.tenant_id, last.id)
        assert refused.value.code == "last_root_key" and "create another root key" in refused.value.message
        session.rollback()


def test_the_keys_command_says_why_it_refuses(client, make_tenant, settings, capsys):
    from memsvc.cli import build_parser, cmd_keys

    admin = make_tenant(("admin",))
    (own,) = client.get("/v1/admin/keys", headers=auth(admin)).json()
    name = next(t["name"] for t in client.get("/v1/admin/tenants", headers=auth(ROOT_KEY)).json()
                if t["id"] == own["tenant_id"])
    revoke = build_parser().parse_args(["keys", "revoke", own["id"], "--tenant", name])
    assert cmd_keys(revoke, settings) == 2
    assert "last active admin key" in capsys.readouterr().err
    create = build_parser().parse_args(["keys", "create", "--tenant", name, "--scopes", "admin", "--user-id", "al"])
    assert cmd_keys(create, settings) == 2
    assert "cannot have the admin or root scope" in capsys.readouterr().err
    assert client.get("/v1/admin/keys", headers=auth(admin)).status_code == 200

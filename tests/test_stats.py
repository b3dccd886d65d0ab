"""GET /v1/stats and GET /v1/memories/{id}/links: counts and lineage, scoped to the caller's tenant/users."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from tests.conftest import auth


def _seed(client, key, items):  # type: ignore[no-untyped-def]
    created = client.post("/v1/memories/batch", headers=auth(key), json={"items": items})
    assert created.status_code == 201, created.text
    return [uuid.UUID(m["id"]) for m in created.json()["items"]]


def _set_tier(engine, ids, tier):  # type: ignore[no-untyped-def]
    from memsvc.db import session_scope
    from memsvc.models import Memory

    with session_scope(engine) as session:
        session.execute(update(Memory).where(Memory.id.in_(ids)).values(tier=tier))


def _link(engine, src, dst, relation):  # type: ignore[no-untyped-def]
    from memsvc.db import session_scope
    from memsvc.models import Memory, MemoryLink

    with session_scope(engine) as session:
        tenant_id = session.get(Memory, src).tenant_id
        session.add(MemoryLink(src_id=src, dst_id=dst, relation=relation, tenant_id=tenant_id))


def test_stats_count_by_tier_and_kind(client, key, engine):
    ids = _seed(client, key, [
        {"content": "e1", "user_id": "ann"}, {"content": "e2", "user_id": "ann"}, {"content": "e3", "user_id": "bob"},
        {"content": "f1", "kind": "semantic", "user_id": "ann"}, {"content": "p1", "kind": "profile", "user_id": "ann"},
    ])
    _set_tier(engine, ids[1:3], "gist")
    _set_tier(engine, [ids[3]], "archived")
    response = client.get("/v1/stats", headers=auth(key))
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["total"] == 5
    assert stats["by_tier"] == {"verbatim": 2, "summary": 0, "gist": 2, "archived": 1}
    assert list(stats["by_tier"]) == ["verbatim", "summary", "gist", "archived"]  # lifecycle order for charts
    assert stats["by_kind"] == {"episodic": 3, "semantic": 1, "procedural": 0, "profile": 1}
    cells = {(c["tier"], c["kind"]): c["count"] for c in stats["by_tier_kind"]}
    assert cells == {("verbatim", "episodic"): 1, ("verbatim", "profile"): 1, ("gist", "episodic"): 2,
                     ("archived", "semantic"): 1}
    assert stats["top_scopes"]["user_id"] == [{"value": "ann", "count": 4}, {"value": "bob", "count": 1}]
    only_bob = client.get("/v1/stats", headers=auth(key), params={"user_id": "bob"}).json()
    assert only_bob["total"] == 1 and only_bob["by_tier"]["gist"] == 1


def test_stats_never_count_other_tenants_or_other_users(client, make_tenant):
    a, b = make_tenant(), make_tenant()
    _seed(client, b, [{"content": "b's", "user_id": "ann"}] * 3)
    _seed(client, a, [{"content": "a's", "user_id": "ann"}, {"content": "a's bob", "user_id": "bob"}])
    assert client.get("/v1/stats", headers=auth(a)).json()["total"] == 2
    restricted = client.post("/v1/admin/keys", headers=auth(a), json={"scopes": ["read"], "user_ids": ["bob"]}).json()
    stats = client.get("/v1/stats", headers=auth(restricted["key"])).json()
    assert stats["total"] == 1
    assert [v["value"] for v in stats["top_scopes"]["user_id"]] == ["bob"]


def test_stats_bad_input_is_4xx(client, key):
    assert client.get("/v1/stats").status_code == 401
    assert client.get("/v1/stats", headers=auth(key), params={"user_id": "a\x00b"}).status_code == 422
    assert client.get("/v1/stats", headers=auth(key), params={"user_id": "x" * 201}).status_code == 422


def test_links_show_lineage_both_ways(client, key, engine):
    ep1, ep2, fact, old, new = _seed(client, key, [
        {"content": "Ann said she moved to Lyon"}, {"content": "Ann starts at the Lyon office"},
        {"content": "Ann lives in Lyon", "kind": "semantic"}, {"content": "Ann lives in Paris", "kind": "semantic"},
        {"content": "Ann lives in Lyon (since May)", "kind": "semantic"},
    ])
    _link(engine, fact, ep1, "derived_from")
    _link(engine, fact, ep2, "derived_from")
    _link(engine, new, old, "supersedes")
    from memsvc.db import session_scope
    from memsvc.models import Memory

    with session_scope(engine) as session:  # the column and the link agree: shown once
        session.execute(update(Memory).where(Memory.id == old).values(superseded_by=new))

    def links(mid):  # type: ignore[no-untyped-def]
        response = client.get(f"/v1/memories/{mid}/links", headers=auth(key))
        assert response.status_code == 200, response.text
        assert response.json()["memory_id"] == str(mid)
        return {(lk["relation"], lk["direction"], lk["memory"]["id"]) for lk in response.json()["links"]}

    assert links(fact) == {("derived_from", "out", str(ep1)), ("derived_from", "out", str(ep2))}
    assert links(ep1) == {("derived_from", "in", str(fact))}
    assert links(old) == {("supersedes", "in", str(new))}
    assert links(new) == {("supersedes", "out", str(old))}
    one = client.get(f"/v1/memories/{ep1}/links", headers=auth(key)).json()["links"][0]["memory"]
    assert one["preview"] == "Ann lives in Lyon" and one["kind"] == "semantic" and one["tier"] == "verbatim"


def test_superseded_by_column_alone_is_shown(client, key, engine):
    old, new = _seed(client, key, [{"content": "old fact"}, {"content": "new fact"}])
    from memsvc.db import session_scope
    from memsvc.models import Memory

    with session_scope(engine) as session:
        session.execute(update(Memory).where(Memory.id == old).values(superseded_by=new))
    got = client.get(f"/v1/memories/{old}/links", headers=auth(key)).json()["links"]
    assert [(lk["relation"], lk["direction"], lk["memory"]["id"]) for lk in got] == [("supersedes", "in", str(new))]


def test_links_are_tenant_scoped(client, make_tenant, engine):
    a, b = make_tenant(), make_tenant()
    (bid,) = _seed(client, b, [{"content": "tenant B's secret"}])
    response = client.get(f"/v1/memories/{bid}/links", headers=auth(a))
    assert response.status_code == 404, response.text  # 404, not 403: ids do not leak
    assert response.json()["error"]["code"] == "not_found"
    assert client.get(f"/v1/memories/{uuid.uuid4()}/links", headers=auth(a)).status_code == 404
    assert client.get("/v1/memories/not-a-uuid/links", headers=auth(a)).status_code == 422
    assert client.get(f"/v1/memories/{bid}/links", headers=auth(b)).status_code == 200


def test_links_hide_the_other_end_a_restricted_key_may_not_see(client, make_tenant, engine):
    admin = make_tenant()
    ann_fact, bob_episode = _seed(client, admin, [
        {"content": "ann's fact", "kind": "semantic", "user_id": "ann"}, {"content": "bob's episode", "user_id": "bob"},
    ])
    _link(engine, ann_fact, bob_episode, "derived_from")
    ann_key = client.post("/v1/admin/keys", headers=auth(admin), json={"scopes": ["read"], "user_ids": ["ann"]})
    ann_key = ann_key.json()["key"]
    assert client.get(f"/v1/memories/{ann_fact}/links", headers=auth(ann_key)).json()["links"] == []
    assert client.get(f"/v1/memories/{bob_episode}/links", headers=auth(ann_key)).status_code == 404
    assert len(client.get(f"/v1/memories/{ann_fact}/links", headers=auth(admin)).json()["links"]) == 1


def test_dashboard_is_served_with_a_strict_csp(client):
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for asset, media in (("app.js", "text/javascript"), ("style.css", "text/css")):
        response = client.get(f"/dashboard/{asset}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media)
    # Nothing on the page comes from another host.
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/dashboard/..%2Fapp.py").status_code == 404
    assert client.get("/dashboard/nope.js").status_code == 404

"""Lifecycle endpoints: policy, feedback, retention curve, jobs, write-triggered debounce, bad input."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from memsvc.queue import RecordingQueue
from tests.conftest import auth


@pytest.fixture()
def recorded(client) -> Iterator[RecordingQueue]:  # type: ignore[no-untyped-def]
    queue, previous = RecordingQueue(), getattr(client.app.state, "job_queue", None)
    client.app.state.job_queue = queue
    try:
        yield queue
    finally:
        client.app.state.job_queue = previous


def _memory(client, key: str, **fields) -> dict:  # type: ignore[no-untyped-def, type-arg]
    r = client.post("/v1/memories", json={"content": "Ana's train to Porto leaves at 9:40 from platform 4.",
                                          "embedding": [0.05] * 384, **fields}, headers=auth(key))
    assert r.status_code == 201, r.text
    return r.json()


def test_policy_get_put_patch_and_validation(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    default = client.get("/v1/policy", headers=auth(key))
    assert default.status_code == 200 and default.json()["tau0_days"] == 30 and default.json()["ttl_days"] is None
    r = client.put("/v1/policy", json={"tau0_days": 10, "summary_threshold": 0.6}, headers=auth(key))
    assert r.status_code == 200 and r.json()["tau0_days"] == 10 and r.json()["summary_threshold"] == 0.6
    r = client.patch("/v1/policy", json={"ttl_days": 365}, headers=auth(key))
    assert r.status_code == 200 and r.json()["tau0_days"] == 10 and r.json()["ttl_days"] == 365
    r = client.put("/v1/policy", json={"ttl_days": 30}, headers=auth(key))  # PUT replaces: the rest is default
    assert r.json()["tau0_days"] == 30 and r.json()["ttl_days"] == 30
    for bad in ({"tau0_days": 0}, {"summary_threshold": 0.1, "gist_threshold": 0.2}, {"nope": 1},
                {"tau0_days": "soon"}, {"ttl_days": -1}):
        r = client.put("/v1/policy", json=bad, headers=auth(key))
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_input"
    assert client.put("/v1/policy", json=[1, 2], headers=auth(key)).status_code == 422
    assert client.put("/v1/policy", content=b"{not json", headers={**auth(key), "content-type": "application/json"}
                      ).status_code == 400
    assert client.get("/v1/policy", headers=auth(key)).json()["ttl_days"] == 30  # bad input stored nothing
    reader = make_tenant(("read",))
    assert client.put("/v1/policy", json={}, headers=auth(reader)).status_code == 403


def test_retention_uses_the_tenant_tau0_and_the_curve(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    client.put("/v1/policy", json={"tau0_days": 1}, headers=auth(key))
    m = _memory(client, key, importance=0.0)  # strength 1: R = exp(-days)
    r = client.get(f"/v1/memories/{m['id']}/retention?horizon_days=2&points=3", headers=auth(key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tau0_days"] == 1 and [p["t_days"] for p in body["points"]] == [0, 1, 2]
    for p in body["points"]:
        assert math.isclose(p["retention"], math.exp(-p["t_days"]), rel_tol=1e-3)
    assert body["retention_now"] > 0.999
    for bad in ("horizon_days=0", "points=1", "points=100000", "horizon_days=abc"):
        assert client.get(f"/v1/memories/{m['id']}/retention?{bad}", headers=auth(key)).status_code == 422
    assert client.get("/v1/memories/not-a-uuid/retention", headers=auth(key)).status_code == 422


def test_feedback_reinforces_or_weakens(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    m = _memory(client, key, importance=0.5)
    r = client.post(f"/v1/memories/{m['id']}/feedback", json={"useful": False}, headers=auth(key))
    assert r.status_code == 200, r.text
    assert math.isclose(r.json()["strength"], m["strength"] * 0.5)
    r = client.post(f"/v1/memories/{m['id']}/feedback", json={"useful": True}, headers=auth(key))
    # Used right after it was seen: R ~ 1, so reinforcement adds almost nothing (no pumping).
    assert r.json()["access_count"] == 1 and r.json()["strength"] == pytest.approx(m["strength"] * 0.5, abs=1e-3)
    assert client.post(f"/v1/memories/{m['id']}/feedback", json={"useful": "maybe"}, headers=auth(key)
                       ).status_code == 422
    assert client.post(f"/v1/memories/{m['id']}/feedback", json={}, headers=auth(key)).status_code == 422
    other = make_tenant()
    assert client.post(f"/v1/memories/{m['id']}/feedback", json={"useful": True}, headers=auth(other)
                       ).status_code == 404


def test_negative_feedback_under_a_factor_that_underflows_floors_the_strength(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    """0.05 (the floor) * 5e-324 underflows a double to 0, which Postgres refuses ('value out of range:
    underflow'): the second negative feedback was a 500 (found by the long fuzz run, bench/fuzz.py). Any factor
    that takes the strength below the floor floors it."""
    from memsvc.lifecycle.retention import MIN_STRENGTH

    key = make_tenant()
    for factor in (5e-324, 1e-300, 1e-6):
        m = _memory(client, key, importance=1.0)  # strength 5
        assert client.patch("/v1/policy", json={"negative_feedback_factor": factor}, headers=auth(key)
                            ).status_code == 200
        for _ in range(2):  # the first takes it to the floor, the second multiplies the floor
            r = client.post(f"/v1/memories/{m['id']}/feedback", json={"useful": False}, headers=auth(key))
            assert r.status_code == 200, r.text
            assert r.json()["strength"] == pytest.approx(MIN_STRENGTH)
    m = _memory(client, key, importance=1.0)
    client.patch("/v1/policy", json={"negative_feedback_factor": 0.1}, headers=auth(key))
    r = client.post(f"/v1/memories/{m['id']}/feedback", json={"useful": False}, headers=auth(key))
    assert r.json()["strength"] == pytest.approx(0.5)  # above the floor: strength * factor, as before


def test_weaken_memory_says_whether_it_weakened_one(client, make_tenant, engine) -> None:  # type: ignore[no-untyped-def]
    """Its answer comes from RETURNING: rowcount is -1 for some statements with this driver pairing (truthy)."""
    from memsvc.db import session_scope
    from memsvc.lifecycle.feedback import weaken_memory
    from memsvc.lifecycle.tiers import TierPolicy
    from memsvc.scoping import MemoryScope

    key = make_tenant()
    m = _memory(client, key, user_id="ana")
    with session_scope(engine) as session:
        tenant_id = session.scalar(text("SELECT tenant_id FROM memories WHERE id = :id"), {"id": m["id"]})
        assert weaken_memory(session, MemoryScope(tenant_id), uuid.UUID(m["id"])) is True
        assert weaken_memory(session, MemoryScope(tenant_id, user_ids=("bob",)), uuid.UUID(m["id"])) is False
        assert weaken_memory(session, MemoryScope(uuid.uuid4()), uuid.UUID(m["id"]), policy=TierPolicy()) is False
        assert weaken_memory(session, MemoryScope(tenant_id), uuid.uuid4()) is False


def test_writes_schedule_one_debounced_consolidation_per_scope(client, make_tenant, recorded) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    _memory(client, key, user_id="ana")
    _memory(client, key, user_id="ana")
    _memory(client, key, user_id="bo")
    _memory(client, key, user_id="bo", kind="semantic")  # facts do not trigger consolidation
    jobs = client.get("/v1/jobs?kind=consolidate&status=queued", headers=auth(key)).json()["items"]
    assert sorted(j["scope"]["user_id"] for j in jobs) == ["ana", "bo"]
    assert len(recorded.enqueued) == 2 and all(delay > 0 for _, delay in recorded.enqueued)
    ana = next(j for j in jobs if j["scope"]["user_id"] == "ana")
    assert datetime.fromisoformat(ana["run_after"]) > datetime.now(UTC) + timedelta(seconds=5)
    # An explicit request brings the pending job forward instead of adding one.
    r = client.post("/v1/consolidate", json={"user_id": "ana"}, headers=auth(key))
    assert r.status_code == 202 and r.json()["job_id"] == ana["id"]
    assert recorded.enqueued[-1] == (uuid.UUID(ana["id"]), 0.0)
    r = client.post("/v1/consolidate", json={"user_id": "ana", "reprocess": True}, headers=auth(key))
    assert r.status_code == 202 and r.json()["job_id"] != ana["id"] and r.json()["job"]["params"] == {"reprocess": True}


def test_jobs_endpoints_bad_input_and_restricted_keys(client, make_tenant, recorded) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    assert client.get("/v1/jobs/not-a-uuid", headers=auth(key)).status_code == 422
    assert client.get(f"/v1/jobs/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=auth(key)).status_code == 404
    assert client.get("/v1/jobs?status=exploded", headers=auth(key)).status_code == 422
    assert client.get("/v1/jobs?cursor=garbage", headers=auth(key)).status_code == 400
    assert client.post("/v1/consolidate", json={"user_id": "x", "extra": 1}, headers=auth(key)).status_code == 422
    for i in range(3):
        client.post("/v1/consolidate", json={"user_id": f"user{i}", "reprocess": True}, headers=auth(key))
    page = client.get("/v1/jobs?limit=2", headers=auth(key)).json()
    rest = client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}", headers=auth(key)).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    restricted = make_tenant(("read", "write"), user_ids=["user0"])
    assert client.post("/v1/consolidate", json={"user_id": "user1"}, headers=auth(restricted)).status_code == 403
    assert client.post("/v1/consolidate", json={"user_id": "user0"}, headers=auth(restricted)).status_code == 202
    seen = client.get("/v1/jobs", headers=auth(restricted)).json()["items"]
    assert seen and all(j["scope"]["user_id"] == "user0" for j in seen)

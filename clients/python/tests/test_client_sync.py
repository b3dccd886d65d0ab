"""The sync client against a real uvicorn server and a real Postgres: every endpoint, errors, validation."""

from __future__ import annotations

import uuid

import httpx
import pytest
from memsvc_client import (
    AsyncMemsvcClient,
    AuthenticationError,
    IdempotencyKeyReusedError,
    InvalidCursorError,
    InvalidInputError,
    MemsvcClient,
    MemsvcConnectionError,
    NewMemory,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RetryPolicy,
)

from tests.live_server import free_port

# Every public route and the SDK method that calls it. A new route makes test_every_endpoint_has_a_call
# fail until it gets its one definition in memsvc_client/client.py (and a line here).
ENDPOINTS = {
    ("GET", "/healthz"): "health",
    ("GET", "/readyz"): "ready",
    ("POST", "/v1/memories"): "add",
    ("GET", "/v1/memories"): "list_memories",
    ("POST", "/v1/memories/batch"): "add_batch",
    ("GET", "/v1/memories/{memory_id}"): "get",
    ("PATCH", "/v1/memories/{memory_id}"): "update",
    ("DELETE", "/v1/memories/{memory_id}"): "delete",
    ("POST", "/v1/erase"): "erase",
    ("POST", "/v1/search"): "search",
    ("POST", "/v1/context"): "context",
    ("POST", "/v1/admin/tenants"): "create_tenant",
    ("GET", "/v1/admin/tenants"): "list_tenants",
    ("POST", "/v1/admin/keys"): "create_key",
    ("GET", "/v1/admin/keys"): "list_keys",
    ("DELETE", "/v1/admin/keys/{key_id}"): "revoke_key",
    ("POST", "/v1/consolidate"): "consolidate",
    ("GET", "/v1/jobs"): "list_jobs",
    ("GET", "/v1/jobs/{job_id}"): "get_job",
    ("POST", "/v1/memories/{memory_id}/feedback"): "feedback",
    ("GET", "/v1/memories/{memory_id}/retention"): "retention",
    ("GET", "/v1/policy"): "get_policy",
    ("PUT", "/v1/policy"): "set_policy",
    ("PATCH", "/v1/policy"): "update_policy",
    ("GET", "/v1/recipes"): "recipes",
    ("GET", "/v1/policy/retrieval"): "get_retrieval_policy",
    ("PUT", "/v1/policy/retrieval"): "set_retrieval_policy",
    ("PATCH", "/v1/policy/retrieval"): "update_retrieval_policy",
    ("POST", "/v1/maintenance/sparse-backfill"): "sparse_backfill",
    ("GET", "/v1/stats"): "stats",
    ("GET", "/v1/memories/{memory_id}/links"): "links",
    ("GET", "/v1/policy/memory-tokens"): "get_memory_token_policy",
    ("PUT", "/v1/policy/memory-tokens"): "set_memory_token_policy",
    ("PATCH", "/v1/policy/memory-tokens"): "update_memory_token_policy",
    ("POST", "/v1/memory-tokens/train"): "train_memory_tokens",
    ("GET", "/v1/memories/{memory_id}/tokens"): "memory_tokens",
    ("POST", "/v1/memories/{memory_id}/tokens/decode"): "decode_memory_tokens",
}
# Served by other clients on purpose: the OpenAI-compatible endpoint is for the `openai` package.
NOT_IN_SDK = {("POST", "/v1/chat/completions")}


def test_every_endpoint_has_a_call(app) -> None:  # type: ignore[no-untyped-def]
    routes = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    missing = sorted(routes - set(ENDPOINTS) - NOT_IN_SDK)
    assert not missing, f"endpoints without an SDK call (add one method to memsvc_client/client.py): {missing}"
    sync, asynchronous = MemsvcClient("http://127.0.0.1:1", "k"), AsyncMemsvcClient("http://127.0.0.1:1", "k")
    for name in ENDPOINTS.values():
        assert callable(getattr(sync, name)) and callable(getattr(asynchronous, name))


def test_memory_lifecycle(mem: MemsvcClient) -> None:
    assert mem.health().status == "ok"
    assert mem.ready().checks["database"] == "ok"  # "ready" also waits for the embedder to load
    first = mem.add("Alice moved to Berlin in 2021.", user_id="alice", tags=["move"], metadata={"src": "chat"},
                    importance=0.8)
    assert first.user_id == "alice" and first.tags == ["move"] and first.metadata == {"src": "chat"}
    fetched = mem.get(first.id)
    assert (fetched.id, fetched.content, fetched.recorded_at) == (first.id, first.content, first.recorded_at)
    changed = mem.update(str(first.id), content="Alice moved to Munich in 2022.", tags=["move", "fixed"])
    assert changed.content == "Alice moved to Munich in 2022." and changed.tags == ["move", "fixed"]
    assert changed.metadata == {"src": "chat"}  # untouched fields stay
    batch = mem.add_batch([NewMemory(content="Bob likes tea.", user_id="bob"),
                           {"content": "Bob plays chess on Sundays.", "user_id": "bob", "kind": "semantic"}])
    assert batch.count == 2 and [m.content for m in batch.items][1] == "Bob plays chess on Sundays."

    hits = mem.search("where does Alice live", user_id="alice").hits
    assert hits and hits[0].memory.id == first.id and "dense" in hits[0].signals

    page = mem.list_memories(user_id="bob", limit=1)
    assert len(page.items) == 1 and page.next_cursor
    assert {m.content for m in mem.iter_memories(user_id="bob", page_size=1)} == {
        "Bob likes tea.", "Bob plays chess on Sundays."}

    report = mem.delete(first.id)
    assert report.deleted == [first.id]
    with pytest.raises(NotFoundError) as missing:
        mem.get(first.id)
    assert missing.value.status == 404 and str(first.id) in missing.value.message
    erased = mem.erase(user_id="bob")
    assert sorted(erased.deleted) == sorted(m.id for m in batch.items)
    assert list(mem.iter_memories()) == []


def test_context_fits_the_budget(app, mem: MemsvcClient) -> None:  # type: ignore[no-untyped-def]
    if "/v1/context" not in app.openapi()["paths"]:
        pytest.skip("this server has no /v1/context yet")
    mem.add_batch([{"content": "Dana is allergic to peanuts.", "user_id": "dana", "kind": "semantic"},
                   {"content": "Dana ran a marathon in Lisbon in 2024.", "user_id": "dana"}])
    result = mem.context("What food should I avoid serving Dana?", budget_tokens=200, user_id="dana")
    assert "peanuts" in result.context and 0 < result.token_count <= 200
    assert result.items and all(i.id for i in result.items)
    by_messages = mem.context(messages=[{"role": "user", "content": "Where did Dana run?"}], budget_tokens=200,
                              user_id="dana", model="gpt-4o")
    assert "Lisbon" in by_messages.context
    with pytest.raises(InvalidInputError, match="query or messages"):
        mem.context("  ", budget_tokens=100)
    with pytest.raises(InvalidInputError, match="budget_tokens"):
        mem.context("q", budget_tokens=-1)


def test_lifecycle_calls(mem: MemsvcClient) -> None:
    first = mem.add("Pia started learning the cello.", user_id="pia", importance=0.4)
    mem.add("Pia practises the cello every morning.", user_id="pia")
    accepted = mem.consolidate(user_id="pia")
    assert accepted.job.kind and accepted.job_id == accepted.job.id
    assert mem.get_job(accepted.job_id).id == accepted.job_id
    assert accepted.job_id in {j.id for j in mem.iter_jobs(page_size=1)}
    assert all(j.id for j in mem.list_jobs(status="queued", limit=5).items)

    stronger = mem.feedback(first.id, True)
    assert stronger.strength > first.strength and stronger.access_count == first.access_count + 1
    assert mem.feedback(first.id, False).strength < stronger.strength
    curve = mem.retention(first.id, horizon_days=30, points=4)
    assert len(curve.points) == 4 and curve.points[0].retention >= curve.points[-1].retention

    policy = mem.update_policy(tau0_days=45)
    assert policy.tau0_days == 45 and mem.get_policy().tau0_days == 45
    with pytest.raises(InvalidInputError, match="summary > gist > archive"):
        mem.update_policy(gist_threshold=0.9)
    assert mem.set_policy().tau0_days == 30  # a PUT of nothing = the defaults

    stats = mem.stats(user_id="pia")
    assert stats.by_kind["episodic"] == 2 and stats.total >= 2  # (+ facts, if a worker consolidated already)
    assert mem.links(first.id).links == []
    with pytest.raises(InvalidInputError):
        mem.feedback(first.id, "yes")  # type: ignore[arg-type]


def test_iterator_walks_many_pages(mem: MemsvcClient) -> None:
    stored = mem.add_batch([{"content": f"note number {i}", "session_id": "s1"} for i in range(23)])
    seen = [m.id for m in mem.iter_memories(session_id="s1", page_size=5)]
    assert len(seen) == 23 and set(seen) == {m.id for m in stored.items}


def test_idempotency_key_makes_a_write_happen_once(mem: MemsvcClient) -> None:
    one = mem.add("pay the rent", idempotency_key="rent-2026-11")
    two = mem.add("pay the rent", idempotency_key="rent-2026-11")
    assert one.id == two.id
    assert [m.content for m in mem.iter_memories()].count("pay the rent") == 1
    with pytest.raises(IdempotencyKeyReusedError) as reused:
        mem.add("pay the gas bill", idempotency_key="rent-2026-11")
    assert reused.value.status == 409 and "Idempotency-Key" in reused.value.message


def test_server_errors_become_named_exceptions(live_server, mem: MemsvcClient, root: MemsvcClient) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AuthenticationError, match="invalid API key"):
        MemsvcClient(live_server.url, "msk_not_a_key").add("x")
    with pytest.raises(AuthenticationError, match="missing API key"):
        MemsvcClient(live_server.url, "").list_memories()

    key = mem.create_key(["read"], name="reader")
    reader = MemsvcClient(live_server.url, key.key)
    with pytest.raises(PermissionDeniedError, match="'write' scope") as denied:
        reader.add("not allowed")
    assert denied.value.code == "forbidden" and denied.value.details == {"required": "write"}
    assert reader.list_memories().items == []

    with pytest.raises(InvalidCursorError):
        mem.list_memories(cursor="bogus.cursor")
    with pytest.raises(PayloadTooLargeError, match="limit is 10000"):
        mem.add("x" * 10_001)  # the suite's server allows 10,000 characters; the SDK does not guess limits
    with pytest.raises(InvalidInputError) as dim:
        mem.add("wrong vector", embedding=[0.1, 0.2])
    assert dim.value.code == "embedding_dimension_mismatch" and dim.value.status == 422

    assert {k.name for k in mem.list_keys()} >= {"sdk tests", "reader"}
    assert mem.revoke_key(key.id).revoked_at is not None
    with pytest.raises(AuthenticationError, match="revoked"):
        reader.list_memories()
    assert any(t.name == "default" for t in root.list_tenants())
    with pytest.raises(PermissionDeniedError):
        mem.list_tenants()


def _offline_client() -> MemsvcClient:
    # Nothing listens there and no retries: a request that was sent would raise MemsvcConnectionError,
    # so an InvalidInputError proves the check happened locally, before anything left.
    return MemsvcClient(f"http://127.0.0.1:{free_port()}", "k", retry_policy=RetryPolicy(max_retries=0))


@pytest.mark.parametrize("call, message", [
    (lambda c: c.add(""), "content: content must not be empty"),
    (lambda c: c.add("   \n"), "must not be empty"),
    (lambda c: c.add("a\x00b"), "NUL"),
    (lambda c: c.add("\ud800"), "surrogate"),
    (lambda c: c.add("ok", kind="dream"), "kind"),
    (lambda c: c.add("ok", importance=2), "importance"),
    (lambda c: c.add("ok", user_id=""), "user_id"),
    (lambda c: c.add("ok", tags=["t"] * 51), "tags"),
    (lambda c: c.add_batch([]), "at least one"),
    (lambda c: c.add_batch([{"content": "x"}] * 1001), "at most 1000"),
    (lambda c: c.add_batch([{"content": "ok"}, {"content": ""}]), "items[1]"),
    (lambda c: c.add_batch([{"content": "ok", "colour": "red"}]), "colour"),
    (lambda c: c.add_batch("not a list"), "list"),
    (lambda c: c.get("not-a-uuid"), "not a valid memory id"),
    (lambda c: c.delete("123"), "not a valid memory id"),
    (lambda c: c.update(uuid.uuid4()), "at least one field"),
    (lambda c: c.update("nope", content="x"), "not a valid memory id"),
    (lambda c: c.list_memories(limit=0), "limit"),
    (lambda c: c.list_memories(limit=500), "limit"),
    (lambda c: list(c.iter_memories(page_size=0)), "limit"),
    (lambda c: c.search(""), "query"),
    (lambda c: c.search("q", limit=1000), "limit"),
    (lambda c: c.erase(), "at least one of"),
    (lambda c: c.create_tenant("bad name!"), "name"),
    (lambda c: c.create_key([]), "scopes"),
    (lambda c: c.create_key(["superuser"]), "scopes"),
    (lambda c: c.revoke_key("k1"), "not a valid key id"),
    (lambda c: c.get_job("j1"), "not a valid job id"),
    (lambda c: c.list_jobs(limit=0), "limit"),
    (lambda c: c.iter_jobs(page_size=1000), "limit"),
    (lambda c: c.retention(uuid.uuid4(), points=1), "points"),
    (lambda c: c.update_policy(), "at least one field"),
    (lambda c: c.stats(user_id=""), "user_id"),
    (lambda c: c.links("x"), "not a valid memory id"),
])
def test_local_validation_sends_nothing(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with _offline_client() as client, pytest.raises(InvalidInputError) as error:
        call(client)
    assert message in str(error.value)
    assert error.value.status is None and error.value.code == "invalid_input"


def test_unreachable_server_is_a_connection_error() -> None:
    client = MemsvcClient(f"http://127.0.0.1:{free_port()}", "k",
                          retry_policy=RetryPolicy(max_retries=2, backoff_base=0.01))
    with pytest.raises(MemsvcConnectionError, match="after 3 attempts"):
        client.health()


def test_caller_supplied_http_client_is_left_unchanged(live_server, tenant_key: str) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client() as http:
        client = MemsvcClient(live_server.url, tenant_key, http_client=http)
        assert client.add("shared http client").content == "shared http client"
        assert "authorization" not in http.headers and str(http.base_url) == ""


def test_example_agent_loop_remembers_across_runs(live_server, tenant_key: str) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "agent_loop.py"
    env = {**os.environ, "MEMSVC_URL": live_server.url, "MEMSVC_API_KEY": tenant_key, "AGENT_USER": "quinn",
           "PYTHONPATH": str(script.parents[1])}

    def run(*messages: str) -> str:
        done = subprocess.run([sys.executable, str(script), *messages], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "don't recall anything" in run("My favourite tea is genmaicha.")
    assert "genmaicha" in run("Which tea should I buy?")  # a new process: the memory came from the server


def test_recipes_and_the_retrieval_policy(mem: MemsvcClient) -> None:
    names = {r.name: r for r in mem.recipes().items}
    assert {"general", "conversation"} <= set(names) and names["general"].default
    chosen = mem.update_retrieval_policy(recipe="conversation")
    assert chosen.recipe == "conversation" and chosen.reindex_job_id is None
    assert mem.get_retrieval_policy().recipe == "conversation"
    assert next(r for r in mem.recipes().items if r.tenant_default).name == "conversation"
    assert mem.set_retrieval_policy().recipe is None  # PUT with nothing: back to the deployment's default

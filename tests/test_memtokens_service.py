"""Memory tokens around the trainer: policy, requests and their refusals, storage keyed by model identity,
sets dying with their memory's content, and the context builder's fourth fidelity (verified sets only).

The sets here are stored directly (the vectors' values do not matter to these rules); training and decoding
for real are tests/test_memtokens_e2e.py."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from memsvc.memtokens import store as memtoken_store
from memsvc.memtokens.marks import MEMORY_MARK, MarkedCounter, memory_mark
from memsvc.scoping import MemoryScope
from memsvc.tokens import get_counter
from tests.fixtures import auth
from tests.lifecycle_helpers import tenant_of_key

LONG_FACT = ("The user's storage unit is number 4417 at the Eastside self-storage on Mill Road; the gate code is "
             "changed every quarter and the current one is written on the blue card in the kitchen drawer.")


@pytest.fixture(scope="module")
def smollm2_id(app) -> str:  # type: ignore[no-untyped-def]
    return app.state.retrieval.local_models.get("smollm2").identity().model_id


def _write(client, key: str, content: str, kind: str = "semantic", **extra) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = client.post("/v1/memories", json={"content": content, "kind": kind, "user_id": "u1", **extra},
                    headers=auth(key))
    assert r.status_code == 201, r.text
    return r.json()


def _store_set(app, key: str, memory: dict, model_id: str, *, verified: bool = True, k: int = 2,  # type: ignore[no-untyped-def,type-arg]
               content_hash: str | None = None) -> bool:
    sessions = app.state.sessions
    scope = MemoryScope(tenant_of_key(sessions, key))
    with sessions() as session, session.begin():
        return memtoken_store.save(session, scope, uuid.UUID(memory["id"]), model_id,
                                   content_hash or memory["content_hash"], vectors=np.full((k, 576), 0.5),
                                   verified=verified, steps=100, seconds=1.5, n_tokens=40,
                                   note=None if verified else "did not decode exactly")


def test_policy_defaults_validation_and_unknown_models(client, key) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/policy/memory-tokens", headers=auth(key))
    assert r.status_code == 200 and r.json()["model"] == "smollm2" and r.json()["enabled"] is False
    assert r.json()["in_context"] is False  # opt-in: the model does not read its vectors (docs/memtokens.md)
    r = client.patch("/v1/policy/memory-tokens", json={"model": "local/nope"}, headers=auth(key))
    assert r.status_code == 422 and "local/smollm2" in r.json()["error"]["message"]
    r = client.patch("/v1/policy/memory-tokens", json={"max_tokens": 5000}, headers=auth(key))
    assert r.status_code == 422 and "max_tokens" in r.json()["error"]["message"]
    r = client.patch("/v1/policy/memory-tokens", json={"max_tokens": 64, "kinds": ["episodic"]}, headers=auth(key))
    assert r.status_code == 200 and r.json()["max_tokens"] == 64 and r.json()["kinds"] == ["episodic"]
    assert client.get("/v1/policy/memory-tokens", headers=auth(key)).json()["max_tokens"] == 64


def test_train_requests_refuse_what_cannot_be_trained_and_store_nothing(client, key, make_tenant) -> None:  # type: ignore[no-untyped-def]
    fact = _write(client, key, "The user's dentist is Dr. Okafor.")
    episode = _write(client, key, "We talked about the weather.", kind="episodic")
    long = _write(client, key, " ".join([LONG_FACT] * 4))
    cases = [
        ({"memory_ids": [fact["id"]], "model": "local/gpt-9"}, 422, "unknown local model"),
        ({"memory_ids": [long["id"]]}, 422, "too long"),
        ({"memory_ids": [episode["id"]]}, 422, "kind 'episodic'"),
        ({"memory_ids": [str(uuid.uuid4())]}, 404, "not found"),
        ({"memory_ids": ["not-a-uuid"]}, 422, "memory_ids"),
    ]
    other = _write(client, make_tenant(), "Another tenant's fact.")
    cases.append(({"memory_ids": [other["id"]]}, 404, "not found"))
    for body, status, words in cases:
        r = client.post("/v1/memory-tokens/train", json=body, headers=auth(key))
        assert r.status_code == status, (body, r.text)
        assert words in r.text, r.text
    jobs = client.get("/v1/jobs", params={"kind": "train_memory_tokens"}, headers=auth(key)).json()["items"]
    assert jobs == []
    ok = client.post("/v1/memory-tokens/train", json={"memory_ids": [fact["id"]]}, headers=auth(key))
    assert ok.status_code == 202, ok.text
    again = client.post("/v1/memory-tokens/train", json={"memory_ids": [fact["id"]]}, headers=auth(key))
    assert again.json()["job_id"] == ok.json()["job_id"]  # still queued: the same job
    assert ok.json()["job"]["kind"] == "train_memory_tokens"


def test_a_set_shows_on_the_record_and_dies_with_the_content(app, client, key, smollm2_id) -> None:  # type: ignore[no-untyped-def]
    memory = _write(client, key, "The user's passport expires in March 2031.")
    assert _store_set(app, key, memory, smollm2_id)
    got = client.get(f"/v1/memories/{memory['id']}", headers=auth(key)).json()["memory_tokens"]
    assert [(s["model_id"], s["verified"], s["current"], s["vectors"]) for s in got] == [(smollm2_id, True, True, 2)]
    # A set trained on other text is refused at storage time (an edit raced the training).
    assert not _store_set(app, key, memory, smollm2_id, content_hash="0" * 64)
    r = client.patch(f"/v1/memories/{memory['id']}", json={"content": "The passport expires in May 2032."},
                     headers=auth(key))
    assert r.status_code == 200
    assert client.get(f"/v1/memories/{memory['id']}/tokens", headers=auth(key)).json()["items"] == []
    # Erasure removes them and says how many.
    kept = _write(client, key, "The user's locker is 12.", session_id="s-erase")
    assert _store_set(app, key, kept, smollm2_id) and _store_set(app, key, kept, "other@0123456789abcdef")
    report = client.post("/v1/erase", json={"session_id": "s-erase"}, headers=auth(key)).json()
    assert report["deleted"] == [kept["id"]] and report["memory_tokens_removed"] == 2


def _context(client, key: str, budget: int, **extra) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = client.post("/v1/context", json={"query": "storage unit gate code", "budget_tokens": budget,
                                         "model": "local/smollm2", "user_id": "u-ctx", **extra}, headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()


def test_contexts_for_the_local_model_use_verified_sets_only(app, client, make_tenant, smollm2_id) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    memory = _write(client, key, LONG_FACT, user_id="u-ctx")
    counter = get_counter("smollm2")
    assert counter.count(LONG_FACT) > 30
    budget = 24  # the text does not fit; its two vectors do

    # No set, an unverified set, a set of other weights: never tokens.
    assert client.patch("/v1/policy/memory-tokens", json={"in_context": True}, headers=auth(key)).status_code == 200
    assert all(i["fidelity"] != "tokens" for i in _context(client, key, budget)["items"])
    _store_set(app, key, memory, smollm2_id, verified=False)
    _store_set(app, key, memory, "smollm2@ffffffffffffffff", verified=True)
    out = _context(client, key, budget)
    assert all(i["fidelity"] != "tokens" for i in out["items"]) and not MEMORY_MARK.search(out["context"])

    _store_set(app, key, memory, smollm2_id, verified=True)
    # A verified set, but the tenant's policy has not opted in: texts only, and the report says so.
    assert client.patch("/v1/policy/memory-tokens", json={"in_context": False}, headers=auth(key)).status_code == 200
    out = _context(client, key, budget)
    assert not MEMORY_MARK.search(out["context"]) and out["memory_tokens_model"] is None
    assert client.patch("/v1/policy/memory-tokens", json={"in_context": True}, headers=auth(key)).status_code == 200
    out = _context(client, key, budget)
    item = next(i for i in out["items"] if i["id"] == memory["id"])
    assert item["fidelity"] == "tokens" and item["vectors"] == 2
    assert memory_mark(memory["id"]) in out["context"] and out["memory_tokens_model"] == smollm2_id
    # The budget counts the marker as its two positions, and holds.
    marked = MarkedCounter(counter, {uuid.UUID(memory["id"]): 2})
    assert out["token_count"] == marked.count(out["context"]) <= budget
    # Another model, or memory_tokens off: text only.
    assert MEMORY_MARK.search(_context(client, key, 400, model="gpt-4o")["context"]) is None
    assert MEMORY_MARK.search(_context(client, key, budget, memory_tokens=False)["context"]) is None
    # With room for the text, the text wins (tokens are worth far less than the words themselves).
    roomy = _context(client, key, 400)
    assert next(i for i in roomy["items"] if i["id"] == memory["id"])["fidelity"] == "verbatim"


def test_marked_counter_counts_markers_as_their_vectors_and_never_cuts_one() -> None:
    counter = get_counter("smollm2")
    a, b = uuid.uuid4(), uuid.uuid4()
    text = f"## Facts\n- {memory_mark(a)}\n- plain words here\n- {memory_mark(b)}"
    marked = MarkedCounter(counter, {a: 3, b: 4})
    plain = counter.count("## Facts\n- ") + counter.count("\n- plain words here\n- ")
    assert marked.count(text) == plain + 7
    for limit in range(0, marked.count(text) + 1):
        cut = marked.truncate(text, limit)
        assert marked.count(cut) <= limit
        assert cut.count("⟦") == cut.count("⟧")  # whole markers or none

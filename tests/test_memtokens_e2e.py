"""Memory tokens end to end on the CPU: a short memory trained through the job, decoded back exactly through
the API, used by the local backend's chat completion (spliced in as its vectors), and the failure that
says why when the model's weights changed under a queued job."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import update

from memsvc.lifecycle.runner import RunContext, run_job
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.llm import BuiltinLLM
from memsvc.models import Job
from memsvc.queue import RecordingQueue
from tests.fixtures import auth

pytest.importorskip("transformers")

FACT = "Mia's locker code is 4471."


@pytest.fixture(scope="module")
def trained(app, client, engine):  # type: ignore[no-untyped-def]
    """A tenant with one fact whose token set was trained by a train_memory_tokens job."""
    tenant = client.post("/v1/admin/tenants", json={"name": f"mt-{uuid.uuid4().hex[:8]}"},
                         headers=auth("msk_test_root_key_for_the_suite_only")).json()
    key = client.post("/v1/admin/keys", json={"scopes": ["read", "write", "admin"], "tenant_id": tenant["id"]},
                      headers=auth("msk_test_root_key_for_the_suite_only")).json()["key"]
    policy = {"min_vectors": 2, "in_context": True}  # in_context: the opt-in for chat contexts to use the set
    assert client.patch("/v1/policy/memory-tokens", json=policy, headers=auth(key)).status_code == 200
    memory = client.post("/v1/memories", json={"content": FACT, "kind": "semantic", "user_id": "mia"},
                         headers=auth(key)).json()
    accepted = client.post("/v1/memory-tokens/train", json={"memory_ids": [memory["id"]]}, headers=auth(key))
    assert accepted.status_code == 202, accepted.text
    job_id = uuid.UUID(accepted.json()["job_id"])
    ctx = RunContext(engine=engine, sessions=app.state.sessions, queue=RecordingQueue(), llm=BuiltinLLM,
                     embedder=lambda: app.state.embedder(), settings=LifecycleSettings())
    assert run_job(ctx, job_id) == "succeeded"
    return {"key": key, "memory": memory, "job_id": str(job_id), "ctx": ctx}


def test_the_job_trains_verifies_and_stores_the_set(client, trained) -> None:  # type: ignore[no-untyped-def]
    key, memory = trained["key"], trained["memory"]
    job = client.get(f"/v1/jobs/{trained['job_id']}", headers=auth(key)).json()
    assert job["status"] == "succeeded" and job["kind"] == "train_memory_tokens"
    result = job["result"]
    assert (result["selected"], result["trained"], result["verified"]) == (1, 1, 1), result
    outcome = result["outcomes"][0]
    assert outcome["id"] == memory["id"] and outcome["vectors"] == 2 and outcome["steps"] > 0
    status = client.get(f"/v1/memories/{memory['id']}", headers=auth(key)).json()["memory_tokens"]
    assert len(status) == 1 and status[0]["verified"] and status[0]["current"] and status[0]["vectors"] == 2
    assert status[0]["model_id"].startswith("smollm2@")


def test_decoding_through_the_api_gives_the_text_back(client, trained) -> None:  # type: ignore[no-untyped-def]
    key, memory = trained["key"], trained["memory"]
    r = client.post(f"/v1/memories/{memory['id']}/tokens/decode", json={}, headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["text"] == FACT and r.json()["exact"] and r.json()["verified"]
    # A memory without a set says so, with what to do.
    other = client.post("/v1/memories", json={"content": "No tokens here.", "kind": "semantic"},
                        headers=auth(key)).json()
    r = client.post(f"/v1/memories/{other['id']}/tokens/decode", json={}, headers=auth(key))
    assert r.status_code == 422 and "train it first" in r.json()["error"]["message"]


def _chat(client, key: str, stream: bool = False):  # type: ignore[no-untyped-def]
    return client.post("/v1/chat/completions", headers=auth(key), json={
        "model": "local/smollm2", "stream": stream, "max_tokens": 12,
        "messages": [{"role": "user", "content": "What is Mia's locker code?"}],
        # A budget the fact's text does not fit and its two vectors do: under SmolLM2's tokenizer the line
        # "- [3 December 2026] <marker>" costs 11 + 2 + 1 (digits are a token each) and "## Facts" 3 more;
        # the text's line costs 23 + 3.
        "memsvc": {"user_id": "mia", "budget_tokens": 20, "remember": False}})


def test_a_local_chat_completion_reads_the_memory_as_its_vectors(client, trained) -> None:  # type: ignore[no-untyped-def]
    key, memory = trained["key"], trained["memory"]
    r = _chat(client, key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "local/smollm2"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["completion_tokens"] <= 12
    assert body["memsvc"]["memory_tokens_used"] == [memory["id"]]

    r = _chat(client, key, stream=True)
    assert r.status_code == 200
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert events[0]["object"] == "chat.completion.chunk"
    assert events[-1]["memsvc"]["memory_tokens_used"] == [memory["id"]]
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")

    r = client.post("/v1/chat/completions", headers=auth(key), json={
        "model": "local/smollm2", "tools": [], "messages": [{"role": "user", "content": "hi"}],
        "memsvc": {"remember": False}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools"


def test_a_job_for_weights_that_changed_fails_saying_why_and_stores_nothing(app, client, trained) -> None:  # type: ignore[no-untyped-def]
    key = trained["key"]
    memory = client.post("/v1/memories", json={"content": "Mia's bike is green.", "kind": "semantic"},
                         headers=auth(key)).json()
    job_id = client.post("/v1/memory-tokens/train", json={"memory_ids": [memory["id"]]},
                         headers=auth(key)).json()["job_id"]
    with app.state.sessions() as session, session.begin():  # as if the GGUF had been replaced since
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(
            params=Job.params.op("||")({"model_id": "smollm2@0000000000000000"})))
    assert run_job(trained["ctx"], uuid.UUID(job_id)) == "failed"
    job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert "changed" in job["error"] and "smollm2@0000000000000000" in job["error"]
    assert client.get(f"/v1/memories/{memory['id']}/tokens", headers=auth(key)).json()["items"] == []

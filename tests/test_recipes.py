"""Retrieval recipes (data, chosen per request / tenant / deployment), structured speakers, the one
context service behind /v1/context and chat, and full text in the tenant's language."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from memsvc import jobs
from memsvc.db import session_factory
from memsvc.lifecycle.runner import RunContext, run_job
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.llm import BuiltinLLM
from memsvc.queue import RecordingQueue
from memsvc.retrieval.recipes import CONVERSATION, GENERAL, RecipeBook, load_book
from memsvc.retrieval.service import query_from_messages
from tests.fixtures import auth
from tests.lifecycle_helpers import tenant_of_key


def _post(client, key: str, path: str, status: int = 200, **body):  # type: ignore[no-untyped-def]
    r = client.post(path, json=body, headers=auth(key))
    assert r.status_code == status, r.text
    return r.json()


def _write(client, key: str, items: list[dict]) -> list[str]:  # type: ignore[no-untyped-def,type-arg]
    r = client.post("/v1/memories/batch", json={"items": items}, headers=auth(key))
    assert r.status_code == 201, r.text
    return [m["id"] for m in r.json()["items"]]


# ---- recipes as data -------------------------------------------------------------------------------
def test_general_assumes_nothing_and_conversation_adds_the_chat_signals() -> None:
    plain = GENERAL.settings
    # No speaker, length or neighbour signal in general: only session context, which needs a writer-set
    # session id and so does nothing for notes and documents.
    assert (plain.speaker_boost, plain.length_weight, plain.other_speaker_penalty, plain.session_text_weight,
            plain.sparse_neighbour_weight) == (0, 0, 0, 0, 0)
    assert set(CONVERSATION.changed()) >= {"speaker_boost", "length_weight", "sparse_neighbour_weight"}
    assert set(GENERAL.changed()) == {"learned_sparse_k", "session_weight"}


def test_a_recipes_file_adds_named_variants_and_rejects_unknown_settings(tmp_path: Path) -> None:
    path = tmp_path / "recipes.json"
    path.write_text(json.dumps({"wide": {"base": "conversation", "description": "more candidates",
                                         "settings": {"context_candidates": 150, "rrf_k": 60}}}))
    book = load_book("wide", path)
    wide = book.resolve(None)
    assert wide.name == "wide" and wide.settings.context_candidates == 150 and wide.settings.rrf_k == 60
    assert wide.settings.speaker_boost == CONVERSATION.settings.speaker_boost  # the rest is its base's
    path.write_text(json.dumps({"typo": {"settings": {"rrf_kk": 60}}}))
    with pytest.raises(ValueError, match="rrf_kk"):
        load_book("general", path)
    path.write_text(json.dumps({"bad": {"settings": {"rrf_k": "sixty"}}}))
    with pytest.raises(ValueError, match="rrf_k must be int"):
        load_book("general", path)
    path.write_text(json.dumps({"odd": {"settings": {"fusion": "borda"}}}))
    with pytest.raises(ValueError, match="recipe odd: fusion must be one of rrf, scores"):
        load_book("general", path)
    with pytest.raises(ValueError, match="not a recipe"):
        RecipeBook(default="nonesuch")


def test_the_recipe_comes_from_the_request_then_the_tenant_then_the_deployment(client, key) -> None:  # type: ignore[no-untyped-def]
    _write(client, key, [{"content": "Ana planted tomatoes in the garden."}])
    listed = client.get("/v1/recipes", headers=auth(key)).json()["items"]
    names = {r["name"]: r for r in listed}
    assert {"general", "conversation"} <= set(names)
    assert names["general"]["default"] and names["general"]["tenant_default"]
    assert names["conversation"]["settings"]["speaker_boost"] > 0

    assert _post(client, key, "/v1/search", query="tomatoes")["recipe"] == "general"
    assert _post(client, key, "/v1/search", query="tomatoes", recipe="conversation")["recipe"] == "conversation"
    unknown = _post(client, key, "/v1/context", 422, query="tomatoes", budget_tokens=100, recipe="nonesuch")
    assert "unknown recipe 'nonesuch'" in unknown["error"]["message"]

    r = client.put("/v1/policy/retrieval", json={"recipe": "conversation"}, headers=auth(key))
    assert r.status_code == 200 and r.json()["recipe"] == "conversation", r.text
    assert _post(client, key, "/v1/context", query="tomatoes", budget_tokens=100)["recipe"] == "conversation"
    assert _post(client, key, "/v1/search", query="tomatoes", recipe="general")["recipe"] == "general"
    bad = client.patch("/v1/policy/retrieval", json={"recipe": "fancy"}, headers=auth(key))
    assert bad.status_code == 422 and "GET /v1/recipes" in bad.json()["error"]["message"]
    assert client.get("/v1/policy/retrieval", headers=auth(key)).json()["recipe"] == "conversation"


def test_restricted_keys_without_admin_cannot_change_the_policy(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    reader = make_tenant(("read", "write"))
    r = client.put("/v1/policy/retrieval", json={"recipe": "conversation"}, headers=auth(reader))
    assert r.status_code == 403


# ---- speakers from structured fields, never from content ------------------------------------------
def test_a_prefix_in_the_text_is_not_a_speaker_but_metadata_is(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    ids = _write(client, key, [
        {"content": "Error: the deploy of the billing service failed at step 3.", "session_id": "s1"},
        {"content": "The deploy of the billing service failed because the disk was full.", "session_id": "s1",
         "metadata": {"speaker": "Error", "role": "user"}},
    ])
    hits = _post(client, key, "/v1/search", query="Why did Error say the billing deploy failed?",
                 recipe="conversation")["hits"]
    by_id = {h["memory"]["id"]: h for h in hits}
    # Only the memory whose writer said its speaker is "Error" gets the named-speaker signal.
    assert "named_speaker" in by_id[ids[1]]["signals"]
    assert "named_speaker" not in by_id[ids[0]]["signals"] and "other_speaker" not in by_id[ids[0]]["signals"]
    assert "length" not in by_id[ids[0]]["signals"]  # not a turn: no length prior


# ---- one context service: /v1/context and chat derive the query alike --------------------------
def test_a_conversation_becomes_a_query_from_its_latest_user_turns() -> None:
    convo = [("system", "be brief"), ("user", "I adopted a dog."), ("assistant", "Lovely! What is its name?"),
             ("user", "Her name is Pixel."), ("user", "What should I feed her?")]
    assert query_from_messages(convo) == "I adopted a dog.\nHer name is Pixel.\nWhat should I feed her?"
    assert query_from_messages([("tool", "disk full on /var"), ("assistant", "")]) == "disk full on /var"
    assert len(query_from_messages([("user", "x" * 9000)])) == 4000


# ---- full text in the tenant's language ------------------------------------------------------------
def test_full_text_parses_memories_and_queries_in_the_tenants_language(client, make_tenant, engine) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    sessions = session_factory(engine)
    tenant = tenant_of_key(sessions, key)
    # Unknown language: `simple` (no stemming): an inflected German query word misses the stored form.
    (first,) = _write(client, key, [{"content": "Wir haben die Häuser am Fluss gekauft."}])
    sparse = _post(client, key, "/v1/search", query="Haus", mode="sparse")["hits"]
    assert sparse == []
    with sessions() as s:
        assert s.scalar(text("SELECT fts_config::text FROM memories WHERE id = :i"), {"i": first}) == "simple"

    r = client.patch("/v1/policy/retrieval", json={"language": "german"}, headers=auth(key))
    assert r.status_code == 200 and r.json()["reindex_job_id"], r.text
    job_id = uuid.UUID(r.json()["reindex_job_id"])
    # New memories are parsed in German at once; the old one when the reindex job has run.
    (second,) = _write(client, key, [{"content": "Das Haus meiner Großmutter steht in Bremen."}])
    found = [h["memory"]["id"] for h in _post(client, key, "/v1/search", query="Häuser", mode="sparse")["hits"]]
    assert found == [second]
    ctx = RunContext(engine=engine, sessions=sessions, queue=RecordingQueue(), llm=BuiltinLLM,
                     embedder=lambda: None,  # type: ignore[arg-type,return-value]
                     settings=LifecycleSettings(job_backoff_s=0))
    assert run_job(ctx, job_id) == "succeeded"
    with sessions() as s:
        job = jobs.get_job(s, tenant, job_id)
        assert job.kind == "reindex_fulltext" and job.result["fulltext_reparsed"] == 1
    found = {h["memory"]["id"] for h in _post(client, key, "/v1/search", query="Häuser", mode="sparse")["hits"]}
    assert found == {first, second}
    bad = client.patch("/v1/policy/retrieval", json={"language": "klingon"}, headers=auth(key))
    assert bad.status_code == 422 and "german" in bad.json()["error"]["message"]


def test_a_long_query_keeps_its_rarest_terms(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    common = [f"aa{i}" for i in range(30)] + [f"bb{i}" for i in range(6)]  # in every memory, alphabetically first
    _write(client, key, [{"content": " ".join(common) + f" filler{i}"} for i in range(30)]
           + [{"content": "The zymurgy notes mention xylophone repairs."}])
    # 38 distinct query words: the first 32 in alphabetical order are all common ones.
    hits = _post(client, key, "/v1/search", query=" ".join([*common, "zymurgy", "xylophone"]), mode="sparse")["hits"]
    assert hits and hits[0]["memory"]["content"].startswith("The zymurgy notes")

"""A corpus of ordinary agent memories and of the cases that made false facts (issue 14), written
through the API and consolidated by the real job (built-in extractor, and the litellm gateway with
litellm's own mock_response), facts read back from Postgres.

What users rely on: a fact states what someone said about themselves, attributed to them, in a
grammatical sentence; assistant and tool turns, wrapper text, questions and text the extractor does
not understand make no fact; a new residence closes the old one; re-running creates nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from memsvc.chat import CONTEXT_HEADER
from memsvc.db import session_factory
from memsvc.lifecycle.consolidate import ConsolidationScope, facts_as_of
from memsvc.llm import BuiltinLLM, LiteLLMGateway
from memsvc.models import Memory
from tests.conftest import auth
from tests.lifecycle_helpers import tenant_of_key
from tests.llm_mock import script_litellm
from tests.test_consolidation import consolidate_job, make_ctx, semantic

JAN, MAR, JUN, SEP = (datetime(2024, m, 10, 9, tzinfo=UTC) for m in (1, 3, 6, 9))


def _turn(content: str, at: datetime, role: str | None, user: str = "alice", **meta: Any) -> dict[str, Any]:
    metadata = {"source": "chat", "role": role, **meta} if role else meta
    return {"content": content, "user_id": user, "session_id": "s1", "occurred_at": at.isoformat(),
            "metadata": metadata}


# (memory, the facts it must yield). An empty tuple: it must yield none.
CORPUS: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    # -- the bad cases of issue 14 --
    (_turn("Can you look up today's weather in Berlin?", JAN, "user"), ()),
    (_turn("I'm an AI assistant, so I cannot browse the web in real time.", JAN, "assistant"), ()),
    (_turn("I live in Berlin.", JAN, "user"), ("Alice lives in Berlin.",)),
    (_turn("Big news! I moved to Lisbon in 2024.", JUN, "user"), ("Alice moved to Lisbon in 2024.",)),
    # The agent_loop example's reply, stored as the assistant's turn: "Related things demo-user remembers:."
    (_turn("Related things I remember:\n  - I live in Berlin\n  - Bob hates cilantro", JUN, "assistant"), ()),
    # The same wrapper pasted into a user turn and a role-less note: the block restates memories.
    (_turn("Related things I remember:\n  - I live in Paris\n  - I work at Initech", JUN, "user"), ()),
    (_turn(CONTEXT_HEADER + "## Facts\n- Alice lives in Paris.\n- I love opera.", JUN, None), ()),
    # -- ordinary agent memories --
    (_turn("Alice prefers window seats, especially on long flights.", JAN, None), ("Alice prefers window seats.",)),
    (_turn("I hate cilantro, it tastes like soap.", JAN, "user"), ("Alice hates cilantro.",)),
    (_turn("My favorite color is green.", JAN, "user"), ("Alice's favorite color is green.",)),
    (_turn("I work as a nurse at St. Mary's hospital.", JAN, "user"), ("Alice works as a nurse.",)),
    (_turn("I work at St. Mary's Hospital.", JAN, "user"), ("Alice works at St. Mary's Hospital.",)),
    (_turn("I'm allergic to peanuts.", MAR, "user"), ("Alice is allergic to peanuts.",)),
    (_turn("I have a dog named Rex.", MAR, "user"), ("Alice has a dog named Rex.",)),
    (_turn("I'm 34 years old and I'm vegetarian.", MAR, "user"), ()),  # two clauses in one: not a pattern
    (_turn("I'm vegetarian.", MAR, "user"), ("Alice is vegetarian.",)),
    (_turn("My name is Alice Martin.", MAR, "user"), ("Alice's name is Alice Martin.",)),
    (_turn("Error: connection refused", MAR, "tool", tool="http_get"), ()),
    (_turn("Weather in Berlin: 21 C, sunny. I live in the cloud.", MAR, "tool"), ()),
    (_turn("You are a helpful assistant. I work at OpenAI.", MAR, "system"), ()),
    (_turn("Sure! I love helping with travel plans.", MAR, "assistant"), ()),
    (_turn("TODO: renew passport before March. Note: user seemed tired.", MAR, None), ()),
    (_turn("Ich wohne seit 2020 in Hamburg und arbeite als Lehrerin.", MAR, None), ()),
    (_turn("Я живу в Москве и люблю джаз.", MAR, None), ()),
    (_turn("Where do I live again? I think I like jazz. I will move to Rome.", MAR, "user"), ()),
    (_turn("Thanks, that's really helpful!", MAR, "user"), ()),
    (_turn("Meeting notes: budget approved, launch moved to Q3.", MAR, None), ()),
    # Said by someone else in the conversation: attributed to them, from the metadata, not the user.
    (_turn("I live in Oslo.", MAR, "user", speaker="Bob"), ("Bob lives in Oslo.",)),
    (_turn("Sarah: I live in Madrid.", MAR, "user"), ()),  # "Name:" in the content is not a speaker
]


def _write(client: Any, key: str, items: list[dict[str, Any]]) -> None:
    r = client.post("/v1/memories/batch", json={"items": items}, headers=auth(key))
    assert r.status_code == 201, r.text


def test_corpus_offline(client, make_tenant, engine) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    sessions = session_factory(engine)
    tenant = tenant_of_key(sessions, key)
    _write(client, key, [memory for memory, _ in CORPUS])
    ctx, _ = make_ctx(engine, BuiltinLLM())
    scope = ConsolidationScope(tenant, "alice")
    job = consolidate_job(ctx, scope)
    assert job.status == "succeeded", job.error
    assert job.result["episodes"] == len(CORPUS)

    facts = semantic(sessions, tenant)
    expected = [text for _, texts in CORPUS for text in texts]
    # Exactly the expected facts, each once, each the exact sentence of its pattern: nothing from
    # assistant/tool/system turns, wrapper blocks, questions, notes in other languages or labels.
    assert sorted(f.content for f in facts) == sorted(expected)
    for f in facts:
        assert f.metadata_["fact"]["subject"] in ("alice", "bob"), f.content
        assert "cannots" not in f.content and " I " not in f" {f.content} " and " my " not in f.content
        assert "remember" not in f.content.lower() and "memsvc" not in f.content

    # Lisbon closed Berlin: kept, with valid_to = when the move was told, and superseded_by the new fact.
    by_text = {f.content: f for f in facts}
    berlin, lisbon = by_text["Alice lives in Berlin."], by_text["Alice moved to Lisbon in 2024."]
    assert berlin.valid_to == JUN and berlin.superseded_by == lisbon.id and lisbon.valid_to is None
    assert berlin.metadata_["fact"] == {"subject": "alice", "attribute": "residence", "value": "berlin"}
    assert lisbon.metadata_["fact"] == {"subject": "alice", "attribute": "residence", "value": "lisbon"}
    with sessions() as s:
        assert "Alice lives in Berlin." in [m.content for m in facts_as_of(s, scope, MAR)]
        now = [m.content for m in facts_as_of(s, scope, SEP)]
    assert "Alice moved to Lisbon in 2024." in now and "Alice lives in Berlin." not in now
    # "works as a nurse" and "works at St. Mary's" are different slots: neither closes the other.
    assert all(f.valid_to is None for t, f in by_text.items() if t != "Alice lives in Berlin.")

    # The facts read back through the API are the same, with the user's scope.
    listed = client.get("/v1/memories", params={"kind": "semantic", "user_id": "alice", "limit": 100},
                        headers=auth(key)).json()["items"]
    assert sorted(m["content"] for m in listed) == sorted(expected)

    # Re-running over the same episodes creates nothing, links nothing, closes nothing.
    before = {(f.id, f.content, f.valid_to, f.superseded_by) for f in facts}
    again = consolidate_job(ctx, scope, reprocess=True)
    assert again.status == "succeeded" and again.result["created"] == [] and again.result["links_added"] == 0
    assert again.result["superseded"] == []
    assert {(f.id, f.content, f.valid_to, f.superseded_by) for f in semantic(sessions, tenant)} == before


def test_later_statements_close_their_slot_and_keep_other_values(client, make_tenant, engine) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    sessions = session_factory(engine)
    tenant = tenant_of_key(sessions, key)
    ctx, _ = make_ctx(engine, BuiltinLLM())
    scope = ConsolidationScope(tenant, "alice")
    _write(client, key, [_turn("I work at Acme. I like tea. My partner is Sam. I have a cat named Tom.", JAN, "user")])
    assert consolidate_job(ctx, scope).status == "succeeded"
    _write(client, key, [_turn("I work at Globex. I like coffee. My partner is Kim. I have a cat named Mia.", JUN,
                               "user")])
    job = consolidate_job(ctx, scope)
    assert job.status == "succeeded" and len(job.result["superseded"]) == 2
    current = sorted(f.content for f in semantic(sessions, tenant) if f.valid_to is None)
    closed = sorted(f.content for f in semantic(sessions, tenant) if f.valid_to is not None)
    # Employer and partner are one value at a time; likes and pets add up ("likes coffee" is not a
    # paraphrase of "likes tea", however near their embeddings are).
    assert closed == ["Alice works at Acme.", "Alice's partner is Sam."]
    assert current == ["Alice has a cat named Mia.", "Alice has a cat named Tom.", "Alice likes coffee.",
                       "Alice likes tea.", "Alice works at Globex.", "Alice's partner is Kim."]


def test_agent_loop_scope_keeps_the_users_words_only(client, make_tenant, engine) -> None:  # type: ignore[no-untyped-def]
    """clients/python/examples/agent_loop.py writes {"role": "user"} and {"role": "assistant"} turns."""
    key = make_tenant()
    sessions = session_factory(engine)
    tenant = tenant_of_key(sessions, key)
    _write(client, key, [
        _turn("I love jazz.", JAN, "user", user="demo-user"),
        _turn("Noted: 'I love jazz.'. I don't recall anything related yet.", JAN, "assistant", user="demo-user"),
        _turn("I moved to Porto last year.", MAR, "user", user="demo-user"),
        _turn("Related things I remember:\n  - I love jazz.", MAR, "assistant", user="demo-user"),
    ])
    ctx, _ = make_ctx(engine, BuiltinLLM())
    assert consolidate_job(ctx, ConsolidationScope(tenant, "demo-user")).status == "succeeded"
    # The user id names the speaker as it is (not "Demo-user"); relative dates become absolute.
    assert sorted(f.content for f in semantic(sessions, tenant)) == [
        "demo-user loves jazz.", "demo-user moved to Porto in 2023."]


def _facts_json(*facts: dict[str, Any]) -> str:
    return json.dumps({"facts": list(facts)})


def test_corpus_with_a_model_attributes_statements_and_validates_its_answer(client, make_tenant, engine,  # type: ignore[no-untyped-def]
                                                                           monkeypatch) -> None:
    key = make_tenant()
    sessions = session_factory(engine)
    tenant = tenant_of_key(sessions, key)
    _write(client, key, [
        _turn("Can you check the weather?", JAN, "user"),
        _turn("I'm an AI assistant, so I cannot browse the web in real time.", JAN, "assistant"),
        _turn("I live in Berlin.", JAN, "user"),
        _turn("Related things I remember:\n  - I live in Paris", JUN, "user"),
    ])
    with sessions() as s:
        ids = {m.content: str(m.id) for m in s.query(Memory).filter(Memory.tenant_id == tenant)}
    reply, berlin = ids["I'm an AI assistant, so I cannot browse the web in real time."], ids["I live in Berlin."]
    assistant_fact = {"text": "The assistant cannot browse the web.", "subject": "assistant", "attribute": None,
                      "value": None, "source_ids": [reply], "confidence": 0.9}
    pronoun_fact = {"text": "I live in Berlin.", "subject": "Alice", "attribute": "residence", "value": "Berlin",
                    "source_ids": [berlin], "confidence": 0.9}
    good = {"text": "Alice lives in Berlin.", "subject": "Alice", "attribute": "residence", "value": "Berlin",
            "source_ids": [berlin], "confidence": 0.9}
    sent = script_litellm(monkeypatch, [_facts_json(assistant_fact), _facts_json(pronoun_fact), _facts_json(good)])
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini", max_retries=2))
    job = consolidate_job(ctx, ConsolidationScope(tenant, "alice"))
    assert job.status == "succeeded", job.error
    assert [f.content for f in semantic(sessions, tenant)] == ["Alice lives in Berlin."]
    assert job.result["llm_usage"]["rejected_outputs"] == 2 and len(sent) == 3
    prompt = sent[0]["messages"][1]["content"]
    episodes = [json.loads(line) for line in prompt.split("Episodes:\n")[1].splitlines()]
    # Every episode reaches the model with its role and speaker; the wrapper block does not.
    assert {(e["role"], e["speaker"], e["text"]) for e in episodes} == {
        ("user", "alice", "Can you check the weather?"),
        ("assistant", "assistant", "I'm an AI assistant, so I cannot browse the web in real time."),
        ("user", "alice", "I live in Berlin.")}
    assert "never state what the assistant or a tool is, can or" in prompt
    feedback = [m["content"] for m in sent[2]["messages"] if m["role"] == "user"][1:]
    assert "only from assistant/tool/system" in feedback[0] and "pronoun" in feedback[1]

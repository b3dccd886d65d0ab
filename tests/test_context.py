"""The context builder: the budget is never exceeded, order and dates, fidelities, scoping, bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsvc.retrieval.context import Piece, assemble, item_line, render
from memsvc.retrieval.settings import RetrievalSettings
from memsvc.tokens import get_counter
from tests.conftest import auth
from tests.lifecycle_helpers import wait_for

MODELS = ["cl100k_base", "o200k_base", "gpt-4o", "smollm2", "some-unknown-model"]
T0 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)

_words = st.text(min_size=1, max_size=60).filter(lambda s: s.strip())
_piece = st.builds(
    lambda kind, score, minutes, verbatim, summary, gist: Piece(
        uuid.uuid4(), kind, score, T0 + timedelta(minutes=minutes),
        {k: v for k, v in (("verbatim", verbatim), ("summary", summary), ("gist", gist)) if v},
    ),
    st.sampled_from(["episodic", "semantic", "profile", "procedural"]),
    st.floats(min_value=0.0, max_value=5.0),
    st.integers(min_value=0, max_value=60 * 24 * 40),
    st.text(min_size=1, max_size=400).filter(lambda s: s.strip()),
    st.one_of(st.none(), _words),
    st.one_of(st.none(), _words),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_piece, max_size=25), st.integers(min_value=-5, max_value=700), st.sampled_from(MODELS),
       st.sampled_from(["markdown", "plain"]), st.sampled_from([0.0, 0.5, 2.0]))
def test_budget_is_never_exceeded(pieces, budget, model, fmt, exact_budgets) -> None:  # type: ignore[no-untyped-def]
    counter = get_counter(model)
    # exact_budgets 0: every piece after the most valuable one is costed by an estimate before packing.
    out = assemble(pieces, budget, counter, RetrievalSettings(exact_count_budgets=exact_budgets), fmt)
    assert out.token_count == counter.count(out.context)
    assert out.token_count <= max(budget, 0)
    ids = [c.piece.id for c in out.chosen]
    assert len(ids) == len(set(ids))  # each memory at most once
    assert {p.id for p, _ in out.left_out} | set(ids) == {p.id for p in pieces}
    for c in out.chosen:
        assert c.fidelity in c.piece.texts
        assert c.tokens == counter.count(item_line(c.piece, c.fidelity, fmt) + "\n")  # never an estimate


def test_estimated_costs_only_for_the_least_valuable_and_chosen_ones_are_counted() -> None:
    counter = get_counter("cl100k_base")
    pieces = [Piece(uuid.uuid4(), "episodic", 1.0 / (i + 1), T0 + timedelta(minutes=i),
                    {"verbatim": f"Turn {i}: Melanie painted a sunrise over the lake with her kids, then we talked."})
              for i in range(40)]
    exact_line = counter.count(item_line(pieces[0], "verbatim") + "\n")
    out = assemble(pieces, 10 * exact_line, counter, RetrievalSettings(exact_count_budgets=0.5))
    assert out.token_count <= 10 * exact_line
    # Half a budget of the best pieces are counted (5 lines); the other 35 are estimated, and say so.
    estimated = [why for p, why in out.left_out if "about " in why]
    assert len(out.left_out) >= 29 and len(estimated) == len(out.left_out)
    assert {c.piece.id for c in out.chosen} == {p.id for p in pieces[: len(out.chosen)]}  # the best ones
    for c in out.chosen:
        assert not c.estimated and c.tokens == counter.count(item_line(c.piece, c.fidelity) + "\n")
    everything = assemble(pieces, 10 * exact_line, counter, RetrievalSettings(exact_count_budgets=float("inf")))
    assert [c.piece.id for c in everything.chosen] == [c.piece.id for c in out.chosen]
    assert not any("about " in why for _, why in everything.left_out)


def test_render_order_profile_facts_then_episodes_by_time_with_dates() -> None:
    counter = get_counter("cl100k_base")
    late = Piece(uuid.uuid4(), "episodic", 3.0, T0 + timedelta(days=2), {"verbatim": "We went hiking."})
    early = Piece(uuid.uuid4(), "episodic", 1.0, T0, {"verbatim": "I adopted a cat."})
    fact = Piece(uuid.uuid4(), "semantic", 2.0, T0, {"verbatim": "Sam owns a cat."})
    profile = Piece(uuid.uuid4(), "profile", 0.5, T0, {"verbatim": "Sam is a teacher."})
    out = assemble([late, early, fact, profile], 500, counter, RetrievalSettings())
    assert out.context.index("Sam is a teacher") < out.context.index("Sam owns a cat") \
        < out.context.index("I adopted a cat") < out.context.index("We went hiking")
    assert "### 8 May 2023" in out.context and "### 10 May 2023" in out.context
    assert out.context.startswith("## Profile")


def test_a_tight_budget_picks_cheaper_fidelities_before_dropping() -> None:
    counter = get_counter("cl100k_base")
    long_text = "Melanie talked at length about the pottery class she took with her kids last Friday. " * 4
    pieces = [Piece(uuid.uuid4(), "episodic", 1.0 + i / 10, T0 + timedelta(hours=i),
                    {"verbatim": long_text + str(i), "summary": f"Pottery class {i}.", "gist": f"pottery {i}"})
              for i in range(6)]
    roomy = assemble(pieces, 2000, counter, RetrievalSettings())
    assert {c.fidelity for c in roomy.chosen} == {"verbatim"} and len(roomy.chosen) == 6
    tight = assemble(pieces, 60, counter, RetrievalSettings())
    assert len(tight.chosen) == 6 and "verbatim" not in {c.fidelity for c in tight.chosen}
    assert tight.token_count <= 60


def test_render_of_nothing_is_empty() -> None:
    assert render([]) == ""
    assert assemble([], 100, get_counter("cl100k_base"), RetrievalSettings()).context == ""


# ---- through the API --------------------------------------------------------------------------

def _ctx(client, key: str, status: int = 200, **body):  # type: ignore[no-untyped-def]
    r = client.post("/v1/context", json=body, headers=auth(key))
    assert r.status_code == status, r.text
    return r.json()


def _seed(client, key: str, user_id: str = "u1") -> dict[str, str]:  # type: ignore[no-untyped-def]
    items = [
        {"content": "Sam is a primary-school teacher who lives in Leeds.", "kind": "profile", "importance": 0.9},
        {"content": "Sam owns a ginger cat named Biscuit.", "kind": "semantic", "occurred_at": "2023-05-09T09:00:00Z"},
        {"content": "[8 May 2023] Sam: I adopted a ginger cat from the shelter today!",
         "occurred_at": "2023-05-08T10:00:00Z", "session_id": "s1"},
        {"content": "[8 May 2023] Jo: That's lovely, what did you call the cat?",
         "occurred_at": "2023-05-08T10:00:05Z", "session_id": "s1"},
        {"content": "[8 May 2023] Sam: Biscuit, because of the colour.",
         "occurred_at": "2023-05-08T10:00:10Z", "session_id": "s1"},
        {"content": "[2 June 2023] Sam: The school trip to the museum was exhausting.",
         "occurred_at": "2023-06-02T16:00:00Z", "session_id": "s2"},
    ]
    for item in items:
        item["user_id"] = user_id
    r = client.post("/v1/memories/batch", json={"items": items}, headers=auth(key))
    assert r.status_code == 201, r.text
    return {m["content"]: m["id"] for m in r.json()["items"]}


def test_context_endpoint_counts_exactly_and_explains(client, key) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(client, key)
    body = _ctx(client, key, query="What is the name of Sam's cat?", budget_tokens=1024, model="gpt-4")
    assert body["tokenizer"] == "cl100k_base" and body["exact"] is True
    assert body["token_count"] == get_counter("cl100k_base").count(body["context"]) <= 1024
    assert body["context"].startswith("## Profile")
    assert body["context"].index("## Facts") < body["context"].index("## Episodes")
    assert body["context"].index("I adopted a ginger cat") < body["context"].index("Biscuit, because")
    assert "### 8 May 2023" in body["context"] and "### 2 June 2023" in body["context"]
    by_id = {i["id"]: i for i in body["items"]}
    assert set(by_id) == set(ids.values())
    assert all(i["fidelity"] == "verbatim" and i["reason"] for i in body["items"])
    assert body["left_out"] == []


def test_small_budget_leaves_out_with_reasons_and_reinforces_what_was_used(client, key) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(client, key)
    body = _ctx(client, key, query="Sam's cat", budget_tokens=24, model="cl100k_base", sections=["episodes"])
    assert 0 < body["token_count"] <= 24
    assert body["items"] and body["left_out"]
    assert all("budget" in x["reason"] for x in body["left_out"])
    used = body["items"][0]["id"]
    # Reinforced after the response, in the next batch of uses (memsvc.lifecycle.usage; 1 s apart).
    wait_for(lambda: client.get(f"/v1/memories/{used}", headers=auth(key)).json()["access_count"] == 1, 10,
             "the used memory's reinforcement")
    untouched = next(v for k, v in ids.items() if "museum" in k and v not in {i["id"] for i in body["items"]})
    assert client.get(f"/v1/memories/{untouched}", headers=auth(key)).json()["access_count"] == 0


@pytest.mark.parametrize("model", ["o200k_base", "smollm2", "some-unknown-model"])
def test_other_tokenizers_and_the_fallback(client, key, model) -> None:  # type: ignore[no-untyped-def]
    _seed(client, key)
    body = _ctx(client, key, query="cat", budget_tokens=64, model=model)
    counter = get_counter(model)
    assert body["tokenizer"] == counter.name and body["exact"] is counter.exact
    assert body["token_count"] == counter.count(body["context"]) <= 64


def test_context_is_tenant_and_key_scoped(client, key, make_tenant) -> None:  # type: ignore[no-untyped-def]
    _seed(client, key, user_id="u1")
    _seed(client, key, user_id="u2")
    other = make_tenant()
    body = _ctx(client, other, query="Sam's cat", budget_tokens=500)
    assert body["context"] == "" and body["items"] == [] and body["token_count"] == 0
    r = client.post("/v1/admin/keys", headers=auth(key), json={"scopes": ["read"], "user_ids": ["u2"]})
    restricted = r.json()["key"]
    body = _ctx(client, restricted, query="Sam's cat", budget_tokens=500)
    got = {client.get(f"/v1/memories/{i['id']}", headers=auth(key)).json()["user_id"] for i in body["items"]}
    assert got == {"u2"}


def test_as_of_and_filters_reach_the_context(client, key) -> None:  # type: ignore[no-untyped-def]
    _seed(client, key)
    body = _ctx(client, key, query="Sam", budget_tokens=500, occurred_before="2023-05-09T00:00:00Z",
                sections=["episodes"])
    assert "museum" not in body["context"] and "ginger cat" in body["context"]
    body = _ctx(client, key, query="Sam", budget_tokens=500, as_of="2020-01-01T00:00:00Z")
    assert body["items"] == []  # nothing was valid yet


def test_edge_budgets_models_and_queries(client, key) -> None:  # type: ignore[no-untyped-def]
    _seed(client, key)
    zero = _ctx(client, key, query="cat", budget_tokens=0)
    assert zero["context"] == "" and zero["token_count"] == 0
    for body in ({"query": "cat", "budget_tokens": -1}, {"query": "cat", "budget_tokens": 10**12},
                 {"query": "cat", "budget_tokens": "many"}, {"query": "cat"}, {"budget_tokens": 100},
                 {"query": "  ", "budget_tokens": 100}, {"messages": [], "budget_tokens": 100},
                 {"query": "cat", "budget_tokens": 100, "model": ""},
                 {"query": "cat", "budget_tokens": 100, "model": "hf:/etc/passwd"},
                 {"query": "cat", "budget_tokens": 100, "sections": ["gossip"]},
                 {"query": "c\u0000t", "budget_tokens": 100}):
        r = client.post("/v1/context", json=body, headers=auth(key))
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["message"]
    via_messages = _ctx(client, key, budget_tokens=200, messages=[
        {"role": "user", "content": "Tell me about Sam's pet"}, {"role": "assistant", "content": ""}])
    assert "Biscuit" in via_messages["context"]
    huge = _ctx(client, key, query="cat", budget_tokens=1_000_000)
    assert huge["token_count"] == get_counter("cl100k_base").count(huge["context"])


def test_empty_scope(client, key) -> None:  # type: ignore[no-untyped-def]
    body = _ctx(client, key, query="anything", budget_tokens=1024)
    assert body == {**body, "context": "", "token_count": 0, "items": [], "left_out": []}


def test_an_episode_is_not_dated_twice() -> None:
    counter = get_counter("cl100k_base")
    same_day = Piece(uuid.uuid4(), "episodic", 1.0, T0, {"verbatim": "[8 May 2023] Sam: I adopted a cat."})
    other_day = Piece(uuid.uuid4(), "episodic", 0.9, T0, {"verbatim": "[1 May 2023] Sam: I saw a cat."})
    out = assemble([same_day, other_day], 200, counter, RetrievalSettings())
    assert "- Sam: I adopted a cat." in out.context  # its day header says 8 May 2023 already
    assert "- [1 May 2023] Sam: I saw a cat." in out.context  # a different date is information: kept
    kept = assemble([same_day], 200, counter, RetrievalSettings(strip_own_date=False))
    assert "- [8 May 2023] Sam: I adopted a cat." in kept.context


def test_an_episode_says_who_said_it() -> None:
    counter = get_counter("cl100k_base")
    bob = Piece(uuid.uuid4(), "episodic", 1.0, T0, {"verbatim": "I live in Oslo."}, said_by="Bob")
    named = Piece(uuid.uuid4(), "episodic", 0.9, T0, {"verbatim": "[8 May 2023] Sam: I adopted a cat."},
                  said_by="Sam")
    agent = Piece(uuid.uuid4(), "episodic", 0.8, T0, {"verbatim": "The weather API timed out."}, said_by="tool")
    note = Piece(uuid.uuid4(), "episodic", 0.7, T0, {"verbatim": "Error: connection refused"})
    fact = Piece(uuid.uuid4(), "semantic", 0.6, T0, {"verbatim": "Bob lives in Oslo."}, said_by="Bob")
    out = assemble([bob, named, agent, note, fact], 300, counter, RetrievalSettings()).context
    assert "- Bob: I live in Oslo." in out  # not "- I live in Oslo.", which reads as the user's own
    assert "- Sam: I adopted a cat." in out and "Sam: Sam:" not in out  # the text names its speaker already
    assert "- tool: The weather API timed out." in out
    assert "- Error: connection refused" in out  # no speaker set: the text as written, nothing parsed from it
    assert "- [8 May 2023] Bob lives in Oslo." in out  # a fact states its subject itself


def test_the_context_attributes_a_turn_to_its_metadata_speaker(client, key) -> None:  # type: ignore[no-untyped-def]
    client.post("/v1/memories", headers=auth(key), json={
        "content": "I live in Oslo.", "user_id": "said-by", "metadata": {"speaker": "Bob", "role": "user"}})
    client.post("/v1/memories", headers=auth(key), json={
        "content": "You could try the ferry to Bergen.", "user_id": "said-by", "metadata": {"role": "assistant"}})
    body = _ctx(client, key, query="Oslo Bergen ferry", user_id="said-by", budget_tokens=200)
    assert "- Bob: I live in Oslo." in body["context"]
    assert "- assistant: You could try the ferry to Bergen." in body["context"]


def test_neighbours_and_linked_sources_join_with_their_reasons(client, key, engine) -> None:  # type: ignore[no-untyped-def]
    from memsvc.db import session_scope
    from memsvc.models import Memory, MemoryLink

    turns = [
        {"content": "[3 March 2024] Ana: Guess where I was on Saturday?", "occurred_at": "2024-03-03T10:00:00Z"},
        {"content": "[3 March 2024] Ben: No idea, tell me!", "occurred_at": "2024-03-03T10:00:01Z"},
        {"content": "[3 March 2024] Ana: At the Zanzibar spice market, buying cardamom.",
         "occurred_at": "2024-03-03T10:00:02Z"},
    ]
    made = client.post("/v1/memories/batch", headers=auth(key),
                       json={"items": [{**t, "session_id": "trip"} for t in turns]}).json()["items"]
    fact = client.post("/v1/memories", headers=auth(key), json={
        "content": "Ana visited a spice market in Zanzibar on 2 March 2024.", "kind": "semantic"}).json()
    with session_scope(engine) as s:
        tenant_id = s.get(Memory, uuid.UUID(fact["id"])).tenant_id
        s.add(MemoryLink(src_id=uuid.UUID(fact["id"]), dst_id=uuid.UUID(made[2]["id"]), relation="derived_from",
                         tenant_id=tenant_id))
    body = _ctx(client, key, query="Which market did Ana visit in Zanzibar?", budget_tokens=400)
    reasons = {i["id"]: i["reason"] for i in body["items"]}
    assert fact["id"] in reasons and made[2]["id"] in reasons
    assert "next to a hit" in reasons[made[1]["id"]] or "vector" in reasons[made[1]["id"]]
    # As pointers, the fact leaves the context and its source carries its weight.
    client.app.state.retrieval.recipes.derive("test-pointers", "general", "facts as pointers", facts_as_pointers=True)
    body = _ctx(client, key, query="Which market did Ana visit in Zanzibar?", budget_tokens=400,
                recipe="test-pointers")
    ids = {i["id"] for i in body["items"]}
    assert fact["id"] not in ids and made[2]["id"] in ids


def test_rank_worth_is_flat_for_any_memories_and_steep_for_transcripts() -> None:
    from memsvc.retrieval.context import rank_weight
    from memsvc.retrieval.recipes import CONVERSATION, GENERAL

    for recipe in (GENERAL, CONVERSATION):
        worth = [rank_weight(r, recipe.settings) for r in range(1, 101)]
        assert worth[0] == 1.0 and all(a > b > 0 for a, b in zip(worth, worth[1:], strict=False))
    general = [rank_weight(r, GENERAL.settings) for r in range(1, 101)]
    steep = [rank_weight(r, CONVERSATION.settings) for r in range(1, 101)]
    # Memories of any length: four hits at ranks 10-13 (say short user turns) outweigh one long reply at rank 3.
    assert sum(general[9:13]) > general[2] and general[2] / general[14] < 4
    # Transcripts: evidence odds fall ~10x from rank 3 to rank 15 (LoCoMo); four 20-token hits at ranks 20-23
    # do not outbid a 90-token top hit.
    assert steep[2] / steep[14] > 8 and sum(steep[19:23]) < steep[0]

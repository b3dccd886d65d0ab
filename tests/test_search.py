"""/v1/search and the ranking policy: hybrid signals, filters, validity "as of", scoping, bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import text, update

from memsvc.db import session_factory
from memsvc.embeddings import get_embedder
from memsvc.retrieval import sqltext
from memsvc.retrieval.rank import Ranked, fuse, mmr, named_in, with_priors, with_session_context
from memsvc.retrieval.recipes import CONVERSATION
from memsvc.retrieval.search import Lists, SearchFilters, candidates, filter_clauses, query_vector
from memsvc.retrieval.settings import RetrievalSettings
from memsvc.scoping import MemoryScope
from memsvc.sparse_encoder import get_sparse_encoder, sparse_text
from tests.conftest import auth
from tests.lifecycle_helpers import tenant_of_key

# ---- pure policy ---------------------------------------------------------------------------------


def test_fuse_scores_are_the_sum_of_their_signals_and_both_signals_beat_one() -> None:
    s = RetrievalSettings()
    both = Ranked(uuid.uuid4(), dense_rank=2, sparse_rank=2, retention=1.0, importance=0.5)
    dense_only = Ranked(uuid.uuid4(), dense_rank=1, retention=1.0, importance=0.5)
    ordered = fuse([dense_only, both], s)
    assert ordered[0] is both
    for c in ordered:
        assert c.score == pytest.approx(sum(c.signals.values()))
    top = Ranked(uuid.uuid4(), dense_rank=1, sparse_rank=1, retention=1.0, importance=1.0)
    assert fuse([top], s)[0].score == pytest.approx(1.0)  # first everywhere, fully retained, max importance


def test_score_fusion_counts_by_how_much_a_hit_leads_not_only_its_place() -> None:
    # Two lists that disagree: `close` is a hair behind `near` by vector and far ahead of it by full text;
    # `words` matches the words best and the meaning worst.
    def pool() -> list[Ranked]:
        near = Ranked(uuid.UUID(int=1), dense_rank=1, dense_similarity=0.90, sparse_rank=3, sparse_score=1.0)
        close = Ranked(uuid.UUID(int=2), dense_rank=2, dense_similarity=0.89, sparse_rank=2, sparse_score=9.0)
        words = Ranked(uuid.UUID(int=3), dense_rank=3, dense_similarity=0.10, sparse_rank=1, sparse_score=10.0)
        return [near, close, words]

    by_rank = fuse(pool(), RetrievalSettings())
    assert by_rank[0].id == uuid.UUID(int=1)  # RRF: first + third beats second + second
    by_score = fuse(pool(), RetrievalSettings(fusion="scores"))
    assert [c.id.int for c in by_score] == [2, 1, 3]
    for c in by_score:
        assert c.score == pytest.approx(sum(c.signals.values()))
    top = Ranked(uuid.uuid4(), dense_rank=1, dense_similarity=0.5, sparse_rank=1, sparse_score=3.0, importance=1.0)
    assert fuse([top], RetrievalSettings(fusion="scores"))[0].score == pytest.approx(1.0)  # same scale as RRF
    with pytest.raises(ValueError, match="fusion must be one of rrf, scores"):
        RetrievalSettings(fusion="borda")


def test_retention_and_importance_break_ties_without_overriding_relevance() -> None:
    s = RetrievalSettings()
    fresh = Ranked(uuid.uuid4(), dense_rank=3, retention=1.0, importance=1.0)
    faded = Ranked(uuid.uuid4(), dense_rank=3, retention=0.0, importance=0.0)
    better = Ranked(uuid.uuid4(), dense_rank=1, sparse_rank=1, retention=0.0, importance=0.0)
    assert [c.id for c in fuse([faded, fresh, better], s)] == [better.id, fresh.id, faded.id]


def test_equal_scores_go_to_the_better_word_match_not_to_the_id() -> None:
    """First by vector and second by full text ties with the reverse (RRF); ids must not decide it."""
    s = RetrievalSettings()
    low, high = uuid.UUID(int=1), uuid.UUID(int=2)

    def pair(words_on_high: bool, bm25: tuple[float, float] = (1.0, 2.0)) -> list[Ranked]:
        a, b = bm25 if words_on_high else bm25[::-1]
        return [Ranked(low, dense_rank=1, sparse_rank=2, dense_similarity=0.67, sparse_score=a, sparse_raw=a),
                Ranked(high, dense_rank=2, sparse_rank=1, dense_similarity=0.66, sparse_score=b, sparse_raw=b)]

    for words_on_high in (True, False):
        ordered = fuse(pair(words_on_high), s)
        assert ordered[0].score == ordered[1].score
        assert ordered[0].id == (high if words_on_high else low)
    # Written a moment later (retention 1e-8 higher) is not a reason either.
    fresher = pair(True)
    fresher[0].retention = 1.0
    fresher[1].retention = 1.0 - 1e-8
    assert fuse(fresher, s)[0].id == high
    # The same words: the nearer vector.
    assert fuse(pair(True, (1.5, 1.5)), s)[0].id == low


def test_turns_of_the_one_person_the_query_names_come_first() -> None:
    assert named_in("What did Caroline's sister research?") >= {"Caroline", "What"}

    def turns() -> list[Ranked]:
        return [Ranked(uuid.uuid4(), dense_rank=1, sparse_rank=2, speaker="Melanie"),
                Ranked(uuid.uuid4(), dense_rank=3, sparse_rank=3, speaker="Caroline"),
                Ranked(uuid.uuid4(), dense_rank=2, sparse_rank=1)]  # not a turn

    s = CONVERSATION.settings
    about_caroline = fuse(turns(), s, named_in("What did Caroline research?"))
    assert about_caroline[0].speaker == "Caroline" and "named_speaker" in about_caroline[0].signals
    assert about_caroline[0].score == pytest.approx(sum(about_caroline[0].signals.values()))
    # Nobody named, two people named, or the boost off: relevance alone orders them.
    for query, settings in (("What happened?", s), ("Did Caroline meet Melanie?", s),
                            ("What did Caroline research?", s.with_(speaker_boost=0.0))):
        assert fuse(turns(), settings, named_in(query))[0].speaker != "Caroline"


def test_priors_demote_short_turns_other_speakers_and_sessions_without_the_words() -> None:
    s = CONVERSATION.settings

    def ordered(query: str, *cands: Ranked, settings: RetrievalSettings = s) -> list[Ranked]:
        named = named_in(query)
        return with_priors(fuse(list(cands), settings, named), settings, named)

    # Equal relevance: the turn that says something beats "Thanks!"; a note without a speaker gets no
    # length prior, so among notes meaning alone decides (the best dense match stays first).
    thanks = Ranked(uuid.uuid4(), dense_rank=1, speaker="Jon", lexemes=1)
    story = Ranked(uuid.uuid4(), dense_rank=2, speaker="Jon", lexemes=25)
    assert ordered("What happened?", thanks, story)[0] is story and "length" in story.signals
    best_note = Ranked(uuid.uuid4(), dense_rank=1, lexemes=4)
    long_note = Ranked(uuid.uuid4(), dense_rank=2, lexemes=40)
    assert ordered("What happened?", long_note, best_note)[0] is best_note
    assert "length" not in long_note.signals
    # One person named: turns of anyone else lose; two named: nobody does.
    jon = Ranked(uuid.uuid4(), dense_rank=2, speaker="Jon", lexemes=10)
    gina = Ranked(uuid.uuid4(), dense_rank=1, speaker="Gina", lexemes=10)
    assert ordered("Where did Jon travel?", gina, jon)[0] is jon and gina.signals["other_speaker"] < 0
    assert ordered("Did Jon meet Gina?", gina, jon)[0] is gina and "other_speaker" not in gina.signals
    # A session whose turns say the question's words lifts its other turns, by their best BM25's share.
    said = Ranked(uuid.uuid4(), sparse_rank=1, sparse_raw=8.0, session_id="s1", lexemes=10, speaker="Jon")
    reply = Ranked(uuid.uuid4(), dense_rank=2, session_id="s1", lexemes=10, speaker="Gina")
    elsewhere = Ranked(uuid.uuid4(), dense_rank=1, session_id="s2", lexemes=10, speaker="Gina")
    half = Ranked(uuid.uuid4(), sparse_rank=2, sparse_raw=4.0, session_id="s3", lexemes=10, speaker="Jon")
    result = ordered("what about the dance studio", elsewhere, reply, said, half)
    assert result.index(reply) < result.index(elsewhere) and "session_text" not in elsewhere.signals
    assert reply.signals["session_text"] == pytest.approx(2 * half.signals["session_text"])
    for c in result:
        assert c.score == pytest.approx(sum(c.signals.values()))
    off = s.with_(length_weight=0.0, other_speaker_penalty=0.0, session_text_weight=0.0)
    assert ordered("What happened?", thanks, story, settings=off)[0] is thanks


def test_a_hit_in_a_session_of_several_good_hits_beats_an_equal_hit_alone() -> None:
    s = CONVERSATION.settings
    lone = Ranked(uuid.uuid4(), dense_rank=4, session_id="s2")
    clustered = [Ranked(uuid.uuid4(), dense_rank=r, sparse_rank=r, session_id="s1") for r in (1, 2)]
    peer = Ranked(uuid.uuid4(), dense_rank=4, session_id="s1")
    ordered = with_session_context(fuse([lone, peer, *clustered], s), s)
    assert ordered.index(peer) < ordered.index(lone)
    assert "session" in peer.signals and "session" not in lone.signals  # alone in its session: no context
    assert peer.score == pytest.approx(sum(peer.signals.values()))
    off = s.with_(session_weight=0.0)
    again = [Ranked(c.id, dense_rank=c.dense_rank, sparse_rank=c.sparse_rank, session_id=c.session_id)
             for c in (lone, peer, *clustered)]
    assert all("session" not in c.signals for c in with_session_context(fuse(again, off), off))


def test_mmr_drops_exact_and_near_duplicates_and_says_of_what() -> None:
    s = CONVERSATION.settings
    v = np.ones(8, dtype=np.float32)
    w = np.arange(8, dtype=np.float32)
    a = Ranked(uuid.uuid4(), score=3, content_hash="h1", embedding=v)
    same_text = Ranked(uuid.uuid4(), score=2.5, content_hash="h1", embedding=w)
    near = Ranked(uuid.uuid4(), score=2, content_hash="h2", embedding=v * 1.01)
    other = Ranked(uuid.uuid4(), score=1, content_hash="h3", embedding=w)
    kept, dropped = mmr([a, same_text, near, other], 10, s)
    assert [c.id for c in kept] == [a.id, other.id]
    assert {(d.id, of) for d, of in dropped} == {(same_text.id, a.id), (near.id, a.id)}
    diverse, _ = mmr([a, near, other], 2, s.with_(mmr_lambda=0.3, duplicate_threshold=1.01))
    assert [c.id for c in diverse] == [a.id, other.id]  # low lambda prefers the dissimilar one


# ---- through the API, on real Postgres + pgvector ------------------------------------------------

FACTS = [
    ("Alice moved to Berlin in 2021 and works as a nurse.", "episodic", ["move"], "2021-03-01T10:00:00Z"),
    ("Bob adopted a golden retriever puppy named Max.", "episodic", ["pets"], "2022-06-10T10:00:00Z"),
    ("The quarterly report is due on Friday.", "episodic", ["work"], "2023-01-05T10:00:00Z"),
    ("Alice prefers tea over coffee.", "semantic", ["prefs"], "2023-02-01T10:00:00Z"),
    ("Carol plays the cello in a community orchestra.", "episodic", ["music"], "2023-04-01T10:00:00Z"),
]


def _seed(client, key: str, user_id: str = "u1") -> dict[str, str]:  # type: ignore[no-untyped-def]
    items = [{"content": c, "kind": k, "tags": t, "occurred_at": at, "user_id": user_id} for c, k, t, at in FACTS]
    r = client.post("/v1/memories/batch", json={"items": items}, headers=auth(key))
    assert r.status_code == 201, r.text
    return {m["content"]: m["id"] for m in r.json()["items"]}


def _search(client, key: str, **body):  # type: ignore[no-untyped-def]
    r = client.post("/v1/search", json=body, headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()


def test_hybrid_search_ranks_and_explains(client, key) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(client, key)
    body = _search(client, key, query="Which dog did Bob adopt?")
    top = body["hits"][0]
    assert top["memory"]["id"] == ids[FACTS[1][0]]
    assert top["dense_rank"] == 1 and top["sparse_rank"] == 1
    assert set(top["signals"]) >= {"dense", "sparse", "retention", "importance"}
    assert top["score"] == pytest.approx(sum(top["signals"].values()))
    assert "vector #1" in top["reason"] and "full text #1" in top["reason"]
    sparse = _search(client, key, query="cello orchestra", mode="sparse")
    assert sparse["hits"][0]["memory"]["id"] == ids[FACTS[4][0]]
    assert all(h["dense_rank"] is None for h in sparse["hits"])
    dense = _search(client, key, query="a musician with a string instrument", mode="dense")
    assert dense["hits"][0]["memory"]["id"] == ids[FACTS[4][0]]
    assert all(h["sparse_rank"] is None for h in dense["hits"])


def test_bm25_weighs_rare_terms_over_common_ones(client, key) -> None:  # type: ignore[no-untyped-def]
    items = [{"content": f"Caroline talked about her day number {i}."} for i in range(12)]
    items.append({"content": "Caroline went to the pottery workshop."})
    items.append({"content": "The pottery kiln was hot and glowing all through the long night."})
    assert client.post("/v1/memories/batch", json={"items": items}, headers=auth(key)).status_code == 201
    hits = _search(client, key, query="Caroline pottery", mode="sparse")["hits"]
    assert hits[0]["memory"]["content"] == "Caroline went to the pottery workshop."
    assert hits[1]["memory"]["content"].startswith("The pottery kiln")  # the rare term alone beats the common one


def test_filters_kind_tag_time_and_session(client, key) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(client, key)
    q = "Alice"
    only_semantic = _search(client, key, query=q, kinds=["semantic"])["hits"]
    assert [h["memory"]["id"] for h in only_semantic] == [ids[FACTS[3][0]]]
    tagged = _search(client, key, query=q, tags=["pets", "music"], limit=10)["hits"]
    assert {h["memory"]["id"] for h in tagged} == {ids[FACTS[1][0]], ids[FACTS[4][0]]}
    window = _search(client, key, query=q, occurred_after="2022-01-01T00:00:00Z",
                     occurred_before="2023-01-31T00:00:00Z", limit=10)["hits"]
    assert {h["memory"]["id"] for h in window} == {ids[FACTS[1][0]], ids[FACTS[2][0]]}
    assert _search(client, key, query=q, user_id="nobody")["hits"] == []
    assert _search(client, key, query=q, session_id="s-none")["hits"] == []


def test_as_of_validity_and_superseded(client, key, engine) -> None:  # type: ignore[no-untyped-def]
    from memsvc.db import session_scope
    from memsvc.models import Memory

    old = client.post("/v1/memories", headers=auth(key), json={
        "content": "Dana lives in Lisbon.", "kind": "semantic", "valid_from": "2019-01-01T00:00:00Z"}).json()
    new = client.post("/v1/memories", headers=auth(key), json={
        "content": "Dana lives in Oslo.", "kind": "semantic", "valid_from": "2022-05-01T00:00:00Z"}).json()
    with session_scope(engine) as s:
        s.execute(update(Memory).where(Memory.id == uuid.UUID(old["id"])).values(
            valid_to=new["valid_from"], superseded_by=uuid.UUID(new["id"])))

    def found(**kw):  # type: ignore[no-untyped-def]
        return {h["memory"]["id"] for h in _search(client, key, query="Where does Dana live?", **kw)["hits"]}

    assert found() == {new["id"]}
    assert found(as_of="2020-06-01T00:00:00Z") == {old["id"]}
    assert found(as_of="2023-06-01T00:00:00Z") == {new["id"]}
    assert found(include_superseded=True) == {old["id"], new["id"]}
    assert found(as_of="2018-01-01T00:00:00Z") == set()


def test_search_is_tenant_and_key_scoped(client, key, make_tenant) -> None:  # type: ignore[no-untyped-def]
    _seed(client, key, user_id="u1")
    _seed(client, key, user_id="u2")
    other = make_tenant()
    assert _search(client, other, query="Bob dog")["hits"] == []
    restricted = make_tenant()
    _seed(client, restricted, user_id="u1")
    _seed(client, restricted, user_id="u2")
    r = client.post("/v1/admin/keys", headers=auth(restricted), json={"scopes": ["read"], "user_ids": ["u2"]})
    assert r.status_code == 201, r.text
    hits = _search(client, r.json()["key"], query="Bob dog", limit=20)["hits"]
    assert hits and {h["memory"]["user_id"] for h in hits} == {"u2"}


def test_duplicates_are_removed_and_reported(client, key) -> None:  # type: ignore[no-untyped-def]
    text = "Erin's birthday party is on the 12th of July."
    items = [{"content": text}, {"content": text + " "}, {"content": "Frank sells bicycles."}]
    made = client.post("/v1/memories/batch", json={"items": items}, headers=auth(key)).json()["items"]
    body = _search(client, key, query="When is Erin's birthday party?")
    hit_ids = [h["memory"]["id"] for h in body["hits"]]
    assert hit_ids.count(made[0]["id"]) + hit_ids.count(made[1]["id"]) == 1
    assert len(body["duplicates_removed"]) == 1


def test_empty_scope_and_bad_input(client, key) -> None:  # type: ignore[no-untyped-def]
    assert _search(client, key, query="anything at all")["hits"] == []
    assert _search(client, key, query="the of and is")["hits"] == []  # stop words only: no full-text terms
    for body, status in (
        ({"query": ""}, 422), ({"query": "   "}, 422), ({"query": "a\u0000b"}, 422), ({"query": "x", "limit": 0}, 422),
        ({"query": "x", "limit": 1000}, 422), ({"query": "x", "mode": "magic"}, 422), ({"query": "x", "bogus": 1}, 422),
        ({"query": "x", "occurred_after": "2024-01-01T00:00:00Z", "occurred_before": "2023-01-01T00:00:00Z"}, 422),
        ({"query": "x", "as_of": "not a date"}, 422), ({"query": "x", "tags": ["a\u0000"]}, 422),
    ):
        r = client.post("/v1/search", json=body, headers=auth(key))
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["message"]
    assert client.post("/v1/search", json={"query": "x"}).status_code == 401


def test_near_stopwords_leave_the_full_text_pool() -> None:
    from memsvc.retrieval.fulltext import prune_common

    freqs = {"2023": 0.7, "say": 0.3}
    assert prune_common(["2023", "cello", "say"], freqs, 0.2) == ["cello"]
    assert prune_common(["2023", "say"], freqs, 0.2) == ["say"]  # the rarest stays


def test_pseudo_relevance_feedback_searches_again_from_the_first_hits(client, key) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(client, key)
    plain = _search(client, key, query="Which dog did Bob adopt?")
    client.app.state.retrieval.recipes.derive("test-prf", "general", "PRF on", prf_docs=2, prf_weight=0.5)
    moved = _search(client, key, query="Which dog did Bob adopt?", recipe="test-prf")
    assert moved["hits"][0]["memory"]["id"] == ids[FACTS[1][0]]
    # The second pass moved the query vector: the dense similarities are not the first pass's.
    first = {h["memory"]["id"]: h["dense_similarity"] for h in plain["hits"]}
    assert all(h["dense_similarity"] != pytest.approx(first[h["memory"]["id"]], abs=1e-6)
               for h in moved["hits"] if h["memory"]["id"] in first)


def test_a_complete_pool_scores_every_candidate_on_every_vector_list(client, key, engine) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(client, key)
    ids = [uuid.UUID(seeded[content]) for content, *_ in FACTS]
    sessions = session_factory(engine)
    scope = MemoryScope(tenant_of_key(sessions, key))
    query = "Who plays music?"
    vector = query_vector(get_embedder(), query)
    encoder = get_sparse_encoder()
    terms = encoder.encode_query("cello music orchestra Alice Bob") if encoder is not None else None
    with sessions() as s:
        where = sqltext.where_of(s, [*scope.where(), *filter_clauses(SearchFilters(), datetime.now(UTC))])
        exact = dict(s.execute(text("SELECT id, embedding <=> CAST(:v AS vector) FROM memories WHERE id = ANY(:ids)"),
                               {"v": sqltext.vector_text(vector), "ids": ids}).all())
        # Only the first memory was found by vector and, if a SPLADE model is installed, only it by SPLADE;
        # full text found the rest.
        lists = Lists(dense=[(ids[0], exact[ids[0]])], sparse=[(i, 1.0) for i in ids[1:]], own_bm25={},
                      learned=None if terms is None else [(ids[0], 1.0)], vector=vector,
                      learned_query=None if terms is None else sparse_text(terms, encoder.dim))  # type: ignore[union-attr]
        partial, _ = candidates(s, where, lists, RetrievalSettings(learned_sparse_k=60), datetime.now(UTC))
        complete, _ = candidates(s, where, lists, RetrievalSettings(learned_sparse_k=60, complete_pool=True),
                                 datetime.now(UTC))
    assert [c.dense_similarity is not None for c in sorted(partial, key=lambda c: ids.index(c.id))] == \
        [True] + [False] * (len(ids) - 1)
    assert len(complete) == len(ids)
    for c in complete:  # each one's own cosine (from the half-precision vector), ranked by it
        assert c.dense_similarity == pytest.approx(1.0 - exact[c.id], abs=2e-3)
    assert [c.id for c in sorted(complete, key=lambda c: c.dense_rank)] == sorted(ids, key=lambda i: exact[i])
    if terms is not None:  # the cello player shares SPLADE terms with the query; a due report shares none
        learned = {c.id: c.learned_sparse_score for c in complete}
        assert learned[ids[4]] is not None and learned[ids[4]] > 0 and learned[ids[2]] is None


def test_graph_walk_path_finds_the_same_top_hit(client, key) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(client, key)
    client.app.state.retrieval.recipes.derive("test-graph", "general", "always the graph walk",
                                              graph_scan_min_rows=0, graph_scan_min_share=0.0)
    forced = _search(client, key, query="Which dog did Bob adopt?", mode="dense", recipe="test-graph")
    assert forced["hits"][0]["memory"]["id"] == ids[FACTS[1][0]] and forced["hits"][0]["dense_rank"] == 1


def test_a_reply_is_found_through_the_turn_it_answers(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    # The reply shares no word with the query; full text finds it through the question it answers,
    # only inside the same session (the scope side is tested on adjacency below).
    key = make_tenant()
    turns = [("s1", "ana", "Ana: Which souvenirs did you bring back from the Zanzibar market?"),
             ("s1", "ana", "Ben: Cardamom pods and two carved wooden boxes."),
             ("s2", "ana", "Ben: Cardamom pods are expensive this year."),
             ("s3", "eve", "Eve: What did you buy at the Zanzibar market?"),
             ("s3", "eve", "Ben: A brass lamp for my sister.")]
    made = client.post("/v1/memories/batch", headers=auth(key), json={"items": [
        {"content": text, "session_id": sid, "user_id": user, "occurred_at": f"2024-03-03T10:00:0{i}Z"}
        for i, (sid, user, text) in enumerate(turns)]}).json()["items"]
    ids = [m["id"] for m in made]
    hits = _search(client, key, query="Zanzibar market souvenirs", mode="sparse", limit=10,
                   recipe="conversation")["hits"]
    found = [h["memory"]["id"] for h in hits]
    assert found[0] == ids[0] and ids[1] in found and ids[4] in found
    assert ids[2] not in found  # a neighbour only within its own session
    # The general recipe does not assume conversations: no spread.
    plain = [h["memory"]["id"] for h in _search(client, key, query="Zanzibar market souvenirs", mode="sparse",
                                                limit=10)["hits"]]
    assert ids[1] not in plain and ids[4] not in plain


def test_neighbours_stay_inside_the_callers_scope(engine, make_tenant, client) -> None:  # type: ignore[no-untyped-def]
    from memsvc.db import session_scope
    from memsvc.models import Memory
    from memsvc.retrieval.adjacency import neighbours, spread_to_neighbours
    from memsvc.retrieval.sqltext import where_of
    from memsvc.scoping import MemoryScope

    key = make_tenant()
    texts = [("u1", "first"), ("u2", "second"), ("u1", "third"), ("u1", "fourth")]
    made = client.post("/v1/memories/batch", headers=auth(key), json={"items": [
        {"content": f"turn {t}", "session_id": "s", "user_id": u, "occurred_at": f"2024-03-03T10:00:0{i}Z"}
        for i, (u, t) in enumerate(texts)]}).json()["items"]
    ids = [uuid.UUID(m["id"]) for m in made]
    with session_scope(engine) as s:
        tenant = s.get(Memory, ids[0]).tenant_id
        for scope, expected in ((MemoryScope(tenant_id=tenant), {(-1, ids[1]), (1, ids[3])}),
                                (MemoryScope(tenant_id=tenant, user_ids=("u1",)), {(-1, ids[0]), (1, ids[3])})):
            found = neighbours(s, scope, where_of(s, scope.where()), [ids[2]], ("id",))
            assert {(offset, row.id) for _, offset, row in found} == expected
        wide = neighbours(s, MemoryScope(tenant_id=tenant), where_of(s, []), [ids[0]], ("id",), window=2)
        assert [(offset, row.id) for _, offset, row in wide] == [(1, ids[1]), (2, ids[2])]
        assert neighbours(s, MemoryScope(tenant_id=uuid.uuid4()), where_of(s, []), [ids[2]], ("id",)) == []
    same = client.post("/v1/memories/batch", headers=auth(key), json={"items": [
        {"content": f"same instant {i}", "session_id": "t", "occurred_at": "2024-03-03T11:00:00Z"} for i in range(3)]})
    twins = sorted((uuid.UUID(m["id"]) for m in same.json()["items"]), key=str)
    with session_scope(engine) as s:  # turns written at one instant are still ordered (by id), not lost
        found = neighbours(s, MemoryScope(tenant_id=tenant), where_of(s, []), [twins[1]], ("id",))
        assert {(offset, row.id) for _, offset, row in found} == {(-1, twins[0]), (1, twins[2])}
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    spread = spread_to_neighbours({a: 2.0, b: 1.0}, [(b, a), (a, b), (c, b)], 0.5)
    assert spread == {a: 2.5, b: 2.0, c: 0.5}
    assert spread_to_neighbours({a: 2.0}, [(c, a)], 0.0) == {a: 2.0}


def test_archived_memories_are_found_by_meaning_when_asked_for(client, key, engine) -> None:  # type: ignore[no-untyped-def]
    from memsvc.db import session_scope
    from memsvc.lifecycle.archive import archive_vector_values
    from memsvc.models import Memory

    ids = _seed(client, key)
    target = ids[FACTS[4][0]]  # the cellist: its vector leaves the hot index for the archive
    with session_scope(engine) as s:
        s.execute(update(Memory).where(Memory.id == uuid.UUID(target))
                  .values(tier="archived", **archive_vector_values(Memory.id == uuid.UUID(target))))
    query = "a musician with a string instrument"
    assert target not in [h["memory"]["id"] for h in _search(client, key, query=query, mode="dense")["hits"]]
    hits = _search(client, key, query=query, mode="dense", include_archived=True)["hits"]
    assert hits[0]["memory"]["id"] == target and hits[0]["dense_similarity"] > 0.3
    hybrid = _search(client, key, query=query, include_archived=True)["hits"]
    assert hybrid[0]["memory"]["id"] == target

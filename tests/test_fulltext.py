"""BM25 for large scopes: per-tenant statistics (recounted by maintenance) and MaxScore pruning.

The statistics path is forced on small tenants here (sparse_exact_max_rows=0) and compared with a
reference BM25 computed in Python over every memory of the scope."""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select

from memsvc import jobs
from memsvc.db import session_factory
from memsvc.lifecycle.runner import RunContext, run_job
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.llm import BuiltinLLM
from memsvc.models import LexemeStats, Memory, TextStats
from memsvc.queue import RecordingQueue
from memsvc.retrieval import fulltext, sqltext
from memsvc.retrieval.search import SearchFilters, filter_clauses
from memsvc.retrieval.settings import RetrievalSettings
from memsvc.scoping import MemoryScope
from tests.conftest import auth
from tests.lifecycle_helpers import insert_memory, new_tenant, tenant_of_key

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
WORDS = [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(6) for j in range(6)]  # 36 distinct lexemes
# Forced statistics path with a tiny rare-term pool, so theta, combinations and widening all run.
STATS = RetrievalSettings(sparse_exact_max_rows=0, sparse_pool_target=15, sparse_k=10, sparse_common_freq=1.0)


@pytest.fixture()
def sessions(engine):  # type: ignore[no-untyped-def]
    return session_factory(engine)


def _zipf_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1.0 / (r + 1) for r in range(len(WORDS))]
    return [" ".join(rng.choices(WORDS, weights, k=rng.randint(3, 12))) for _ in range(n)]


def _seed(sessions, n: int = 240, seed: int = 3, at: datetime = T0) -> uuid.UUID:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    with sessions() as s, s.begin():
        for text in _zipf_texts(n, seed):
            insert_memory(s, tenant, text, at=at)
    return tenant


def _reference(sessions, tenant: uuid.UUID, terms: list[str], k: int) -> list[tuple[uuid.UUID, float]]:  # type: ignore[no-untyped-def]
    """Textbook presence-only BM25 over the whole scope (N, df and average length of every memory)."""
    with sessions() as s:
        docs = {m.id: set(m.content.split()) for m in s.scalars(select(Memory).where(Memory.tenant_id == tenant))}
    n, avg = len(docs), sum(len(d) for d in docs.values()) / len(docs)
    df = {t: sum(t in d for d in docs.values()) for t in terms}
    k1, b = STATS.bm25_k1, STATS.bm25_b
    scores = []
    for i, d in docs.items():
        hit = [t for t in terms if t in d]
        if hit:
            norm = (k1 + 1) / (1 + k1 * (1 - b + b * len(d) / avg))
            scores.append((i, norm * sum(math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in hit)))
    return sorted(scores, key=lambda x: (-x[1], x[0]))[:k]


def _top(sessions, tenant: uuid.UUID, terms: list[str], settings: RetrievalSettings = STATS):  # type: ignore[no-untyped-def]
    scope = MemoryScope(tenant)
    with sessions() as s:
        where = sqltext.where_of(s, [*scope.where(), *filter_clauses(SearchFilters(), datetime.now(UTC))])
        n = s.query(Memory).filter(Memory.tenant_id == tenant).count()
        return fulltext.top(s, tenant, where, terms, n, settings)


@pytest.mark.parametrize("terms", [["waa", "wfe"], ["wab", "wca", "wef", "wff"], ["waa", "wab", "wac", "wad"],
                                   ["wfa", "wfb", "wfc", "wfd", "wfe", "wff"], ["nothing", "wee"]])
def test_statistics_path_is_exact_bm25_when_fresh(sessions, terms: list[str]) -> None:  # type: ignore[no-untyped-def]
    tenant = _seed(sessions)
    with sessions() as s, s.begin():
        fulltext.refresh_text_stats(s, tenant, min_df=3)  # some terms below min_df: counted per query
    expected = _reference(sessions, tenant, terms, STATS.sparse_k)
    got = _top(sessions, tenant, terms)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-9)


def test_arm_whose_rows_hold_the_same_terms_stops_at_its_k_shortest(sessions, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """One frequent term left after the rare pool (or one set of all the rest): its k shortest rows are its
    best k, so the pruned path reads no more of it, and the top k is still exact."""
    tenant = _seed(sessions)
    with sessions() as s, s.begin():
        fulltext.refresh_text_stats(s, tenant, min_df=1)
    shortcuts = []
    uniform = fulltext._uniform
    monkeypatch.setattr(fulltext, "_uniform", lambda arm, rest: shortcuts.append(uniform(arm, rest)) or shortcuts[-1])
    # "nothing" is in no memory: the pool is empty, theta is 0, and the frequent rest goes by length.
    for terms in (["nothing", "wbb"], ["nothing", "wab", "wac"], ["nothing", "waa"]):
        shortcuts.clear()
        expected = _reference(sessions, tenant, terms, STATS.sparse_k)
        got = _top(sessions, tenant, terms)
        assert True in shortcuts, terms  # the case this test is about was reached
        assert [i for i, _ in got] == [i for i, _ in expected], terms
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-9)


def test_arms_cover_every_row_that_can_beat_theta() -> None:
    s = RetrievalSettings(sparse_combo_terms=3, sparse_combo_clauses=10)
    weight = {"a": 3.0, "b": 2.0, "c": 1.5, "d": 0.4}
    arms = fulltext._arms(["a", "b", "c", "d"], weight, theta=4.0, avg_len=20.0, settings=s)
    assert [len(sets) for sets, _ in arms] == [4, 6, 4]  # C(4,1), C(4,2), C(4,3) <= 10 term sets
    assert arms[0][1] < arms[1][1] < arms[2][1]  # more terms held, longer memories can still win
    # Brute force: every (terms held, length) that beats theta is in some arm.
    for held in range(1, 16):
        terms = [t for i, t in enumerate("abcd") if held >> i & 1]
        for length in range(1, 200):
            score = sum(weight[t] for t in terms) * fulltext._length_factor(length, 20.0, s)
            covered = any(any(set(c) <= set(terms) for c in sets) and length <= longest for sets, longest in arms)
            assert covered or score <= 4.0, (terms, length, score)
    assert fulltext._arms([], weight, 4.0, 20.0, s) == []
    assert fulltext._arms(["d"], weight, 4.0, 20.0, s) == []  # 0.4 * at most 1.69 cannot beat 4
    wide = fulltext._arms(list("abcd"), weight, 4.0, 20.0, s.with_(sparse_combo_clauses=4))
    assert [len(sets) for sets, _ in wide] == [4]  # only singles fit: one arm, bounded by all terms together


def test_search_stays_right_after_writes_and_deletes_with_stale_statistics(client, make_tenant, sessions) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    items = [{"content": f"Caroline talked about the weather on day {i} with some tea."} for i in range(40)]
    items += [{"content": "Caroline went to the pottery workshop on Friday."},
              {"content": "The old kiln in the garden was cold."}]
    assert client.post("/v1/memories/batch", json={"items": items}, headers=auth(key)).status_code == 201
    tenant = tenant_of_key(sessions, key)
    with sessions() as s, s.begin():
        fulltext.refresh_text_stats(s, tenant)
    client.app.state.retrieval.recipes.derive("test-pruned", "general", "statistics path, small pool target",
                                              sparse_exact_max_rows=0, sparse_pool_target=5)
    def top(query: str) -> list[str]:
        r = client.post("/v1/search", json={"query": query, "mode": "sparse", "limit": 5, "recipe": "test-pruned"},
                        headers=auth(key))
        assert r.status_code == 200, r.text
        return [h["memory"]["content"] for h in r.json()["hits"]]

    assert top("Caroline pottery")[0].startswith("Caroline went to the pottery")
    # Written after the recount: a word the statistics never saw, and more of a counted one.
    new = [{"content": "Melanie painted a lighthouse at sunrise."},
           {"content": "A kiln needs careful cooling, said the potter."}]
    assert client.post("/v1/memories/batch", json={"items": new}, headers=auth(key)).status_code == 201
    assert top("lighthouse")[0] == "Melanie painted a lighthouse at sunrise."
    assert set(top("kiln")[:2]) == {"The old kiln in the garden was cold.",
                                    "A kiln needs careful cooling, said the potter."}
    # Deleted after the recount: gone from results, and the rest still ranks by its rare words.
    pottery = client.post("/v1/search", json={"query": "pottery", "mode": "sparse", "recipe": "test-pruned"},
                          headers=auth(key))
    gone = pottery.json()["hits"][0]["memory"]["id"]
    assert client.delete(f"/v1/memories/{gone}", headers=auth(key)).status_code in (200, 204)
    assert all("pottery" not in c for c in top("Caroline pottery"))
    assert top("tea kiln weather")[0].startswith(("The old kiln", "A kiln"))


def test_decay_job_recounts_text_statistics(engine, sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = _seed(sessions, n=60, seed=9, at=datetime.now(UTC))  # fresh: decay archives nothing
    ctx = RunContext(engine=engine, sessions=sessions, queue=RecordingQueue(), llm=BuiltinLLM,
                     embedder=lambda: None,  # type: ignore[arg-type,return-value]
                     settings=LifecycleSettings(job_backoff_s=0))

    def decay() -> dict:  # type: ignore[type-arg]
        with sessions() as s, s.begin():
            job, _ = jobs.create_job(s, tenant_id=tenant, kind="decay", idempotency_key=f"d:{uuid.uuid4()}")
            job_id = job.id
        assert run_job(ctx, job_id) == "succeeded"
        with sessions() as s:
            stats = s.get(TextStats, tenant)
            assert stats is not None
            return {"docs": stats.docs, "df": dict(s.execute(select(LexemeStats.lexeme, LexemeStats.df)
                                                             .where(LexemeStats.tenant_id == tenant)).all())}

    first = decay()
    with sessions() as s:
        docs = [set(m.content.split()) for m in s.scalars(select(Memory).where(Memory.tenant_id == tenant))]
    assert first["docs"] == 60
    counts = {w: sum(w in d for d in docs) for w in WORDS}
    assert first["df"] == {w: c for w, c in counts.items() if c >= RetrievalSettings().sparse_stats_min_df}
    with sessions() as s, s.begin():
        s.execute(delete(Memory).where(Memory.tenant_id == tenant, Memory.content.contains("waa")))
    second = decay()
    assert second["docs"] == sum("waa" not in d for d in docs)
    assert "waa" not in second["df"]

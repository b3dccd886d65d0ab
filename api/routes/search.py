"""POST /v1/search: hybrid (vector + BM25) search with a per-signal score breakdown."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api.deps import Presenter, get_presenter, get_store, requires
from memsvc.retrieval.schemas import Duplicate, SearchHit, SearchRequest, SearchResult, to_search_filters
from memsvc.store import MemoryStore
from memsvc.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchResult, description=(
    "Ranked memories for a query. Candidates come from the HNSW vector index and BM25 over full text "
    "(within the key's scope and the filters), fused by reciprocal rank with small retention and importance "
    "terms, near-duplicates removed, as the recipe says (`recipe`; GET /v1/recipes). `signals` says how much "
    "each signal added to `score`."
))
def search(
    request: SearchRequest, http: Request, _: Principal = Depends(requires("read")),
    store: MemoryStore = Depends(get_store), present: Presenter = Depends(get_presenter),
) -> SearchResult:
    outcome, recipe = http.app.state.retrieval.search(
        store.session, store.scope, store.embedder, request.query, to_search_filters(request), request.limit,
        mode=request.mode, recipe=request.recipe)
    full = {m.id: m for m in store.get_many([h.id for h in outcome.hits])}
    return SearchResult(
        hits=[
            SearchHit(memory=present(full[h.id]), score=h.score, signals=h.signals,
                      dense_rank=h.dense_rank, sparse_rank=h.sparse_rank, dense_similarity=h.dense_similarity,
                      bm25=h.sparse_score, learned_sparse_rank=h.learned_sparse_rank,
                      learned_sparse_score=h.learned_sparse_score, reason=h.reason)
            for h in outcome.hits if h.id in full
        ],
        duplicates_removed=[Duplicate(id=d.id, duplicate_of=of) for d, of in outcome.duplicates],
        recipe=recipe.name, timings_ms={k: round(v, 3) for k, v in outcome.timings.items()},
    )

"""POST /v1/search: hybrid (vector + full text) search with a per-signal score breakdown."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import get_store, requires
from memsvc.retrieval.search import SearchFilters, hybrid_search
from memsvc.schemas import SearchHit, SearchRequest, SearchResult
from memsvc.store import MemoryStore
from memsvc.tenancy import Principal
from memsvc.validation import check_text
from memsvc.views import memory_out

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchResult)
def search(
    request: SearchRequest, _: Principal = Depends(requires("read")), store: MemoryStore = Depends(get_store)
) -> SearchResult:
    check_text(request.query, "query")
    filters = SearchFilters(
        user_id=request.user_id, agent_id=request.agent_id, session_id=request.session_id,
        kinds=tuple(request.kinds) if request.kinds else None, tags=tuple(request.tags) if request.tags else None,
    )
    candidates = hybrid_search(store.session, store.scope, store.embedder, request.query, filters, request.limit)
    rows = {m.id: m for m in store.get_many([c.id for c in candidates])}
    return SearchResult(hits=[
        SearchHit(memory=memory_out(rows[c.id]), score=c.score, signals=c.signals) for c in candidates if c.id in rows
    ])

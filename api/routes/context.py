"""POST /v1/context: the best context for a query that fits a token budget of a named model."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api.deps import get_store, requires
from memsvc.retrieval.context import SECTIONS, TOKENS, ContextQuery
from memsvc.retrieval.schemas import (
    ContextItem,
    ContextRequest,
    ContextResult,
    LeftOut,
    context_query_text,
    to_search_filters,
)
from memsvc.store import MemoryStore
from memsvc.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["context"])


@router.post("/context", response_model=ContextResult, description=(
    "Packs the most valuable memories for the query into at most `budget_tokens` tokens of `model`'s "
    "tokenizer: each memory at most once, at verbatim, summary, excerpt (a long memory's sentences that hold the "
    "query's words, `…` where text is left out) or gist fidelity (a multiple-choice knapsack), "
    "or, for a local model (`local/smollm2`), as its verified memory-token vectors (fidelity `tokens`), "
    "rendered profile first, then facts, then episodes in time order under their dates. `token_count` is the "
    "exact count of `context`; `items` says what went in and why, `left_out` what did not and why. The "
    "recipe (`recipe`; GET /v1/recipes) ranks the candidates; the memories used are reinforced."
))
def context(
    request: ContextRequest, http: Request,
    _: Principal = Depends(requires("read")), store: MemoryStore = Depends(get_store),
) -> ContextResult:
    service = http.app.state.retrieval
    counter, token_model = service.target(store.session, store.scope.tenant_id, request.model,
                                         memory_tokens=request.memory_tokens)
    query = ContextQuery(
        query=context_query_text(request), budget=request.budget_tokens, counter=counter,
        filters=to_search_filters(request), sections=tuple(request.sections or SECTIONS), fmt=request.format,
        mode=request.mode, max_candidates=request.max_candidates, token_model=token_model,
    )
    # Using a memory in a context reinforces it: the service records it, written in the next batch.
    built, recipe = service.context(store.session, store.scope, store.embedder, query,
                                                     recipe=request.recipe)
    return ContextResult(
        context=built.context, token_count=built.token_count, budget_tokens=request.budget_tokens,
        model=request.model, tokenizer=counter.name, exact=counter.exact,
        items=[ContextItem(id=c.piece.id, kind=c.piece.kind, section=c.piece.section, fidelity=c.fidelity,
                           tokens=c.tokens, score=round(c.piece.score, 6), value=round(c.value, 6),
                           reason=c.piece.reason + (" (derived on the fly)" if c.fidelity in c.piece.derived else ""),
                           vectors=c.piece.token_vectors if c.fidelity == TOKENS else None)
               for c in built.chosen],
        left_out=[LeftOut(id=p.id, score=round(p.score, 6), reason=why) for p, why in built.left_out],
        recipe=recipe.name, memory_tokens_model=token_model,
        timings_ms={k: round(v, 3) for k, v in built.timings.items()},
    )

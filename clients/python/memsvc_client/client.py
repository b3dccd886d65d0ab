"""`MemsvcClient` (sync) and `AsyncMemsvcClient` (async): one definition of every call serves both.

Each public method of `_Api` is defined once: it validates its input locally and returns a `Call`
(what to send, how to read the answer). `@endpoint` makes it a method that executes that call: the
sync client returns the result, the async client an awaitable of it (see _binding). Adding an
endpoint = adding one such method here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

import httpx

from memsvc_client import __version__
from memsvc_client._binding import (
    Pages,
    PageWalk,
    as_uuid,
    endpoint,
    paginated,
    parse_list,
    parse_model,
    validated,
    write,
)
from memsvc_client._protocol import Call, RetryPolicy, Target, run_async, run_sync
from memsvc_client.errors import InvalidInputError, invalid
from memsvc_client.models import (
    ApiKey,
    ApiKeyCreated,
    BatchResult,
    ConsolidateQuery,
    ContextQuery,
    ContextResult,
    DecodedTokens,
    DeletionReport,
    Health,
    Job,
    JobAccepted,
    JobPage,
    KeyCreate,
    Kind,
    Lineage,
    Memory,
    MemoryPage,
    MemoryPatch,
    MemoryTokenPolicy,
    MemoryTokenStatusList,
    NewMemory,
    Policy,
    Readiness,
    RecipeList,
    RetentionCurve,
    RetrievalPolicy,
    Scope,
    ScopeSelector,
    SearchQuery,
    SearchResult,
    Stats,
    Tenant,
    TenantCreate,
    Tier,
    TrainTokensQuery,
)

JobStatus = Literal["queued", "running", "succeeded", "failed"]
T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8420"
DEFAULT_MAX_BATCH = 1000


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave this field as it is" in update()

_MEMORY_PAGES = Pages("/v1/memories", MemoryPage, frozenset({"user_id", "agent_id", "session_id", "kind", "tier",
                                                              "tag"}))
_JOB_PAGES = Pages("/v1/jobs", JobPage, frozenset({"kind", "status"}))


class _Api:
    """Every API call, defined once (each returns a `Call`); the two clients execute them."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
        max_retries: int = 4, retry_policy: RetryPolicy | None = None, headers: Mapping[str, str] | None = None,
        max_batch_items: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.base_url = (base_url or os.environ.get("MEMSVC_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("MEMSVC_API_KEY")
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self.max_batch_items = max_batch_items
        all_headers = {"User-Agent": f"memsvc-client/{__version__}", **(headers or {})}
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        self._target = Target(self.base_url, all_headers, self.retry_policy)

    def _call(self, call: Call[T]) -> Any:  # pragma: no cover - the clients execute calls
        raise NotImplementedError

    def _walk(self, walk: PageWalk[T]) -> Any:  # pragma: no cover - the clients walk pages
        raise NotImplementedError

    # ---- health -------------------------------------------------------------------------------
    @endpoint
    def health(self) -> Call[Health]:
        """Liveness (`GET /healthz`)."""
        return Call("GET", "/healthz", parse_model(Health))

    @endpoint
    def ready(self) -> Call[Readiness]:
        """Readiness (`GET /readyz`); `.ready` is False while the database is unavailable (no retries)."""
        return Call("GET", "/readyz", parse_model(Readiness), accept=frozenset({503}), retries=False)

    # ---- memories -----------------------------------------------------------------------------
    @endpoint
    def add(
        self, content: str, *, kind: Kind = "episodic", user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, importance: float = 0.5, occurred_at: datetime | None = None,
        valid_from: datetime | None = None, valid_to: datetime | None = None,
        metadata: Mapping[str, Any] | None = None, tags: Sequence[str] | None = None,
        embedding: Sequence[float] | None = None, idempotency_key: str | None = None,
    ) -> Call[Memory]:
        """Store one memory (embedded by the server unless `embedding` is given)."""
        item = validated(NewMemory, {
            "content": content, "kind": kind, "user_id": user_id, "agent_id": agent_id, "session_id": session_id,
            "importance": importance, "occurred_at": occurred_at, "valid_from": valid_from, "valid_to": valid_to,
            "metadata": dict(metadata or {}), "tags": list(tags or []),
            "embedding": list(embedding) if embedding is not None else None,
        })
        return write("POST", "/v1/memories", parse_model(Memory), item.body(), idempotency_key)

    @endpoint
    def add_batch(
        self, items: Sequence[NewMemory | Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> Call[BatchResult]:
        """Store 1-1,000 memories, all or nothing. Retries never store a memory twice."""
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
            raise invalid("items must be a list of memories", "items")
        if not items:
            raise invalid("a batch needs at least one memory", "items")
        if len(items) > self.max_batch_items:
            raise invalid(f"a batch holds at most {self.max_batch_items} memories; got {len(items)}", "items")
        bodies = []
        for index, item in enumerate(items):
            try:
                model = item if isinstance(item, NewMemory) else validated(NewMemory, item)
            except InvalidInputError as exc:
                raise InvalidInputError(f"items[{index}].{exc.message}; nothing was sent",
                                        details={"index": index, "errors": exc.details}) from None
            bodies.append(model.body())
        return write("POST", "/v1/memories/batch", parse_model(BatchResult), {"items": bodies},
                           idempotency_key)

    @endpoint
    def get(self, memory_id: str | uuid.UUID) -> Call[Memory]:
        return Call("GET", f"/v1/memories/{as_uuid(memory_id)}", parse_model(Memory))

    @endpoint
    def update(
        self, memory_id: str | uuid.UUID, *, content: str = UNSET, kind: Kind = UNSET, importance: float = UNSET,
        occurred_at: datetime = UNSET, valid_from: datetime | None = UNSET, valid_to: datetime | None = UNSET,
        metadata: Mapping[str, Any] = UNSET, tags: Sequence[str] = UNSET, embedding: Sequence[float] = UNSET,
        idempotency_key: str | None = None,
    ) -> Call[Memory]:
        """Change the given fields only (new content is re-embedded by the server)."""
        given = {name: value for name, value in {
            "content": content, "kind": kind, "importance": importance, "occurred_at": occurred_at,
            "valid_from": valid_from, "valid_to": valid_to, "metadata": metadata, "tags": tags,
            "embedding": embedding,
        }.items() if value is not UNSET}
        if not given:
            raise invalid("update needs at least one field to change")
        patch = validated(MemoryPatch, given)
        path = f"/v1/memories/{as_uuid(memory_id)}"
        return write("PATCH", path, parse_model(Memory), patch.body(), idempotency_key)

    @endpoint
    def delete(self, memory_id: str | uuid.UUID, *, idempotency_key: str | None = None) -> Call[DeletionReport]:
        """Delete one memory; the report lists derived memories that went with it."""
        path = f"/v1/memories/{as_uuid(memory_id)}"
        return write("DELETE", path, parse_model(DeletionReport), None, idempotency_key)

    @endpoint
    def list_memories(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
        kind: Kind | None = None, tier: Tier | None = None, tag: str | None = None, cursor: str | None = None,
        limit: int = 50,
    ) -> Call[MemoryPage]:
        """One page, newest first; pass `page.next_cursor` as `cursor` for the next (or use iter_memories)."""
        filters = {"user_id": user_id, "agent_id": agent_id, "session_id": session_id, "kind": kind, "tier": tier,
                   "tag": tag}
        return _MEMORY_PAGES.call(filters, limit, cursor)

    @paginated
    def iter_memories(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
        kind: Kind | None = None, tier: Tier | None = None, tag: str | None = None, page_size: int = 100,
    ) -> PageWalk[Memory]:
        """Every memory matching the filters, newest first, page after page (`for` / `async for`)."""
        filters = {"user_id": user_id, "agent_id": agent_id, "session_id": session_id, "kind": kind, "tier": tier,
                   "tag": tag}
        return PageWalk(_MEMORY_PAGES, filters, page_size)

    @endpoint
    def erase(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Call[DeletionReport]:
        """Delete every memory of a user, agent and/or session (name at least one)."""
        if user_id is None and agent_id is None and session_id is None:
            raise invalid("name at least one of user_id, agent_id, session_id to erase")
        selector = validated(ScopeSelector, {"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return write("POST", "/v1/erase", parse_model(DeletionReport), selector.body(), idempotency_key)

    # ---- retrieval ----------------------------------------------------------------------------
    @endpoint
    def search(
        self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, kinds: Sequence[Kind] | None = None, tags: Sequence[str] | None = None,
        limit: int = 10, **filters: Any,
    ) -> Call[SearchResult]:
        """Hybrid (vector + full text) search; each hit says which signal put it there.

        `filters`: occurred_after, occurred_before, as_of, asked_at, include_superseded, include_archived, mode.
        """
        body = validated(SearchQuery, {
            "query": query, "user_id": user_id, "agent_id": agent_id, "session_id": session_id,
            "kinds": list(kinds) if kinds else None, "tags": list(tags) if tags else None, "limit": limit,
            **filters,
        }).body()
        return Call("POST", "/v1/search", parse_model(SearchResult), json=body)

    @endpoint
    def context(
        self, query: str | None = None, *, budget_tokens: int, model: str = "cl100k_base",
        messages: Sequence[Mapping[str, str]] | None = None, user_id: str | None = None,
        agent_id: str | None = None, session_id: str | None = None, kinds: Sequence[Kind] | None = None,
        tags: Sequence[str] | None = None, **options: Any,
    ) -> Call[ContextResult]:
        """The best context for `query` (or the recent `messages`) within `budget_tokens` of `model`.

        `options`: sections, format, max_candidates and the search filters (see `search`).
        """
        body = validated(ContextQuery, {
            "query": query, "messages": [dict(m) for m in messages] if messages is not None else None,
            "budget_tokens": budget_tokens, "model": model, "user_id": user_id, "agent_id": agent_id,
            "session_id": session_id, "kinds": list(kinds) if kinds else None, "tags": list(tags) if tags else None,
            **options,
        }).body()
        return Call("POST", "/v1/context", parse_model(ContextResult), json=body)

    # ---- lifecycle ----------------------------------------------------------------------------
    @endpoint
    def consolidate(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
        reprocess: bool | None = None, idempotency_key: str | None = None,
    ) -> Call[JobAccepted]:
        """Turn a scope's episodes into semantic facts in the background; follow the job with get_job."""
        body = validated(ConsolidateQuery, {"user_id": user_id, "agent_id": agent_id, "session_id": session_id,
                                            "reprocess": reprocess}).body()
        return write("POST", "/v1/consolidate", parse_model(JobAccepted), body, idempotency_key)

    @endpoint
    def list_jobs(self, *, kind: str | None = None, status: JobStatus | None = None, cursor: str | None = None,
                  limit: int = 50) -> Call[JobPage]:
        """Background jobs, newest first (see iter_jobs)."""
        return _JOB_PAGES.call({"kind": kind, "status": status}, limit, cursor)

    @paginated
    def iter_jobs(self, *, kind: str | None = None, status: JobStatus | None = None, page_size: int = 100
                  ) -> PageWalk[Job]:
        """Every job matching the filters, newest first, page after page (`for` / `async for`)."""
        return PageWalk(_JOB_PAGES, {"kind": kind, "status": status}, page_size)

    @endpoint
    def get_job(self, job_id: str | uuid.UUID) -> Call[Job]:
        return Call("GET", f"/v1/jobs/{as_uuid(job_id, 'job id')}", parse_model(Job))

    @endpoint
    def feedback(self, memory_id: str | uuid.UUID, useful: bool) -> Call[Memory]:
        """Say whether a memory helped: true reinforces it like a use, false weakens it."""
        if not isinstance(useful, bool):
            raise invalid("useful must be true or false", "useful")
        # Not deduplicated by the server (a repeat would reinforce twice): retried only if it never left.
        return Call("POST", f"/v1/memories/{as_uuid(memory_id)}/feedback", parse_model(Memory),
                               json={"useful": useful}, retry_safe=False)

    @endpoint
    def retention(self, memory_id: str | uuid.UUID, *, horizon_days: float = 90.0, points: int = 50
                  ) -> Call[RetentionCurve]:
        """Retention now and over the next horizon_days if the memory is not used."""
        if not 0 < horizon_days <= 36_500:
            raise invalid("horizon_days must be in (0, 36500]", "horizon_days")
        if not 2 <= points <= 1000:
            raise invalid("points must be from 2 to 1000", "points")
        return Call("GET", f"/v1/memories/{as_uuid(memory_id)}/retention", parse_model(RetentionCurve),
                               params={"horizon_days": horizon_days, "points": points})

    @endpoint
    def get_policy(self) -> Call[Policy]:
        return Call("GET", "/v1/policy", parse_model(Policy))

    @endpoint
    def set_policy(self, **fields: Any) -> Call[Policy]:
        """Replace the lifecycle policy (fields left out take their defaults). Admin keys only."""
        return Call("PUT", "/v1/policy", parse_model(Policy), json=fields)

    @endpoint
    def update_policy(self, **fields: Any) -> Call[Policy]:
        """Change some fields of the lifecycle policy. Admin keys only."""
        if not fields:
            raise invalid("update_policy needs at least one field to change")
        return Call("PATCH", "/v1/policy", parse_model(Policy), json=fields)

    @endpoint
    def recipes(self) -> Call[RecipeList]:
        """The retrieval recipes a search, a context or the tenant's policy can name."""
        return Call("GET", "/v1/recipes", parse_model(RecipeList))

    @endpoint
    def get_retrieval_policy(self) -> Call[RetrievalPolicy]:
        return Call("GET", "/v1/policy/retrieval", parse_model(RetrievalPolicy))

    @endpoint
    def set_retrieval_policy(self, **fields: Any) -> Call[RetrievalPolicy]:
        """Replace the retrieval policy (recipe, language; left out: the defaults). Admin keys only."""
        return Call("PUT", "/v1/policy/retrieval", parse_model(RetrievalPolicy), json=fields)

    @endpoint
    def update_retrieval_policy(self, **fields: Any) -> Call[RetrievalPolicy]:
        """Change some fields of the retrieval policy. Admin keys only."""
        if not fields:
            raise invalid("update_retrieval_policy needs at least one field to change")
        return Call("PATCH", "/v1/policy/retrieval", parse_model(RetrievalPolicy), json=fields)

    @endpoint
    def sparse_backfill(self, *, reencode: bool = False) -> Call[JobAccepted]:
        """Learned-sparse vectors for the tenant's memories that lack them (a background job). Admin keys only."""
        return Call("POST", "/v1/maintenance/sparse-backfill", parse_model(JobAccepted), json={"reencode": reencode},
                    retry_safe=False)

    # ---- memory tokens (local models) -----------------------------------------------------------
    @endpoint
    def get_memory_token_policy(self) -> Call[MemoryTokenPolicy]:
        return Call("GET", "/v1/policy/memory-tokens", parse_model(MemoryTokenPolicy))

    @endpoint
    def set_memory_token_policy(self, **fields: Any) -> Call[MemoryTokenPolicy]:
        """Replace the memory-token policy (fields left out take their defaults). Admin keys only."""
        return Call("PUT", "/v1/policy/memory-tokens", parse_model(MemoryTokenPolicy), json=fields)

    @endpoint
    def update_memory_token_policy(self, **fields: Any) -> Call[MemoryTokenPolicy]:
        """Change some fields of the memory-token policy. Admin keys only."""
        if not fields:
            raise invalid("update_memory_token_policy needs at least one field to change")
        return Call("PATCH", "/v1/policy/memory-tokens", parse_model(MemoryTokenPolicy), json=fields)

    @endpoint
    def train_memory_tokens(
        self, memory_ids: Sequence[str | uuid.UUID] | None = None, *, user_id: str | None = None,
        agent_id: str | None = None, session_id: str | None = None, model: str | None = None,
        retrain: bool = False,
    ) -> Call[JobAccepted]:
        """Train memory tokens for these memories, or for what the policy selects in a scope (a background job)."""
        body = validated(TrainTokensQuery, {
            "memory_ids": [as_uuid(m) for m in memory_ids] if memory_ids is not None else None,
            "user_id": user_id, "agent_id": agent_id, "session_id": session_id, "model": model, "retrain": retrain,
        }).body()
        return Call("POST", "/v1/memory-tokens/train", parse_model(JobAccepted), json=body, retry_safe=False)

    @endpoint
    def memory_tokens(self, memory_id: str | uuid.UUID) -> Call[MemoryTokenStatusList]:
        """A memory's trained token sets: per local model, verified or not, current or not."""
        return Call("GET", f"/v1/memories/{as_uuid(memory_id)}/tokens", parse_model(MemoryTokenStatusList))

    @endpoint
    def decode_memory_tokens(self, memory_id: str | uuid.UUID, *, model: str | None = None) -> Call[DecodedTokens]:
        """Decode a memory's stored token set back to text, to check it against the content."""
        return Call("POST", f"/v1/memories/{as_uuid(memory_id)}/tokens/decode", parse_model(DecodedTokens),
                    json={"model": model})

    # ---- insight --------------------------------------------------------------------------------
    @endpoint
    def stats(self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None
              ) -> Call[Stats]:
        """Counts by tier and kind, and the ids with the most memories."""
        params = validated(ScopeSelector, {"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return Call("GET", "/v1/stats", parse_model(Stats), params=params.body())

    @endpoint
    def links(self, memory_id: str | uuid.UUID) -> Call[Lineage]:
        """A memory's lineage both ways (derived_from, supersedes, merged_into)."""
        return Call("GET", f"/v1/memories/{as_uuid(memory_id)}/links", parse_model(Lineage))

    # ---- admin --------------------------------------------------------------------------------
    @endpoint
    def create_tenant(self, name: str) -> Call[Tenant]:
        """Root keys only. Not deduplicated by the server, so only retried when it never left."""
        body = validated(TenantCreate, {"name": name}).body()
        return Call("POST", "/v1/admin/tenants", parse_model(Tenant), json=body, retry_safe=False)

    @endpoint
    def list_tenants(self) -> Call[list[Tenant]]:
        return Call("GET", "/v1/admin/tenants", parse_list(Tenant))

    @endpoint
    def create_key(
        self, scopes: Sequence[Scope], *, name: str = "", user_ids: Sequence[str] | None = None,
        agent_ids: Sequence[str] | None = None, tenant_id: str | uuid.UUID | None = None,
    ) -> Call[ApiKeyCreated]:
        """A new API key; its secret is in `.key`, once."""
        if isinstance(scopes, str):
            scopes = [scopes]  # type: ignore[list-item]
        body = validated(KeyCreate, {
            "name": name, "scopes": list(scopes), "user_ids": list(user_ids) if user_ids is not None else None,
            "agent_ids": list(agent_ids) if agent_ids is not None else None,
            "tenant_id": as_uuid(tenant_id, "tenant id") if tenant_id is not None else None,
        }).body()
        return Call("POST", "/v1/admin/keys", parse_model(ApiKeyCreated), json=body, retry_safe=False)

    @endpoint
    def list_keys(self) -> Call[list[ApiKey]]:
        return Call("GET", "/v1/admin/keys", parse_list(ApiKey))

    @endpoint
    def revoke_key(self, key_id: str | uuid.UUID) -> Call[ApiKey]:
        # Revoking twice is harmless, so retries are safe without a key.
        return Call("DELETE", f"/v1/admin/keys/{as_uuid(key_id, 'key id')}", parse_model(ApiKey))


class MemsvcClient(_Api):
    """Synchronous client. `with MemsvcClient(url, api_key) as mem: mem.add("...")`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 http_client: httpx.Client | None = None, **options: Any) -> None:
        super().__init__(base_url, api_key, **options)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self.timeout)

    def _call(self, call: Call[T]) -> T:
        return run_sync(call, self._http, self._target)

    def _walk(self, walk: PageWalk[T]) -> Iterator[T]:
        call: Call[Any] | None = walk.first()
        while call is not None:
            page = self._call(call)
            yield from page.items
            call = walk.after(page)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> MemsvcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncMemsvcClient(_Api):
    """Asynchronous client: the same methods as MemsvcClient, each to be awaited."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 http_client: httpx.AsyncClient | None = None, **options: Any) -> None:
        super().__init__(base_url, api_key, **options)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self.timeout)

    async def _call(self, call: Call[T]) -> T:
        return await run_async(call, self._http, self._target)

    async def _walk(self, walk: PageWalk[T]) -> AsyncIterator[T]:
        call: Call[Any] | None = walk.first()
        while call is not None:
            page = await self._call(call)
            for item in page.items:
                yield item
            call = walk.after(page)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncMemsvcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

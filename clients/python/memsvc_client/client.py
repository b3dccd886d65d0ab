"""`MemsvcClient` (sync) and `AsyncMemsvcClient` (async): one definition of every call serves both.

Each public method of `_Api` validates its input locally, builds a `Call` (a description of the
request and of how to read the answer) and hands it to `self._call`. The sync client executes the
call and returns the result; the async client returns a coroutine of the same result. Adding an
endpoint = adding one method here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from memsvc_client import __version__
from memsvc_client._protocol import Call, RetryPolicy, Target, run_async, run_sync
from memsvc_client.errors import InvalidInputError, invalid
from memsvc_client.models import (
    ApiKey,
    ApiKeyCreated,
    BatchResult,
    ConsolidateQuery,
    ContextQuery,
    ContextResult,
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
    NewMemory,
    Policy,
    Readiness,
    RetentionCurve,
    Scope,
    ScopeSelector,
    SearchQuery,
    SearchResult,
    Stats,
    Tenant,
    TenantCreate,
    Tier,
)

JobStatus = Literal["queued", "running", "succeeded", "failed"]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8420"
DEFAULT_MAX_BATCH = 1000


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave this field as it is" in update()


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """Build a request model; a local mistake raises InvalidInputError before anything is sent."""
    try:
        return model.model_validate(dict(data))
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or model.__name__
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise InvalidInputError(
            f"{where}: {message}",
            details=[{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()],
        ) from None


def as_uuid(value: str | uuid.UUID, what: str = "memory id") -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, AttributeError, TypeError):
        raise invalid(f"{value!r} is not a valid {what} (expected a UUID)", what.replace(" ", "_")) from None


def parse_model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate(response.json())


def parse_list(model: type[M]) -> Callable[[httpx.Response], list[M]]:
    return lambda response: [model.model_validate(item) for item in response.json()]


def new_idempotency_key() -> str:
    return f"sdk-{uuid.uuid4()}"


@dataclass(frozen=True)
class Pages(Generic[M]):
    """A cursor-paginated listing: where it is, which filters it takes, what a page looks like."""

    path: str
    page: type[M]
    filters: frozenset[str]
    max_limit: int = 200

    def call(self, filters: Mapping[str, Any], limit: int, cursor: str | None) -> Call[M]:
        unknown = sorted(set(filters) - self.filters)
        if unknown:
            raise invalid(f"unknown filter(s) {', '.join(unknown)}; use {', '.join(sorted(self.filters))}")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= self.max_limit:
            raise invalid(f"limit must be an integer from 1 to {self.max_limit}; got {limit!r}", "limit")
        return Call("GET", self.path, parse_model(self.page), params={**filters, "limit": limit, "cursor": cursor})


_MEMORY_PAGES = Pages("/v1/memories", MemoryPage, frozenset({"user_id", "agent_id", "session_id", "kind", "tier",
                                                              "tag"}))
_JOB_PAGES = Pages("/v1/jobs", JobPage, frozenset({"kind", "status"}))


class _Api:
    """Every API call, defined once. Subclasses decide how a `Call` is executed."""

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

    def _call(self, call: Call[T]) -> T:  # pragma: no cover - overridden
        raise NotImplementedError

    def _iterate(self, pages: Pages[Any], filters: Mapping[str, Any], page_size: int) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _write(self, method: str, path: str, parse: Callable[[httpx.Response], T], json: Any = None,
               idempotency_key: str | None = None) -> T:
        """A write the server deduplicates: one Idempotency-Key for all the retries of this call."""
        return self._call(Call(method, path, parse, json=json,
                               idempotency_key=idempotency_key or new_idempotency_key()))

    # ---- health -------------------------------------------------------------------------------
    def health(self) -> Health:
        """Liveness (`GET /healthz`)."""
        return self._call(Call("GET", "/healthz", parse_model(Health)))

    def ready(self) -> Readiness:
        """Readiness (`GET /readyz`); `.ready` is False while the database is unavailable (no retries)."""
        return self._call(Call("GET", "/readyz", parse_model(Readiness), accept=frozenset({503}), retries=False))

    # ---- memories -----------------------------------------------------------------------------
    def add(
        self, content: str, *, kind: Kind = "episodic", user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, importance: float = 0.5, occurred_at: datetime | None = None,
        valid_from: datetime | None = None, valid_to: datetime | None = None,
        metadata: Mapping[str, Any] | None = None, tags: Sequence[str] | None = None,
        embedding: Sequence[float] | None = None, idempotency_key: str | None = None,
    ) -> Memory:
        """Store one memory (embedded by the server unless `embedding` is given)."""
        item = validated(NewMemory, {
            "content": content, "kind": kind, "user_id": user_id, "agent_id": agent_id, "session_id": session_id,
            "importance": importance, "occurred_at": occurred_at, "valid_from": valid_from, "valid_to": valid_to,
            "metadata": dict(metadata or {}), "tags": list(tags or []),
            "embedding": list(embedding) if embedding is not None else None,
        })
        return self._write("POST", "/v1/memories", parse_model(Memory), item.body(), idempotency_key)

    def add_batch(
        self, items: Sequence[NewMemory | Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> BatchResult:
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
        return self._write("POST", "/v1/memories/batch", parse_model(BatchResult), {"items": bodies},
                           idempotency_key)

    def get(self, memory_id: str | uuid.UUID) -> Memory:
        return self._call(Call("GET", f"/v1/memories/{as_uuid(memory_id)}", parse_model(Memory)))

    def update(
        self, memory_id: str | uuid.UUID, *, content: str = UNSET, kind: Kind = UNSET, importance: float = UNSET,
        occurred_at: datetime = UNSET, valid_from: datetime | None = UNSET, valid_to: datetime | None = UNSET,
        metadata: Mapping[str, Any] = UNSET, tags: Sequence[str] = UNSET, embedding: Sequence[float] = UNSET,
        idempotency_key: str | None = None,
    ) -> Memory:
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
        return self._write("PATCH", path, parse_model(Memory), patch.body(), idempotency_key)

    def delete(self, memory_id: str | uuid.UUID, *, idempotency_key: str | None = None) -> DeletionReport:
        """Delete one memory; the report lists derived memories that went with it."""
        path = f"/v1/memories/{as_uuid(memory_id)}"
        return self._write("DELETE", path, parse_model(DeletionReport), None, idempotency_key)

    def list_memories(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
        kind: Kind | None = None, tier: Tier | None = None, tag: str | None = None, cursor: str | None = None,
        limit: int = 50,
    ) -> MemoryPage:
        """One page, newest first; pass `page.next_cursor` as `cursor` for the next (or use iter_memories)."""
        filters = {"user_id": user_id, "agent_id": agent_id, "session_id": session_id, "kind": kind, "tier": tier,
                   "tag": tag}
        return self._call(_MEMORY_PAGES.call(filters, limit, cursor))

    def iter_memories(self, *, page_size: int = 100, **filters: Any) -> Any:
        """Every memory matching the filters of list_memories, page after page (`for` / `async for`)."""
        return self._iterate(_MEMORY_PAGES, filters, page_size)

    def erase(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> DeletionReport:
        """Delete every memory of a user, agent and/or session (name at least one)."""
        if user_id is None and agent_id is None and session_id is None:
            raise invalid("name at least one of user_id, agent_id, session_id to erase")
        selector = validated(ScopeSelector, {"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return self._write("POST", "/v1/erase", parse_model(DeletionReport), selector.body(), idempotency_key)

    # ---- retrieval ----------------------------------------------------------------------------
    def search(
        self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, kinds: Sequence[Kind] | None = None, tags: Sequence[str] | None = None,
        limit: int = 10, **filters: Any,
    ) -> SearchResult:
        """Hybrid (vector + full text) search; each hit says which signal put it there.

        `filters`: occurred_after, occurred_before, as_of, include_superseded, include_archived, mode.
        """
        body = validated(SearchQuery, {
            "query": query, "user_id": user_id, "agent_id": agent_id, "session_id": session_id,
            "kinds": list(kinds) if kinds else None, "tags": list(tags) if tags else None, "limit": limit,
            **filters,
        }).body()
        return self._call(Call("POST", "/v1/search", parse_model(SearchResult), json=body))

    def context(
        self, query: str | None = None, *, budget_tokens: int, model: str = "cl100k_base",
        messages: Sequence[Mapping[str, str]] | None = None, user_id: str | None = None,
        agent_id: str | None = None, session_id: str | None = None, kinds: Sequence[Kind] | None = None,
        tags: Sequence[str] | None = None, **options: Any,
    ) -> ContextResult:
        """The best context for `query` (or the recent `messages`) within `budget_tokens` of `model`.

        `options`: sections, format, max_candidates and the search filters (see `search`).
        """
        body = validated(ContextQuery, {
            "query": query, "messages": [dict(m) for m in messages] if messages is not None else None,
            "budget_tokens": budget_tokens, "model": model, "user_id": user_id, "agent_id": agent_id,
            "session_id": session_id, "kinds": list(kinds) if kinds else None, "tags": list(tags) if tags else None,
            **options,
        }).body()
        return self._call(Call("POST", "/v1/context", parse_model(ContextResult), json=body))

    # ---- lifecycle ----------------------------------------------------------------------------
    def consolidate(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
        reprocess: bool | None = None, idempotency_key: str | None = None,
    ) -> JobAccepted:
        """Turn a scope's episodes into semantic facts in the background; follow the job with get_job."""
        body = validated(ConsolidateQuery, {"user_id": user_id, "agent_id": agent_id, "session_id": session_id,
                                            "reprocess": reprocess}).body()
        return self._write("POST", "/v1/consolidate", parse_model(JobAccepted), body, idempotency_key)

    def list_jobs(self, *, kind: str | None = None, status: JobStatus | None = None, cursor: str | None = None,
                  limit: int = 50) -> JobPage:
        """Background jobs, newest first (see iter_jobs)."""
        return self._call(_JOB_PAGES.call({"kind": kind, "status": status}, limit, cursor))

    def iter_jobs(self, *, page_size: int = 100, **filters: Any) -> Any:
        """Every job matching the filters of list_jobs, page after page (`for` / `async for`)."""
        return self._iterate(_JOB_PAGES, filters, page_size)

    def get_job(self, job_id: str | uuid.UUID) -> Job:
        return self._call(Call("GET", f"/v1/jobs/{as_uuid(job_id, 'job id')}", parse_model(Job)))

    def feedback(self, memory_id: str | uuid.UUID, useful: bool) -> Memory:
        """Say whether a memory helped: true reinforces it like a use, false weakens it."""
        if not isinstance(useful, bool):
            raise invalid("useful must be true or false", "useful")
        # Not deduplicated by the server (a repeat would reinforce twice): retried only if it never left.
        return self._call(Call("POST", f"/v1/memories/{as_uuid(memory_id)}/feedback", parse_model(Memory),
                               json={"useful": useful}, retry_safe=False))

    def retention(self, memory_id: str | uuid.UUID, *, horizon_days: float = 90.0, points: int = 50
                  ) -> RetentionCurve:
        """Retention now and over the next horizon_days if the memory is not used."""
        if not 0 < horizon_days <= 36_500:
            raise invalid("horizon_days must be in (0, 36500]", "horizon_days")
        if not 2 <= points <= 1000:
            raise invalid("points must be from 2 to 1000", "points")
        return self._call(Call("GET", f"/v1/memories/{as_uuid(memory_id)}/retention", parse_model(RetentionCurve),
                               params={"horizon_days": horizon_days, "points": points}))

    def get_policy(self) -> Policy:
        return self._call(Call("GET", "/v1/policy", parse_model(Policy)))

    def set_policy(self, **fields: Any) -> Policy:
        """Replace the lifecycle policy (fields left out take their defaults). Admin keys only."""
        return self._call(Call("PUT", "/v1/policy", parse_model(Policy), json=fields))

    def update_policy(self, **fields: Any) -> Policy:
        """Change some fields of the lifecycle policy. Admin keys only."""
        if not fields:
            raise invalid("update_policy needs at least one field to change")
        return self._call(Call("PATCH", "/v1/policy", parse_model(Policy), json=fields))

    # ---- insight --------------------------------------------------------------------------------
    def stats(self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None
              ) -> Stats:
        """Counts by tier and kind, and the ids with the most memories."""
        params = validated(ScopeSelector, {"user_id": user_id, "agent_id": agent_id, "session_id": session_id})
        return self._call(Call("GET", "/v1/stats", parse_model(Stats), params=params.body()))

    def links(self, memory_id: str | uuid.UUID) -> Lineage:
        """A memory's lineage both ways (derived_from, supersedes, merged_into)."""
        return self._call(Call("GET", f"/v1/memories/{as_uuid(memory_id)}/links", parse_model(Lineage)))

    # ---- admin --------------------------------------------------------------------------------
    def create_tenant(self, name: str) -> Tenant:
        """Root keys only. Not deduplicated by the server, so only retried when it never left."""
        body = validated(TenantCreate, {"name": name}).body()
        return self._call(Call("POST", "/v1/admin/tenants", parse_model(Tenant), json=body, retry_safe=False))

    def list_tenants(self) -> list[Tenant]:
        return self._call(Call("GET", "/v1/admin/tenants", parse_list(Tenant)))

    def create_key(
        self, scopes: Sequence[Scope], *, name: str = "", user_ids: Sequence[str] | None = None,
        agent_ids: Sequence[str] | None = None, tenant_id: str | uuid.UUID | None = None,
    ) -> ApiKeyCreated:
        """A new API key; its secret is in `.key`, once."""
        if isinstance(scopes, str):
            scopes = [scopes]  # type: ignore[list-item]
        body = validated(KeyCreate, {
            "name": name, "scopes": list(scopes), "user_ids": list(user_ids) if user_ids is not None else None,
            "agent_ids": list(agent_ids) if agent_ids is not None else None,
            "tenant_id": as_uuid(tenant_id, "tenant id") if tenant_id is not None else None,
        }).body()
        return self._call(Call("POST", "/v1/admin/keys", parse_model(ApiKeyCreated), json=body, retry_safe=False))

    def list_keys(self) -> list[ApiKey]:
        return self._call(Call("GET", "/v1/admin/keys", parse_list(ApiKey)))

    def revoke_key(self, key_id: str | uuid.UUID) -> ApiKey:
        # Revoking twice is harmless, so retries are safe without a key.
        return self._call(Call("DELETE", f"/v1/admin/keys/{as_uuid(key_id, 'key id')}", parse_model(ApiKey)))


class MemsvcClient(_Api):
    """Synchronous client. `with MemsvcClient(url, api_key) as mem: mem.add("...")`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 http_client: httpx.Client | None = None, **options: Any) -> None:
        super().__init__(base_url, api_key, **options)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self.timeout)

    def _call(self, call: Call[T]) -> T:
        return run_sync(call, self._http, self._target)

    def _iterate(self, pages: Pages[Any], filters: Mapping[str, Any], page_size: int) -> Iterator[Any]:
        first = pages.call(filters, page_size, None)  # validate now, not at the first next()

        def items() -> Iterator[Any]:
            call = first
            while True:
                page = self._call(call)
                yield from page.items
                if not page.next_cursor:
                    return
                call = pages.call(filters, page_size, page.next_cursor)

        return items()

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

    def _call(self, call: Call[T]) -> T:
        return run_async(call, self._http, self._target)  # type: ignore[return-value]

    def _iterate(self, pages: Pages[Any], filters: Mapping[str, Any], page_size: int) -> AsyncIterator[Any]:
        first = pages.call(filters, page_size, None)  # validate now, not at the first await

        async def items() -> AsyncIterator[Any]:
            call = first
            while True:
                page = await run_async(call, self._http, self._target)
                for item in page.items:
                    yield item
                if not page.next_cursor:
                    return
                call = pages.call(filters, page_size, page.next_cursor)

        return items()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncMemsvcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

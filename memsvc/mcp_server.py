"""`memsvc mcp`: an MCP server (official `mcp` package) with the tools remember, recall, get_context, forget.

It talks to a memsvc API through the Python SDK (memsvc-client) rather than to the database directly:

* one authentication and scoping path: the API checks the key, its scopes and its user/agent restriction,
  exactly as for any other client, instead of a second copy of that logic in this process;
* nothing heavy or secret here: no database credentials and no embedding model in every MCP process
  an agent host spawns (hosts start one per conversation), and it works the same against a laptop's
  `memsvc serve` (whose embedded Postgres belongs to that process) and a remote deployment;
* the SDK's retries and idempotency keys make a `remember` that is retried store once.

Key: stdio uses MEMSVC_API_KEY / --api-key. Over streamable HTTP, a caller's own
`Authorization: Bearer <key>` header wins, so one MCP endpoint can serve several keys; without
one, the configured key is used (bind to loopback, the default, unless every caller may use it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from memsvc_client import AsyncMemsvcClient, MemsvcError, NotFoundError

from memsvc import __version__

log = logging.getLogger("memsvc.mcp")

DEFAULT_URL = "http://127.0.0.1:8420"
INSTRUCTIONS = (
    "Long-term memory. Call `recall` or `get_context` before answering questions that may depend on what "
    "you were told earlier; call `remember` for facts, preferences and events worth keeping; `forget` "
    "deletes one memory by id (ids come from recall)."
)


@dataclass(frozen=True)
class McpConfig:
    url: str = DEFAULT_URL
    api_key: str | None = None
    # Defaults for tools called without a scope (the agent host usually knows who the user is).
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    budget_tokens: int = 1024
    model: str = "cl100k_base"

    @classmethod
    def from_env(cls, **overrides: Any) -> McpConfig:
        values: dict[str, Any] = {
            "url": os.environ.get("MEMSVC_URL") or DEFAULT_URL,
            "api_key": os.environ.get("MEMSVC_API_KEY") or None,
            "user_id": os.environ.get("MEMSVC_MCP_USER_ID") or None,
            "agent_id": os.environ.get("MEMSVC_MCP_AGENT_ID") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def build_server(config: McpConfig) -> MCPServer:
    """The MCPServer with the four tools; transport-agnostic."""

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[httpx.AsyncClient]:
        # One connection pool for the whole server, in the server's own event loop.
        async with httpx.AsyncClient(timeout=60.0) as http:
            yield http

    server = MCPServer("memsvc", instructions=INSTRUCTIONS, lifespan=lifespan, version=__version__)

    def client(ctx: Context) -> AsyncMemsvcClient:
        key = config.api_key
        headers = ctx.headers or {}
        auth = headers.get("authorization") or headers.get("Authorization")
        if auth and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key:
            raise ToolError("no memsvc API key: set MEMSVC_API_KEY (or --api-key), or send Authorization: Bearer")
        return AsyncMemsvcClient(config.url, key, http_client=ctx.request_context.lifespan_context)

    def scope(user_id: str | None, agent_id: str | None, session_id: str | None) -> dict[str, str | None]:
        return {"user_id": user_id or config.user_id, "agent_id": agent_id or config.agent_id,
                "session_id": session_id or config.session_id}

    def failed(exc: MemsvcError) -> ToolError:
        # The server's own message, for the model to read and correct its call.
        return ToolError(f"memsvc: {exc.message}" + (f" ({exc.code})" if exc.code else ""))

    @server.tool(description="Store something worth remembering (a fact, preference, event). Returns its id.")
    async def remember(
        content: str, ctx: Context, kind: Literal["episodic", "semantic", "procedural", "profile"] = "episodic",
        user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
        importance: float = 0.5, tags: list[str] | None = None,
    ) -> dict[str, Any]:
        try:
            memory = await client(ctx).add(content, kind=kind, importance=importance, tags=tags,
                                           metadata={"source": "mcp"}, **scope(user_id, agent_id, session_id))
        except MemsvcError as exc:
            raise failed(exc) from None
        return {"id": str(memory.id), "kind": memory.kind, "content": memory.content,
                "user_id": memory.user_id, "occurred_at": memory.occurred_at.isoformat()}

    @server.tool(description="Search memories relevant to a query; best first, with ids and scores.")
    async def recall(
        query: str, ctx: Context, limit: int = 5, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> list[dict[str, Any]]:
        try:
            result = await client(ctx).search(query, limit=limit, **scope(user_id, agent_id, session_id))
        except MemsvcError as exc:
            raise failed(exc) from None
        return [{"id": str(h.memory.id), "content": h.memory.content, "kind": h.memory.kind,
                 "score": round(h.score, 6), "occurred_at": h.memory.occurred_at.isoformat()} for h in result.hits]

    @server.tool(description=(
        "The best context for a question that fits a token budget: ready to read, profile and facts "
        "first, then dated episodes."))
    async def get_context(
        query: str, ctx: Context, budget_tokens: int | None = None, model: str | None = None,
        user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None,
    ) -> str:
        mem = client(ctx)
        budget = budget_tokens if budget_tokens is not None else config.budget_tokens
        try:
            result = await mem.context(query, budget_tokens=budget, model=model or config.model,
                                       **scope(user_id, agent_id, session_id))
            return result.context
        except NotFoundError as exc:
            if exc.message != "Not Found":  # a real 404 from the endpoint, not a server without it
                raise failed(exc) from None
        except MemsvcError as exc:
            raise failed(exc) from None
        # A server from before /v1/context: ranked search results, cut to roughly the budget
        # (4 characters per token; the real builder counts exactly).
        try:
            hits = (await mem.search(query, limit=20, **scope(user_id, agent_id, session_id))).hits
        except MemsvcError as exc:
            raise failed(exc) from None
        lines, used = [], 0
        for hit in hits:
            line = f"- [{hit.memory.occurred_at:%Y-%m-%d}] {hit.memory.content}"
            if used + len(line) // 4 + 1 > budget:
                break
            lines.append(line)
            used += len(line) // 4 + 1
        return "\n".join(lines)

    @server.tool(description="Delete one memory by id (from recall). Returns what was deleted, derived memories "
                             "included.")
    async def forget(memory_id: str, ctx: Context) -> dict[str, Any]:
        try:
            report = await client(ctx).delete(memory_id)
        except MemsvcError as exc:
            raise failed(exc) from None
        return {"deleted": [str(i) for i in report.deleted],
                "derived_deleted": [str(i) for i in report.derived_deleted]}

    return server


def serve(config: McpConfig, transport: Literal["stdio", "http"] = "stdio", host: str = "127.0.0.1",
          port: int = 8421, path: str = "/mcp") -> None:
    server = build_server(config)
    if transport == "stdio":
        server.run("stdio")
    else:
        log.info("memsvc MCP (streamable HTTP) on http://%s:%d%s -> %s", host, port, path, config.url)
        server.run("streamable-http", host=host, port=port, streamable_http_path=path)

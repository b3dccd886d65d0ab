"""`memsvc mcp` driven by the `mcp` package's own client: stdio (a spawned `memsvc mcp`) and streamable HTTP.

The MCP server talks to a real API (uvicorn on the suite's Postgres) through the SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

# `mcp` is an optional extra (memsvc[mcp]); without it these tests are reported as skipped, not passed.
pytest.importorskip("mcp", reason="optional extra: pip install 'mcp>=2.3'")

import httpx2  # noqa: E402  (comes with mcp)
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from memsvc.mcp_server import McpConfig, build_server  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {"remember", "recall", "get_context", "forget"}


def _stdio(url: str, key: str | None, *extra: str) -> StdioServerParameters:
    env = {"MEMSVC_URL": url, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")]),
           "HF_HUB_OFFLINE": "1", "MEMSVC_LOG_LEVEL": "WARNING"}
    if key:
        env["MEMSVC_API_KEY"] = key
    return StdioServerParameters(command=sys.executable, args=["-m", "memsvc.cli", "mcp", *extra], env=env,
                                 cwd=str(ROOT))


def _data(result: Any) -> Any:
    """A tool's answer: its structured content when it has one, else the text."""
    assert not result.is_error, result.content[0].text
    if result.structured_content is not None:
        data = result.structured_content
        return data["result"] if set(data) == {"result"} else data
    return result.content[0].text


def _error(result: Any) -> str:
    assert result.is_error, result
    return str(result.content[0].text)


def test_stdio_tools_remember_recall_context_forget(live_server: LiveServer, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()

    async def main() -> None:
        async with Client(_stdio(live_server.url, key, "--user-id", "erin")) as mcp:
            assert {t.name for t in (await mcp.list_tools()).tools} >= TOOLS
            stored = _data(await mcp.call_tool("remember", {"content": "Erin's daughter is called Maya."}))
            assert stored["user_id"] == "erin"  # the --user-id default applied
            _data(await mcp.call_tool("remember", {"content": "Erin prefers window seats on flights.",
                                                   "kind": "semantic", "importance": 0.9}))
            hits = _data(await mcp.call_tool("recall", {"query": "what is the name of Erin's daughter"}))
            assert stored["id"] in [h["id"] for h in hits[:2]] and all(h["score"] > 0 for h in hits)
            context = _data(await mcp.call_tool("get_context", {"query": "Book a flight for Erin",
                                                                "budget_tokens": 300}))
            assert "window seats" in context
            report = _data(await mcp.call_tool("forget", {"memory_id": stored["id"]}))
            assert report["deleted"] == [stored["id"]]
            after = _data(await mcp.call_tool("recall", {"query": "Erin's daughter"}))
            assert stored["id"] not in {h["id"] for h in after}
            # Bad input comes back as a tool error carrying the server's (or the SDK's) message.
            assert "not a valid memory id" in _error(await mcp.call_tool("forget", {"memory_id": "nope"}))
            assert "not found" in _error(await mcp.call_tool("forget", {"memory_id": stored["id"]}))
            assert "content" in _error(await mcp.call_tool("remember", {"content": "   "}))

    asyncio.run(main())


def test_stdio_key_scopes_what_tools_may_do(live_server: LiveServer, make_tenant) -> None:  # type: ignore[no-untyped-def]
    reader = make_tenant(("read",))
    only_frank = make_tenant(("read", "write"), user_ids=["frank"])

    async def main() -> None:
        async with Client(_stdio(live_server.url, reader)) as mcp:
            assert "lacks the 'write' scope" in _error(await mcp.call_tool("remember", {"content": "x"}))
        async with Client(_stdio(live_server.url, only_frank)) as mcp:
            assert "may only write memories for user_ids frank" in _error(
                await mcp.call_tool("remember", {"content": "hello", "user_id": "gina"}))
            assert _data(await mcp.call_tool("remember", {"content": "hello", "user_id": "frank"}))["id"]
        async with Client(_stdio(live_server.url, None)) as mcp:
            assert "no memsvc API key" in _error(await mcp.call_tool("recall", {"query": "anything"}))

    asyncio.run(main())


@pytest.fixture()
def mcp_http(live_server: LiveServer):  # type: ignore[no-untyped-def]
    """`memsvc mcp --transport http` as an app on its own port (no configured key: callers bring theirs)."""
    server = LiveServer(build_server(McpConfig(url=live_server.url)).streamable_http_app()).start()
    yield f"{server.url}/mcp"
    server.stop()


def test_streamable_http_uses_each_callers_key(mcp_http: str, make_tenant) -> None:  # type: ignore[no-untyped-def]
    alice_key, bob_key = make_tenant(), make_tenant()

    async def call(key: str | None, tool: str, args: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http, \
                Client(streamable_http_client(mcp_http, http_client=http)) as mcp:
            return await mcp.call_tool(tool, args)

    async def main() -> None:
        memory = _data(await call(alice_key, "remember", {"content": "Tenant A's secret launch is in May."}))
        mine = _data(await call(alice_key, "recall", {"query": "launch"}))
        assert [h["id"] for h in mine] == [memory["id"]]
        assert _data(await call(bob_key, "recall", {"query": "launch"})) == []  # another tenant sees nothing
        assert "no memsvc API key" in _error(await call(None, "recall", {"query": "launch"}))
        assert "invalid API key" in _error(await call("msk_wrong", "recall", {"query": "launch"}))
        assert json.loads(json.dumps(memory))["content"].startswith("Tenant A")

    asyncio.run(main())


def test_get_context_falls_back_to_search_on_a_server_without_the_context_endpoint(
    settings, engine, make_tenant, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    from api import app as api_app

    without = [r for r in api_app.ROUTERS if all(getattr(x, "path", "") != "/v1/context" for x in r.routes)]
    monkeypatch.setattr(api_app, "ROUTERS", without)
    app = api_app.create_app(settings, engine)
    assert "/v1/context" not in app.openapi()["paths"]
    old_api = LiveServer(app).start()
    key = make_tenant()

    async def main() -> None:
        async with Client(build_server(McpConfig(url=old_api.url, api_key=key, user_id="hal"))) as mcp:
            _data(await mcp.call_tool("remember", {"content": "Hal keeps bees in Porto."}))
            context = _data(await mcp.call_tool("get_context", {"query": "Hal's hobby", "budget_tokens": 100}))
            assert "Hal keeps bees in Porto." in context and context.startswith("- [")

    try:
        asyncio.run(main())
    finally:
        old_api.stop()

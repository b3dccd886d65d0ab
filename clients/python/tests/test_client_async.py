"""The async client against the real server: the same calls, awaited (one definition serves both)."""

from __future__ import annotations

import asyncio

import pytest
from memsvc_client import AsyncMemsvcClient, InvalidInputError, NotFoundError

from tests.live_server import LiveServer


def test_async_lifecycle(live_server: LiveServer, tenant_key: str) -> None:
    async def main() -> None:
        async with AsyncMemsvcClient(live_server.url, tenant_key) as mem:
            assert (await mem.health()).status == "ok"
            first = await mem.add("Carol adopted a cat named Miso.", user_id="carol")
            batch = await mem.add_batch([{"content": f"Carol note {i}", "user_id": "carol"} for i in range(7)])
            assert batch.count == 7
            got, hits = await asyncio.gather(mem.get(first.id), mem.search("Carol's cat", user_id="carol"))
            assert got.content == first.content and hits.hits[0].memory.id == first.id
            updated = await mem.update(first.id, importance=0.9)
            assert updated.importance == 0.9
            seen = [m.id async for m in mem.iter_memories(user_id="carol", page_size=3)]
            assert len(seen) == 8 and len(set(seen)) == 8
            assert (await mem.delete(first.id)).deleted == [first.id]
            with pytest.raises(NotFoundError):
                await mem.get(first.id)
            with pytest.raises(InvalidInputError):
                await mem.add("")
            assert len((await mem.erase(user_id="carol")).deleted) == 7
            assert {k.name for k in await mem.list_keys()} >= {"sdk tests"}

    asyncio.run(main())

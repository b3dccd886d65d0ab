"""LangChain adapter (optional extra: langchain-core + memsvc-client): chat history and a retriever over memsvc.

    from memsvc.integrations.langchain import MemsvcChatMessageHistory, MemsvcRetriever
    history = MemsvcChatMessageHistory(client, session_id="s1", user_id="alice")   # for RunnableWithMessageHistory
    retriever = MemsvcRetriever(client=client, user_id="alice", k=5)               # search hits as Documents
    retriever = MemsvcRetriever(client=client, user_id="alice", budget_tokens=1024) # one Document: the context

Messages are episodic memories with metadata {"role": "user"|"assistant"|"system"|..., "source": "langchain"},
the same shape the chat endpoint writes, so one conversation is visible from both. Each call has an async
twin through AsyncMemsvcClient when one is given (`async_client=`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, messages_from_dict
from langchain_core.retrievers import BaseRetriever
from memsvc_client import AsyncMemsvcClient, Memory, MemsvcClient
from pydantic import ConfigDict

# LangChain message types <-> the roles memsvc (and OpenAI) use.
_ROLE_OF_TYPE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function",
                 "chat": "user"}
_TYPE_OF_ROLE = {"user": "human", "assistant": "ai", "system": "system", "tool": "tool", "function": "function"}


def _items(messages: Sequence[BaseMessage], scope: dict[str, str | None]) -> list[dict[str, Any]]:
    # Distinct event times keep the order of messages stored in one batch.
    start = datetime.now(UTC)
    items = []
    for i, message in enumerate(messages):
        text = message.text if isinstance(message.text, str) else message.text()
        if not text.strip():
            continue  # e.g. an AI message that is only tool calls: nothing to remember as text
        items.append({"content": text, "kind": "episodic", "occurred_at": start + timedelta(microseconds=i),
                      "metadata": {"role": _ROLE_OF_TYPE.get(message.type, message.type), "source": "langchain"},
                      **scope})
    return items


def _messages(memories: list[Memory]) -> list[BaseMessage]:
    ordered = sorted(memories, key=lambda m: (m.occurred_at, m.recorded_at))
    return messages_from_dict([
        {"type": _TYPE_OF_ROLE.get(str(m.metadata.get("role", "user")), "human"),
         "data": {"content": m.content, "id": str(m.id)}}
        for m in ordered
    ])


class MemsvcChatMessageHistory(BaseChatMessageHistory):
    """The messages of one session, stored as episodic memories (so they also feed long-term recall)."""

    def __init__(
        self, client: MemsvcClient | None = None, session_id: str = "default", *, user_id: str | None = None,
        agent_id: str | None = None, async_client: AsyncMemsvcClient | None = None,
    ) -> None:
        if client is None and async_client is None:
            raise ValueError("give a MemsvcClient (client=) and/or an AsyncMemsvcClient (async_client=)")
        self.client, self.async_client = client, async_client
        self.session_id, self.user_id, self.agent_id = session_id, user_id, agent_id

    @property
    def _scope(self) -> dict[str, str | None]:
        return {"user_id": self.user_id, "agent_id": self.agent_id, "session_id": self.session_id}

    def _sync(self) -> MemsvcClient:
        if self.client is None:
            raise RuntimeError("this history has only an async client; use the a* methods")
        return self.client

    def _async(self) -> AsyncMemsvcClient:
        if self.async_client is None:
            raise RuntimeError("this history has no async client (async_client=)")
        return self.async_client

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return _messages(list(self._sync().iter_memories(page_size=200, **self._scope)))

    async def aget_messages(self) -> list[BaseMessage]:
        if self.async_client is None:
            return await super().aget_messages()
        return _messages([m async for m in self.async_client.iter_memories(page_size=200, **self._scope)])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        items = _items(messages, self._scope)
        for start in range(0, len(items), self._sync().max_batch_items):
            self._sync().add_batch(items[start:start + self._sync().max_batch_items])

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if self.async_client is None:
            return await super().aadd_messages(messages)
        items = _items(messages, self._scope)
        for start in range(0, len(items), self.async_client.max_batch_items):
            await self.async_client.add_batch(items[start:start + self.async_client.max_batch_items])
        return None

    def clear(self) -> None:
        """Erase this session's memories (only this session: user_id/agent_id narrow it further)."""
        self._sync().erase(**self._scope)

    async def aclear(self) -> None:
        if self.async_client is None:
            return await super().aclear()
        await self._async().erase(**self._scope)
        return None


def _hit_document(memory: Memory, score: float) -> Document:
    return Document(page_content=memory.content, id=str(memory.id), metadata={
        "id": str(memory.id), "score": score, "kind": memory.kind, "tier": memory.tier,
        "occurred_at": memory.occurred_at.isoformat(), "user_id": memory.user_id, "agent_id": memory.agent_id,
        "session_id": memory.session_id, "tags": list(memory.tags), "source": "memsvc",
    })


class MemsvcRetriever(BaseRetriever):
    """Memories relevant to a query. With `budget_tokens` set: one Document holding the token-budgeted
    context (profile, facts, dated episodes) from /v1/context; otherwise the top `k` search hits."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: MemsvcClient | None = None
    async_client: AsyncMemsvcClient | None = None
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    k: int = 5
    budget_tokens: int | None = None
    model: str = "cl100k_base"

    @property
    def _scope(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "agent_id": self.agent_id, "session_id": self.session_id}

    def _context_document(self, result: Any) -> list[Document]:
        if not result.context:
            return []
        return [Document(page_content=result.context, metadata={
            "source": "memsvc", "token_count": result.token_count, "tokenizer": result.tokenizer,
            "memory_ids": [str(item.id) for item in result.items]})]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if self.client is None:
            raise RuntimeError("MemsvcRetriever needs client= for sync use (or async_client= and ainvoke)")
        if self.budget_tokens is not None:
            return self._context_document(self.client.context(
                query, budget_tokens=self.budget_tokens, model=self.model, **self._scope))
        return [_hit_document(h.memory, h.score) for h in self.client.search(query, limit=self.k, **self._scope).hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        if self.async_client is None:
            return await super()._aget_relevant_documents(query, run_manager=run_manager)
        if self.budget_tokens is not None:
            return self._context_document(await self.async_client.context(
                query, budget_tokens=self.budget_tokens, model=self.model, **self._scope))
        hits = (await self.async_client.search(query, limit=self.k, **self._scope)).hits
        return [_hit_document(h.memory, h.score) for h in hits]

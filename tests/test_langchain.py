"""The LangChain adapter with the real langchain-core, over the SDK against a live server."""

from __future__ import annotations

import asyncio

import pytest

# langchain-core is an optional extra (memsvc[langchain]); without it these tests are reported as skipped.
pytest.importorskip("langchain_core", reason="optional extra: pip install langchain-core")

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_core.runnables.history import RunnableWithMessageHistory  # noqa: E402
from memsvc_client import AsyncMemsvcClient, MemsvcClient  # noqa: E402

from memsvc.integrations.langchain import MemsvcChatMessageHistory, MemsvcRetriever  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402


def test_chat_history_keeps_order_roles_and_sessions(live_server: LiveServer, make_tenant) -> None:  # type: ignore[no-untyped-def]
    with MemsvcClient(live_server.url, make_tenant()) as client:
        history = MemsvcChatMessageHistory(client, session_id="lc-1", user_id="lena")
        other = MemsvcChatMessageHistory(client, session_id="lc-2", user_id="lena")
        history.add_messages([SystemMessage("Be brief."), HumanMessage("My bike is a green Gazelle."),
                              AIMessage("Noted: a green Gazelle.")])
        history.add_user_message("What colour is my bike?")
        other.add_user_message("unrelated session")
        got = history.messages
        assert [(type(m).__name__, m.content) for m in got] == [
            ("SystemMessage", "Be brief."), ("HumanMessage", "My bike is a green Gazelle."),
            ("AIMessage", "Noted: a green Gazelle."), ("HumanMessage", "What colour is my bike?")]
        assert all(m.id for m in got)  # memory ids, for forgetting one message later
        history.clear()
        assert history.messages == [] and [m.content for m in other.messages] == ["unrelated session"]


def test_history_drives_a_runnable_with_message_history(live_server: LiveServer, make_tenant) -> None:  # type: ignore[no-untyped-def]
    with MemsvcClient(live_server.url, make_tenant()) as client:
        def echo(messages):  # type: ignore[no-untyped-def]  # a stand-in model: counts what it was shown
            return AIMessage(f"I have seen {len(messages)} messages")

        chain = RunnableWithMessageHistory(
            RunnableLambda(echo), lambda session_id: MemsvcChatMessageHistory(client, session_id, user_id="max"))
        config = {"configurable": {"session_id": "rw-1"}}
        assert chain.invoke([HumanMessage("hello")], config=config).content == "I have seen 1 messages"
        assert chain.invoke([HumanMessage("again")], config=config).content == "I have seen 3 messages"
        stored = [m.content for m in MemsvcChatMessageHistory(client, "rw-1", user_id="max").messages]
        assert stored == ["hello", "I have seen 1 messages", "again", "I have seen 3 messages"]


def test_retriever_search_and_context_sync_and_async(live_server: LiveServer, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    with MemsvcClient(live_server.url, key) as client:
        client.add_batch([
            {"content": "Nora's passport expires in March 2027.", "user_id": "nora", "kind": "semantic"},
            {"content": "Nora booked a trip to Kyoto for April.", "user_id": "nora"},
            {"content": "Omar's passport is fine.", "user_id": "omar"},
        ])
        docs = MemsvcRetriever(client=client, user_id="nora", k=2).invoke("When does Nora's passport expire?")
        assert docs[0].page_content == "Nora's passport expires in March 2027."
        assert len(docs) == 2 and docs[0].metadata["score"] >= docs[1].metadata["score"]
        assert all(d.metadata["user_id"] == "nora" for d in docs)  # scope filter: Omar never shows up
        (context,) = MemsvcRetriever(client=client, user_id="nora", budget_tokens=120).invoke("Nora's travel")
        assert "Kyoto" in context.page_content and 0 < context.metadata["token_count"] <= 120

    async def main() -> None:
        async with AsyncMemsvcClient(live_server.url, key) as aclient:
            retriever = MemsvcRetriever(async_client=aclient, user_id="nora", k=1)
            (doc,) = await retriever.ainvoke("trip to Japan")
            assert "Kyoto" in doc.page_content
            history = MemsvcChatMessageHistory(async_client=aclient, session_id="async-1", user_id="nora")
            await history.aadd_messages([HumanMessage("async hello"), AIMessage("async hi")])
            assert [m.content for m in await history.aget_messages()] == ["async hello", "async hi"]
            await history.aclear()
            assert await history.aget_messages() == []

    asyncio.run(main())

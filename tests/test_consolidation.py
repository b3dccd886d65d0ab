"""Consolidation with litellm's mock responses (the only mocks in the suite), run through the job
runner in-process against real Postgres; the worker-process path is in test_workers.py."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from memsvc import jobs
from memsvc.db import session_factory
from memsvc.embeddings import get_embedder
from memsvc.lifecycle.consolidate import ConsolidationScope, facts_as_of
from memsvc.lifecycle.hooks import LifecycleHooks, schedule_consolidation
from memsvc.lifecycle.runner import RunContext, run_job
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.llm import LLM, BuiltinLLM, LiteLLMGateway, LLMCallError
from memsvc.models import Job, Memory, MemoryLink
from memsvc.queue import RecordingQueue
from memsvc.scoping import MemoryScope
from memsvc.store import MemoryStore
from tests.lifecycle_helpers import insert_memory, new_tenant
from tests.llm_mock import script_litellm

MAY, JUNE, AUG = (datetime(2023, m, 1, 12, tzinfo=UTC) for m in (5, 6, 8))


@pytest.fixture()
def sessions(engine):  # type: ignore[no-untyped-def]
    return session_factory(engine)


def make_ctx(engine, llm: LLM | list[LLM], **settings) -> tuple[RunContext, RecordingQueue]:  # type: ignore[no-untyped-def]
    queue = RecordingQueue()
    llms = llm if isinstance(llm, list) else None
    ctx = RunContext(
        engine=engine, sessions=session_factory(engine), queue=queue,
        llm=(lambda: llms.pop(0)) if llms is not None else (lambda: llm),  # type: ignore[return-value]
        embedder=get_embedder, settings=LifecycleSettings(job_backoff_s=0, **settings),
    )
    return ctx, queue


def facts_json(*facts: dict) -> str:  # type: ignore[type-arg]
    return json.dumps({"facts": list(facts)})


def fact(text: str, sources: list[uuid.UUID], attribute: str | None = None, value: str | None = None) -> dict:  # type: ignore[type-arg]
    return {"text": text, "subject": "Melanie", "attribute": attribute, "value": value,
            "source_ids": [str(s) for s in sources], "confidence": 0.9}


def consolidate_job(ctx: RunContext, scope: ConsolidationScope, reprocess: bool = False) -> Job:
    with ctx.sessions() as s, s.begin():
        job_id, _ = schedule_consolidation(s, None, scope, delay_s=0, reprocess=reprocess)
    run_job(ctx, job_id)
    with ctx.sessions() as s:
        return s.get(Job, job_id)


def semantic(sessions, tenant) -> list[Memory]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(s.scalars(select(Memory).where(Memory.tenant_id == tenant, Memory.kind == "semantic")
                              .order_by(Memory.recorded_at, Memory.content)))


def test_new_fact_duplicate_contradiction_as_of_and_rerun(engine, sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    scope = ConsolidationScope(tenant, "melanie")
    with sessions() as s, s.begin():
        e1 = insert_memory(s, tenant, "I just moved to Boston! Max, my dog, loves the parks.", at=MAY,
                           user_id="melanie")
    boston = fact("Melanie lives in Boston.", [e1.id], "lives_in", "Boston")
    dog = fact("Melanie has a dog named Max.", [e1.id])
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini", mock_response=facts_json(boston, dog)))
    job = consolidate_job(ctx, scope)
    assert job.status == "succeeded", job.error
    assert len(job.result["created"]) == 2 and job.result["episodes"] == 1
    assert job.result["llm_usage"]["calls"] == 1 and job.result["llm_usage"]["total_tokens"] > 0
    a_boston, a_dog = sorted(semantic(sessions, tenant), key=lambda m: m.content != "Melanie lives in Boston.")
    assert a_boston.valid_from == MAY and a_boston.metadata_["fact"] == {
        "subject": "melanie", "attribute": "residence", "value": "boston"}  # lives_in: the old name
    with sessions() as s:
        links = set(s.execute(select(MemoryLink.src_id, MemoryLink.dst_id, MemoryLink.relation)
                              .where(MemoryLink.tenant_id == tenant)).tuples())
    assert links == {(a_boston.id, e1.id, "derived_from"), (a_dog.id, e1.id, "derived_from")}

    # Duplicates: the same text (hash) and a paraphrase (embedding) -> nothing new, sources linked.
    with sessions() as s, s.begin():
        e2 = insert_memory(s, tenant, "Still loving Boston. Max says hi!", at=JUNE, user_id="melanie")
    again = fact("Melanie lives in Boston.", [e2.id], "lives_in", "Boston")
    paraphrase = fact("Melanie has a dog called Max.", [e2.id])
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini", mock_response=facts_json(again, paraphrase)))
    job = consolidate_job(ctx, scope)
    assert job.status == "succeeded" and job.result["created"] == [] and job.result["duplicates"] == 2
    assert len(semantic(sessions, tenant)) == 2
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(MemoryLink).where(MemoryLink.dst_id == e2.id)) == 2

    # Contradiction: a newer value of the same slot supersedes the old fact, which stays queryable.
    with sessions() as s, s.begin():
        e3 = insert_memory(s, tenant, "Big news: I moved to Denver for the new job.", at=AUG, user_id="melanie")
    denver = fact("Melanie lives in Denver.", [e3.id], "lives_in", "Denver")
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini", mock_response=facts_json(denver)))
    job = consolidate_job(ctx, scope)
    assert job.status == "succeeded" and len(job.result["created"]) == 1
    new_id = uuid.UUID(job.result["created"][0])
    assert job.result["superseded"] == [{"old": str(a_boston.id), "new": str(new_id)}]
    with sessions() as s:
        old = s.get(Memory, a_boston.id)
        assert old.valid_to == AUG and old.superseded_by == new_id
        assert s.scalar(select(MemoryLink.relation).where(MemoryLink.src_id == new_id, MemoryLink.dst_id == old.id)) \
            == "supersedes"
        july = [m.content for m in facts_as_of(s, scope, datetime(2023, 7, 1, tzinfo=UTC))]
        sept = [m.content for m in facts_as_of(s, scope, datetime(2023, 9, 1, tzinfo=UTC))]
    assert sorted(july) == ["Melanie has a dog named Max.", "Melanie lives in Boston."]
    assert sorted(sept) == ["Melanie has a dog named Max.", "Melanie lives in Denver."]

    # Re-running over the same episodes creates nothing new (the model answers the same).
    before = {(m.id, m.content, m.valid_to, m.superseded_by) for m in semantic(sessions, tenant)}
    everything = facts_json(fact("Melanie lives in Boston.", [e1.id, e2.id], "lives_in", "Boston"), dog, paraphrase,
                            denver)
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini", mock_response=everything))
    job = consolidate_job(ctx, scope, reprocess=True)
    assert job.status == "succeeded" and job.result["episodes"] == 3 and job.result["created"] == []
    assert job.result["links_added"] == 0 and job.result["superseded"] == []
    assert {(m.id, m.content, m.valid_to, m.superseded_by) for m in semantic(sessions, tenant)} == before


def test_older_fact_learned_late_is_inserted_as_history(engine, sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    scope = ConsolidationScope(tenant, "melanie")
    with sessions() as s, s.begin():
        late = insert_memory(s, tenant, "I live in Denver.", at=AUG, user_id="melanie")
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini", mock_response=facts_json(
        fact("Melanie lives in Denver.", [late.id], "lives_in", "Denver"))))
    assert consolidate_job(ctx, scope).status == "succeeded"
    with sessions() as s, s.begin():
        early = insert_memory(s, tenant, "Back in May I lived in Boston.", at=MAY, user_id="melanie")
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini", mock_response=facts_json(
        fact("Melanie lived in Boston.", [early.id], "lives_in", "Boston"))))
    job = consolidate_job(ctx, scope)
    assert job.status == "succeeded" and job.result["historical"] == 1
    with sessions() as s:
        now_facts = [m.content for m in facts_as_of(s, scope, datetime(2023, 9, 1, tzinfo=UTC))]
        june_facts = [m.content for m in facts_as_of(s, scope, JUNE)]
    assert now_facts == ["Melanie lives in Denver."] and june_facts == ["Melanie lived in Boston."]


@pytest.mark.parametrize("bad, reason", [
    ("this is not JSON {", "invalid JSON"),
    (json.dumps({"facts": [{"text": "x", "subject": "y"}]}), "wrong schema"),
    ("", "empty answer"),
])
def test_bad_llm_output_is_retried_then_the_job_fails_and_nothing_changes(engine, sessions, bad, reason,  # type: ignore[no-untyped-def]
                                                                         monkeypatch) -> None:
    tenant = new_tenant(sessions)
    with sessions() as s, s.begin():
        e1 = insert_memory(s, tenant, "I adopted a cat named Luna.", at=MAY, user_id="melanie")
    script_litellm(monkeypatch, [bad, bad, bad])
    llm = LiteLLMGateway("gpt-4o-mini", max_retries=2)
    ctx, queue = make_ctx(engine, llm)
    job = consolidate_job(ctx, ConsolidationScope(tenant, "melanie"))
    assert job.status == "failed" and job.attempts == 1 and queue.enqueued == []
    assert "no usable answer" in job.error and reason in job.error
    assert len(job.result["error_details"]["reasons"]) == 3  # asked three times before giving up
    assert all(reason in r for r in job.result["error_details"]["reasons"])
    assert llm.usage.calls == 3 and llm.usage.rejected_outputs == 3
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Memory).where(
            Memory.tenant_id == tenant, Memory.kind == "semantic")) == 0
        assert s.get(Memory, e1.id).consolidated_at is None  # still waiting for a model that answers


class Flaky:
    """An LLM that is unreachable for the first call (a transient error), then works."""

    def __init__(self) -> None:
        self.inner, self.calls, self.usage = BuiltinLLM(), 0, BuiltinLLM().usage

    def summarize(self, text: str) -> str:
        return self.inner.summarize(text)

    def gist(self, text: str) -> str:
        return self.inner.gist(text)

    def extract_facts(self, episodes):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 1:
            raise LLMCallError("connection reset", retryable=True)
        return self.inner.extract_facts(episodes)


def test_transient_failure_is_retried_with_backoff(engine, sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    with sessions() as s, s.begin():
        insert_memory(s, tenant, "Caroline lives in Portland.", at=MAY, user_id="caroline",
                      metadata={"speaker": "Caroline"})
    flaky = Flaky()
    ctx, queue = make_ctx(engine, flaky)
    with ctx.sessions() as s, s.begin():
        job_id, _ = schedule_consolidation(s, None, ConsolidationScope(tenant, "caroline"), delay_s=0)
    assert run_job(ctx, job_id) == "retry"
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
        assert job.status == "queued" and "connection reset" in job.error and job.run_after is not None
    assert queue.enqueued == [(job_id, 0.0)]
    assert run_job(ctx, job_id) == "succeeded"
    assert run_job(ctx, job_id) == "skipped"  # a duplicate delivery does nothing
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
        assert job.status == "succeeded" and job.attempts == 2 and job.error is None
        assert len(job.result["created"]) >= 1


def test_deleting_a_source_rederives_or_removes_dependents(engine, sessions, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    scope = ConsolidationScope(tenant, "melanie")
    with sessions() as s, s.begin():
        e1 = insert_memory(s, tenant, "I adopted a cat named Luna.", at=MAY, user_id="melanie")
        e2 = insert_memory(s, tenant, "Luna the cat is settling in.", at=JUNE, user_id="melanie")
        e3 = insert_memory(s, tenant, "I run every morning.", at=JUNE, user_id="melanie")
    cat = fact("Melanie has a cat named Luna.", [e1.id, e2.id])
    runs = fact("Melanie runs every morning.", [e3.id, e1.id])
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini", mock_response=facts_json(cat, runs)))
    assert consolidate_job(ctx, scope).status == "succeeded"
    by_text = {m.content: m.id for m in semantic(sessions, tenant)}
    queue = RecordingQueue()
    with sessions() as s, s.begin():
        report = MemoryStore(s, MemoryScope(tenant), hooks=LifecycleHooks(queue)).delete(e1.id)
    assert set(report.derived_orphaned) == {by_text["Melanie has a cat named Luna."],
                                            by_text["Melanie runs every morning."]}
    (job_id, _delay), = queue.enqueued
    # From what is left, the model still finds the cat (kept) but not the running habit (removed).
    # One extraction per orphan, in the job's order.
    answers = {by_text["Melanie has a cat named Luna."]: facts_json(fact("Melanie has a cat named Luna.", [e2.id])),
               by_text["Melanie runs every morning."]: facts_json()}
    in_order = [answers[i] for i in report.derived_orphaned]
    script_litellm(monkeypatch, in_order)
    ctx, _ = make_ctx(engine, LiteLLMGateway("gpt-4o-mini"))
    assert run_job(ctx, job_id) == "succeeded"
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job.result["kept"] == [str(by_text["Melanie has a cat named Luna."])]
        assert job.result["removed"] == [str(by_text["Melanie runs every morning."])]
        assert s.get(Memory, by_text["Melanie runs every morning."]) is None
    # Deleting the last source of the cat fact removes it right away (cascade), reported.
    with sessions() as s, s.begin():
        report = MemoryStore(s, MemoryScope(tenant), hooks=LifecycleHooks(RecordingQueue())).delete(e2.id)
    assert report.derived_deleted == [by_text["Melanie has a cat named Luna."]]


def test_builtin_consolidation_is_idempotent(engine, sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    scope = ConsolidationScope(tenant, "caroline")
    with sessions() as s, s.begin():
        for i, text in enumerate([
            "I moved to Portland yesterday and it was so exhausting.",
            "I am researching adoption agencies because I want to give kids a loving home.",
            "My friend Melanie painted a lake sunrise last year. Melanie is a teacher.",
        ]):
            insert_memory(s, tenant, text, at=datetime(2023, 5, 8 + i, 13, tzinfo=UTC), user_id="caroline",
                          metadata={"speaker": "Caroline"})
    ctx, _ = make_ctx(engine, BuiltinLLM())
    first = consolidate_job(ctx, scope)
    assert first.status == "succeeded" and len(first.result["created"]) == 2
    texts = [m.content for m in semantic(sessions, tenant)]
    # "yesterday" resolved from the episode's own date; sentences no pattern understands make nothing.
    assert sorted(texts) == ["Caroline moved to Portland on 7 May 2023.", "Melanie is a teacher."]
    second = consolidate_job(ctx, scope, reprocess=True)
    assert second.status == "succeeded" and second.result["created"] == [] and second.result["links_added"] == 0
    assert sorted(m.content for m in semantic(sessions, tenant)) == sorted(texts)


def test_a_fact_stored_under_an_old_attribute_name_is_closed_by_its_new_slot(engine, sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    scope = ConsolidationScope(tenant, "melanie")
    with sessions() as s, s.begin():  # as the previous built-in stored it
        old = insert_memory(s, tenant, "Melanie lives in Boston.", at=MAY, user_id="melanie", kind="semantic",
                            embedding=[1.0] + [0.0] * 383, metadata={"fact": {
                                "subject": "melanie", "attribute": "lives_in", "value": "boston"}})
        insert_memory(s, tenant, "I moved to Denver.", at=AUG, user_id="melanie", metadata={"role": "user"})
    ctx, _ = make_ctx(engine, BuiltinLLM())
    job = consolidate_job(ctx, scope)
    assert job.status == "succeeded" and len(job.result["superseded"]) == 1
    with sessions() as s:
        closed = s.get(Memory, old.id)
        assert closed.valid_to == AUG and s.get(Memory, closed.superseded_by).content == "Melanie moved to Denver."


def test_jobs_rows_idempotency_and_debounce(engine, sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    queue = RecordingQueue()
    with sessions() as s, s.begin():
        a, created_a = jobs.create_job(s, tenant_id=tenant, kind="decay", idempotency_key="k1", queue=queue)
        b, created_b = jobs.create_job(s, tenant_id=tenant, kind="decay", idempotency_key="k1", queue=queue)
        scope = ConsolidationScope(tenant, "u1")
        c, created_c = schedule_consolidation(s, queue, scope, delay_s=30)
        d, created_d = schedule_consolidation(s, queue, scope, delay_s=30)
    assert a.id == b.id and created_a and not created_b
    assert c == d and created_c and not created_d
    assert [j for j, _ in queue.enqueued] == [a.id, c]  # enqueued once each, after the commit
    assert 29 <= queue.enqueued[1][1] <= 30
    ctx, _ = make_ctx(engine, BuiltinLLM())
    assert run_job(ctx, c) == "succeeded"
    with sessions() as s, s.begin():  # once it ran, the next write gets a new debounced job
        e, created_e = schedule_consolidation(s, queue, scope, delay_s=30)
    assert created_e and e != c

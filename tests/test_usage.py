"""Batched reinforcement of the memories contexts use (memsvc.lifecycle.usage), on the real database."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from memsvc.db import session_factory
from memsvc.lifecycle.policy import get_policy
from memsvc.lifecycle.retention import reinforce, retention_at
from memsvc.lifecycle.usage import UsageRecorder
from memsvc.models import Memory
from memsvc.scoping import MemoryScope
from tests.lifecycle_helpers import insert_memory, new_tenant, wait_for

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _rows(sessions, ids):  # type: ignore[no-untyped-def]
    with sessions() as s:
        return {m.id: m for m in s.scalars(select(Memory).where(Memory.id.in_(ids)))}


def test_a_batch_counts_every_use_and_reinforces_once_within_the_scope(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    tenant, other = new_tenant(sessions), new_tenant(sessions)
    with sessions() as s, s.begin():
        a, b = (insert_memory(s, tenant, f"memory {i}", at=T0).id for i in range(2))
        foreign = insert_memory(s, other, "someone else's", at=T0).id
        policy = get_policy(s, tenant)
    before = _rows(sessions, [a, b])
    recorder = UsageRecorder(sessions, flush_seconds=3600)  # flushed by hand below
    recorder.record(MemoryScope(tenant), [a, b])
    recorder.record(MemoryScope(tenant), [a, foreign])  # an id outside the scope changes nothing
    assert recorder.stats().pending == 4
    now = T0 + timedelta(days=10)
    assert recorder.flush(now=now) == 4
    after = _rows(sessions, [a, b, foreign])
    assert after[a].access_count == 2 and after[b].access_count == 1 and after[foreign].access_count == 0
    for mid in (a, b):  # one reinforcement per batch: a second use moments later finds R ~ 1 and adds ~0
        r = retention_at(now, before[mid].last_accessed_at, before[mid].strength, policy.tau0_seconds)
        assert math.isclose(after[mid].strength, reinforce(before[mid].strength, r, policy.alpha, policy.max_strength),
                            rel_tol=1e-9)
        assert after[mid].last_accessed_at == now
    stats = recorder.stats()
    assert (stats.pending, stats.reinforced, stats.dropped, stats.last_error) == (0, 4, 0, None)


def test_a_failed_flush_keeps_the_uses_and_says_so_then_writes_them(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    tenant = new_tenant(sessions)
    with sessions() as s, s.begin():
        mid = insert_memory(s, tenant, "used while the database was away", at=T0).id
    down = {"on": True}

    def flaky():  # type: ignore[no-untyped-def]
        if down["on"]:
            raise ConnectionError("database unavailable")
        return sessions()

    recorder = UsageRecorder(flaky, flush_seconds=3600, max_attempts=3)
    recorder.record(MemoryScope(tenant), [mid])
    assert recorder.flush() == 0
    stats = recorder.stats()
    assert stats.pending == 1 and stats.failed_flushes == 1 and "database unavailable" in (stats.last_error or "")
    down["on"] = False
    assert recorder.flush() == 1
    assert _rows(sessions, [mid])[mid].access_count == 1
    assert recorder.stats().last_error is None


def test_uses_are_dropped_visibly_after_max_attempts(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    tenant = new_tenant(sessions)

    def broken():  # type: ignore[no-untyped-def]
        raise ConnectionError("database unavailable")

    recorder = UsageRecorder(broken, flush_seconds=3600, max_attempts=2)
    recorder.record(MemoryScope(tenant), [uuid.uuid4()])
    recorder.flush()
    recorder.flush()
    stats = recorder.stats()
    assert (stats.pending, stats.dropped, stats.failed_flushes) == (0, 1, 2)


def test_the_timer_flushes_and_stop_writes_what_is_left(engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    tenant = new_tenant(sessions)
    with sessions() as s, s.begin():
        first, last = (insert_memory(s, tenant, f"memory {i}", at=T0).id for i in range(2))
    recorder = UsageRecorder(sessions, flush_seconds=0.2)
    recorder.record(MemoryScope(tenant), [first])
    wait_for(lambda: _rows(sessions, [first])[first].access_count == 1, 10, "the timer's flush")
    recorder.stop()
    slow = UsageRecorder(sessions, flush_seconds=3600)
    slow.record(MemoryScope(tenant), [last])
    slow.stop()  # shutdown: nothing pending is left behind
    assert _rows(sessions, [last])[last].access_count == 1

"""The decay pass and reinforcement on real Postgres rows, with an explicit clock."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from memsvc.db import session_factory
from memsvc.lifecycle import feedback
from memsvc.lifecycle.archive import search_archived
from memsvc.lifecycle.decay import run_decay, target_tier_sql
from memsvc.lifecycle.policy import get_policy, put_policy
from memsvc.lifecycle.retention import reinforce, retention_at, retention_sql
from memsvc.lifecycle.tiers import TierPolicy, demote, promote_on_use, target_tier
from memsvc.llm import BuiltinLLM
from memsvc.models import Memory
from memsvc.scoping import MemoryScope
from tests.conftest import auth
from tests.lifecycle_helpers import insert_memory, new_tenant, tenant_of_key, unit_vector

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture()
def sessions(engine):  # type: ignore[no-untyped-def]
    return session_factory(engine)


def _random_rows(sessions, tenant_id, n: int, seed: int = 7) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    ids = []
    with sessions() as s, s.begin():
        for i in range(n):
            at = T0 - timedelta(days=float(rng.uniform(0, 400)))
            m = insert_memory(s, tenant_id, f"Memory {i}: the team met on Tuesday to plan the launch of item {i}.",
                              at=at, importance=float(rng.uniform(0, 1)), strength=float(rng.uniform(0.01, 8)),
                              embedding=unit_vector(rng))
            # Used at some point after it was written (or, for a few, a clock skewed into the future).
            m.last_accessed_at = at + timedelta(days=float(rng.uniform(-1, 30)))
            ids.append(m.id)
    return ids


def test_retention_and_target_tier_sql_match_python_on_real_rows(sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    _random_rows(sessions, tenant, 300)
    policy = TierPolicy(tau0_days=20, min_age_hours=48)
    now = T0
    with sessions() as s:
        rows = s.execute(select(
            Memory.last_accessed_at, Memory.recorded_at, Memory.strength, Memory.importance,
            retention_sql(now, Memory.last_accessed_at, Memory.strength, policy.tau0_seconds),
            target_tier_sql(now, policy),
        ).where(Memory.tenant_id == tenant)).all()
    assert len(rows) == 300
    tiers_seen = set()
    for last, recorded, strength, importance, r_sql, tier_sql in rows:
        r_py = retention_at(now, last, strength, policy.tau0_seconds)
        assert math.isclose(r_sql, r_py, rel_tol=1e-9, abs_tol=1e-300)
        expected = target_tier(r_py, importance, (now - recorded).total_seconds(), policy)
        assert tier_sql == expected.value
        tiers_seen.add(tier_sql)
    assert tiers_seen == {"verbatim", "summary", "gist", "archived"}  # the sample covers every branch


def test_decay_pass_moves_rows_as_python_says_and_forward_only(sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    ids = _random_rows(sessions, tenant, 200, seed=11)
    with sessions() as s, s.begin():  # some rows start further along than their score asks
        s.execute(Memory.__table__.update().where(Memory.id.in_(ids[:20])).values(tier="gist", summary="s", gist="g"))
    policy = TierPolicy()
    with sessions() as s:
        before = {m.id: (m.tier, m.last_accessed_at, m.recorded_at, m.strength, m.importance)
                  for m in s.scalars(select(Memory).where(Memory.tenant_id == tenant))}
    report = run_decay(sessions, tenant, T0, policy=policy, llm=BuiltinLLM())
    assert report.representations_failed == 0
    with sessions() as s:
        after = {m.id: m for m in s.scalars(select(Memory).options(undefer(Memory.embedding),
                                                                    undefer(Memory.embedding_half))
                                            .where(Memory.tenant_id == tenant))}
    for mid, (tier, last, recorded, strength, importance) in before.items():
        r = retention_at(T0, last, strength, policy.tau0_seconds)
        want = demote(tier, target_tier(r, importance, (T0 - recorded).total_seconds(), policy))
        m = after[mid]
        assert m.tier == want.value, (mid, tier, r)
        if want.value in ("summary", "gist", "archived"):
            assert m.summary  # made before the move, never skipped
        if want.value in ("gist", "archived"):
            assert m.gist
        if want.value == "archived":
            assert m.embedding is None and m.embedding_half is not None
        else:
            assert m.embedding is not None and m.embedding_half is None
    moved = sum(report.moved.values())
    assert moved == sum(1 for mid in before if after[mid].tier != before[mid][0])
    # A second pass at the same instant has nothing left to do.
    again = run_decay(sessions, tenant, T0, policy=policy, llm=BuiltinLLM())
    assert again.moved == {} and again.representations_made == 0


def test_synthetic_timeline_demotes_in_order_and_use_promotes(sessions, client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    tenant = tenant_of_key(sessions, key)
    rng = np.random.default_rng(3)
    text = ("On 3 March Alice told Bob that the quarterly report was late because the data team had moved "
            "to the new warehouse, and that Carol would present it on Friday instead of Dan.")
    with sessions() as s, s.begin():
        m = insert_memory(s, tenant, text, at=T0, importance=0.5, embedding=unit_vector(rng))
        used = insert_memory(s, tenant, text + " (copy used later)", at=T0, importance=0.5, embedding=unit_vector(rng))
        profile = insert_memory(s, tenant, "Alice is allergic to peanuts.", at=T0, kind="profile",
                                embedding=unit_vector(rng))
    policy = get_policy(sessions(), tenant)
    seen = {}
    for day in (0, 10, 70, 100, 130, 220):
        now = T0 + day * DAY
        if day == 100:  # `used` is used once: reinforced, back one tier, retention back to 1
            with sessions() as s, s.begin():
                tiers = feedback.reinforce_used(s, MemoryScope(tenant), [used.id], now=now)
            assert tiers[used.id] == "verbatim"  # it was a summary
        run_decay(sessions, tenant, now, policy=policy, llm=BuiltinLLM())
        with sessions() as s:
            seen[day] = {x.id: (x.tier, x.summary, x.gist) for x in s.scalars(select(Memory).where(
                Memory.tenant_id == tenant))}
    assert [seen[d][m.id][0] for d in (0, 10, 70, 130, 220)] == ["verbatim", "verbatim", "summary", "gist", "archived"]
    summary = seen[70][m.id][1]
    assert summary == text  # one statement: no faithful summary is shorter, so the summary tier keeps it whole
    assert seen[220][m.id][1] == summary  # made once, kept
    assert seen[130][m.id][2] and seen[220][m.id][2] == seen[130][m.id][2]
    assert seen[130][used.id][0] == "verbatim"  # the use at day 100 reset its clock
    assert all(seen[d][profile.id][0] == "verbatim" for d in seen)  # profile memories never fade
    with sessions() as s:
        row = s.scalar(select(Memory).options(undefer(Memory.embedding), undefer(Memory.embedding_half))
                       .where(Memory.id == m.id))
        assert row.embedding is None and row.embedding_half is not None
        hits = search_archived(s, MemoryScope(tenant), [float(x) for x in row.embedding_half], limit=3)
        assert hits and hits[0].id == m.id and hits[0].distance < 1e-3
    # Fetching the archived memory through the API is a use: one tier up, vector back in the hot index.
    r = client.get(f"/v1/memories/{m.id}", headers=auth(key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tier"] == "gist" and body["access_count"] == 1 and body["retention"] > 0.99
    with sessions() as s:
        row = s.scalar(select(Memory).options(undefer(Memory.embedding), undefer(Memory.embedding_half))
                       .where(Memory.id == m.id))
        assert row.embedding is not None and row.embedding_half is None


def test_imported_history_ages_from_when_it_happened_until_it_is_used(sessions, client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    tenant = tenant_of_key(sessions, key)
    now = datetime.now(UTC)
    text = "Alice and Bob planned the trip to Lisbon for the spring, and Carol booked the flights in March."

    def write(occurred_at: datetime | None, label: str) -> dict:  # type: ignore[type-arg]
        body = {"content": f"{text} ({label})", "importance": 0.5}
        if occurred_at is not None:
            body["occurred_at"] = occurred_at.isoformat()
        r = client.post("/v1/memories", json=body, headers=auth(key))
        assert r.status_code == 201, r.text
        return r.json()

    fresh = write(None, "fresh")
    old = write(now - 400 * DAY, "imported")  # two hundred days past the archive point of importance 0.5
    recent = write(now - 70 * DAY, "imported, recent")  # past the summary point (~62 days), not the gist's
    planned = write(now + 30 * DAY, "planned")
    policy = get_policy(sessions(), tenant)
    assert fresh["retention"] > 0.999 and planned["retention"] > 0.999
    assert old["retention"] < recent["retention"] < fresh["retention"]
    assert old["retention"] == pytest.approx(retention_at(now, now - 400 * DAY, 3.0, policy.tau0_seconds), rel=1e-3)
    assert datetime.fromisoformat(old["last_accessed_at"]) == datetime.fromisoformat(old["occurred_at"])
    # Not demoted while younger than min_age in the service (consolidation still gets the verbatim text)...
    def tiers() -> dict[str, str]:  # the listing is no use of a memory (GET of one is)
        return {m["id"]: m["tier"] for m in client.get("/v1/memories", headers=auth(key)).json()["items"]}

    run_decay(sessions, tenant, now + timedelta(hours=1), policy=policy, llm=BuiltinLLM())
    assert set(tiers().values()) == {"verbatim"}
    # ...then moved as the tier policy says for its age: the old one archived, the recent one a summary.
    later = now + timedelta(hours=policy.min_age_hours + 1)
    report = run_decay(sessions, tenant, later, policy=policy, llm=BuiltinLLM())
    seen = tiers()
    assert (seen[old["id"]], seen[recent["id"]], seen[fresh["id"]], seen[planned["id"]]) == (
        "archived", "summary", "verbatim", "verbatim"), report
    # A use refreshes it like any memory: retention back to 1, one tier up, and the next pass leaves it there.
    used = client.get(f"/v1/memories/{old['id']}", headers=auth(key)).json()
    assert used["tier"] == "gist" and used["retention"] > 0.99 and used["access_count"] == 1
    run_decay(sessions, tenant, datetime.now(UTC) + timedelta(hours=1), policy=policy, llm=BuiltinLLM())
    assert tiers()[old["id"]] == "gist"
    # Correcting the date of a memory never used ages it from the corrected date; a used one keeps its clock.
    r = client.patch(f"/v1/memories/{fresh['id']}", json={"occurred_at": (now - 400 * DAY).isoformat()},
                     headers=auth(key))
    assert r.status_code == 200 and r.json()["retention"] < 0.02, r.text
    r = client.patch(f"/v1/memories/{old['id']}", json={"occurred_at": (now - 800 * DAY).isoformat()},
                     headers=auth(key))
    assert r.status_code == 200 and r.json()["last_accessed_at"] == used["last_accessed_at"], r.text


def test_reinforce_used_sql_matches_python(sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    ids = _random_rows(sessions, tenant, 60, seed=5)
    with sessions() as s, s.begin():
        s.execute(Memory.__table__.update().where(Memory.id.in_(ids[:15])).values(tier="archived"))
        s.execute(Memory.__table__.update().where(Memory.id.in_(ids[15:30])).values(tier="gist"))
        s.execute(Memory.__table__.update().where(Memory.id.in_(ids[30:40])).values(
            tier="summary", original_dropped_at=T0))
    policy = TierPolicy(alpha=2.0, max_strength=6.0)
    with sessions() as s:
        before = {m.id: (m.strength, m.last_accessed_at, m.tier, m.original_dropped_at is None, m.access_count)
                  for m in s.scalars(select(Memory).where(Memory.id.in_(ids)))}
    now = T0 + 3 * DAY
    other = new_tenant(sessions)
    with sessions() as s, s.begin():
        tiers = feedback.reinforce_used(s, MemoryScope(tenant), ids, now=now, policy=policy)
        assert feedback.reinforce_used(s, MemoryScope(other), ids, now=now, policy=policy) == {}  # scoped
    with sessions() as s:
        after = {m.id: m for m in s.scalars(select(Memory).where(Memory.id.in_(ids)))}
    for mid, (strength, last, tier, has_original, count) in before.items():
        r = retention_at(now, last, strength, policy.tau0_seconds)
        assert math.isclose(after[mid].strength, reinforce(strength, r, policy.alpha, policy.max_strength),
                            rel_tol=1e-9)
        assert after[mid].last_accessed_at == max(last, now)
        assert after[mid].tier == tiers[mid] == promote_on_use(tier, has_original).value
        assert after[mid].access_count == count + 1


def test_ttl_deletes_only_when_the_policy_says_so(sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    with sessions() as s, s.begin():
        old = insert_memory(s, tenant, "An old note from long ago about the garden.", at=T0 - 400 * DAY)
        fresh = insert_memory(s, tenant, "A fresh note about the garden.", at=T0 - 5 * DAY)
    report = run_decay(sessions, tenant, T0, llm=BuiltinLLM())
    assert report.ttl_deleted == 0
    with sessions() as s, s.begin():
        put_policy(s, tenant, {"ttl_days": 365})
    report = run_decay(sessions, tenant, T0, llm=BuiltinLLM())
    assert report.ttl_days == 365 and report.ttl_deleted == 1 and report.ttl_deleted_sample == [str(old.id)]
    with sessions() as s:
        left = set(s.scalars(select(Memory.id).where(Memory.tenant_id == tenant)))
    assert left == {fresh.id}


def test_keep_originals_false_replaces_text_by_summary(sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(sessions)
    # Several statements, one of them filler: a faithful summary exists (one statement would have none,
    # and the tier would keep the text itself).
    text = ("Yesterday the support group met at the library. Caroline spoke about adoption agencies. "
            "Melanie shared pictures of the pottery she made with her kids during the summer holidays. "
            "Haha, that was so much fun, thanks everyone! See you all next week at the library!")
    with sessions() as s, s.begin():
        m = insert_memory(s, tenant, text, at=T0, importance=0.0)
        put_policy(s, tenant, {"keep_originals": False})
    run_decay(sessions, tenant, T0 + 40 * DAY, llm=BuiltinLLM())
    with sessions() as s:
        row = s.get(Memory, m.id)
        assert row.tier in ("summary", "gist", "archived") and row.original_dropped_at is not None
        assert row.content == row.summary and len(row.content) < len(text)
        assert s.scalar(select(func.count()).select_from(Memory).where(Memory.id == m.id)) == 1



# Packaging around one statement: the extractive summary keeps "Caroline: I went to ... so powerful."
TURN = ("Caroline: Hey Mel! Good to see you! Wow, thanks so much! I went to a LGBTQ support group yesterday and it "
        "was so powerful. Haha, that's so cool!")


def _written_long_ago(client, sessions, make_tenant) -> tuple[uuid.UUID, list[uuid.UUID]]:  # type: ignore[no-untyped-def]
    """A tenant with a long turn and a short note written through the API, last used at T0."""
    key = make_tenant()
    ids = []
    for content in (TURN, "Short note."):
        r = client.post("/v1/memories", headers=auth(key), json={"content": content})
        assert r.status_code in (200, 201), r.text
        ids.append(uuid.UUID(r.json()["id"]))
    body = client.get(f"/v1/memories/{ids[0]}", headers=auth(key)).json()
    assert body["summary"] and len(body["summary"]) < len(TURN) and "support group" in body["summary"]
    assert body["summary_by"] == "extractive"
    assert client.get(f"/v1/memories/{ids[1]}", headers=auth(key)).json()["summary"] is None  # its own summary
    with sessions() as s, s.begin():
        s.execute(Memory.__table__.update().where(Memory.id.in_(ids)).values(
            last_accessed_at=T0, recorded_at=T0, occurred_at=T0, valid_from=T0))
    return tenant_of_key(sessions, key), ids


def test_summary_made_at_write_serves_demotion_unless_a_hosted_llm_replaces_it(  # type: ignore[no-untyped-def]
        sessions, client, make_tenant) -> None:
    from memsvc.llm.gateway import LiteLLMGateway

    now = T0 + 70 * DAY  # due for the summary tier
    tenant, ids = _written_long_ago(client, sessions, make_tenant)
    with sessions() as s:
        written = s.get(Memory, ids[0]).summary
    report = run_decay(sessions, tenant, now, llm=BuiltinLLM())
    assert report.moved.get("verbatim->summary") == 2
    assert report.representations_made == 1  # only the short note, its own summary; the turn had one
    with sessions() as s:
        row = s.get(Memory, ids[0])
        assert (row.tier, row.summary, row.summary_by) == ("summary", written, "extractive")

    tenant, ids = _written_long_ago(client, sessions, make_tenant)
    better = "Caroline found a LGBTQ support group powerful."
    llm = LiteLLMGateway("gpt-4o-mini", mock_response=json.dumps({"summary": better}))
    report = run_decay(sessions, tenant, now, llm=llm)
    assert report.llm_usage["calls"] == 1  # the turn; the short note is its own summary, no call
    with sessions() as s:
        row = s.get(Memory, ids[0])
        assert (row.tier, row.summary, row.summary_by) == ("summary", better, "gpt-4o-mini")
    again = run_decay(sessions, tenant, now + DAY, llm=llm)
    assert again.llm_usage["calls"] == 0  # the LLM's summary is kept, not asked for again


def test_fill_builtin_summaries_for_memories_written_before_they_were_made_at_write(sessions) -> None:  # type: ignore[no-untyped-def]
    from memsvc.lifecycle.decay import fill_builtin_summaries
    from memsvc.llm.builtin import builtin_summary

    tenant = new_tenant(sessions)
    with sessions() as s, s.begin():  # inserted as an old release did: no summary, no summary_by
        turn = insert_memory(s, tenant, TURN, at=T0)
        note = insert_memory(s, tenant, "Short note.", at=T0)
        demoted = insert_memory(s, tenant, TURN + " Again.", at=T0)
        demoted.summary, demoted.tier = "An LLM's summary.", "summary"
    assert fill_builtin_summaries(sessions, tenant, batch=1) == 2  # batches until none is left
    with sessions() as s:
        rows = {m.id: m for m in s.scalars(select(Memory).where(Memory.tenant_id == tenant))}
    assert (rows[turn.id].summary, rows[turn.id].summary_by) == (builtin_summary(TURN), "extractive")
    assert (rows[note.id].summary, rows[note.id].summary_by) == (None, "extractive")  # its own summary
    assert (rows[demoted.id].summary, rows[demoted.id].summary_by) == ("An LLM's summary.", None)
    assert fill_builtin_summaries(sessions, tenant) == 0

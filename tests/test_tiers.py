"""Fidelity tiers over a synthetic timeline with a controlled clock (one decay pass a day)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from memsvc.errors import InvalidInput
from memsvc.lifecycle.retention import SECONDS_PER_DAY, initial_strength, reinforce, retention
from memsvc.lifecycle.tiers import (
    TIERS,
    Tier,
    TierPolicy,
    demote,
    promote_on_use,
    representations_needed,
    target_tier,
    tier_case_sql,
    ttl_expired,
)

DAY = SECONDS_PER_DAY


@dataclass
class Mem:
    importance: float
    strength: float
    recorded_at: float = 0.0
    last_accessed_at: float = 0.0
    tier: Tier = Tier.VERBATIM
    have: set[str] = field(default_factory=set)
    history: list[tuple[int, str]] = field(default_factory=list)


def new_mem(importance: float) -> Mem:
    return Mem(importance=importance, strength=initial_strength(importance))


def decay_pass(m: Mem, now: float, day: int, policy: TierPolicy) -> None:
    r = retention(now - m.last_accessed_at, m.strength, policy.tau0_seconds)
    target = target_tier(r, m.importance, now - m.recorded_at, policy)
    new = demote(m.tier, target)
    if new != m.tier:
        for rep in representations_needed(m.tier, new, have=m.have):
            m.have.add(rep)  # the DB step would call the LLM here
        assert all(t.value in m.have for t in TIERS[1: TIERS.index(new) + 1] if t != Tier.ARCHIVED)
        m.tier = new
        m.history.append((day, new.value))


def use(m: Mem, now: float, policy: TierPolicy) -> None:
    r = retention(now - m.last_accessed_at, m.strength, policy.tau0_seconds)
    m.strength = reinforce(m.strength, r, policy.alpha, policy.max_strength)
    m.last_accessed_at = now
    m.tier = promote_on_use(m.tier, has_original=policy.keep_originals)


def simulate(m: Mem, days: int, policy: TierPolicy, uses: frozenset[int] = frozenset()) -> Mem:
    for day in range(1, days + 1):
        now = day * DAY
        if day in uses:
            use(m, now, policy)
        decay_pass(m, now, day, policy)
    return m


def test_unused_memory_walks_down_on_schedule() -> None:
    # importance 0.5: strength 3, tau = 90 days, score = R; thresholds 0.5/0.25/0.1 are crossed at
    # 90*ln 2 = 62.4, 90*ln 4 = 124.8 and 90*ln 10 = 207.2 days.
    m = simulate(new_mem(0.5), 400, TierPolicy())
    assert m.history == [(63, "summary"), (125, "gist"), (208, "archived")]
    assert m.have == {"summary", "gist"}


def test_unimportant_memory_goes_faster_and_important_one_stays_longer() -> None:
    low = simulate(new_mem(0.0), 800, TierPolicy())
    mid = simulate(new_mem(0.5), 800, TierPolicy())
    high = simulate(new_mem(1.0), 800, TierPolicy())
    for a, b, c in zip(low.history, mid.history, high.history, strict=True):
        assert a[1] == b[1] == c[1]
        assert a[0] < b[0] < c[0]
    assert [d for d, _ in low.history] == [13, 33, 61]
    assert [d for d, _ in high.history] == [138, 242, 379]


def test_used_memory_is_promoted_one_step_and_reinforced() -> None:
    policy = TierPolicy()
    m = simulate(new_mem(0.5), 130, policy)
    assert m.tier == Tier.GIST
    s_before = m.strength
    use(m, 131 * DAY, policy)
    assert m.tier == Tier.SUMMARY
    assert m.strength > s_before
    # Reinforced and freshly accessed: the next passes do not demote it again.
    for day in range(131, 200):
        decay_pass(m, day * DAY, day, policy)
    assert m.tier == Tier.SUMMARY
    use(m, 200 * DAY, policy)
    assert m.tier == Tier.VERBATIM


def test_regular_use_keeps_a_memory_verbatim() -> None:
    m = simulate(new_mem(0.3), 365, TierPolicy(), uses=frozenset(range(20, 366, 20)))
    assert m.tier == Tier.VERBATIM and m.history == []


def test_promote_on_use() -> None:
    assert promote_on_use("archived") == Tier.GIST
    assert promote_on_use("gist") == Tier.SUMMARY
    assert promote_on_use("summary") == Tier.VERBATIM
    assert promote_on_use("verbatim") == Tier.VERBATIM
    # Without the original text there is nothing to go back to beyond the summary.
    assert promote_on_use("summary", has_original=False) == Tier.SUMMARY
    assert promote_on_use("gist", has_original=False) == Tier.SUMMARY


def test_demotion_is_forward_only() -> None:
    assert demote("gist", "summary") == Tier.GIST
    assert demote("gist", "verbatim") == Tier.GIST
    assert demote("summary", "archived") == Tier.ARCHIVED


def test_representations_never_skipped() -> None:
    assert representations_needed("verbatim", "archived") == ["summary", "gist"]
    assert representations_needed("verbatim", "gist") == ["summary", "gist"]
    assert representations_needed("verbatim", "summary") == ["summary"]
    assert representations_needed("summary", "archived") == ["gist"]
    assert representations_needed("gist", "archived") == []
    assert representations_needed("archived", "gist") == []
    assert representations_needed("verbatim", "archived", have=["summary"]) == ["gist"]
    # A decay pass that runs rarely makes a memory fall several tiers at once.
    m = new_mem(0.5)
    decay_pass(m, 300 * DAY, 300, TierPolicy())
    assert m.history == [(300, "archived")] and m.have == {"summary", "gist"}


def test_min_age_blocks_early_demotion() -> None:
    policy = TierPolicy(min_age_hours=48)
    assert target_tier(0.0, 0.0, 47 * 3600, policy) == Tier.VERBATIM
    assert target_tier(0.0, 0.0, 49 * 3600, policy) == Tier.ARCHIVED


def test_ttl() -> None:
    assert not ttl_expired(10_000 * DAY, TierPolicy())
    assert ttl_expired(30 * DAY, TierPolicy(ttl_days=30))
    assert not ttl_expired(29 * DAY, TierPolicy(ttl_days=30))


def test_policy_validation_messages() -> None:
    with pytest.raises(ValidationError, match="thresholds must satisfy summary > gist > archive"):
        TierPolicy(summary_threshold=0.3, gist_threshold=0.4)
    with pytest.raises(ValidationError, match="thresholds must satisfy"):
        TierPolicy(gist_threshold=0.1, archive_threshold=0.1)
    for bad in ({"archive_threshold": 0}, {"summary_threshold": 1.5}, {"tau0_days": 0}, {"ttl_days": 0},
                {"unknown": 1}):
        with pytest.raises(ValidationError):
            TierPolicy(**bad)


def test_policy_from_user_input() -> None:
    base = TierPolicy(tau0_days=10)
    p = TierPolicy.from_input({"keep_originals": False}, base=base)
    assert p.tau0_days == 10 and p.keep_originals is False
    with pytest.raises(InvalidInput) as e:
        TierPolicy.from_input({"summary_threshold": 0.2, "ttl_days": -1})
    assert e.value.status == 422
    # Field errors come first (the ordering check runs once every field is valid).
    assert [d["field"] for d in e.value.details] == ["ttl_days"]
    assert "ttl_days: Input should be greater than 0" in e.value.message
    with pytest.raises(InvalidInput, match="summary > gist > archive") as e:
        TierPolicy.from_input({"summary_threshold": 0.2})
    assert e.value.details[0]["field"] is None


def test_tier_case_sql_compiles_for_postgres() -> None:
    from sqlalchemy import Float, column
    from sqlalchemy.dialects import postgresql

    sql = str(tier_case_sql(column("r", Float), column("importance", Float), column("age", Float), TierPolicy())
              .compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})).lower()
    assert sql.count("when") == 4 and "'archived'" in sql and "'summary'" in sql

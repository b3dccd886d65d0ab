"""The forgetting curve, Python side.

`retention_sql` cannot be evaluated on sqlite (no exp, extract(epoch), greatest), so here it is
only compiled for Postgres and checked for shape; the DB tests compare it numerically with
`retention` on a real Postgres (same formula, same floor, same exponent cap).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsvc.lifecycle.retention import (
    MAX_EXPONENT,
    MIN_STRENGTH,
    forgetting_starts_at,
    initial_strength,
    reinforce,
    retention,
    retention_at,
    retention_curve,
    retention_sql,
    weaken,
)

DAY = 86_400.0
TAU0 = 30 * DAY

elapsed_s = st.floats(min_value=0, max_value=3650 * DAY, allow_nan=False)
strengths = st.floats(min_value=MIN_STRENGTH, max_value=1000, allow_nan=False)


def test_fresh_memory_is_fully_retained_and_one_time_constant_gives_1_over_e() -> None:
    assert retention(0, 3.0, TAU0) == 1.0
    assert retention(3.0 * TAU0, 3.0, TAU0) == pytest.approx(math.exp(-1))


@given(t=elapsed_s, dt=st.floats(min_value=1, max_value=365 * DAY), s=strengths)
def test_monotone_decreasing_in_time(t: float, dt: float, s: float) -> None:
    assert retention(t + dt, s, TAU0) <= retention(t, s, TAU0)
    assert 0.0 < retention(t, s, TAU0) <= 1.0


@given(t=st.floats(min_value=DAY, max_value=365 * DAY), s=st.floats(min_value=0.1, max_value=100))
def test_stronger_memories_decay_slower(t: float, s: float) -> None:
    assert retention(t, s * 2, TAU0) > retention(t, s, TAU0)


def test_not_the_published_bug() -> None:
    # exp(-t / 5*S) == exp(-t*S/5) would make strength 5 fade faster than strength 1.
    t = 10 * DAY
    assert retention(t, 5.0, TAU0) > retention(t, 1.0, TAU0)
    assert retention(t, 5.0, TAU0) == pytest.approx(math.exp(-t / (TAU0 * 5.0)))


def test_clamps_bad_inputs() -> None:
    assert retention(-5 * DAY, 1.0, TAU0) == 1.0  # clock skew: last access "in the future"
    assert retention(DAY, 0.0, TAU0) == retention(DAY, -3.0, TAU0) == retention(DAY, MIN_STRENGTH, TAU0)
    # Exponent capped like the SQL twin (Postgres errors on exp() underflow): tiny but positive.
    assert retention(1e6 * 365 * DAY, MIN_STRENGTH, TAU0) == pytest.approx(math.exp(-MAX_EXPONENT))
    with pytest.raises(ValueError, match="tau0_seconds"):
        retention(DAY, 1.0, 0.0)


def test_retention_at_timestamps() -> None:
    now = datetime(2024, 3, 1, tzinfo=UTC)
    assert retention_at(now, now - timedelta(days=30), 1.0, TAU0) == pytest.approx(math.exp(-1))


@given(s=st.floats(min_value=0.1, max_value=40), r_low=st.floats(0, 1), r_high=st.floats(0, 1))
def test_reinforcement_is_larger_when_closer_to_forgotten(s: float, r_low: float, r_high: float) -> None:
    lo, hi = sorted((r_low, r_high))
    gain_lo = reinforce(s, lo, alpha=1.0, max_strength=1e9) - s
    gain_hi = reinforce(s, hi, alpha=1.0, max_strength=1e9) - s
    assert gain_lo >= gain_hi >= 0


def test_reinforce_values_and_cap() -> None:
    assert reinforce(2.0, 0.25, alpha=2.0, max_strength=50) == pytest.approx(3.5)
    assert reinforce(2.0, 1.0, alpha=2.0, max_strength=50) == 2.0  # just seen: nothing to gain
    assert reinforce(49.5, 0.0, alpha=2.0, max_strength=50) == 50
    assert reinforce(2.0, 0.0, alpha=0.0, max_strength=50) == 2.0


def test_weaken() -> None:
    assert weaken(4.0, 0.5) == 2.0
    assert weaken(0.06, 0.5, min_strength=0.05) == 0.05
    with pytest.raises(ValueError):
        weaken(4.0, 1.5)


def test_forgetting_starts_when_it_happened_if_that_was_before_it_was_stored() -> None:
    stored = datetime(2024, 3, 1, tzinfo=UTC)
    imported = stored - timedelta(days=400)
    assert forgetting_starts_at(stored, imported) == imported  # imported history ages from its own date
    assert forgetting_starts_at(stored, stored + timedelta(days=9)) == stored  # a planned event: from storing
    assert forgetting_starts_at(stored, None) == stored
    assert retention_at(stored, forgetting_starts_at(stored, imported), 3.0, TAU0) < 0.02


def test_initial_strength_from_importance() -> None:
    assert initial_strength(0.0) == 1.0
    assert initial_strength(1.0) == 5.0
    assert initial_strength(0.5) == 3.0
    assert initial_strength(-1) == 1.0 and initial_strength(7) == 5.0
    assert initial_strength(0.2) < initial_strength(0.8)


def test_retention_curve() -> None:
    curve = retention_curve(2.0, TAU0, horizon_seconds=180 * DAY, points=10)
    assert len(curve) == 10
    assert curve[0] == (0.0, 1.0)
    assert curve[-1][0] == pytest.approx(180 * DAY)
    assert all(a[1] > b[1] for a, b in zip(curve, curve[1:], strict=False))
    assert curve[3][1] == retention(curve[3][0], 2.0, TAU0)


def test_retention_sql_compiles_for_postgres() -> None:
    from sqlalchemy import DateTime, Float, bindparam, column
    from sqlalchemy.dialects import postgresql

    expr = retention_sql(bindparam("now", type_=DateTime(timezone=True)), column("last_accessed_at"),
                         column("strength", Float), TAU0)
    sql = str(expr.compile(dialect=postgresql.dialect())).lower()
    for part in ("exp(", "extract(epoch from", "last_accessed_at", "greatest(strength", "least("):
        assert part in sql
    # A datetime works as well as a bound parameter.
    assert "exp(" in str(retention_sql(datetime(2024, 1, 1, tzinfo=UTC), column("a"), column("s"), TAU0))

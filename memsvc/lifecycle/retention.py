"""The forgetting curve: R = exp(-elapsed / (tau0 * strength)).

Strength multiplies the time constant, so a stronger memory decays *slower*. (A published
implementation writes exp(-t / 5*S), which parses as exp(-t*S/5): stronger memories would fade
faster. Every formula here keeps strength in the denominator.)

`retention` and `retention_sql` are the single definition used by the decay pass, retrieval
ranking, the API and the dashboard, so a number shown anywhere is the number used everywhere.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

# Strength is floored so a bad row (0, negative) cannot divide by zero or flip the sign of decay.
MIN_STRENGTH = 0.05
# Postgres raises "value out of range: underflow" for exp() of a very negative double (Python just
# returns 0.0). Capping the exponent in both places keeps them identical and the SQL pass alive
# for memories untouched for decades; exp(-700) ~ 1e-304 is "forgotten" for every purpose.
MAX_EXPONENT = 700.0
SECONDS_PER_DAY = 86_400.0


def _exponent(elapsed_seconds: float, strength: float, tau0_seconds: float) -> float:
    if not tau0_seconds > 0:
        raise ValueError(f"tau0_seconds must be > 0, got {tau0_seconds!r}")
    # Clock skew between hosts can make last_accessed_at lie in the future; treat that as "just now".
    elapsed = max(0.0, float(elapsed_seconds))
    return min(MAX_EXPONENT, elapsed / (tau0_seconds * max(float(strength), MIN_STRENGTH)))


def retention(elapsed_seconds: float, strength: float, tau0_seconds: float) -> float:
    """Probability-like recall in (0, 1]: 1 right after access, 1/e after tau0*strength seconds."""
    return math.exp(-_exponent(elapsed_seconds, strength, tau0_seconds))


def retention_at(now: datetime, last_accessed_at: datetime, strength: float, tau0_seconds: float) -> float:
    """`retention` for two timestamps (both aware or both naive, as Python requires)."""
    return retention((now - last_accessed_at).total_seconds(), strength, tau0_seconds)


def forgetting_starts_at(recorded_at: datetime, occurred_at: datetime | None) -> datetime:
    """Where the forgetting curve of a memory not used since it was stored starts (its last_accessed_at).

    When it happened, if that was before it was stored: imported history ages as if last recalled back
    then, so a conversation from two years ago does not come in as fresh as this morning's. Otherwise when
    it was stored: an occurred_at in the future (a planned event) must not keep a memory at R = 1 until then.
    A later use moves the start to that use, as for any memory.
    """
    return recorded_at if occurred_at is None else min(recorded_at, occurred_at)


def initial_strength(importance: float) -> float:
    """Starting strength 1..5 from importance 0..1: an important memory's time constant is 5x longer.

    Linear and bounded so importance (often a guess by an LLM or a caller) cannot make a memory
    effectively immortal; use reinforces it from there.
    """
    return 1.0 + 4.0 * min(1.0, max(0.0, float(importance)))


def reinforce(strength: float, retention: float, alpha: float, max_strength: float) -> float:
    """Strength after a use: += alpha * (1 - R). Spacing effect: recalling an almost-forgotten
    memory strengthens it most; re-reading one just seen adds almost nothing (so retrieval loops
    cannot pump strength)."""
    r = min(1.0, max(0.0, float(retention)))
    return min(float(max_strength), max(float(strength), MIN_STRENGTH) + max(0.0, alpha) * (1.0 - r))


def weaken(strength: float, factor: float, min_strength: float = MIN_STRENGTH) -> float:
    """Strength after negative feedback: multiplied by factor in (0, 1], never below min_strength."""
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"factor must be in (0, 1], got {factor!r}")
    return max(max(min_strength, MIN_STRENGTH), float(strength) * factor)


def retention_curve(
    strength: float, tau0_seconds: float, horizon_seconds: float, points: int = 50
) -> list[tuple[float, float]]:
    """(t, R) samples from 0 to horizon inclusive, evenly spaced: what the dashboard plots."""
    if points < 2:
        raise ValueError("points must be >= 2")
    step = max(0.0, horizon_seconds) / (points - 1)
    return [(i * step, retention(i * step, strength, tau0_seconds)) for i in range(points)]


def elapsed_seconds_sql(now: Any, since_col: Any) -> ColumnElement[float]:
    """SQL: seconds from since_col to now, as double precision (Postgres)."""
    from sqlalchemy import DateTime, Float, cast, extract, literal
    from sqlalchemy.sql.elements import ColumnElement as _ColumnElement

    if not isinstance(now, _ColumnElement):
        now = literal(now, DateTime(timezone=True))
    return cast(extract("epoch", now - since_col), Float)


def retention_sql(
    now_param: Any, last_accessed_col: Any, strength_col: Any, tau0_seconds: float
) -> ColumnElement[float]:
    """SQL twin of `retention` for Postgres:

        exp(-least(greatest(extract(epoch from now - last_accessed_at), 0)
                   / (tau0 * greatest(strength, MIN_STRENGTH)), MAX_EXPONENT))

    now_param: a bound parameter / SQL expression, or a datetime (bound as timestamptz).
    Pass `coalesce(last_accessed_at, recorded_at)` if the column can be NULL: NULL in, NULL out.
    Not unit-testable on sqlite (no exp/extract epoch/greatest); the DB tests compare it with
    `retention` on a real Postgres.
    """
    from sqlalchemy import Float, func, literal

    if not tau0_seconds > 0:
        raise ValueError(f"tau0_seconds must be > 0, got {tau0_seconds!r}")
    elapsed = func.greatest(elapsed_seconds_sql(now_param, last_accessed_col), literal(0.0, Float))
    denom = literal(float(tau0_seconds), Float) * func.greatest(strength_col, literal(MIN_STRENGTH, Float))
    exponent = func.least(elapsed / denom, literal(MAX_EXPONENT, Float))
    return func.exp(-exponent, type_=Float)

"""Fidelity tiers: verbatim -> summary -> gist -> archived. Demote, don't delete.

The decay pass computes, for each memory, the tier its score calls for
(score = retention * (0.75 + 0.5 * importance)) and moves the memory *forward only*: a memory
never climbs back because time passed, only because it was used (`promote_on_use`). Before a
memory lands on a tier, every representation it skipped over is produced, so an archived memory
still has its summary and gist (`representations_needed`).

Promotion decision: one step per use (archived -> gist -> summary -> verbatim). A single use of
an archived memory brings it back into the hot index at its cheapest form; only repeated use
earns back full text in contexts. One accidental hit cannot flood contexts with old verbatim text,
and reinforcement (R reset to 1, strength up) keeps it from being demoted again right away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memsvc.errors import InvalidInput
from memsvc.lifecycle.retention import SECONDS_PER_DAY
from memsvc.schemas import json_numbers

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement


class Tier(StrEnum):
    VERBATIM = "verbatim"
    SUMMARY = "summary"
    GIST = "gist"
    ARCHIVED = "archived"


TIERS: tuple[Tier, ...] = (Tier.VERBATIM, Tier.SUMMARY, Tier.GIST, Tier.ARCHIVED)
# Tiers whose text must exist before a memory may sit on (or past) them.
PRODUCED: tuple[Tier, ...] = (Tier.SUMMARY, Tier.GIST)

# score = retention * (BASE + SPAN * importance): importance 0 weighs R by 0.75, importance 1 by
# 1.25. Importance already sets the starting strength; this second, milder factor is the
# "retention x importance" of the design and keeps important memories verbatim a little longer
# even after their strength has been spent.
IMPORTANCE_BASE = 0.75
IMPORTANCE_SPAN = 0.5


STRENGTH_CAP = 10_000.0  # the largest max_strength a policy may set: no memory is stronger


class TierPolicy(BaseModel):
    """Per-tenant lifecycle policy (GET/PUT /v1/policy). Defaults are the embedded default.

    With the defaults, a memory of importance 0.5 that is never used becomes a summary after
    ~62 days, a gist after ~125 and is archived after ~208; importance 0 after ~12/33/60 days,
    importance 1 after ~137/241/379 days.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tau0_days: float = Field(30.0, gt=0, le=36_500, description="Time constant of the forgetting "
                             "curve at strength 1: retention falls to 1/e after tau0 * strength days.")
    alpha: float = Field(1.0, ge=0, le=100, description="Reinforcement gain: strength += alpha * (1 - R).")
    max_strength: float = Field(50.0, ge=1, le=STRENGTH_CAP, description="Cap on strength after reinforcement.")
    negative_feedback_factor: float = Field(0.5, gt=0, le=1, description="Strength multiplier on "
                                            "negative feedback.")
    summary_threshold: float = Field(0.5, gt=0, le=1, description="Demote to summary below this score.")
    gist_threshold: float = Field(0.25, gt=0, le=1, description="Demote to gist below this score.")
    archive_threshold: float = Field(0.1, gt=0, le=1, description="Archive below this score.")
    min_age_hours: float = Field(24.0, ge=0, description="No demotion before a memory is this old.")
    keep_originals: bool = Field(True, description="Keep verbatim content after demotion.")
    ttl_days: int | None = Field(None, gt=0, description="Delete memories older than this; None = never.")

    @model_validator(mode="after")
    def _ordered(self) -> TierPolicy:
        if not self.summary_threshold > self.gist_threshold > self.archive_threshold:
            raise ValueError(
                "thresholds must satisfy summary > gist > archive (got "
                f"summary={self.summary_threshold}, gist={self.gist_threshold}, "
                f"archive={self.archive_threshold})"
            )
        return self

    @property
    def tau0_seconds(self) -> float:
        return self.tau0_days * SECONDS_PER_DAY

    @classmethod
    def from_input(cls, data: Mapping[str, Any], base: TierPolicy | None = None) -> TierPolicy:
        """Validate user input (optionally a partial update over `base`) into a policy, or raise
        InvalidInput listing every problem as {"field", "message"}."""
        merged = {**(base.model_dump() if base else {}), **dict(data)}
        try:
            # strict, as the OpenAPI document says: no "1" for 1, no 0 for false (2.0 is 2, as in JSON)
            return cls.model_validate(json_numbers(cls, merged), strict=True)
        except ValidationError as e:
            problems = [
                {"field": ".".join(str(p) for p in err["loc"]) or None,
                 "message": err["msg"].removeprefix("Value error, ")}
                for err in e.errors()
            ]
            text = "; ".join(f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in problems)
            raise InvalidInput(f"invalid lifecycle policy: {text}", details=problems) from None


def tier_rank(tier: str) -> int:
    try:
        return TIERS.index(Tier(tier))
    except ValueError:
        raise ValueError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}") from None


def tier_score(retention: float, importance: float) -> float:
    return retention * (IMPORTANCE_BASE + IMPORTANCE_SPAN * min(1.0, max(0.0, importance)))


def target_tier(retention: float, importance: float, age_seconds: float, policy: TierPolicy) -> Tier:
    """The tier a memory's current score calls for, regardless of where it is now.
    Use `demote(current, target)` to apply it (forward only)."""
    if age_seconds < policy.min_age_hours * 3600.0:
        return Tier.VERBATIM
    score = tier_score(retention, importance)
    if score < policy.archive_threshold:
        return Tier.ARCHIVED
    if score < policy.gist_threshold:
        return Tier.GIST
    if score < policy.summary_threshold:
        return Tier.SUMMARY
    return Tier.VERBATIM


def demote(current: str, target: str) -> Tier:
    """Forward-only move: the later of current and target."""
    return TIERS[max(tier_rank(current), tier_rank(target))]


def representations_needed(current_tier: str, target_tier: str, have: Iterable[str] = ()) -> list[str]:
    """Which of summary/gist must be produced, in this order, before moving current -> target.

    Every produced tier after current, up to and including target, counts (verbatim -> archived
    needs ["summary", "gist"]), so nothing is skipped even when a memory falls several tiers in
    one pass; the ones passed in `have` (already stored) are left out. A backward move needs nothing.
    """
    have_set = {Tier(h) for h in have}
    start, stop = tier_rank(current_tier), tier_rank(target_tier)
    if stop <= start:
        return []
    return [t.value for t in PRODUCED if start < tier_rank(t) <= stop and t not in have_set]


def promote_on_use(tier: str, has_original: bool = True) -> Tier:
    """Tier after the memory was used: one step toward verbatim (see module docstring).
    Without the original text (keep_originals=False) a memory can come back only to summary."""
    rank = tier_rank(tier)
    floor = 0 if has_original else tier_rank(Tier.SUMMARY)
    return TIERS[rank - 1] if rank > floor else TIERS[rank]


def ttl_expired(age_seconds: float, policy: TierPolicy) -> bool:
    """True when an explicit TTL policy says the memory is to be deleted."""
    return policy.ttl_days is not None and age_seconds >= policy.ttl_days * SECONDS_PER_DAY


# --- SQL twins (Postgres), for the set-based decay pass ---------------------------------------


def tier_score_sql(retention_expr: Any, importance_col: Any) -> ColumnElement[float]:
    from sqlalchemy import Float, func, literal

    imp = func.least(func.greatest(importance_col, literal(0.0, Float)), literal(1.0, Float))
    return retention_expr * (literal(IMPORTANCE_BASE, Float) + literal(IMPORTANCE_SPAN, Float) * imp)


def tier_for_score_sql(score_expr: Any, age_seconds_expr: Any, policy: TierPolicy) -> ColumnElement[str]:
    """CASE over a precomputed score (e.g. a CTE column), so the score is evaluated once per row."""
    from sqlalchemy import Float, String, case, literal

    return case(
        (age_seconds_expr < literal(policy.min_age_hours * 3600.0, Float), literal(Tier.VERBATIM.value)),
        (score_expr < literal(policy.archive_threshold, Float), literal(Tier.ARCHIVED.value)),
        (score_expr < literal(policy.gist_threshold, Float), literal(Tier.GIST.value)),
        (score_expr < literal(policy.summary_threshold, Float), literal(Tier.SUMMARY.value)),
        else_=literal(Tier.VERBATIM.value),
    ).cast(String)


def tier_case_sql(
    retention_expr: Any, importance_col: Any, age_seconds_expr: Any, policy: TierPolicy
) -> ColumnElement[str]:
    """CASE expression equal to `target_tier` row by row. retention_expr is usually
    `retention_sql(...)`; age_seconds_expr `elapsed_seconds_sql(now, Memory.recorded_at)`."""
    return tier_for_score_sql(tier_score_sql(retention_expr, importance_col), age_seconds_expr, policy)


def tier_rank_sql(tier_expr: Any) -> ColumnElement[int]:
    from sqlalchemy import case

    return case({t.value: i for i, t in enumerate(TIERS)}, value=tier_expr)


def demote_sql(current_col: Any, target_expr: Any) -> ColumnElement[str]:
    """SQL twin of `demote`: target when it is further along than current, else current."""
    from sqlalchemy import case

    return case((tier_rank_sql(target_expr) > tier_rank_sql(current_col), target_expr), else_=current_col)

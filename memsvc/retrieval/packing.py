"""Multiple-choice knapsack for the context builder (DESIGN.md section 5).

Each candidate memory may enter the context at most once, at one fidelity (verbatim, summary, gist,
...); each fidelity is an :class:`Option` with a token cost and a value. :func:`pack` picks at most one
option per candidate to maximise the total value with the total tokens <= budget.

Costs are assumed additive. The context joins rendered items with newlines, so the caller should put
everything an item adds to the rendered context into its ``tokens``: the item's own line plus the
separator (count ``line + "\\n"``). BPE can merge across a join, so the rendered total may still differ
by a token or two from the sum; the caller must recount the rendered context and trim on overshoot.

Two methods, reported in :attr:`Packing.method`:

* ``"dp"``, exact: dynamic programming over capacities 0..budget, one numpy pass per option, used while
  ``candidates * (budget + 1) <= max_dp_cells`` (default 2e6; 200 candidates at budget 2048 is 0.4e6).
* ``"greedy"``, approximate, for larger instances: the classic LP-relaxation greedy of the MCKP
  (per candidate, upgrades along the upper convex hull of (tokens, value), taken in decreasing value
  per token), then an upgrade pass that spends what is left on the best single improvement, repeated;
  finally the best single option if that alone is worth more. This is >= 1/2 of the optimum: the LP
  optimum is at most the greedy value plus the value of the one upgrade that did not fit, and that is
  at most one option's value.

Conventions: a budget <= 0 gives an empty packing; options with tokens > budget or value <= 0 are never
taken (a zero-value item would only spend tokens); zero-token options with positive value are free.
Ties are broken deterministically: not taking beats taking at equal value, earlier candidates beat
later ones, and cheaper (then earlier-listed) options beat others of the same candidate.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Candidate", "Option", "Packing", "pack"]

DEFAULT_MAX_DP_CELLS = 2_000_000


@dataclass(frozen=True, slots=True)
class Option:
    fidelity: str
    tokens: int
    value: float


@dataclass(frozen=True, slots=True)
class Candidate:
    id: Hashable  # memory id: str or uuid.UUID, anything hashable and unique within one pack() call
    options: Sequence[Option]


@dataclass(frozen=True, slots=True)
class Packing:
    chosen: dict[Hashable, Option] = field(default_factory=dict)  # in candidate order
    total_tokens: int = 0
    total_value: float = 0.0
    method: str = "empty"  # "dp", "greedy" or "empty" (nothing could be packed)


# A candidate's useful options, as (tokens, value, option), tokens ascending and value strictly
# ascending: an option no better than a cheaper one can never be needed.
_Group = list[tuple[int, float, Option]]


def pack(candidates: Sequence[Candidate], budget: int, *, max_dp_cells: int = DEFAULT_MAX_DP_CELLS) -> Packing:
    """Choose at most one option per candidate maximising total value with total tokens <= budget."""
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("candidate ids must be unique")
    for cand in candidates:
        for opt in cand.options:
            if not isinstance(opt.tokens, int | np.integer) or opt.tokens < 0:
                raise ValueError(f"{cand.id!r}: option tokens must be a non-negative int, got {opt.tokens!r}")
            if not math.isfinite(opt.value):
                raise ValueError(f"{cand.id!r}: option value must be finite, got {opt.value!r}")
    if budget <= 0:
        return Packing()
    kept = [(i, g) for i, c in enumerate(candidates) if (g := _useful_options(c.options, budget))]
    if not kept:
        return Packing()
    groups = [g for _, g in kept]
    if len(groups) * (budget + 1) <= max_dp_cells:
        picks, method = _dp(groups, budget), "dp"
    else:
        picks, method = _greedy(groups, budget), "greedy"
    chosen = {candidates[i].id: groups[k][j][2] for k, (i, _) in enumerate(kept) if (j := picks[k]) >= 0}
    if not chosen:
        return Packing()
    return Packing(
        chosen=chosen,
        total_tokens=sum(o.tokens for o in chosen.values()),
        total_value=math.fsum(o.value for o in chosen.values()),
        method=method,
    )


def _useful_options(options: Sequence[Option], budget: int) -> _Group:
    ranked = sorted(
        (o for o in options if o.tokens <= budget and o.value > 0),
        key=lambda o: o.tokens,  # stable: equal costs keep the caller's order
    )
    group: _Group = []
    for opt in ranked:
        if not group or opt.value > group[-1][1]:
            if group and group[-1][0] == opt.tokens:
                group.pop()  # same cost, strictly more value
            group.append((int(opt.tokens), float(opt.value), opt))
    return group


def _dp(groups: list[_Group], budget: int) -> list[int]:
    """Exact: table[g, c] = best value within capacity c using the first g groups.

    Only np.maximum in the forward pass (a masked argmax is several times slower); the choices are
    recovered by re-deriving which term produced each maximum, which is exact because np.maximum
    returns one of its float inputs unchanged.
    """
    width = budget + 1
    table = np.zeros((len(groups) + 1, width))
    scratch = np.empty(width)
    for g, group in enumerate(groups, start=1):
        prev, best = table[g - 1], table[g]
        best[:] = prev
        for tokens, value, _ in group:
            span = width - tokens
            np.add(prev[:span], value, out=scratch[:span])
            np.maximum(best[tokens:], scratch[:span], out=best[tokens:])
    picks = [-1] * len(groups)
    cap = budget
    for g in range(len(groups), 0, -1):
        target = float(table[g, cap])
        if target == float(table[g - 1, cap]):
            continue  # not taking wins ties
        for j, (tokens, value, _) in enumerate(groups[g - 1]):  # the first maximal option wins ties
            if tokens <= cap and float(table[g - 1, cap - tokens]) + value == target:
                picks[g - 1] = j
                cap -= tokens
                break
        else:
            raise RuntimeError("knapsack backtrack found no option for a table entry")
    return picks


def _hull(group: _Group) -> list[int]:
    """Indices of the group's options on the upper convex hull from (0, 0), in order of cost.

    Along the hull each upgrade's value per token falls, so taking upgrades by decreasing density
    never takes one before the one it builds on.
    """
    hull: list[int] = []
    for j, (tokens, value, _) in enumerate(group):
        while hull:
            t1, v1 = group[hull[-2]][:2] if len(hull) > 1 else (0, 0.0)
            t2, v2 = group[hull[-1]][:2]
            # drop the last point if it lies on or below the segment from its predecessor to this one
            if (v2 - v1) * (tokens - t1) <= (value - v1) * (t2 - t1):
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def _greedy(groups: list[_Group], budget: int) -> list[int]:
    picks = [-1] * len(groups)
    left = budget
    upgrades: list[tuple[float, int, int, int, int]] = []  # (-density, group, hull step, option, tokens)
    for g, group in enumerate(groups):
        prev_t, prev_v = 0, 0.0
        for step, j in enumerate(_hull(group)):
            tokens, value, _ = group[j]
            dt, dv = tokens - prev_t, value - prev_v
            upgrades.append((-(dv / dt) if dt else -math.inf, g, step, j, dt))
            prev_t, prev_v = tokens, value
    upgrades.sort()  # density, then candidate order, then hull step: (group, step) is unique
    level = [0] * len(groups)  # hull steps taken per group
    blocked = [False] * len(groups)
    for _, g, step, j, dt in upgrades:
        if blocked[g] or step != level[g]:
            continue
        if dt <= left:
            picks[g], level[g], left = j, step + 1, left - int(dt)
        else:
            blocked[g] = True  # later steps of this group cost even more
    _upgrade(groups, picks, left)
    greedy_value = sum(groups[g][j][1] for g, j in enumerate(picks) if j >= 0)
    # The 1/2 guarantee: the single most valuable option beats a greedy that was badly blocked.
    g_best, j_best = max(
        ((g, len(group) - 1) for g, group in enumerate(groups)), key=lambda gj: (groups[gj[0]][gj[1]][1], -gj[0])
    )
    if groups[g_best][j_best][1] > greedy_value:
        picks = [-1] * len(groups)
        picks[g_best] = j_best
        _upgrade(groups, picks, budget - groups[g_best][j_best][0])
    return picks


def _upgrade(groups: list[_Group], picks: list[int], left: int) -> None:
    """Spend the leftover budget on the best single move (add a candidate or upgrade one), repeatedly.

    A heap of moves by gain: a move that does not fit now never will (the budget only shrinks), and a
    move made stale by an earlier move of its group is dropped; a group that moves offers new ones.
    """
    heap: list[tuple[float, int, int, int]] = []  # (-gain, group, option, pick it starts from)

    def offer(g: int) -> None:
        group, cur = groups[g], picks[g]
        cur_t, cur_v = (group[cur][0], group[cur][1]) if cur >= 0 else (0, 0.0)
        for j in range(cur + 1, len(group)):  # options above the current one cost more
            if group[j][0] - cur_t > left:
                break
            heapq.heappush(heap, (cur_v - group[j][1], g, j, cur))

    for g in range(len(groups)):
        offer(g)
    while heap:
        _, g, j, start = heapq.heappop(heap)
        dt = groups[g][j][0] - (groups[g][start][0] if start >= 0 else 0)
        if picks[g] != start or dt > left:
            continue
        picks[g] = j
        left -= dt
        offer(g)

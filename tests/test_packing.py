"""Multiple-choice knapsack: exact DP against brute force, greedy bounds, conventions and edge cases."""

from __future__ import annotations

import itertools
import random
import statistics
import time
import uuid
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsvc.retrieval.packing import Candidate, Option, Packing, pack

# Stated quality of the greedy path: never below 1/2 of the optimum (proved in the module docstring),
# and on random small instances at least this on average (0.995 measured over 3000 instances).
GREEDY_MEAN_RATIO = 0.97


def brute_force(candidates: Sequence[Candidate], budget: int) -> float:
    if budget <= 0:
        return 0.0
    best = 0.0
    for combo in itertools.product(*[[None, *c.options] for c in candidates]):
        chosen = [o for o in combo if o is not None and o.value > 0]
        if sum(o.tokens for o in chosen) <= budget:
            best = max(best, sum(o.value for o in chosen))
    return best


options = st.builds(
    Option,
    fidelity=st.sampled_from(["verbatim", "summary", "gist"]),
    tokens=st.integers(min_value=0, max_value=30),
    value=st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=10.0, allow_nan=False)),
)
instances = st.lists(st.lists(options, max_size=3), max_size=6).map(
    lambda groups: [Candidate(f"c{i}", opts) for i, opts in enumerate(groups)]
)
budgets = st.integers(min_value=0, max_value=60)


def check_valid(result: Packing, candidates: Sequence[Candidate], budget: int) -> None:
    by_id = {c.id: c for c in candidates}
    assert set(result.chosen) <= set(by_id)  # a dict: each candidate at most once
    for cid, opt in result.chosen.items():
        assert any(opt is o for o in by_id[cid].options)
        assert opt.value > 0
    assert result.total_tokens == sum(o.tokens for o in result.chosen.values())
    assert result.total_value == pytest.approx(sum(o.value for o in result.chosen.values()))
    assert result.total_tokens <= max(budget, 0)
    order = [c.id for c in candidates if c.id in result.chosen]
    assert list(result.chosen) == order


@settings(max_examples=400, deadline=None)
@given(candidates=instances, budget=budgets)
def test_dp_matches_brute_force(candidates: list[Candidate], budget: int) -> None:
    result = pack(candidates, budget)
    check_valid(result, candidates, budget)
    assert result.method in ("dp", "empty")
    assert result.total_value == pytest.approx(brute_force(candidates, budget), rel=1e-9, abs=1e-9)


@settings(max_examples=400, deadline=None)
@given(candidates=instances, budget=budgets)
def test_greedy_within_budget_and_half_optimal(candidates: list[Candidate], budget: int) -> None:
    result = pack(candidates, budget, max_dp_cells=0)
    check_valid(result, candidates, budget)
    assert result.method in ("greedy", "empty")
    assert result.total_value >= 0.5 * brute_force(candidates, budget) - 1e-9


def test_greedy_quality_on_random_instances() -> None:
    rng = random.Random(7)
    ratios = []
    for _ in range(500):
        candidates = [
            Candidate(f"c{i}", [Option(f"f{k}", rng.randint(0, 30), rng.uniform(0, 10)) for k in range(n_opts)])
            for i, n_opts in enumerate(rng.randint(0, 3) for _ in range(rng.randint(1, 6)))
        ]
        budget = rng.randint(1, 60)
        best = brute_force(candidates, budget)
        if best > 0:
            ratios.append(pack(candidates, budget, max_dp_cells=0).total_value / best)
    assert min(ratios) >= 0.5
    assert statistics.mean(ratios) >= GREEDY_MEAN_RATIO


def realistic(n: int, seed: int) -> list[Candidate]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        verbatim = rng.randint(20, 300)
        summary = max(8, verbatim // rng.randint(2, 5))
        gist = max(4, summary // rng.randint(2, 4))
        score = rng.random()
        fidelities = [("verbatim", verbatim, score), ("summary", summary, 0.7 * score), ("gist", gist, 0.4 * score)]
        out.append(Candidate(f"m{i}", [Option(*f) for f in fidelities]))
    return out


def test_greedy_close_to_dp_on_context_sized_instances() -> None:
    for seed in range(5):
        candidates = realistic(200, seed)
        for budget in (256, 1024, 2048):
            exact = pack(candidates, budget)
            greedy = pack(candidates, budget, max_dp_cells=0)
            assert exact.method == "dp" and greedy.method == "greedy"
            check_valid(greedy, candidates, budget)
            assert greedy.total_value <= exact.total_value + 1e-9
            assert greedy.total_value >= 0.97 * exact.total_value


def test_large_instance_switches_to_greedy() -> None:
    candidates = realistic(1000, 1)
    result = pack(candidates, 8192)  # 1000 * 8193 cells > 2e6
    assert result.method == "greedy"
    check_valid(result, candidates, 8192)
    assert result.total_tokens > 8192 - 300  # it fills the budget up to about one item


def test_context_sized_instance_is_fast() -> None:
    candidates = realistic(200, 0)
    pack(candidates, 2048)
    start = time.perf_counter()
    result = pack(candidates, 2048)
    elapsed = time.perf_counter() - start
    assert result.method == "dp"
    assert elapsed < 0.5  # ~2-3 ms when the machine is not loaded; this only catches blow-ups


@pytest.mark.parametrize("budget", [0, -1, -100])
def test_no_budget_gives_empty_packing(budget: int) -> None:
    candidates = [Candidate("a", [Option("gist", 0, 1.0), Option("verbatim", 5, 2.0)])]
    assert pack(candidates, budget) == Packing()


def test_empty_inputs() -> None:
    assert pack([], 100) == Packing()
    assert pack([Candidate("a", [])], 100) == Packing()


def test_options_over_budget_are_skipped() -> None:
    candidates = [Candidate("a", [Option("verbatim", 500, 9.0), Option("gist", 10, 1.0)])]
    result = pack(candidates, 100)
    assert result.chosen == {"a": Option("gist", 10, 1.0)}
    assert pack([Candidate("a", [Option("verbatim", 500, 9.0)])], 100) == Packing()


def test_zero_value_options_are_not_taken() -> None:
    candidates = [Candidate("a", [Option("verbatim", 1, 0.0)]), Candidate("b", [Option("gist", 1, -1.0)])]
    assert pack(candidates, 100) == Packing()


def test_zero_token_options_are_free() -> None:
    candidates = [Candidate("a", [Option("token", 0, 0.5)]), Candidate("b", [Option("verbatim", 10, 1.0)])]
    for method_cells in (None, 0):
        kwargs = {} if method_cells is None else {"max_dp_cells": method_cells}
        result = pack(candidates, 10, **kwargs)
        assert set(result.chosen) == {"a", "b"}
        assert result.total_tokens == 10


def test_upgrades_to_the_best_fidelity_that_fits() -> None:
    opts = [Option("gist", 5, 1.0), Option("summary", 20, 3.0), Option("verbatim", 60, 4.0)]
    for budget, fidelity in ((4, None), (5, "gist"), (25, "summary"), (60, "verbatim")):
        result = pack([Candidate("a", opts)], budget)
        assert (result.chosen["a"].fidelity if result.chosen else None) == fidelity


@pytest.mark.parametrize("cells", [None, 0])
def test_ties_prefer_earlier_candidates_and_options(cells: int | None) -> None:
    kwargs = {} if cells is None else {"max_dp_cells": cells}
    same = [Option("summary", 10, 1.0)]
    result = pack([Candidate("first", same), Candidate("second", same)], 15, **kwargs)
    assert list(result.chosen) == ["first"]
    twins = [Option("summary", 10, 1.0), Option("gist", 10, 1.0)]
    assert pack([Candidate("a", twins)], 10, **kwargs).chosen["a"].fidelity == "summary"


def test_deterministic_and_accepts_uuid_ids() -> None:
    candidates = realistic(50, 3)
    candidates = [Candidate(uuid.UUID(int=i), c.options) for i, c in enumerate(candidates)]
    first = pack(candidates, 700)
    assert first == pack(candidates, 700)
    assert all(isinstance(k, uuid.UUID) for k in first.chosen)


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        pack([Candidate("a", []), Candidate("a", [])], 10)
    with pytest.raises(ValueError, match="tokens"):
        pack([Candidate("a", [Option("gist", -1, 1.0)])], 10)
    with pytest.raises(ValueError, match="tokens"):
        pack([Candidate("a", [Option("gist", 1.5, 1.0)])], 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value"):
        pack([Candidate("a", [Option("gist", 1, float("nan"))])], 10)

"""Profit-share rules (settlement/shares.py): hand-computed equal and proportional splits,
Shapley values against brute force over all permutations, the Monte-Carlo bound, and
properties of every rule."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerwatt.errors import InputError
from settlement.shares import (
    SHARE_RULES,
    ShareResult,
    compute_shares,
    equal_shares,
    proportional_shares,
    rollover,
    shapley_exact,
    shapley_monte_carlo,
    shapley_shares,
)

# ------------------------------------------------------------------ a naive reference game


def naive_cost(x: Sequence[Sequence[int]], pi: Sequence[int], pe: Sequence[int], coalition: frozenset[int]) -> int:
    """cost(S) in Wh x base units per kWh, straight from the definition."""
    total = 0
    for t in range(len(pi)):
        y = sum(x[n][t] for n in coalition)
        total += pi[t] * max(-y, 0) - pe[t] * max(y, 0)
    return total


def brute_force_shapley(x: Sequence[Sequence[int]], pi: Sequence[int], pe: Sequence[int]) -> list[Fraction]:
    """Average marginal contribution over all n! orders, in base units."""
    n = len(x)
    cache: dict[frozenset[int], int] = {}

    def value(coalition: frozenset[int]) -> int:
        if coalition not in cache:
            singles = sum(naive_cost(x, pi, pe, frozenset([m])) for m in coalition)
            cache[coalition] = singles - naive_cost(x, pi, pe, coalition)
        return cache[coalition]

    totals = [0] * n
    for order in itertools.permutations(range(n)):
        before: frozenset[int] = frozenset()
        for member in order:
            totals[member] += value(before | {member}) - value(before)
            before = before | {member}
    return [Fraction(total, math.factorial(n) * 1000) for total in totals]


def random_game(seed: int, members: int, slots: int, scale: int = 5000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(-scale, scale, size=(members, slots))
    x[rng.random(size=x.shape) < 0.2] = 0
    pe = rng.integers(0, 100_000, size=slots)
    pi = pe + rng.integers(1, 300_000, size=slots)
    return x, pi, pe


# --------------------------------------------------------------- equal and proportional


def test_equal_shares_hand_computed() -> None:
    # 10 // 3 = 3, remainder 1 -> the lowest id (3) gets one more
    assert equal_shares(10, [5, 3, 9]) == {3: 4, 5: 3, 9: 3}
    # 2 // 4 = 0, remainder 2 -> ids 1 and 2
    assert equal_shares(2, [4, 2, 1, 8]) == {1: 1, 2: 1, 4: 0, 8: 0}
    assert equal_shares(9, [0, 1, 2]) == {0: 3, 1: 3, 2: 3}
    assert equal_shares(0, [7]) == {7: 0}


def test_proportional_shares_hand_computed() -> None:
    # 100 * 1/3 = 33.3 each: 99 paid, 1 rolls over to the next period
    assert proportional_shares(100, {3: 1, 1: 1, 2: 1}) == {1: 33, 2: 33, 3: 33}
    assert rollover(100, proportional_shares(100, {3: 1, 1: 1, 2: 1})) == 1
    # C = 7: id 7 -> floor(10*4/7) = floor(5.71) = 5; id 5 -> floor(10*3/7) = floor(4.29) = 4;
    # id 2 (c = 0) -> 0; 1 rolls over
    assert proportional_shares(10, {7: 4, 2: 0, 5: 3}) == {2: 0, 5: 4, 7: 5}
    # C = 0 -> nothing is paid: the whole pot rolls over
    assert proportional_shares(5, {9: 0, 4: 0}) == {4: 0, 9: 0}
    # 1 base unit, contributions 1 and 1000: floor(1/1001) = 0, floor(1000/1001) = 0
    assert proportional_shares(1, {1: 1, 2: 1000}) == {1: 0, 2: 0}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: equal_shares(10, []), "no members"),
        (lambda: equal_shares(10, [1, 1]), "duplicate"),
        (lambda: equal_shares(-1, [1]), "pot must be >= 0"),
        (lambda: proportional_shares(10, {1: -3}), "contribution must be >= 0"),
        (lambda: compute_shares("equal", 10), "needs the members"),
        (lambda: compute_shares("proportional", 10), "needs the contributions"),
        (lambda: compute_shares("shapley", 10, members=[1]), "needs the net exports"),
        (lambda: compute_shares("lottery", 10, members=[1]), "unknown share rule"),  # type: ignore[arg-type]
        (lambda: shapley_exact(np.zeros((17, 1), dtype=int), 2, 1), "at most 16"),
        (lambda: shapley_exact([[1.5]], 2, 1), "integer Wh"),
        (lambda: shapley_exact([[1]], 1, 2), "export_price <= import_price"),
        (lambda: shapley_shares(10, [[1], [2]], 2, 1, members=[5]), "1 member ids for 2 rows"),
        (lambda: shapley_monte_carlo([[1]], 2, 1, samples=0), "samples must be >= 1"),
        (lambda: shapley_exact([[1, 2]], [3, 4, 5], 1), "one per slot"),
        (lambda: shapley_shares(10, [1, 2], 2, 1), "members x slots"),
    ],
)
def test_bad_input(call: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()  # type: ignore[operator]


# ------------------------------------------------------------------------ exact Shapley


def test_shapley_hand_computed() -> None:
    # one slot, Pi = 300_000, Pe = 100_000 (300 and 100 base units per Wh); A exports 1000,
    # B and C import 1000 each. cost in base units: A -100_000, B 300_000, C 300_000;
    # v(AB) = v(AC) = -100_000 + 300_000 - 0 = 200_000; v(BC) = 600_000 - 600_000 = 0;
    # v(ABC) = 500_000 - cost(-1000 net) = 500_000 - 300_000 = 200_000.
    # A's marginals over the 6 orders: 0, 0 (first), 200_000 (after B), 200_000 (after C),
    # 200_000, 200_000 (last, v(ABC) - v(BC)) -> 800_000/6 = 400_000/3.
    # B: 200_000 only in order A, B, C -> 200_000/6 = 100_000/3; C likewise.
    x = [[1000], [-1000], [-1000]]
    assert shapley_exact(x, 300_000, 100_000) == [Fraction(400_000, 3), Fraction(100_000, 3), Fraction(100_000, 3)]
    # pot 1000 in the ratio 4:1:1: floor(4000/6) = 666, floor(1000/6) = 166, 166; remainder
    # 1000 - 998 = 2 -> one each to the lowest ids with a positive value: 0 and 1
    assert shapley_shares(1000, x, 300_000, 100_000) == ShareResult({0: 667, 1: 167, 2: 166}, 0, "exact")
    # the same rows named 30, 10, 20: remainder to 10 and 20
    result = shapley_shares(1000, x, 300_000, 100_000, members=[30, 10, 20])
    assert result.shares == {10: 167, 20: 167, 30: 666}


@pytest.mark.parametrize("members", [3, 4, 5, 6])
@pytest.mark.parametrize("seed", [1, 2])
def test_exact_shapley_matches_brute_force(members: int, seed: int) -> None:
    x, pi, pe = random_game(seed, members, slots=4)
    assert shapley_exact(x, pi, pe) == brute_force_shapley(x.tolist(), pi.tolist(), pe.tolist())


def test_exact_shapley_beyond_int64_is_still_exact() -> None:
    """Values past 2^62 take the Python-int path."""
    x = [[2**39, -(2**39) + 5, 0], [-(2**38), 2**39 - 1, 3], [123, -(2**39), -(2**39)]]
    pi, pe = [2**32 - 1, 2**31, 7], [2**31 - 3, 0, 6]
    assert shapley_exact(x, pi, pe) == brute_force_shapley(x, pi, pe)


def test_shapley_axioms() -> None:
    x, pi, pe = random_game(7, 6, slots=12)
    x[3] = x[1]  # 1 and 3 are identical
    x[5] = 0  # 5 never trades
    phi = shapley_exact(x, pi, pe)
    grand = naive_cost(x.tolist(), pi.tolist(), pe.tolist(), frozenset(range(6)))
    singles = sum(naive_cost(x.tolist(), pi.tolist(), pe.tolist(), frozenset([n])) for n in range(6))
    assert sum(phi) == Fraction(singles - grand, 1000)  # efficiency: sum phi == v(N)
    assert phi[1] == phi[3]  # symmetry
    assert phi[5] == 0  # null player
    assert all(value >= 0 for value in phi)  # marginal contributions are never negative


def test_exact_twelve_members_is_fast() -> None:
    x, pi, pe = random_game(3, 12, slots=96)
    start = time.perf_counter()
    phi = shapley_exact(x, pi, pe)
    assert time.perf_counter() - start < 1.0
    assert len(phi) == 12


# ---------------------------------------------------------------------------- Monte Carlo


def test_monte_carlo_within_its_bound_and_deterministic() -> None:
    x, pi, pe = random_game(11, 8, slots=96)
    exact = shapley_exact(x, pi, pe)
    estimate = shapley_monte_carlo(x, pi, pe, samples=500, seed=42)
    for value, phi, bound in zip(estimate.values, exact, estimate.error_bounds):
        assert abs(value - float(phi)) <= bound
    # R_n = sum_t (Pi_t - Pe_t) |x[n, t]| / 1000, times sqrt(ln(2*8/0.05) / (2*500))
    spread = math.sqrt(math.log(16 / 0.05) / 1000)
    ranges = [sum(int(pi[t] - pe[t]) * abs(int(x[n, t])) for t in range(96)) / 1000 for n in range(8)]
    assert estimate.error_bounds == pytest.approx([r * spread for r in ranges])
    assert list(estimate.values) == [float(Fraction(s, 500 * 1000)) for s in estimate.marginal_sums]
    again = shapley_monte_carlo(x, pi, pe, samples=500, seed=42)
    assert again.marginal_sums == estimate.marginal_sums
    other = shapley_monte_carlo(x, pi, pe, samples=500, seed=43)
    assert other.marginal_sums != estimate.marginal_sums


def test_monte_carlo_float_path_beyond_int64() -> None:
    x = [[2**39, -(2**39)], [-(2**39), 2**39], [2**38, 0]]
    pi, pe = [2**32 - 1, 2**32 - 1], [1, 2]
    exact = shapley_exact(x, pi, pe)
    estimate = shapley_monte_carlo(x, pi, pe, samples=200_000)
    assert isinstance(estimate.marginal_sums[0], float)
    assert all(abs(v - float(p)) <= b for v, p, b in zip(estimate.values, exact, estimate.error_bounds))


def test_monte_carlo_two_hundred_members_is_fast() -> None:
    x, pi, pe = random_game(5, 200, slots=96)
    start = time.perf_counter()
    result = shapley_shares(10**9, x, pi, pe)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, elapsed
    assert result.method == "monte-carlo" and result.error_bound > 0
    assert sum(result.shares.values()) == 10**9


def test_shapley_shares_switch_to_sampling_above_the_limit() -> None:
    x, pi, pe = random_game(9, 5, slots=8)
    assert shapley_shares(999, x, pi, pe).method == "exact"
    sampled = shapley_shares(999, x, pi, pe, exact_limit=4, samples=300, seed=1)
    assert sampled.method == "monte-carlo" and sampled.error_bound > 0
    assert sampled == shapley_shares(999, x, pi, pe, exact_limit=4, samples=300, seed=1)


def test_no_savings_means_equal_shares() -> None:
    # everyone imports in every slot: pooling saves nothing, every Shapley value is 0
    x = [[-10, -20], [-5, 0], [0, -1]]
    assert shapley_exact(x, [300, 300], [100, 100]) == [0, 0, 0]
    assert shapley_shares(10, x, [300, 300], [100, 100]).shares == {0: 4, 1: 3, 2: 3}


# ----------------------------------------------------------------------------- properties

pots = st.integers(0, 10**15) | st.integers(0, 20)


@settings(max_examples=300, deadline=None)
@given(pot=pots, members=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40, unique=True))
def test_equal_shares_sum_to_the_pot(pot: int, members: list[int]) -> None:
    shares = compute_shares("equal", pot, members=members).shares
    assert sum(shares.values()) == pot and min(shares.values()) >= 0
    assert max(shares.values()) - min(shares.values()) <= 1


@settings(max_examples=300, deadline=None)
@given(
    pot=pots,
    contributions=st.dictionaries(
        st.integers(0, 2**32 - 1), st.integers(0, 2**64) | st.integers(0, 3), min_size=1, max_size=40
    ),
)
def test_proportional_shares_leave_less_than_one_unit_per_contributor(
    pot: int, contributions: dict[int, int]
) -> None:
    shares = compute_shares("proportional", pot, contributions=contributions).shares
    total = sum(contributions.values())
    contributors = sum(1 for c in contributions.values() if c > 0)
    assert min(shares.values()) >= 0
    assert 0 <= rollover(pot, shares) < max(contributors, 1) if total else rollover(pot, shares) == pot
    for member, share in shares.items():
        assert share == (pot * contributions[member] // total if total else 0)


games = st.integers(1, 5).flatmap(
    lambda n: st.integers(1, 4).flatmap(
        lambda t: st.tuples(
            st.lists(st.lists(st.integers(-(10**6), 10**6), min_size=t, max_size=t), min_size=n, max_size=n),
            st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=t, max_size=t),
        )
    )
)


@settings(max_examples=150, deadline=None)
@given(pot=pots, game=games, sampled=st.booleans())
def test_shapley_shares_sum_to_the_pot(
    pot: int, game: tuple[list[list[int]], list[tuple[int, int]]], sampled: bool
) -> None:
    x, tariffs = game
    pe = [low for low, _ in tariffs]
    pi = [low + extra for low, extra in tariffs]
    result = compute_shares(
        "shapley", pot, net_export_wh=x, import_price=pi, export_price=pe, exact_limit=0 if sampled else 12, samples=50
    )
    assert result.method == ("monte-carlo" if sampled else "exact")
    assert sum(result.shares.values()) == pot and min(result.shares.values()) >= 0


def test_rules_are_the_contracts_enum_in_order() -> None:
    assert SHARE_RULES == ("equal", "proportional", "shapley")  # ICommunitySettlement.ShareRule

"""Profit-share rules (DESIGN.md sections 1 and 6): a period's savings pot, in token base units,
split among members by a published rule so that the shares are integers >= 0 summing exactly
to the pot.

- ``"equal"`` (:func:`equal_shares`) and ``"proportional"`` (:func:`proportional_shares`) are
  cheap enough for the contract to recompute; their rounding is specified to the base unit.
- ``"shapley"`` (:func:`shapley_shares`) splits the pot in proportion to each member's Shapley
  value in the coalition game of metered netting, computed off chain (exactly up to
  ``exact_limit`` members, by permutation sampling with a stated error bound beyond) and then
  scaled to the pot with the proportional rule's rounding.

The netting game. Members' signed net exports ``x[n, t]`` (Wh, positive = export) and
per-slot tariffs ``Pi[t] >= Pe[t] >= 0`` (base units per kWh). A coalition trading with the
supplier alone pays, in exact integers of Wh x base units per kWh (1000 per base unit),

    tariff_cost(y) = Pi*max(-y, 0) - Pe*max(y, 0)            for a net export y,
    cost(S) = sum_t tariff_cost_t(sum_{n in S} x[n, t]),
    v(S) = sum_{n in S} cost({n}) - cost(S)                   (the savings of pooling).

``tariff_cost_t`` is convex (slope -Pi below 0, -Pe above, and -Pi <= -Pe) and positively
homogeneous, hence subadditive, so ``v(S) >= 0``. Shapley values are reported in base units
(``v / 1000``).

**Marginal contributions lie in [0, R_n]**, ``R_n = sum_t (Pi_t - Pe_t) * |x[n, t]|``. Adding
member n (flow ``x``) to a coalition with flow ``a`` changes ``v`` by
``cost({n}) - (cost(P + n) - cost(P)) = sum_t [f_t(x) - (f_t(a + x) - f_t(a))]``. The slopes of
the convex ``f_t`` lie in ``[-Pi, -Pe]``, so for ``x >= 0``:
``f_t(a + x) - f_t(a)`` is in ``[-Pi*x, -Pe*x]``, and ``f_t(x) = -Pe*x`` is the top of that
interval; for ``x < 0``: ``f_t(a + x) - f_t(a)`` is in ``[Pe*|x|, Pi*|x|]`` and
``f_t(x) = Pi*|x|`` is its top. Either way each slot's term lies in ``[0, (Pi_t - Pe_t)*|x|]``,
whatever the coalition. Consequently every Shapley value (an average of marginal
contributions) is >= 0 and the Monte-Carlo estimate is too; no clipping is ever needed (the
shares clip anyway, for safety).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, NamedTuple, get_args

import numpy as np

from peerwatt.errors import InputError
from peerwatt.units import WH_PER_KWH

ShareRule = Literal["equal", "proportional", "shapley"]
# position == the code of ICommunitySettlement.ShareRule (Equal = 0, Proportional = 1, Shapley = 2)
SHARE_RULES: tuple[ShareRule, ...] = get_args(ShareRule)

DEFAULT_EXACT_LIMIT = 12  # members up to which shapley_shares enumerates all 2^n coalitions
MAX_EXACT_MEMBERS = 16  # shapley_exact refuses more (2^16 coalitions x T slots)
DEFAULT_SAMPLES = 4000  # permutations: 200 members x 96 slots in under a second
DEFAULT_DELTA = 0.05  # the Monte-Carlo bound holds with probability >= 1 - delta
_INT64_SAFE = 2**62  # bound below which int64 sums of the game's values cannot overflow
_BATCH_ELEMENTS = 2**20  # permutations x members x slots held at once in shapley_monte_carlo


class ShareResult(NamedTuple):
    """Shares by member id; ``error_bound`` (base units) bounds, with probability >= 1 - delta,
    every member's Shapley-value error for ``method == "monte-carlo"`` and is 0 otherwise."""

    shares: dict[int, int]
    error_bound: int
    method: str  # "equal", "proportional", "exact" or "monte-carlo"


# ----------------------------------------------------------------------------- inputs


def _non_negative(name: str, value: int) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise InputError(f"{name} must be >= 0, got {number}")
    return number


def _member_ids(members: Iterable[int]) -> list[int]:
    ids = [_non_negative("member id", member) for member in members]
    if len(set(ids)) != len(ids):
        raise InputError(f"duplicate member ids in {ids}")
    if not ids:
        raise InputError("no members to share the pot among")
    return ids


# ----------------------------------------------------------------- equal and proportional


def equal_shares(pot: int, members: Iterable[int]) -> dict[int, int]:
    """Equal shares: each of the ``n`` members gets ``pot // n``; the remainder ``pot % n`` goes
    one base unit each to the ``pot % n`` members with the lowest ids.

    That is, with the ids sorted ascending as ``m_0 < m_1 < ... < m_{n-1}``:
    ``share(m_k) = pot // n + (1 if k < pot % n else 0)``. Member ids are distinct integers >= 0;
    the result is keyed by them (in ascending order).
    """
    pot = _non_negative("pot", pot)
    ids = sorted(_member_ids(members))
    base, extra = divmod(pot, len(ids))
    return {member: base + (1 if rank < extra else 0) for rank, member in enumerate(ids)}


def proportional_shares(pot: int, contributions: Mapping[int, int]) -> dict[int, int]:
    """Shares in proportion to integer contributions ``c_n >= 0`` (``C = sum c_n``), exactly as
    ``CommunitySettlement`` recomputes them: ``share_n = (pot * c_n) // C``. What the floors
    leave (less than the number of members with ``c_n > 0``), or the whole pot if ``C == 0``,
    is not paid: it rolls over to the next period's pot (:func:`rollover`)."""
    pot = _non_negative("pot", pot)
    ids = sorted(_member_ids(contributions))
    weights = {member: _non_negative("contribution", contributions[member]) for member in ids}
    total = sum(weights.values())
    return {member: pot * weights[member] // total if total else 0 for member in ids}


def rollover(pot: int, shares: Mapping[int, int]) -> int:
    """What a period's distribution leaves in the pot for the next period."""
    return pot - sum(shares.values())


def _scaled_to_pot(pot: int, weights: Mapping[int, int]) -> dict[int, int]:
    """``pot`` split in proportion to ``weights`` (equal if all are 0), summing exactly to it:
    floors first, then one base unit each to the members with a positive weight in ascending id
    order until the remainder is used up (posted Shapley shares must sum to the pot)."""
    ids = sorted(weights)
    total = sum(weights.values())
    if total == 0:
        return equal_shares(pot, ids)
    shares = {member: pot * weights[member] // total for member in ids}
    remainder = pot - sum(shares.values())
    for member in ids:
        if remainder == 0:
            break
        if weights[member] > 0:
            shares[member] += 1
            remainder -= 1
    return shares


# ----------------------------------------------------------------------------- the game


@dataclass(frozen=True)
class _Game:
    """Validated inputs: ``x`` (n x T), prices (T,), all int64, and the bound on |cost|."""

    x: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    cost_bound: int  # >= |cost(S)| for every coalition S (Wh x base units per kWh)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def dtype(self, factor: int) -> type | np.dtype:
        """int64 if ``factor * cost_bound`` fits, else Python ints (exact, slower)."""
        return np.dtype(np.int64) if factor * self.cost_bound < _INT64_SAFE else object

    def slot_cost(self, flow: np.ndarray) -> np.ndarray:
        """``tariff_cost`` of net exports ``flow`` (..., T), elementwise."""
        pi = self.import_price.astype(flow.dtype)
        pe = self.export_price.astype(flow.dtype)
        return -flow * np.where(flow < 0, pi, pe)

    def marginal_ranges(self) -> list[int]:
        """``R_n = sum_t (Pi_t - Pe_t) * |x[n, t]|`` (Wh x base units per kWh), exact."""
        spread = (self.import_price - self.export_price).astype(object)
        return [int(np.dot(np.abs(row).astype(object), spread)) for row in self.x]


def _game(net_export_wh: np.ndarray | Sequence[Sequence[int]], import_price: object, export_price: object) -> _Game:
    x = np.asarray(net_export_wh)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"net exports must be a non-empty members x slots array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"net exports must be integer Wh, got {x.dtype}")
    slots = x.shape[1]
    prices = []
    for name, value in (("import_price", import_price), ("export_price", export_price)):
        try:
            price = np.broadcast_to(np.asarray(value), (slots,))
        except ValueError:
            raise InputError(f"{name} must be one price or one per slot ({slots})") from None
        if not np.issubdtype(price.dtype, np.integer):
            raise InputError(f"{name} must be integer base units per kWh, got {price.dtype}")
        prices.append(price.astype(np.int64))
    pi, pe = prices
    if np.any(pe < 0) or np.any(pe > pi):
        raise InputError("tariffs must satisfy 0 <= export_price <= import_price in every slot")
    x64 = x.astype(np.int64)
    if not np.array_equal(x64, x) or np.any(np.abs(x64) >= 2**40):
        raise InputError("net exports must be below 2^40 Wh in magnitude")
    flow = np.abs(x64).sum(axis=0).astype(object)
    bound = int(np.dot(flow, pi.astype(object))) if slots else 0
    return _Game(x64, pi, pe, bound)


def _popcounts(masks: np.ndarray) -> np.ndarray:
    counts = np.zeros(masks.shape, dtype=np.int64)
    rest = masks.copy()
    while np.any(rest):
        counts += rest & 1
        rest >>= 1
    return counts


def _coalition_values(game: _Game) -> np.ndarray:
    """``v(S)`` for every coalition S as a bit mask (bit n = member n), exact, 2^n entries."""
    n, slots = game.x.shape
    dtype = game.dtype(4 << n)
    x = game.x.astype(dtype)
    masks = np.arange(1 << n, dtype=np.int64)
    member_bits = 1 << np.arange(n, dtype=np.int64)
    cost = np.zeros(1 << n, dtype=dtype)
    block = max(1, _BATCH_ELEMENTS // max(slots * n, 1))
    for start in range(0, 1 << n, block):
        chunk = masks[start : start + block]
        membership = ((chunk[:, None] & member_bits) != 0).astype(dtype)  # (block, n) 0/1
        cost[start : start + block] = game.slot_cost(membership @ x).sum(axis=1)
    singles = cost[member_bits]
    membership = ((masks[:, None] & member_bits) != 0).astype(dtype)
    return membership @ singles - cost


def shapley_exact(
    net_export_wh: np.ndarray | Sequence[Sequence[int]], import_price: object, export_price: object
) -> list[Fraction]:
    """Exact Shapley values (base units, as Fractions) of the netting game, members in row order.

    ``net_export_wh`` is (members x slots) signed Wh; ``import_price``/``export_price`` are
    integers per slot (or one for all). All ``2^n`` coalition values are computed at once
    (0/1 membership matrix @ x, then the tariff cost per slot), then

        phi_n = sum_{S not containing n} |S|! (n-|S|-1)! / n! * (v(S + n) - v(S)),

    accumulated as integers and divided by ``n! * 1000`` once. At most
    :data:`MAX_EXACT_MEMBERS` members.
    """
    game = _game(net_export_wh, import_price, export_price)
    n = game.n
    if n > MAX_EXACT_MEMBERS:
        raise InputError(f"exact Shapley values for {n} members: at most {MAX_EXACT_MEMBERS}")
    values = _coalition_values(game)
    masks = np.arange(1 << n, dtype=np.int64)
    sizes = _popcounts(masks)
    weights = [math.factorial(size) * math.factorial(n - 1 - size) for size in range(n)]
    denominator = math.factorial(n) * WH_PER_KWH
    phi = []
    for member in range(n):
        bit = 1 << member
        without = masks[(masks & bit) == 0]
        marginal = values[without | bit] - values[without]
        size_of = sizes[without]
        numerator = sum(weights[size] * int(marginal[size_of == size].sum()) for size in range(n))
        phi.append(Fraction(numerator, denominator))
    return phi


# ------------------------------------------------------------------------ Monte Carlo


@dataclass(frozen=True, eq=False)
class ShapleyEstimate:
    """Permutation-sampling estimate of the Shapley values (base units), members in row order.

    ``marginal_sums[n]`` is the exact sum, over the samples, of member n's marginal
    contribution (Wh x base units per kWh; int, or float beyond int64's range), so
    ``values == marginal_sums / (samples * 1000)``. ``error_bounds[n]`` is
    ``R_n / 1000 * sqrt(ln(2 n / delta) / (2 samples))``: with probability >= 1 - delta,
    ``|values[n] - phi_n| <= error_bounds[n]`` for every member at once.
    """

    values: np.ndarray
    error_bounds: np.ndarray
    marginal_sums: tuple[int | float, ...]
    samples: int
    delta: float

    @property
    def error_bound(self) -> float:
        """The largest member's bound (base units)."""
        return float(self.error_bounds.max())


def shapley_monte_carlo(
    net_export_wh: np.ndarray | Sequence[Sequence[int]],
    import_price: object,
    export_price: object,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    delta: float = DEFAULT_DELTA,
) -> ShapleyEstimate:
    """Shapley values by sampling ``samples`` uniform random permutations of the members.

    Each permutation is a row of ``Generator(PCG64(seed)).permuted`` over ``arange(n)``, drawn
    in batches of a size fixed by the shape of ``net_export_wh`` (so a seed gives the same
    result on a given numpy). Along a permutation, the coalition flows are the cumulative sums
    of the members' rows; member n's marginal contribution is
    ``cost({n}) - (cost(P + n) - cost(P))`` where P are its predecessors, the cost differences
    being consecutive differences of the cumulative costs.

    Error bound (Hoeffding + union bound): each sample of member n's marginal contribution lies
    in ``[0, R_n]`` (module docstring), independently across samples, so
    ``P(|mean - phi_n| >= eps) <= 2 exp(-2 m eps^2 / R_n^2)``; choosing
    ``eps_n = R_n sqrt(ln(2n/delta) / (2m))`` makes each probability ``delta / n`` and their
    union at most ``delta``.
    """
    game = _game(net_export_wh, import_price, export_price)
    samples = operator.index(samples)
    if samples < 1:
        raise InputError(f"samples must be >= 1, got {samples}")
    if not 0 < delta < 1:
        raise InputError(f"delta must be in (0, 1), got {delta}")
    n, slots = game.x.shape
    # int64 stays exact while samples x the largest value fits; beyond, float64 (the sampling
    # error dwarfs its rounding)
    exact = (samples + 4) * game.cost_bound < _INT64_SAFE
    dtype = np.dtype(np.int64) if exact else np.dtype(np.float64)
    x = game.x.astype(dtype)
    singles = game.slot_cost(x).sum(axis=1)
    rng = np.random.Generator(np.random.PCG64(seed))
    batch = max(1, _BATCH_ELEMENTS // max(n * slots, 1))
    order = np.broadcast_to(np.arange(n), (batch, n))
    totals = np.zeros(n, dtype=dtype)
    done = 0
    while done < samples:
        size = min(batch, samples - done)
        perms = rng.permuted(order, axis=1)[:size]  # (size, n) member ids in joining order
        cumulative = game.slot_cost(np.cumsum(x[perms], axis=1)).sum(axis=2)  # cost after each join
        steps = np.diff(cumulative, axis=1, prepend=np.zeros((size, 1), dtype=dtype))
        marginal = singles[perms] - steps
        by_member = np.empty_like(marginal)
        by_member[np.arange(size)[:, None], perms] = marginal
        totals += by_member.sum(axis=0)
        done += size
    sums = tuple(int(total) if exact else float(total) for total in totals)
    values = np.array([float(Fraction(total) / (samples * WH_PER_KWH)) for total in sums])
    spread = math.sqrt(math.log(2 * n / delta) / (2 * samples))
    bounds = np.array([r / WH_PER_KWH * spread for r in game.marginal_ranges()])
    return ShapleyEstimate(values, bounds, sums, samples, delta)


# ----------------------------------------------------------------------------- shares


def shapley_shares(
    pot: int,
    net_export_wh: np.ndarray | Sequence[Sequence[int]],
    import_price: object,
    export_price: object,
    exact_limit: int = DEFAULT_EXACT_LIMIT,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    members: Sequence[int] | None = None,
    delta: float = DEFAULT_DELTA,
) -> ShareResult:
    """The pot shared in proportion to the members' Shapley values.

    Up to ``exact_limit`` members (at most :data:`MAX_EXACT_MEMBERS`) the values are exact
    (:func:`shapley_exact`, ``method="exact"``, ``error_bound=0``); beyond, they are sampled
    (:func:`shapley_monte_carlo`, ``method="monte-carlo"``, ``error_bound`` = the largest
    member's bound rounded up to a base unit). ``members`` names the rows (default
    ``0..n-1``).

    Scaling is :func:`_scaled_to_pot` with the values (clipped at 0; they are never
    negative) as exact integer weights -- the exact values' numerators over their common
    denominator, or the samples' exact marginal sums: ``share_n = pot * w_n // W``, the
    remainder one base unit each to the members with ``w_n > 0`` in ascending id order; if
    every value is 0, :func:`equal_shares`.
    """
    n = _game(net_export_wh, import_price, export_price).n  # validates before any work
    ids = _member_ids(range(n) if members is None else members)
    if len(ids) != n:
        raise InputError(f"{len(ids)} member ids for {n} rows of net exports")
    if n <= min(operator.index(exact_limit), MAX_EXACT_MEMBERS):
        phi = shapley_exact(net_export_wh, import_price, export_price)
        common = math.lcm(*(value.denominator for value in phi))
        weights = [max(value.numerator * (common // value.denominator), 0) for value in phi]
        return ShareResult(_scaled_to_pot(pot, dict(zip(ids, weights))), 0, "exact")
    estimate = shapley_monte_carlo(net_export_wh, import_price, export_price, samples, seed, delta)
    fractions = [max(Fraction(total), Fraction(0)) for total in estimate.marginal_sums]
    common = math.lcm(*(value.denominator for value in fractions))
    weights = [value.numerator * (common // value.denominator) for value in fractions]
    bound = math.ceil(estimate.error_bound)
    return ShareResult(_scaled_to_pot(pot, dict(zip(ids, weights))), bound, "monte-carlo")


def compute_shares(
    rule: ShareRule,
    pot: int,
    *,
    members: Sequence[int] | None = None,
    contributions: Mapping[int, int] | None = None,
    net_export_wh: np.ndarray | Sequence[Sequence[int]] | None = None,
    import_price: object = None,
    export_price: object = None,
    exact_limit: int = DEFAULT_EXACT_LIMIT,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> ShareResult:
    """Dispatch on the published rule: ``"equal"`` needs ``members``, ``"proportional"``
    ``contributions``, ``"shapley"`` ``net_export_wh`` and the tariffs (and ``members`` to name
    the rows, default ``0..n-1``)."""
    if rule == "equal":
        if members is None:
            raise InputError("the equal rule needs the members")
        return ShareResult(equal_shares(pot, members), 0, "equal")
    if rule == "proportional":
        if contributions is None:
            raise InputError("the proportional rule needs the contributions")
        return ShareResult(proportional_shares(pot, contributions), 0, "proportional")
    if rule == "shapley":
        if net_export_wh is None or import_price is None or export_price is None:
            raise InputError("the Shapley rule needs the net exports and both tariffs")
        return shapley_shares(
            pot, net_export_wh, import_price, export_price, exact_limit, samples, seed, members
        )
    raise InputError(f"unknown share rule {rule!r}; expected one of {', '.join(SHARE_RULES)}")

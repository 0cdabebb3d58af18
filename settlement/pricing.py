"""Community pricing rules (DESIGN.md section 5) in exact integer arithmetic: the reference the
settlement contract (``contracts/libraries/SharingPrices.sol``), the tests and the auditor
compare with.

Sign convention: every amount is in token base units, positive = that party *receives*
(members and the supplier alike). A slot's amounts sum to exactly zero.

The arithmetic, step by step (the contract does the same):

1. Each member's single meter gives ``import_wh`` and ``export_wh`` for the slot; its net
   export is ``s_n = max(export_wh - import_wh, 0)`` and its net import
   ``d_n = max(import_wh - export_wh, 0)``; ``S = sum s_n``, ``D = sum d_n``.
2. The rule gives a buy price ``Pb`` and a sell price ``Ps`` in base units per kWh as exact
   rationals (:func:`rule_prices`). They satisfy the budget balance
   ``D*Pb - S*Ps == Pi*max(D-S, 0) - Pe*max(S-D, 0)`` exactly.
3. A net importer's amount is ``-floor(d_n * Pb / 1000)``, a net exporter's
   ``+floor(s_n * Ps / 1000)``, a member with ``s_n == d_n == 0`` gets 0. With
   ``Pb = num / den``: ``floor(d_n * Pb / 1000) == (d_n * num) // (den * 1000)`` in integers
   (the floor of a rational does not depend on whether ``num / den`` is reduced). So a member
   pays *and* receives the value rounded down (DESIGN.md section 2, :func:`peerwatt.units.value_of`):
   it is never charged more, nor paid more, than the exact value.
4. The supplier's amount is the residual ``-(sum of member amounts)``. Against the exact
   exchange ``E = (Pi*max(D-S, 0) - Pe*max(S-D, 0)) / 1000`` (:func:`exact_exchange`, positive
   = the supplier receives), ``supplier - E = (sum of exporters' fractional parts) -
   (sum of importers' fractional parts)``, each part in [0, 1). Hence
   ``-n_importers < supplier - E < n_exporters`` whenever ``supplier != E``: importers' rounding
   is the supplier's loss, exporters' rounding its gain, less than one base unit per member.

Tariffs are integers with ``0 <= Pe < Pi`` (the registry enforces ``export < import``);
quantities are integers >= 0 (uint32 on chain; any size here).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Literal, get_args

from peerwatt.errors import InputError
from peerwatt.units import WH_PER_KWH

SharingRule = Literal["mmr", "sdr", "bs"]
# position == the code of ICommunitySettlement.SharingRule (Mmr = 0, Sdr = 1, Bs = 2)
SHARING_RULES: tuple[SharingRule, ...] = get_args(SharingRule)

Reading = tuple[int, int]  # (import_wh, export_wh) of one member's meter for the slot


# ----------------------------------------------------------------------------- inputs


def _non_negative(name: str, value: int) -> int:
    try:
        number = operator.index(value)  # ints and numpy integers; floats are refused
    except TypeError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise InputError(f"{name} must be >= 0, got {number}")
    return number


def _tariffs(import_price: int, export_price: int) -> tuple[int, int]:
    pi = _non_negative("import_price", import_price)
    pe = _non_negative("export_price", export_price)
    if pe >= pi:
        raise InputError(f"export price {pe} must be below import price {pi}")
    return pi, pe


def _rule(rule: str) -> SharingRule:
    if rule not in SHARING_RULES:
        raise InputError(f"unknown sharing rule {rule!r}; expected one of {', '.join(SHARING_RULES)}")
    return rule  # type: ignore[return-value]


def net_flows(import_wh: int, export_wh: int) -> tuple[int, int]:
    """``(s_n, d_n)``: a meter's net export and net import, at most one of them non-zero."""
    net = _non_negative("export_wh", export_wh) - _non_negative("import_wh", import_wh)
    return max(net, 0), max(-net, 0)


def supply_demand(readings: Iterable[Reading]) -> tuple[int, int]:
    """``(S, D)``: the slot's total net export and total net import."""
    supply = demand = 0
    for import_wh, export_wh in readings:
        s, d = net_flows(import_wh, export_wh)
        supply += s
        demand += d
    return supply, demand


# ----------------------------------------------------------------------------- prices


def rule_prices(
    rule: SharingRule, supply_wh: int, demand_wh: int, import_price: int, export_price: int
) -> tuple[Fraction, Fraction]:
    """``(Pb, Ps)``: what net importers pay and net exporters receive, base units per kWh, exact.

    With ``S = supply_wh``, ``D = demand_wh``, ``Pi = import_price``, ``Pe = export_price``:

    - ``"mmr"``: ``Pm = (Pi + Pe) / 2``. If ``S >= D``: ``Pb = Pm``,
      ``Ps = (D*Pm + (S-D)*Pe) / S``. If ``S < D``: ``Ps = Pm``, ``Pb = (S*Pm + (D-S)*Pi) / D``.
    - ``"sdr"``: if ``S >= D`` (this includes ``D == 0``, i.e. SDR >= 1): ``Pb = Ps = Pe``.
      Otherwise, with ``SDR = S/D``: ``Ps = Pi*Pe / ((Pi-Pe)*SDR + Pe)
      = Pi*Pe*D / ((Pi-Pe)*S + Pe*D)`` and ``Pb = Ps*SDR + Pi*(1 - SDR)``. If ``S == 0`` this is
      ``Ps = Pb = Pi`` (the formula's value for every ``Pe > 0``); that case is taken
      explicitly so that ``Pe == 0`` does not divide 0 by 0.
    - ``"bs"``: ``Pb = Pi*max(D-S, 0) / D`` and ``Ps = Pe*max(S-D, 0) / S``.

    A price no one is paid at (``S == 0`` for ``Ps``, ``D == 0`` for ``Pb``) takes the value
    ``SharingPrices.prices`` returns: MMR ``Ps = Pe`` when ``S == D == 0``; BS ``Pb = 0`` when
    ``D == 0`` and ``Ps = 0`` when ``S == 0``. It multiplies 0 Wh either way.

    MMR and SDR price within the tariffs: ``Pe <= Ps <= Pb <= Pi`` where defined. BS does not:
    internal energy is free, so ``0 <= Pb <= Pi`` but ``0 <= Ps <= Pe`` -- a net exporter in a
    community with surplus receives less than the feed-in tariff (see the module tests).
    """
    rule = _rule(rule)
    s = _non_negative("supply_wh", supply_wh)
    d = _non_negative("demand_wh", demand_wh)
    pi, pe = _tariffs(import_price, export_price)
    if rule == "mmr":
        mid = Fraction(pi + pe, 2)
        if s >= d:
            return mid, (Fraction(pe) if s == 0 else (d * mid + (s - d) * pe) / s)
        return (s * mid + (d - s) * pi) / d, mid
    if rule == "sdr":
        if s >= d:
            return Fraction(pe), Fraction(pe)
        if s == 0:
            return Fraction(pi), Fraction(pi)
        sell = Fraction(pi * pe * d, (pi - pe) * s + pe * d)
        return (sell * s + pi * (d - s)) / d, sell
    buy = Fraction(pi * max(d - s, 0), d) if d else Fraction(0)
    sell = Fraction(pe * max(s - d, 0), s) if s else Fraction(0)
    return buy, sell


def value_down(qty_wh: int, price_per_kwh: Fraction | int) -> int:
    """``floor(qty_wh * price / 1000)`` for a rational price (base units), computed in integers."""
    price = Fraction(price_per_kwh)
    return (qty_wh * price.numerator) // (price.denominator * WH_PER_KWH)


def member_amount(import_wh: int, export_wh: int, buy_price: Fraction, sell_price: Fraction) -> int:
    """A member's slot amount at the rule's prices: ``-floor(d_n*Pb/1000)`` or ``+floor(s_n*Ps/1000)``."""
    s, d = net_flows(import_wh, export_wh)
    return value_down(s, sell_price) if s else -value_down(d, buy_price)


def slot_amounts(
    rule: SharingRule, readings: Sequence[Reading], import_price: int, export_price: int
) -> tuple[list[int], int]:
    """Every member's amount (in the order of ``readings``) and the supplier's residual.

    ``readings`` holds ``(import_wh, export_wh)`` per member. ``sum(members) + supplier == 0``.
    """
    supply, demand = supply_demand(readings)
    buy, sell = rule_prices(rule, supply, demand, import_price, export_price)
    amounts = [member_amount(import_wh, export_wh, buy, sell) for import_wh, export_wh in readings]
    return amounts, -sum(amounts)


def exact_exchange(supply_wh: int, demand_wh: int, import_price: int, export_price: int) -> Fraction:
    """The community's exchange with the supplier, unrounded, in base units (positive = the
    supplier receives): ``(Pi*max(D-S, 0) - Pe*max(S-D, 0)) / 1000``."""
    s = _non_negative("supply_wh", supply_wh)
    d = _non_negative("demand_wh", demand_wh)
    pi, pe = _tariffs(import_price, export_price)
    return Fraction(pi * max(d - s, 0) - pe * max(s - d, 0), WH_PER_KWH)


# ----------------------------------------------------------------------------- tariffs


def tariff_amount(net_export_wh: int, import_price: int, export_price: int) -> int:
    """``net_export_wh`` traded with the supplier: ``+floor(y*Pe/1000)`` if ``y >= 0`` else
    ``-floor(-y*Pi/1000)`` (the contract's ``_tariffAmount``)."""
    pi, pe = _tariffs(import_price, export_price)
    y = operator.index(net_export_wh)
    return (y * pe) // WH_PER_KWH if y >= 0 else -((-y * pi) // WH_PER_KWH)


def standalone_bill(import_wh: int, export_wh: int, import_price: int, export_price: int) -> int:
    """The member's amount alone at the tariffs: ``-floor(d_n*Pi/1000) + floor(s_n*Pe/1000)``."""
    s, d = net_flows(import_wh, export_wh)
    return tariff_amount(s - d, import_price, export_price)


def imbalance_amount(
    metered_net_export_wh: int, contracted_net_export_wh: int, import_price: int, export_price: int
) -> int:
    """The imbalance ``y = metered - contracted`` (net export, Wh) settled with the supplier:
    ``+floor(y*Pe/1000)`` if ``y > 0`` (sold), ``-floor(-y*Pi/1000)`` if ``y < 0`` (bought)."""
    y = operator.index(metered_net_export_wh) - operator.index(contracted_net_export_wh)
    return tariff_amount(y, import_price, export_price)

"""The community optimisation engine: hand-computed and brute-forced optima, the posted figures
the contracts check (and the manipulations they catch), and optimality certificates."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from settlement.chunks import INTERNAL_TRADE_MAX_WH
from settlement.community import Battery, Community, MemberForecast, synthetic_community
from settlement.optimisation import (
    CertificateError,
    Flow,
    Formulation,
    PostedClearing,
    check_posted,
    clear,
    largest_remainder,
    pro_rata_trades,
    to_posted,
    verify_certificate,
    write_certificate,
)

IMPORT, EXPORT, FEE = 250_000, 60_000, 5_000
BOTH = pytest.mark.parametrize("formulation", list(Formulation))


def wh(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


def per_slot(*prices: int) -> np.ndarray:
    return np.array(prices)


def one_slot(exporter_net_wh: float, importer_net_wh: float) -> Community:
    """Two members, one 15-minute slot: an exporter with PV and an importer without."""
    members = (
        MemberForecast("exporter", wh(500), wh(500 + exporter_net_wh)),
        MemberForecast("importer", wh(-importer_net_wh), wh(0)),
    )
    return Community(members, per_slot(IMPORT), per_slot(EXPORT), FEE)


def community_cost_closed_form(community: Community, net_export_wh: np.ndarray) -> np.ndarray:
    """The community's cost (base units) for fixed net exports [..., members, slots], from first
    principles: in each slot min(exports, imports) Wh is traded inside when that pays (both
    sides pay the fee), the rest goes to or comes from the supplier at the tariffs."""
    exports = np.maximum(net_export_wh, 0).sum(axis=-2)
    imports = np.maximum(-net_export_wh, 0).sum(axis=-2)
    pays = community.import_price - community.export_price >= 2 * community.fee_per_kwh
    internal = np.where(pays, np.minimum(exports, imports), 0)
    cost = (
        community.import_price * (imports - internal)
        - community.export_price * (exports - internal)
        + 2 * community.fee_per_kwh * internal
    )
    return cost.sum(axis=-1) / 1000


# ------------------------------------------------------------------- hand-computed optima


@BOTH
def test_exporter_sells_to_importer_at_the_sellers_reservation_price(formulation: Formulation) -> None:
    community = one_slot(exporter_net_wh=1_000, importer_net_wh=-600)
    result = clear(community, formulation=formulation)

    # surplus: 600 Wh traded at export + fee, the exporter's other 400 Wh exported
    assert result.internal_wh == pytest.approx(np.array([[600.0], [-600.0]]))
    assert result.internal_price == pytest.approx([EXPORT + FEE])
    assert result.grid_export_wh == pytest.approx(np.array([[400.0], [0.0]]))
    assert result.grid_import_wh == pytest.approx(np.zeros((2, 1)))
    # exporter: -0.06 * 400 - 0.065 * 600 + 0.005 * 600 = -60 token-milli; importer: 0.07 * 600
    assert result.bill == pytest.approx([-60_000.0, 42_000.0])
    assert result.standalone_bill == pytest.approx([-60_000.0, 150_000.0])
    assert result.objective == pytest.approx(-18_000.0)

    posted = to_posted(result)
    assert posted.price_per_kwh.tolist() == [EXPORT + FEE]
    assert posted.internal_wh.tolist() == [[600], [-600]]
    assert posted.bill_milli_base_units.tolist() == [-60_000_000, 42_000_000]
    assert posted.standalone_bill_milli_base_units.tolist() == [-60_000_000, 150_000_000]
    assert check_posted(posted, community) == []


@BOTH
def test_balanced_trade_is_priced_inside_the_band_and_nobody_loses(formulation: Formulation) -> None:
    community = one_slot(exporter_net_wh=600, importer_net_wh=-600)
    result = clear(community, formulation=formulation)
    assert result.internal_wh == pytest.approx(np.array([[600.0], [-600.0]]))
    assert EXPORT + FEE <= result.internal_price[0] <= IMPORT - FEE
    assert np.all(result.bill <= result.standalone_bill + 1e-9)
    # the community saves (import - export - 2 fee) on each internal kWh
    assert result.standalone_bill.sum() - result.bill.sum() == pytest.approx(0.6 * (IMPORT - EXPORT - 2 * FEE))
    assert check_posted(to_posted(result), community) == []


def test_no_trade_when_the_fee_eats_the_spread() -> None:
    members = (MemberForecast("seller", wh(0), wh(1_000)), MemberForecast("buyer", wh(1_000), wh(0)))
    community = Community(members, per_slot(100_000), per_slot(60_000), 25_000)  # 2 fee > import - export
    result = clear(community)
    assert result.internal_wh == pytest.approx(np.zeros((2, 1)))
    assert result.bill == pytest.approx(result.standalone_bill)
    posted = to_posted(result)
    assert posted.internal_wh.tolist() == [[0], [0]]
    assert check_posted(posted, community) == []


# --------------------------------------------------------------------------- brute force


def battery_community() -> Community:
    """2 members, 3 one-hour slots, a battery at the first member; prices rise over the day."""
    battery = Battery(4_000, 2_000, 2_000, charge_efficiency=0.9, discharge_efficiency=0.9, soc_initial_wh=1_000)
    members = (
        MemberForecast("prosumer", wh(200, 300, 1_200), wh(2_000, 500, 0), battery),
        MemberForecast("consumer", wh(500, 800, 900), wh(0, 0, 0)),
    )
    return Community(members, per_slot(200_000, 300_000, 400_000), per_slot(50_000, 50_000, 50_000), FEE, 3_600)


def best_battery_actions(
    community: Community, centre: np.ndarray, half_width: float, step: float
) -> tuple[float, np.ndarray]:
    """Exhaustive search over the first member's net battery action (charge > 0) in every slot,
    on a grid around ``centre``: the cheapest feasible cost and its actions."""
    battery = community.members[0].battery
    assert battery is not None and battery.soc_initial_wh is not None and battery.soc_max_wh is not None
    limit = battery.max_charge_w * community.slot_hours
    axes = [np.arange(max(c - half_width, -limit), min(c + half_width, limit) + step / 2, step) for c in centre]
    actions = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    charge, discharge = np.maximum(actions, 0), np.maximum(-actions, 0)
    soc = battery.soc_initial_wh + np.cumsum(
        battery.charge_efficiency * charge - discharge / battery.discharge_efficiency, axis=1
    )
    feasible = (soc >= battery.soc_min_wh).all(axis=1) & (soc <= battery.soc_max_wh).all(axis=1)
    feasible &= soc[:, -1] >= battery.soc_initial_wh
    net = np.broadcast_to(community.pv_wh - community.load_wh, (int(feasible.sum()), 2, len(axes))).copy()
    net[:, 0, :] -= actions[feasible]
    costs = community_cost_closed_form(community, net)
    best = int(np.argmin(costs))
    return float(costs[best]), actions[feasible][best]


@BOTH
def test_lp_optimum_matches_exhaustive_search_over_battery_actions(formulation: Formulation) -> None:
    community = battery_community()
    result = clear(community, formulation=formulation)

    # every action in steps of 50 Wh, then steps of 2 Wh around the best of those
    coarse_cost, coarse = best_battery_actions(community, np.zeros(3), 2_000, 50.0)
    brute_best, _ = best_battery_actions(community, coarse, 60, 2.0)

    assert result.objective <= brute_best + 1e-6
    # within one fine step per slot at the highest import price (400 base units per Wh)
    assert brute_best - result.objective <= 3 * 2 * 400
    assert brute_best <= coarse_cost
    assert result.objective == pytest.approx(community_cost_closed_form(community, result.net_export_wh), abs=1e-6)
    assert result.bill.sum() == pytest.approx(result.objective, abs=1e-6)
    assert check_posted(to_posted(result), community) == []


def test_without_flexibility_the_optimum_is_the_closed_form() -> None:
    rng = np.random.default_rng(4)
    members = tuple(
        MemberForecast(f"m{n}", rng.uniform(0, 2_000, 4), rng.uniform(0, 2_000, 4) * (n % 2)) for n in range(6)
    )
    community = Community(members, per_slot(200_000, 250_000, 300_000, 100_000), np.full(4, 60_000), FEE)
    result = clear(community)
    net = community.pv_wh - community.load_wh
    assert result.net_export_wh == pytest.approx(net)
    assert result.objective == pytest.approx(community_cost_closed_form(community, net), abs=1e-6)
    assert result.bill.sum() == pytest.approx(result.objective, abs=1e-6)


def test_both_formulations_agree_on_a_synthetic_community() -> None:
    community = synthetic_community(30, seed=5)
    aggregate = clear(community, own_optimum=True)
    per_member = clear(community, formulation=Formulation.PER_MEMBER, own_optimum=True)
    assert aggregate.objective == pytest.approx(per_member.objective, rel=1e-9)
    assert aggregate.own_optimum_bill == pytest.approx(per_member.own_optimum_bill, rel=1e-9, abs=1e-3)
    # the dual prices agree wherever trade happens (elsewhere a price is immaterial: the textbook
    # LP's community balance is then degenerate)
    trading = [np.maximum(r.internal_wh, 0).sum(axis=0) > 1 for r in (aggregate, per_member)]
    both = trading[0] & trading[1]
    assert both.sum() > community.n_slots / 3
    assert aggregate.internal_price[both] == pytest.approx(per_member.internal_price[both])


@pytest.mark.parametrize("fee", [0, 5_000, 100_000])  # free trades, the default, a fee that eats every spread
def test_the_reduction_is_exact_whatever_the_fee(fee: int) -> None:
    base = synthetic_community(20, seed=7, shiftable_share=0.3)
    assert any(m.battery is not None and m.shiftable for m in base.members)
    community = replace(base, fee_per_kwh=fee)
    aggregate = clear(community, own_optimum=True)
    per_member = clear(community, formulation=Formulation.PER_MEMBER, own_optimum=True)
    assert aggregate.objective == pytest.approx(per_member.objective, rel=1e-9)
    assert aggregate.bill.sum() == pytest.approx(aggregate.objective, rel=1e-9)
    assert aggregate.own_optimum_bill == pytest.approx(per_member.own_optimum_bill, rel=1e-9, abs=1e-3)
    assert check_posted(to_posted(aggregate), community) == []


# ---------------------------------------------------------------- posted figures at scale


@pytest.mark.parametrize("n_members", [10, 100])
def test_posted_clearing_of_synthetic_communities_passes_every_check(n_members: int) -> None:
    community = synthetic_community(n_members, seed=n_members)
    result = clear(community, own_optimum=True)

    assert result.internal_wh.sum(axis=0) == pytest.approx(np.zeros(community.n_slots), abs=1e-6)
    lowest, highest = community.trade_band
    trading = np.maximum(result.internal_wh, 0).sum(axis=0) > 1e-3
    assert trading.any() and (~trading).any()
    assert np.all(
        (result.internal_price[trading] >= lowest[trading]) & (result.internal_price[trading] <= highest[trading])
    )
    assert np.all((result.internal_price >= community.export_price) & (result.internal_price <= community.import_price))
    assert np.all(result.bill <= result.standalone_bill + 1e-6)
    assert result.bill.sum() == pytest.approx(result.objective, rel=1e-9)
    # the community's optimum is no worse than every member's own optimum added up
    assert result.own_optimum_bill is not None
    assert result.objective <= result.own_optimum_bill.sum() + 1e-6

    posted = to_posted(result)
    assert check_posted(posted, community) == []
    assert (posted.internal_wh.sum(axis=0) == 0).all()
    assert np.all(posted.bill_milli_base_units <= posted.standalone_bill_milli_base_units)
    assert np.abs(posted.net_export_wh - result.net_export_wh).max() <= 0.5


def test_largest_remainder_splits_exactly_within_weights() -> None:
    weights = np.array([[1, 0, 7], [1, 5, 7], [1, 5, 7], [0, 0, 0]])
    totals = np.array([2, 9, 20])
    split = largest_remainder(weights, totals)
    assert split.sum(axis=0).tolist() == totals.tolist()
    assert np.all((split >= 0) & (split <= weights))
    assert split[:, 0].tolist() == [1, 1, 0, 0]  # ties: lower rows first


def test_pro_rata_trades_sell_and_buy_the_same_share() -> None:
    net = np.array([[300.0], [100.0], [-200.0]])
    trades = pro_rata_trades(net, np.array([True]))
    assert trades[:, 0] == pytest.approx([150.0, 50.0, -200.0])
    assert pro_rata_trades(net, np.array([False])) == pytest.approx(np.zeros((3, 1)))


# ------------------------------------------------------------------ caught manipulations


@pytest.fixture(scope="module")
def cleared() -> tuple[Community, PostedClearing]:
    community = one_slot(exporter_net_wh=1_000, importer_net_wh=-600)
    return community, to_posted(clear(community))


def _with(posted: PostedClearing, **changes: Any) -> PostedClearing:
    return replace(posted, **changes)


def test_a_buyer_charged_more_than_importing_is_caught(cleared: tuple[Community, PostedClearing]) -> None:
    community, posted = cleared
    problems = check_posted(_with(posted, price_per_kwh=np.array([IMPORT - FEE + 1])), community)
    assert any(p.startswith("member importer, slot 0: pays") for p in problems)
    assert any("posted bill" in p for p in problems)  # the posted bills no longer add up either


def test_a_seller_paid_less_than_exporting_is_caught(cleared: tuple[Community, PostedClearing]) -> None:
    community, posted = cleared
    problems = check_posted(_with(posted, price_per_kwh=np.array([EXPORT + FEE - 1])), community)
    assert any(p.startswith("member exporter, slot 0: pays") for p in problems)


def test_a_price_outside_the_tariffs_is_caught(cleared: tuple[Community, PostedClearing]) -> None:
    community, posted = cleared
    problems = check_posted(_with(posted, price_per_kwh=np.array([IMPORT + 1])), community)
    assert f"slot 0: price {IMPORT + 1} outside [{EXPORT}, {IMPORT}]" in problems


def test_trades_larger_than_the_position_or_against_it_are_caught(cleared: tuple[Community, PostedClearing]) -> None:
    community, posted = cleared
    too_large = check_posted(_with(posted, internal_wh=np.array([[700], [-700]])), community)
    assert "member importer, slot 0: internal trade -700 Wh exceeds net export -600 Wh" in too_large
    against = _with(posted, net_export_wh=np.array([[1_000], [600]]), internal_wh=np.array([[600], [-600]]))
    assert "member importer, slot 0: internal trade -600 Wh against net export 600 Wh" in check_posted(
        against, community
    )


def test_trades_that_do_not_net_to_zero_are_caught(cleared: tuple[Community, PostedClearing]) -> None:
    community, posted = cleared
    problems = check_posted(_with(posted, internal_wh=np.array([[600], [-500]])), community)
    assert "slot 0: internal trades sum to 100 Wh, not 0" in problems


def test_posted_figures_for_other_members_are_rejected(cleared: tuple[Community, PostedClearing]) -> None:
    community, posted = cleared
    assert check_posted(_with(posted, member_names=("a", "b")), community) == [
        "posted members differ from the community's"
    ]


# --------------------------------------------------------------------------- certificate


@BOTH
def test_certificate_of_the_optimum_has_no_gap_and_verifies(formulation: Formulation, tmp_path) -> None:  # type: ignore[no-untyped-def]
    community = synthetic_community(20, n_slots=24, seed=2)
    result = clear(community, formulation=formulation)
    path = tmp_path / "certificate.json"
    write_certificate(result, path)
    summary = json.loads(path.read_text())
    assert summary["primal_objective"] == pytest.approx(result.objective, rel=1e-12)
    assert summary["relative_gap"] < 1e-9
    assert summary["dual_infeasibility"] < 1e-9 and summary["primal_infeasibility"] < 1e-9
    assert abs(verify_certificate(path, community)) <= 1e-6 * abs(result.objective)


def _tamper(path, change) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the certificate's primal vector in place (the JSON summary is left as it was)."""
    vectors = dict(np.load(path.with_suffix(".npz")))
    change(vectors["x"])
    np.savez(path.with_suffix(".npz"), **vectors)


def test_a_suboptimal_primal_shows_a_positive_gap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    community = synthetic_community(20, n_slots=24, seed=2)
    result = clear(community)
    path = tmp_path / "certificate.json"
    write_certificate(result, path)
    layout = result.model.layout
    slot = 12

    def more_surplus(x: np.ndarray) -> None:  # feasible (surplus >= X), costs k+ per kWh
        x[layout.surplus_block.start + slot] += 1.0

    _tamper(path, more_surplus)
    with pytest.raises(CertificateError, match="recorded primal_objective"):
        verify_certificate(path, community)  # the summary no longer matches the vectors
    summary = json.loads(path.read_text())
    gain = community.trade_band[1][slot] - community.trade_band[0][slot]
    summary["primal_objective"] += gain  # 1 kWh at k+ base units per kWh
    path.write_text(json.dumps(summary))
    assert verify_certificate(path, community, max_relative_gap=None) == pytest.approx(gain, rel=1e-6)
    with pytest.raises(CertificateError, match="relative duality gap"):
        verify_certificate(path, community)


def test_an_infeasible_primal_or_another_community_fails(tmp_path) -> None:  # type: ignore[no-untyped-def]
    community = synthetic_community(20, n_slots=24, seed=2)
    result = clear(community)
    path = tmp_path / "certificate.json"
    write_certificate(result, path)
    with pytest.raises(CertificateError, match="another model"):
        verify_certificate(path, synthetic_community(20, n_slots=24, seed=3))

    def overcharge(x: np.ndarray) -> None:  # breaks the battery's energy balance
        x[result.model.layout.battery_block(Flow.SOC).start] += 0.5

    _tamper(path, overcharge)
    with pytest.raises(CertificateError, match="primal infeasibility"):
        verify_certificate(path, community, max_relative_gap=None)


def test_posted_figures_stay_exact_beyond_int64() -> None:
    # 1.5 GWh at 8,000 tokens per kWh: bills overflow int64 in Wh x base units per kWh
    members = (MemberForecast("plant", wh(0), wh(2e9)), MemberForecast("smelter", wh(1.5e9), wh(0)))
    community = Community(members, per_slot(8_000_000_000), per_slot(60_000), FEE)
    posted = to_posted(clear(community))
    assert posted.internal_wh.tolist() == [[1_500_000_000], [-1_500_000_000]]
    assert posted.standalone_bill_milli_base_units[1] == 1_500_000_000 * 8_000_000_000 > 2**63
    # the bills check exactly; only the contract's lane size (int20 Wh per member and slot) refuses
    assert check_posted(posted, community) == [
        f"member {name}, slot 0: internal trade {trade} Wh beyond the contract's +-{INTERNAL_TRADE_MAX_WH} Wh"
        for name, trade in (("plant", 1_500_000_000), ("smelter", -1_500_000_000))
    ]

"""Community pricing rules (settlement/pricing.py): hand-computed slots for every rule, then
properties over random slots.

Expected integers are worked out by hand in the comments, not by calling the code. Unless a
case says otherwise: Pi = 250_000 and Pe = 50_000 base units per kWh, Pm = 150_000; a value
``q * P / 1000`` is written ``q*P'`` with ``P' = P / 1000`` base units per Wh.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerwatt.errors import InputError
from settlement.pricing import (
    SHARING_RULES,
    exact_exchange,
    imbalance_amount,
    member_amount,
    net_flows,
    rule_prices,
    slot_amounts,
    standalone_bill,
    supply_demand,
    tariff_amount,
)

PI, PE = 250_000, 50_000
# odd tariffs, so that tariff values round too: Pi' = 254.321, Pe' = 51.234 per Wh
ODD_PI, ODD_PE = 254_321, 51_234

# readings are (import_wh, export_wh)
SHORTAGE = [(0, 1000), (2499, 500), (1001, 0)]  # s_A = 1000, d_B = 1999, d_C = 1001: S = 1000 < D = 3000
SURPLUS = [(0, 1999), (100, 1101), (1000, 0)]  # s_A = 1999, s_B = 1001, d_C = 1000: S = 3000 > D = 1000
BALANCED = [(0, 1500), (700, 0), (900, 100)]  # s_A = 1500, d_B = 700, d_C = 800: S = D = 1500
CONSUMERS = [(1234, 0), (7, 2)]  # d_A = 1234, d_B = 5: S = 0, D = 1239 (odd tariffs)
PRODUCERS = [(0, 1234), (3, 8)]  # s_A = 1234, s_B = 5: S = 1239, D = 0 (odd tariffs)

# (rule, readings, Pi, Pe, (Pb, Ps), member amounts, supplier amount)
CASES = [
    # ---- shortage: S = 1000, D = 3000; E = Pi*(D-S)/1000 = 250 * 2000 = 500_000
    # MMR, S < D: Ps = Pm = 150_000; Pb = (S*Pm + (D-S)*Pi)/D = (150e6 + 500e6)/3000 = 650_000/3
    # A: +1000*150 = +150_000
    # B: -floor(1999 * 650/3) = -floor(1_299_350/3) = -floor(433_116.67) = -433_116
    # C: -floor(1001 * 650/3) = -floor(650_650/3) = -floor(216_883.33) = -216_883
    # supplier: -(150_000 - 433_116 - 216_883) = 499_999 (= E - 1: importers' fractions .67 + .33)
    ("mmr", SHORTAGE, PI, PE, (Fraction(650_000, 3), Fraction(150_000)), [150_000, -433_116, -216_883], 499_999),
    # SDR = 1/3: Ps = Pi*Pe/((Pi-Pe)/3 + Pe) = 12.5e9 * 3 / (200_000 + 150_000) = 750_000/7
    # Pb = Ps/3 + Pi*2/3 = 250_000/7 + 500_000/3 = (750_000 + 3_500_000)/21 = 4_250_000/21
    # A: +floor(1000 * 750/7) = +floor(107_142.86) = +107_142   (7 * 107_142 = 749_994)
    # B: -floor(1999 * 4250/21) = -floor(8_495_750/21) = -404_559   (21 * 404_559 = 8_495_739)
    # C: -floor(1001 * 4250/21) = -floor(4_254_250/21) = -202_583   (21 * 202_583 = 4_254_243)
    # supplier: -(107_142 - 404_559 - 202_583) = 500_000 (= E: .86 gained, .52 + .33 lost)
    ("sdr", SHORTAGE, PI, PE, (Fraction(4_250_000, 21), Fraction(750_000, 7)), [107_142, -404_559, -202_583], 500_000),
    # BS: Pb = Pi*(D-S)/D = 250_000 * 2000/3000 = 500_000/3; Ps = Pe*0/S = 0
    # A: 0; B: -floor(1999 * 500/3) = -floor(999_500/3) = -floor(333_166.67) = -333_166
    # C: -floor(1001 * 500/3) = -floor(500_500/3) = -floor(166_833.33) = -166_833
    # supplier: 333_166 + 166_833 = 499_999
    ("bs", SHORTAGE, PI, PE, (Fraction(500_000, 3), Fraction(0)), [0, -333_166, -166_833], 499_999),
    # ---- surplus: S = 3000, D = 1000; E = -Pe*(S-D)/1000 = -50 * 2000 = -100_000
    # MMR, S >= D: Pb = Pm; Ps = (D*Pm + (S-D)*Pe)/S = (150e6 + 100e6)/3000 = 250_000/3
    # A: +floor(1999 * 250/3) = +floor(499_750/3) = +floor(166_583.33) = +166_583
    # B: +floor(1001 * 250/3) = +floor(250_250/3) = +floor(83_416.67) = +83_416
    # C: -1000 * 150 = -150_000; supplier: -(166_583 + 83_416 - 150_000) = -99_999 (= E + 1)
    ("mmr", SURPLUS, PI, PE, (Fraction(150_000), Fraction(250_000, 3)), [166_583, 83_416, -150_000], -99_999),
    # SDR = 3 >= 1: Pb = Ps = Pe. A: +1999*50 = 99_950; B: +1001*50 = 50_050; C: -1000*50 = -50_000
    # supplier: -(99_950 + 50_050 - 50_000) = -100_000
    ("sdr", SURPLUS, PI, PE, (Fraction(50_000), Fraction(50_000)), [99_950, 50_050, -50_000], -100_000),
    # BS: Pb = Pi*0/D = 0; Ps = Pe*(S-D)/S = 50_000 * 2000/3000 = 100_000/3
    # A: +floor(1999 * 100/3) = +floor(199_900/3) = +floor(66_633.33) = +66_633
    # B: +floor(1001 * 100/3) = +floor(100_100/3) = +floor(33_366.67) = +33_366
    # C: 0; supplier: -(66_633 + 33_366) = -99_999
    ("bs", SURPLUS, PI, PE, (Fraction(0), Fraction(100_000, 3)), [66_633, 33_366, 0], -99_999),
    # ---- balanced: S = D = 1500; E = 0
    # MMR: Pb = Pm; Ps = (1500*Pm + 0*Pe)/1500 = Pm. A: +1500*150 = 225_000; B: -700*150 = -105_000;
    # C: -800*150 = -120_000; supplier 0
    ("mmr", BALANCED, PI, PE, (Fraction(150_000), Fraction(150_000)), [225_000, -105_000, -120_000], 0),
    # SDR = 1: Pe for both. A: +1500*50 = 75_000; B: -700*50 = -35_000; C: -800*50 = -40_000
    ("sdr", BALANCED, PI, PE, (Fraction(50_000), Fraction(50_000)), [75_000, -35_000, -40_000], 0),
    # BS: Pb = Pi*0/1500 = 0, Ps = Pe*0/1500 = 0: internal energy is free, nobody pays
    ("bs", BALANCED, PI, PE, (Fraction(0), Fraction(0)), [0, 0, 0], 0),
    # ---- all consumers (odd tariffs): S = 0, D = 1239; E = 254_321 * 1239/1000 = 315_103.719
    # every rule gives Pb = Pi: MMR (0*Pm + D*Pi)/D; SDR S = 0; BS Pi*D/D
    # A: -floor(1234 * 254_321/1000) = -floor(313_832_114/1000) = -313_832
    # B: -floor(5 * 254_321/1000) = -floor(1_271_605/1000) = -1_271
    # supplier: 315_103 (= E - 0.719)
    ("mmr", CONSUMERS, ODD_PI, ODD_PE, (Fraction(ODD_PI), Fraction(ODD_PI + ODD_PE, 2)), [-313_832, -1_271], 315_103),
    ("sdr", CONSUMERS, ODD_PI, ODD_PE, (Fraction(ODD_PI), Fraction(ODD_PI)), [-313_832, -1_271], 315_103),
    ("bs", CONSUMERS, ODD_PI, ODD_PE, (Fraction(ODD_PI), Fraction(0)), [-313_832, -1_271], 315_103),
    # ---- all producers (odd tariffs): S = 1239, D = 0; E = -51_234 * 1239/1000 = -63_478.926
    # every rule gives Ps = Pe: MMR (0*Pm + S*Pe)/S; SDR D = 0; BS Pe*S/S
    # A: +floor(1234 * 51_234/1000) = +floor(63_222_756/1000) = +63_222
    # B: +floor(5 * 51_234/1000) = +floor(256_170/1000) = +256
    # supplier: -63_478 (= E + 0.926)
    ("mmr", PRODUCERS, ODD_PI, ODD_PE, (Fraction(ODD_PI + ODD_PE, 2), Fraction(ODD_PE)), [63_222, 256], -63_478),
    ("sdr", PRODUCERS, ODD_PI, ODD_PE, (Fraction(ODD_PE), Fraction(ODD_PE)), [63_222, 256], -63_478),
    ("bs", PRODUCERS, ODD_PI, ODD_PE, (Fraction(0), Fraction(ODD_PE)), [63_222, 256], -63_478),
    # ---- one member importing (1000, 333): d = 667, priced at Pi by every rule
    # -floor(667 * 254_321/1000) = -floor(169_632_107/1000) = -169_632
    ("mmr", [(1000, 333)], ODD_PI, ODD_PE, (Fraction(ODD_PI), Fraction(ODD_PI + ODD_PE, 2)), [-169_632], 169_632),
    ("sdr", [(1000, 333)], ODD_PI, ODD_PE, (Fraction(ODD_PI), Fraction(ODD_PI)), [-169_632], 169_632),
    ("bs", [(1000, 333)], ODD_PI, ODD_PE, (Fraction(ODD_PI), Fraction(0)), [-169_632], 169_632),
    # ---- one member exporting 667: +floor(667 * 51_234/1000) = +floor(34_173_078/1000) = +34_173
    ("mmr", [(0, 667)], ODD_PI, ODD_PE, (Fraction(ODD_PI + ODD_PE, 2), Fraction(ODD_PE)), [34_173], -34_173),
    ("sdr", [(0, 667)], ODD_PI, ODD_PE, (Fraction(ODD_PE), Fraction(ODD_PE)), [34_173], -34_173),
    ("bs", [(0, 667)], ODD_PI, ODD_PE, (Fraction(0), Fraction(ODD_PE)), [34_173], -34_173),
    # ---- no flow at all (S = D = 0): the prices nobody pays at are the contract's placeholders
    # (MMR: Pb = Pm, Ps = Pe; SDR: Pe, Pe; BS: 0, 0); everyone gets 0
    ("mmr", [(500, 500), (0, 0)], PI, PE, (Fraction(150_000), Fraction(50_000)), [0, 0], 0),
    ("sdr", [(500, 500), (0, 0)], PI, PE, (Fraction(50_000), Fraction(50_000)), [0, 0], 0),
    ("bs", [(500, 500), (0, 0)], PI, PE, (Fraction(0), Fraction(0)), [0, 0], 0),
]


@pytest.mark.parametrize(
    ("rule", "readings", "pi", "pe", "prices", "members", "supplier"),
    CASES,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(CASES)],
)
def test_hand_computed_slots(
    rule: str,
    readings: list[tuple[int, int]],
    pi: int,
    pe: int,
    prices: tuple[Fraction, Fraction],
    members: list[int],
    supplier: int,
) -> None:
    supply, demand = supply_demand(readings)
    assert rule_prices(rule, supply, demand, pi, pe) == prices  # type: ignore[arg-type]
    assert slot_amounts(rule, readings, pi, pe) == (members, supplier)  # type: ignore[arg-type]
    assert sum(members) + supplier == 0


def test_exact_exchange_hand_computed() -> None:
    assert exact_exchange(1000, 3000, PI, PE) == 500_000  # 250 * 2000
    assert exact_exchange(3000, 1000, PI, PE) == -100_000  # -50 * 2000
    assert exact_exchange(1500, 1500, PI, PE) == 0
    assert exact_exchange(0, 1239, ODD_PI, ODD_PE) == Fraction(315_103_719, 1000)
    assert exact_exchange(1239, 0, ODD_PI, ODD_PE) == Fraction(-63_478_926, 1000)


def test_sdr_with_free_feed_in_and_no_exporters_prices_at_the_import_tariff() -> None:
    # Pe = 0, S = 0: the formula's Pi*Pe*D / ((Pi-Pe)*S + Pe*D) would be 0/0
    assert rule_prices("sdr", 0, 1000, PI, 0) == (Fraction(PI), Fraction(PI))
    # Pe = 0, S = 500, D = 1000: Ps = 0; Pb = 0*1/2 + Pi*1/2 = 125_000
    assert rule_prices("sdr", 500, 1000, PI, 0) == (Fraction(125_000), Fraction(0))


def test_standalone_and_imbalance_hand_computed() -> None:
    # alone: d = 667 -> -floor(667 * 254.321) = -169_632; s = 667 -> +floor(667 * 51.234) = +34_173
    assert standalone_bill(1000, 333, ODD_PI, ODD_PE) == -169_632
    assert standalone_bill(0, 667, ODD_PI, ODD_PE) == 34_173
    assert standalone_bill(42, 42, ODD_PI, ODD_PE) == 0
    # y = 500 - 200 = 300 sold: +floor(300 * 51.234) = +floor(15_370.2) = +15_370
    assert imbalance_amount(500, 200, ODD_PI, ODD_PE) == 15_370
    # y = -500 - 200 = -700 bought: -floor(700 * 254.321) = -floor(178_024.7) = -178_024
    assert imbalance_amount(-500, 200, ODD_PI, ODD_PE) == -178_024
    # y = -1: -floor(254.321) = -254 (not -255: payer and payee see the same rounded-down figure)
    assert imbalance_amount(0, 1, ODD_PI, ODD_PE) == -254
    assert imbalance_amount(7, 7, ODD_PI, ODD_PE) == 0
    assert tariff_amount(-1, ODD_PI, ODD_PE) == -254


def test_net_flows_and_member_amount() -> None:
    assert net_flows(100, 30) == (0, 70)
    assert net_flows(30, 100) == (70, 0)
    assert net_flows(5, 5) == (0, 0)
    # 70 Wh imported at 1001/3 per kWh: -floor(70 * 1001 / 3000) = -floor(23.36) = -23
    assert member_amount(100, 30, Fraction(1001, 3), Fraction(7)) == -23


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rule_prices("xyz", 1, 1, PI, PE), "unknown sharing rule"),  # type: ignore[arg-type]
        (lambda: rule_prices("mmr", 1, 1, PE, PI), "below import price"),
        (lambda: rule_prices("mmr", 1, 1, PI, PI), "below import price"),
        (lambda: rule_prices("mmr", -1, 1, PI, PE), "supply_wh must be >= 0"),
        (lambda: slot_amounts("bs", [(1.5, 0)], PI, PE), "must be an integer"),  # type: ignore[list-item]
        (lambda: standalone_bill(0, 1, PI, -1), "export_price must be >= 0"),
    ],
)
def test_bad_input(call: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()  # type: ignore[operator]


def test_auditor_scale_is_fast() -> None:
    """100 members x 96 slots, every rule: the auditor recomputes a day in well under a second."""
    import time

    day = [[((17 * m + 31 * t) % 4000, (29 * m + 7 * t) % 3000) for m in range(100)] for t in range(96)]
    for rule in SHARING_RULES:
        start = time.perf_counter()
        for readings in day:
            slot_amounts(rule, readings, ODD_PI, ODD_PE)
        assert time.perf_counter() - start < 0.5


# ----------------------------------------------------------------------------- properties

readings_st = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    | st.tuples(st.integers(0, 5000), st.integers(0, 5000)),
    min_size=1,
    max_size=25,
)


@st.composite
def tariffs_st(draw: st.DrawFn) -> tuple[int, int]:
    pe = draw(st.integers(0, 2**32 - 2))
    return draw(st.integers(pe + 1, 2**32 - 1)), pe


@settings(max_examples=400, deadline=None)
@given(rule=st.sampled_from(SHARING_RULES), readings=readings_st, tariffs=tariffs_st())
def test_slot_is_budget_balanced_and_supplier_keeps_only_rounding(
    rule: str, readings: list[tuple[int, int]], tariffs: tuple[int, int]
) -> None:
    pi, pe = tariffs
    members, supplier = slot_amounts(rule, readings, pi, pe)  # type: ignore[arg-type]
    assert sum(members) + supplier == 0
    supply, demand = supply_demand(readings)
    importers = sum(1 for i, e in readings if i > e)
    exporters = sum(1 for i, e in readings if e > i)
    drift = supplier - exact_exchange(supply, demand, pi, pe)
    # importers' rounding is the supplier's loss, exporters' its gain: < 1 base unit per member
    assert drift == 0 or -importers < drift < exporters
    assert abs(drift) < len(readings)


@settings(max_examples=400, deadline=None)
@given(
    rule=st.sampled_from(SHARING_RULES),
    supply=st.integers(0, 2**40) | st.integers(0, 50),
    demand=st.integers(0, 2**40) | st.integers(0, 50),
    tariffs=tariffs_st() | st.tuples(st.integers(1, 2**32 - 1), st.just(0)),
)
def test_rule_prices_balance_the_budget_and_stay_in_their_band(
    rule: str, supply: int, demand: int, tariffs: tuple[int, int]
) -> None:
    pi, pe = tariffs
    buy, sell = rule_prices(rule, supply, demand, pi, pe)  # type: ignore[arg-type]
    assert demand * buy - supply * sell == pi * max(demand - supply, 0) - pe * max(supply - demand, 0)
    if rule == "bs":  # internal energy is free: importers pay at most Pi, exporters get at most Pe
        assert 0 <= buy <= pi and 0 <= sell <= pe
        return
    if supply:
        assert pe <= sell <= pi
    if demand:
        assert pe <= buy <= pi
    if supply and demand:
        assert sell <= buy


@settings(max_examples=400, deadline=None)
@given(rule=st.sampled_from(SHARING_RULES), readings=readings_st, tariffs=tariffs_st())
def test_no_member_pays_more_than_alone(rule: str, readings: list[tuple[int, int]], tariffs: tuple[int, int]) -> None:
    pi, pe = tariffs
    members, _ = slot_amounts(rule, readings, pi, pe)  # type: ignore[arg-type]
    for (import_wh, export_wh), amount in zip(readings, members):
        alone = standalone_bill(import_wh, export_wh, pi, pe)
        if rule == "bs" and export_wh > import_wh:
            assert 0 <= amount <= alone  # BS exporters: see test_bill_sharing_can_pay_exporters_below_feed_in
        else:
            assert amount >= alone


def test_bill_sharing_can_pay_exporters_below_feed_in() -> None:
    """DESIGN.md section 6 says every sharing rule prices within [Pe, Pi]; bill sharing as
    section 5 defines it does not: in a balanced slot an exporter is paid nothing."""
    members, _ = slot_amounts("bs", BALANCED, PI, PE)
    assert members[0] == 0 < standalone_bill(*BALANCED[0], PI, PE)  # alone: +1500*50 = 75_000

"""Property test of CommunitySettlement: random slots settled on chain against a reference.

Each example is one fresh slot (time only moves forward, so no chain revert between examples):
random rules for it (Cda or sharing mode, MMR/SDR/BS, grid and manager fees, savings
retained), random Cda trades between the four members placed before its gate closure (an ask,
then a bid at or above it from another member: every trade fills completely and nothing rests),
random readings (import and export up to 50 kWh, some members silent), then settlement in
chunks of random size and ``settleUnmetered`` for every member. Then:

* budget balance to the base unit: the balance changes of all accounts (members, supplier, DSO,
  manager, the pot) sum to zero;
* every account's change equals the reference: sharing amounts from settlement/pricing.py's
  ``slot_amounts`` (also compared with the MembersSettled energy amounts), Cda trades at their
  prices with imbalances at the tariffs, fees per kWh traded, savings retained, the supplier's
  residual;
* solvency: the market holds exactly the sum of all balances, and the slot has no open position
  and no resting order (no escrow) left.

hypothesis.given is used directly (not brownie.test.given, which reverts the chain before every
example): a fresh slot per example needs no revert. Transactions are awaited by their receipts
(conftest's ``send_awaited``): Brownie's own wait now and then calls a transaction that went
through "dropped", and hypothesis would then run the example again over the first attempt.
Shrinking is off unless PEERWATT_SHRINK=1 (each step of it replays a slot on chain);
hypothesis keeps failing examples and replays them first.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from conftest import CDA, EQUAL, SETTLED, SHARING, send_awaited, settlement_config, weighted
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from oracle.readings import Reading, pack
from settlement.chunks import SlotReading
from settlement.pricing import SHARING_RULES, slot_amounts, tariff_amount

PI, PE = 250_000, 60_000
EXAMPLES = 60
MAX_WH = 50_000
MAX_PRICE = 1_000_000  # the market's price band (default parameters, tick 1)
TOP_UP = 10_000_000_000  # 10,000 tokens more for each member and the supplier
PHASES = tuple(Phase) if os.environ.get("PEERWATT_SHRINK") else (Phase.explicit, Phase.reuse, Phase.generate)


@dataclass(frozen=True)
class Trade:
    seller: int  # member index 0..3
    buyer_offset: int  # the buyer is (seller + offset) % 4
    price: int
    bid_above: int  # the bid's limit is this much above the ask (the trade is at the ask)
    qty_wh: int

    @property
    def buyer(self) -> int:
        return (self.seller + self.buyer_offset) % 4


@dataclass(frozen=True)
class SlotCase:
    mode: int
    rule: int
    grid_fee: int
    manager_fee: int
    savings_bps: int
    trades: tuple[Trade, ...]
    readings: tuple[tuple[int, int] | None, ...]  # per member: (import_wh, export_wh) or no reading
    chunk: int


WH = weighted((1, st.just(0)), (4, st.integers(0, MAX_WH)))
READING = weighted((1, st.none()), (4, st.tuples(WH, WH)))
TRADE = st.builds(
    Trade,
    st.integers(0, 3),
    st.integers(1, 3),
    st.integers(1_000, 400_000),
    weighted((1, st.just(0)), (1, st.integers(1, 20_000))),
    st.integers(10, 20_000),
)
CASE = st.builds(
    SlotCase,
    weighted((1, st.just(CDA)), (2, st.just(SHARING))),
    weighted(*((1, st.just(rule)) for rule in range(len(SHARING_RULES)))),
    weighted((1, st.just(0)), (1, st.integers(1, 20_000))),
    weighted((1, st.just(0)), (1, st.integers(1, 5_000))),
    weighted((1, st.just(0)), (1, st.integers(1, 10_000))),
    st.lists(TRADE, max_size=3).map(tuple),
    st.tuples(READING, READING, READING, READING),
    st.integers(1, 4),
)


# explicit examples, run first: every sharing rule and Cda, with fees, savings retained, trades
# and a silent member (in sharing mode carol, who traded: her trade is settled as contracted)
SHARING_TRADES = (Trade(0, 1, 150_001, 3, 1_234), Trade(2, 2, 99_999, 0, 10))
SHARING_READINGS = ((0, 40_000), (12_345, 0), None, (30_001, 7))
CDA_TRADES = (Trade(1, 1, 200_003, 100, 5_555), Trade(3, 2, 1_000, 0, 999))
EXPLICIT = [
    *(SlotCase(SHARING, rule, 7_000, 1_000, 2_500, SHARING_TRADES, SHARING_READINGS, rule + 1) for rule in range(3)),
    SlotCase(CDA, 0, 3_333, 777, 10_000, CDA_TRADES, ((0, 5_000), (7_000, 0), (0, 0), None), 3),
]


def accounts(community):
    return [*community.members, community.supplier, community.dso, community.fee_manager, community.settlement]


def expected_changes(case: SlotCase, positions: list[tuple[int, int, int, int]]) -> tuple[list[int], list[int]]:
    """Every account's balance change over the slot (from before its trades) in ``accounts``
    order, and the sharing amounts of the members with a reading (in id order)."""
    g, m, bps = case.grid_fee, case.manager_fee, case.savings_bps
    reported = [reading for reading in case.readings if reading is not None]
    shared = slot_amounts(SHARING_RULES[case.rule], reported, PI, PE)[0] if case.mode == SHARING else []
    amounts = iter(shared)
    changes, dso, manager, pot = [], 0, 0, 0
    for (bought, sold, paid, received), reading in zip(positions, case.readings):
        volume = bought + sold
        grid_fee, manager_fee = volume * g // 1000, volume * m // 1000
        dso += grid_fee
        manager += manager_fee
        trades = received - paid - grid_fee - manager_fee  # as contracted (settleUnmetered, or Cda)
        if reading is None:
            changes.append(trades)
            continue
        metered = reading[1] - reading[0]
        if case.mode == CDA:
            net = trades + tariff_amount(metered - (sold - bought), PI, PE)
            saving = net - tariff_amount(metered, PI, PE)
        else:
            net = next(amounts)
            saving = net - tariff_amount(metered, PI, PE)
        retained = saving * bps // 10_000 if saving > 0 else 0
        pot += retained
        changes.append(net - retained + (trades if case.mode == SHARING else 0))
    supplier = -(sum(changes) + dso + manager + pot)
    return [*changes, supplier, dso, manager, pot], shared


def deliver(community, slot, flows):
    """``community.deliver``, with the batch awaited by its receipt (conftest's ``send_awaited``)."""
    community.end_slot(slot)
    signed, accepted = [], []
    for member, (import_wh, export_wh) in flows.items():
        key = community.keys[community.members.index(member)]
        last_import, last_export = community.registers.get(key.address, (0, 0))
        registers = (last_import + import_wh, last_export + export_wh)
        signed.append(community.domain.sign(Reading(key.address, slot, import_wh, export_wh, *registers), key.key))
        community.registers[key.address] = registers
        accepted.append(SlotReading(community.members.index(member) + 1, import_wh, export_wh))
    send_awaited(community.oracle.submitReadings, (pack(signed),), community.relayer)
    assert community.oracle.slotCommitment(slot)[1] == len(flows)  # every reading accepted
    community.accepted[slot] = accepted


def settle(community, slot, mode, size, caller):
    """Settles ``slot`` in chunks of ``size`` readings (two passes in sharing mode; a slot
    without readings in one call); returns the receipts."""
    chunks = community.chunks(slot, size)
    passes = 2 if mode == SHARING and chunks else 1
    txs = []
    for _ in range(passes):
        for chunk in chunks or [None]:
            args = (slot, chunk.from_chain_bytes, chunk.data) if chunk else (slot, bytes(32), b"")
            txs.append(send_awaited(community.settlement.settle, args, caller))
    return txs


def run_slot(community, admin, case: SlotCase, logs, member_results, plain, stats: Counter, used: list[int]) -> None:
    market, settlement, members = community.market, community.settlement, community.members
    # a whole slot length before its gate closes, and never a slot an earlier run used (hypothesis
    # runs a failing example again)
    slot = max(market.nextOpenSlot() + 1, used[-1] + 1 if used else 0)
    used.append(slot)
    config = settlement_config(case.mode, case.rule, EQUAL, case.grid_fee, case.manager_fee, case.savings_bps)
    send_awaited(settlement.setConfig, (config, slot), admin)
    note(f"slot {slot}")
    before = [market.balanceOf(account) for account in accounts(community)]
    for trade in case.trades:
        send_awaited(market.placeOrder, (slot, False, trade.price, trade.qty_wh), members[trade.seller])
        bid = min(trade.price + trade.bid_above, MAX_PRICE)
        send_awaited(market.placeOrder, (slot, True, bid, trade.qty_wh), members[trade.buyer])
    assert plain(market.bestPrices(slot)) == (0, 0)  # every trade filled: nothing rests
    positions = [plain(market.positionOf(slot, member)) for member in members]
    readings = {member: reading for member, reading in zip(members, case.readings) if reading is not None}
    if readings:
        deliver(community, slot, readings)
    if len(readings) < len(members):  # otherwise the slot settles as soon as it ended
        community.past_deadline(slot)
    txs = settle(community, slot, case.mode, case.chunk, members[0])
    assert settlement.slotState(slot)[0] == SETTLED
    unmetered = send_awaited(settlement.settleUnmetered, (slot, [1, 2, 3, 4]), members[0])

    after = [market.balanceOf(account) for account in accounts(community)]
    changes = [b - a for a, b in zip(before, after)]
    expected, shared = expected_changes(case, positions)
    assert sum(changes) == 0  # budget balance, to the base unit
    assert changes == expected
    if case.mode == SHARING:
        settled = [args[1:] for tx in txs for args in member_results(tx)]
        assert len(settled) == len(readings)  # once each
        energy = {member: energy_amount for member, _, energy_amount, *_ in settled}
        assert [energy[member] for member in readings] == shared
    missing = [args[1] for args in logs(unmetered, "ReadingMissing")]
    if case.mode == CDA:
        assert missing == [m for m, p, r in zip(members, positions, case.readings) if r is None and p[:2] != (0, 0)]
    else:
        assert missing == []
    assert all(plain(market.positionOf(slot, member)) == (0, 0, 0, 0) for member in members)
    assert community.token.balanceOf(market) == community.owed()  # solvent, no escrow left
    stats["examples"] += 1
    stats["cda" if case.mode == CDA else SHARING_RULES[case.rule]] += 1
    stats["trades"] += len(case.trades)
    stats["readings"] += len(readings)
    stats["settle calls"] += len(txs)
    stats["retained"] += expected[-1] > 0


def test_settled_slots_balance_and_match_the_reference(community, admin, logs, member_results, plain):
    token, market = community.token, community.market
    for account in (*community.members, community.supplier):  # no member runs into debt
        token.mint(account, TOP_UP, {"from": admin})
        market.deposit(TOP_UP, {"from": account})
    stats: Counter = Counter()
    used: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
    @given(case=CASE)
    @example(case=EXPLICIT[0])
    @example(case=EXPLICIT[1])
    @example(case=EXPLICIT[2])
    @example(case=EXPLICIT[3])
    def run(case):
        run_slot(community, admin, case, logs, member_results, plain, stats, used)

    run()
    print("\n" + "\n".join(f"{key}: {count}" for key, count in sorted(stats.items())))
    assert stats["examples"] >= EXAMPLES + len(EXPLICIT)
    assert stats["cda"] > 0 and stats["trades"] > 0 and stats["retained"] > 0
    assert all(stats[rule] > 0 for rule in SHARING_RULES)

"""CommunitySettlement profit shares: savings retained into a period's pot while slots settle,
external revenue (``fundPot``), and the pot shared by the published rule once every slot of
the period is settled (``distributeShares``): equal and proportional shares recomputed on
chain, Shapley shares posted by the manager.

A period is PERIOD_SLOTS (4) slots; the pot is the settlement contract's own balance in the
market. Tariffs are the defaults (import 250000, export 60000 base units per kWh); members
alice, bob, carol and dave have ids 1..4. Each test uses the first period whose slots are all
still open for trading, so that its rules can be set from its first slot on.
"""

import brownie
from conftest import (
    CDA,
    EQUAL,
    MAX_UINT256,
    MMR,
    OPTIMISATION,
    PERIOD_SLOTS,
    PROPORTIONAL,
    SETTLED,
    SHAPLEY,
    SHARING,
    assert_solvent,
    deltas,
    settlement_config,
)

from settlement.chunks import pack_schedule
from settlement.shares import equal_shares, proportional_shares, rollover, shapley_shares

PI, PE = 250_000, 60_000
SAVINGS_BPS = 2_000  # 20% of each member's savings go to the pot
FUNDING = 1_000_000
RESULT_HASH = bytes(32)


def accounts(community):
    return [*community.members, community.supplier, community.dso, community.fee_manager, community.settlement]


def balances(community):
    return [community.market.balanceOf(account) for account in accounts(community)]


def future_period(community):
    """``(period, first slot)`` of the first period whose slots are all open for trading."""
    slot = community.market.nextOpenSlot() + 1
    period = -(-slot // PERIOD_SLOTS)
    return period, period * PERIOD_SLOTS


def settle_slot(community, slot):
    """Settles ``slot`` after its deadline; a slot without readings takes one call, whatever its
    mode."""
    community.past_deadline(slot)
    if community.accepted.get(slot):
        return community.settle(slot)
    tx = community.settlement.settle(slot, bytes(32), b"", {"from": community.relayer})
    assert community.settlement.slotState(slot)[0] == SETTLED
    return [tx]


def settle_period(community, first, slots=PERIOD_SLOTS):
    return [tx for slot in range(first, first + slots) for tx in settle_slot(community, slot)]


def fund(community, admin, funder, period, amount):
    community.token.mint(funder, amount, {"from": admin})
    community.token.approve(community.market, amount, {"from": funder})
    return community.settlement.fundPot(period, amount, {"from": funder})


def distribute(community, period, shares, caller):
    """``distributeShares`` with ``{member_id: share}``."""
    ids = sorted(shares)
    return community.settlement.distributeShares(period, ids, [shares[i] for i in ids], {"from": caller})


def retained_pot(community, admin, members):
    """A period whose pot holds the savings retained at 20%: a Cda slot (alice sells bob 1000 Wh
    at 0.2 per kWh; she exports 1000 Wh, he imports only 500), a sharing slot (MMR: alice
    exports 1000 Wh, bob imports 1000, carol 2000) and two empty slots, all settled. Returns
    ``(period, first slot, balances before, settle transactions)``."""
    period, first = future_period(community)
    settlement = community.settlement
    settlement.setConfig(settlement_config(CDA, savings_bps=SAVINGS_BPS), first, {"from": admin})
    settlement.setConfig(settlement_config(SHARING, MMR, savings_bps=SAVINGS_BPS), first + 1, {"from": admin})
    alice, bob, carol, _ = members
    before = balances(community)
    community.market.placeOrder(first, False, 200_000, 1_000, {"from": alice})
    community.market.placeOrder(first, True, 200_000, 1_000, {"from": bob})
    community.deliver(first, {alice: (0, 1_000), bob: (500, 0)})
    community.deliver(first + 1, {alice: (0, 1_000), bob: (1_000, 0), carol: (2_000, 0)})
    txs = settle_period(community, first)
    return period, first, before, txs


# ---------------------------------------------------------------------- savings retained


def test_savings_are_retained_into_the_period_pot(community, admin, members, member_results, plain):
    period, _, before, txs = retained_pot(community, admin, members)
    alice, bob, carol, _ = members
    cda = {args[1]: args[2:] for args in member_results(txs[0])}
    # Cda: alice +200000 for the trade; alone her 1000 Wh would fetch 1000 * 60 = 60000: she saves
    # 140000 and 20% = 28000 is retained. bob pays 200000 and sells his 500 Wh surplus at the export
    # tariff, +30000: -170000 against -500 * 250 = -125000 alone: no saving, nothing retained
    assert cda == {alice: (1_000, 200_000, 0, 0, 28_000), bob: (-1_000, -200_000, 30_000, 0, 0)}
    sharing = {args[1]: args[2:] for tx in txs[1:3] for args in member_results(tx)}
    # MMR, S = 1000 < D = 3000: Ps = 155000, Pb = (1000*155000 + 2000*250000)/3000 = 218333.3..
    # alice +155000 vs +60000 alone: saves 95000 -> 19000; bob -218333 vs -250000: 31667 ->
    # 6333 (6333.4 rounded down); carol -436666 vs -500000: 63334 -> 12666 (12666.8)
    assert sharing == {
        alice: (0, 155_000, 0, 0, 19_000),
        bob: (0, -218_333, 0, 0, 6_333),
        carol: (0, -436_666, 0, 0, 12_666),
    }
    pot = 28_000 + 19_000 + 6_333 + 12_666
    assert plain(community.settlement.period(period)) == (pot, PERIOD_SLOTS, False) == (65_999, 4, False)
    # alice 200000 - 28000 + 155000 - 19000; bob -170000 - 218333 - 6333; carol -436666 - 12666;
    # supplier -30000 (bob's surplus) + 499999 (the sharing slot's exchange: 218333 + 436666 -
    # 155000); the pot in the settlement contract's account
    change = deltas(before, balances(community))
    assert change == [308_000, -394_666, -449_332, 0, 469_999, 0, 0, 65_999]
    assert sum(change) == 0
    assert_solvent(community)


def test_the_pot_waits_for_every_slot_of_the_period(community, admin, members, plain, error_pattern):
    period, first = future_period(community)
    for slot in range(first, first + PERIOD_SLOTS - 1):
        settle_slot(community, slot)
    assert plain(community.settlement.period(period)) == (0, 3, False)
    with brownie.reverts(revert_pattern=error_pattern("SettlementPeriodOpen", period, 3, PERIOD_SLOTS)):
        distribute(community, period, {1: 0, 2: 0, 3: 0, 4: 0}, members[0])
    with brownie.reverts(revert_pattern=error_pattern("SettlementPeriodOpen", period + 1, 0, PERIOD_SLOTS)):
        distribute(community, period + 1, {}, members[0])
    settle_slot(community, first + PERIOD_SLOTS - 1)
    assert plain(community.settlement.period(period)) == (0, 4, False)
    assert community.settlement.periodSlots() == PERIOD_SLOTS


# -------------------------------------------------------------------------- equal shares


def test_equal_shares(community, admin, members, logs, plain, error_pattern):
    period, _, _, _ = retained_pot(community, admin, members)
    alice, bob, carol, dave = members
    pot = 65_999
    # 65999 // 4 = 16499, and 65999 % 4 = 3 base units more for ids 1, 2 and 3
    expected = {1: 16_500, 2: 16_500, 3: 16_500, 4: 16_499}
    assert equal_shares(pot, [1, 2, 3, 4]) == expected
    with brownie.reverts(revert_pattern=error_pattern("SettlementShareMismatch", 1, 16_499, 16_500)):
        distribute(community, period, {1: 16_499, 2: 16_500}, dave)
    with brownie.reverts(revert_pattern=error_pattern("LedgerNotMemberId", 5)):
        distribute(community, period, {1: 16_500, 5: 0}, dave)
    before = balances(community)
    first = distribute(community, period, {1: 16_500, 2: 16_500}, dave)  # anyone may distribute
    assert logs(first, "ShareDistributed") == [(period, alice, 16_500), (period, bob, 16_500)]
    assert logs(first, "SharesCompleted") == []
    # distribution started: the pot takes no more revenue
    with brownie.reverts(revert_pattern=error_pattern("SettlementSharesDistributed", period)):
        fund(community, admin, dave, period, 1_000)
    with brownie.reverts(revert_pattern=error_pattern("SettlementMembersNotAscending", 2, 2)):
        distribute(community, period, {2: 16_500, 3: 16_500}, dave)
    with brownie.reverts(revert_pattern=error_pattern("SettlementShareMismatch", 4, 16_500, 16_499)):
        distribute(community, period, {3: 16_500, 4: 16_500}, dave)
    second = distribute(community, period, {3: 16_500, 4: 16_499}, dave)
    assert logs(second, "ShareDistributed") == [(period, carol, 16_500), (period, dave, 16_499)]
    assert logs(second, "SharesCompleted") == [(period, EQUAL, pot, pot)]
    assert deltas(before, balances(community)) == [16_500, 16_500, 16_500, 16_499, 0, 0, 0, -pot]
    assert community.market.balanceOf(community.settlement) == 0
    assert plain(community.settlement.period(period)) == (pot, PERIOD_SLOTS, True)
    assert plain(community.settlement.period(period + 1)) == (0, 0, False)  # nothing rolls over
    with brownie.reverts(revert_pattern=error_pattern("SettlementSharesDistributed", period)):
        distribute(community, period, {}, dave)
    with brownie.reverts(revert_pattern=error_pattern("SettlementSharesDistributed", period)):
        fund(community, admin, dave, period, 1_000)
    assert_solvent(community)


def test_equal_shares_go_to_the_active_members(community, admin, manager, members, logs, error_pattern):
    period, _, _, _ = retained_pot(community, admin, members)
    community.market.removeMember(members[3], {"from": manager})
    # n = 3 active members: 65999 // 3 = 21999, 65999 % 3 = 2 more for ids 1 and 2
    expected = equal_shares(65_999, [1, 2, 3])
    assert expected == {1: 22_000, 2: 22_000, 3: 21_999}
    with brownie.reverts(revert_pattern=error_pattern("SettlementShareMismatch", 4, 0, 0)):
        distribute(community, period, {**expected, 4: 0}, manager)
    tx = distribute(community, period, expected, manager)
    assert logs(tx, "SharesCompleted") == [(period, EQUAL, 65_999, 65_999)]
    assert community.market.balanceOf(community.settlement) == 0
    assert_solvent(community)


# ------------------------------------------------------------------- proportional shares


def contributions_period(community, admin, manager, members):
    """A period under the proportional rule where every kind of contribution is counted:
    a Cda slot (alice sells bob 1000 Wh), a sharing slot (MMR: alice exports 1001 Wh, carol
    2999, bob imports 2000), an optimisation slot (dave sells bob 700 Wh internally) and an
    optimisation slot without a schedule or readings. All settled; returns ``(period, first
    slot)``."""
    period, first = future_period(community)
    settlement = community.settlement
    for offset, mode in enumerate((CDA, SHARING, OPTIMISATION)):
        config = settlement_config(mode, MMR, PROPORTIONAL)
        settlement.setConfig(config, first + offset, {"from": admin})
    alice, bob, carol, dave = members
    community.market.placeOrder(first, False, 200_000, 1_000, {"from": alice})
    community.market.placeOrder(first, True, 200_000, 1_000, {"from": bob})
    entries = pack_schedule([(2, -700, -700), (4, 700, 700)])
    settlement.postSchedule(first + 2, 150_000, entries, True, RESULT_HASH, {"from": manager})
    community.deliver(first, {alice: (0, 1_000), bob: (1_000, 0)})
    community.deliver(first + 1, {alice: (0, 1_001), carol: (0, 2_999), bob: (2_000, 0)})
    community.deliver(first + 2, {bob: (700, 0), dave: (0, 700)})
    settle_period(community, first)
    return period, first


def test_contributions_are_counted_while_slots_settle(community, admin, manager, members):
    period, _ = contributions_period(community, admin, manager, members)
    # Cda: the Wh sold (alice 1000); sharing: s_n * min(S, D) / S with S = 4000, D = 2000, rounded
    # down: alice 1001 * 2000 / 4000 = 500.5 -> 500, carol 2999 * 2000 / 4000 = 1499.5 -> 1499;
    # optimisation: the internal trade sold (dave 700); buyers contribute nothing
    assert [community.settlement.contributionOf(period, i) for i in range(1, 6)] == [1_500, 0, 1_499, 700, 0]
    assert [community.settlement.contributionOf(period + 1, i) for i in range(1, 5)] == [0, 0, 0, 0]


def test_proportional_shares(community, admin, manager, members, outsider, logs, plain, error_pattern):
    period, _ = contributions_period(community, admin, manager, members)
    _, bob, carol, dave = members
    fund(community, admin, outsider, period, FUNDING)
    contributions = {i: community.settlement.contributionOf(period, i) for i in range(1, 5)}
    reference = proportional_shares(FUNDING, contributions)
    # C = 1500 + 1499 + 700 = 3699: alice 1000000 * 1500 // 3699 = 405515 (405515.01..)
    assert reference == {1: 405_515, 2: 0, 3: 405_244, 4: 189_240}
    left = rollover(FUNDING, reference)
    assert left == 1
    shares = {member: share for member, share in reference.items() if contributions[member]}
    with brownie.reverts(revert_pattern=error_pattern("SettlementShareMismatch", 2, 0, 0)):
        distribute(community, period, {1: shares[1], 2: 0}, bob)  # only contributors
    with brownie.reverts(revert_pattern=error_pattern("SettlementShareMismatch", 1, 405_516, 405_515)):
        distribute(community, period, {1: 405_516}, bob)
    before = balances(community)
    first = distribute(community, period, {1: shares[1]}, bob)
    assert logs(first, "SharesCompleted") == []
    second = distribute(community, period, {3: shares[3], 4: shares[4]}, bob)
    assert logs(second, "ShareDistributed") == [(period, carol, 405_244), (period, dave, 189_240)]
    assert logs(second, "SharesCompleted") == [(period, PROPORTIONAL, FUNDING, FUNDING - left)]
    assert deltas(before, balances(community)) == [405_515, 0, 405_244, 189_240, 0, 0, 0, -(FUNDING - left)]
    # the rounding remainder is the next period's
    assert plain(community.settlement.period(period))[::2] == (FUNDING, True)
    assert plain(community.settlement.period(period + 1)) == (left, 0, False)
    assert community.market.balanceOf(community.settlement) == left
    assert_solvent(community)


def test_a_pot_without_contributors_rolls_over(community, admin, members, outsider, logs, plain):
    period, first = future_period(community)
    community.settlement.setConfig(settlement_config(CDA, MMR, PROPORTIONAL), first, {"from": admin})
    fund(community, admin, outsider, period, FUNDING)
    settle_period(community, first)
    tx = distribute(community, period, {}, outsider)
    assert logs(tx, "SharesCompleted") == [(period, PROPORTIONAL, FUNDING, 0)]
    assert plain(community.settlement.period(period + 1)) == (FUNDING, 0, False)
    assert community.market.balanceOf(community.settlement) == FUNDING
    assert_solvent(community)


# ------------------------------------------------------------------------ Shapley shares

# (import_wh, export_wh) per slot of the period (rows) and member: None for no reading
SHAPLEY_FLOWS = [
    [(0, 2_000), (1_500, 0), None, None],
    [None, (0, 500), (0, 1_000), (3_000, 0)],
    [None, None, None, None],
    [(800, 0), None, None, (0, 800)],
]


def test_shapley_shares(community, admin, manager, members, outsider, logs, plain, error_pattern):
    period, first = future_period(community)
    community.settlement.setConfig(settlement_config(SHARING, MMR, SHAPLEY), first, {"from": admin})
    fund(community, admin, outsider, period, FUNDING)
    for offset, flows in enumerate(SHAPLEY_FLOWS):
        readings = {member: flow for member, flow in zip(members, flows) if flow is not None}
        if readings:
            community.deliver(first + offset, readings)
    settle_period(community, first)
    # the period's metered net exports, members x slots
    net_exports = [
        [0 if flows[member] is None else flows[member][1] - flows[member][0] for flows in SHAPLEY_FLOWS]
        for member in range(4)
    ]
    assert net_exports == [[2_000, 0, 0, -800], [-1_500, 500, 0, 0], [0, 1_000, 0, 0], [0, -3_000, 0, 800]]
    result = shapley_shares(FUNDING, net_exports, PI, PE, members=[1, 2, 3, 4])
    assert result.method == "exact"
    shares = result.shares
    assert sum(shares.values()) == FUNDING and min(shares.values()) >= 0
    alice = members[0]
    with brownie.reverts(revert_pattern=error_pattern("SettlementNotManager", alice)):
        distribute(community, period, shares, alice)
    with brownie.reverts(revert_pattern=error_pattern("SettlementSharesExceedPot", period, FUNDING + 1, FUNDING)):
        distribute(community, period, {**shares, 4: shares[4] + 1}, manager)
    with brownie.reverts(revert_pattern=error_pattern("SettlementSharesExceedPot", period, FUNDING + 1, FUNDING)):
        distribute(community, period, {1: FUNDING, 2: 1}, manager)
    with brownie.reverts(revert_pattern=error_pattern("SettlementSharesIncomplete", period, FUNDING - 1, FUNDING)):
        distribute(community, period, {**shares, 4: shares[4] - 1}, manager)
    before = balances(community)
    first_half = distribute(community, period, {1: shares[1], 2: shares[2]}, manager)
    assert logs(first_half, "SharesCompleted") == []
    second_half = distribute(community, period, {3: shares[3], 4: shares[4]}, manager)
    assert logs(second_half, "SharesCompleted") == [(period, SHAPLEY, FUNDING, FUNDING)]
    paid = [shares[i] for i in range(1, 5)]
    assert deltas(before, balances(community)) == [*paid, 0, 0, 0, -FUNDING]
    assert plain(community.settlement.period(period)) == (FUNDING, PERIOD_SLOTS, True)
    assert plain(community.settlement.period(period + 1)) == (0, 0, False)
    assert_solvent(community)


# --------------------------------------------------------------------- external revenue


def test_fund_pot(community, admin, outsider, logs, plain, error_pattern):
    period, _ = future_period(community)
    wallet = community.token.balanceOf(outsider) + FUNDING
    held = community.token.balanceOf(community.market)
    community.token.mint(outsider, FUNDING, {"from": admin})
    community.token.approve(community.market, MAX_UINT256, {"from": outsider})
    tx = community.settlement.fundPot(period, 400_000, {"from": outsider})
    assert logs(tx, "PotFunded") == [(period, outsider, 400_000)]
    assert logs(tx, "AccountFunded") == [(outsider, community.settlement, 400_000)]
    assert logs(tx, "Transfer") == [(outsider, community.market, 400_000)]
    community.settlement.fundPot(period, 1, {"from": outsider})
    assert plain(community.settlement.period(period)) == (400_001, 0, False)
    assert community.market.balanceOf(community.settlement) == 400_001
    assert community.token.balanceOf(outsider) == wallet - 400_001
    assert community.token.balanceOf(community.market) == held + 400_001
    with brownie.reverts(revert_pattern=error_pattern("MarketZeroAmount")):
        community.settlement.fundPot(period, 0, {"from": outsider})
    # a pot stays below 2^88 base units (MAX_POT), so every share fits a ledger record
    assert community.settlement.MAX_POT() == 2**88 - 1
    with brownie.reverts(revert_pattern=error_pattern("SafeCastOverflowedUintDowncast", 88, 2**88)):
        community.settlement.fundPot(period, 2**88 - 400_001, {"from": outsider})
    community.token.approve(community.market, 0, {"from": outsider})
    with brownie.reverts():  # the token refuses the transfer: nothing is credited
        community.settlement.fundPot(period, 1, {"from": outsider})
    assert plain(community.settlement.period(period)) == (400_001, 0, False)
    assert_solvent(community)


# --------------------------------------------------------------------- found gaps


def test_a_rollover_never_lands_in_a_distributed_period(community, admin, members, outsider, plain):
    """A proportional remainder rolls over to the first period after every period whose
    distribution has begun, never into one already (being) distributed: here a pot without
    contributors (the whole pot rolls over) is distributed after the next period, and lands in
    the one after it."""
    period, first = future_period(community)
    community.settlement.setConfig(settlement_config(CDA, MMR, PROPORTIONAL), first, {"from": admin})
    fund(community, admin, outsider, period, FUNDING)
    settle_period(community, first, 2 * PERIOD_SLOTS)
    distribute(community, period + 1, {}, outsider)  # the next period first: its pot is 0
    distribute(community, period, {}, outsider)
    held = community.market.balanceOf(community.settlement)
    assert held == FUNDING
    distributable = [community.settlement.period(p) for p in range(period, period + 3)]
    assert held == sum(pot for pot, _, distributed in distributable if not distributed), (
        f"{held} base units are in no pot still to distribute: {[plain(p) for p in distributable]}"
    )

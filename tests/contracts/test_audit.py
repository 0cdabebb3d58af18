"""The independent audit (settlement/audit.py) over real histories on the chain: a clean
history in every mode (trades, imbalances, fees, savings, an unmetered member, a resting and a
partly filled buy order, a cancellation, a posted schedule) reports nothing; a ledger
application that credits a member without a settlement result, a debt, and BS's exporters
below the feed-in tariff are reported with their slot, member and amounts.

The ``community`` fixture: members alice, bob, carol and dave (ids 1..4, 500 tokens deposited
each), the supplier (100 tokens), tariffs 250000 / 60000 base units per kWh, price tick 1."""

from types import SimpleNamespace

import brownie
from conftest import BS, CDA, MMR, OPTIMISATION, SHARING, settlement_config

from settlement.audit import Finding
from settlement.chain_audit import audit_chain
from settlement.chunks import pack_schedule

SCHEDULE_PRICE = 150_000


def contracts(community):
    """The audited contracts as a deployment lists them (the whole test chain is read)."""
    return SimpleNamespace(
        token=community.token.address,
        market=community.market.address,
        oracle=community.oracle.address,
        settlement=community.settlement.address,
        deploy_block=0,
    )


def audit(community, **kwargs):
    return audit_chain(brownie.web3, contracts(community), **kwargs)


def use_rules(community, admin, mode, rule=MMR, **fees):
    slot = community.market.nextOpenSlot()
    community.settlement.setConfig(settlement_config(mode, rule, **fees), slot, {"from": admin})
    return slot


def test_a_clean_history_in_every_mode_reports_nothing(community, admin, manager, members):
    alice, bob, carol, dave = members
    market = community.market
    cda = use_rules(community, admin, CDA, grid_fee=10_000, manager_fee=5_000, savings_bps=2_000)
    market.placeOrder(cda, False, 200_000, 1_000, {"from": alice})
    market.placeOrder(cda, True, 210_003, 1_500, {"from": bob})  # 1000 traded, 500 rest at 210003
    market.placeOrder(cda, False, 205_000, 333, {"from": dave})  # fills bob's order in part: 1 unit of dust
    market.placeOrder(cda, True, 100_000, 700, {"from": carol})  # rests, then is cancelled
    carol_order = market.placeOrder(cda + 1, True, 90_001, 777, {"from": carol}).events["OrderPlaced"]["orderId"]
    market.cancelOrder(carol_order, {"from": carol})
    market.placeOrder(cda, True, 95_000, 401, {"from": carol})  # still resting when audited
    community.deliver(cda, {alice: (0, 800), bob: (1_300, 0)})  # dave sold but sent no reading
    community.past_deadline(cda)
    community.settle(cda)
    community.settlement.settleUnmetered(cda, [1, 2, 3, 4], {"from": bob})

    sharing = use_rules(community, admin, SHARING, MMR, savings_bps=1_000)
    community.deliver(sharing, {alice: (0, 1_000), bob: (2_000, 0), carol: (1_000, 0), dave: (0, 0)})
    community.past_deadline(sharing)
    community.settle(sharing, size=3)

    optimisation = use_rules(community, admin, OPTIMISATION, grid_fee=1_000) + 1
    entries = [(1, 900, 400), (2, -700, -300), (3, -200, -100), (4, 100, 0)]
    community.settlement.postSchedule(
        optimisation, SCHEDULE_PRICE, pack_schedule(entries), True, bytes(32), {"from": manager}
    )
    community.deliver(optimisation, {alice: (0, 950), bob: (650, 0), dave: (0, 120)})  # carol unmetered
    community.past_deadline(optimisation)
    community.settle(optimisation)
    community.settlement.settleUnmetered(optimisation, [1, 2, 3, 4], {"from": bob})

    report = audit(community)
    assert report.discrepancies == []
    assert report.ok
    assert report.slots == [cda, sharing, optimisation]
    # cda: alice, bob metered, dave unmetered; sharing: 4; optimisation: 3 metered, carol unmetered
    assert report.member_results == 3 + 4 + 4
    assert report.applications >= 4
    assert report.accounts >= 8  # members, supplier, DSO, manager, the pot


def test_a_credit_without_a_settlement_result_is_flagged(community, admin, members):
    alice, bob, *_ = members
    slot = community.market.nextOpenSlot()
    community.deliver(slot, {alice: (0, 500), bob: (500, 0)})
    community.past_deadline(slot)
    community.settle(slot)
    assert audit(community).ok
    # an admin hands itself the settlement role and credits alice 12,345 base units in the slot
    community.market.grantRole(community.market.SETTLEMENT_ROLE(), admin, {"from": admin})
    record = bytes.fromhex(alice.address[2:]) + (12_345 << 1).to_bytes(12, "big")
    community.market.applySettlement(slot, record, {"from": admin})

    report = audit(community)
    assert not report.ok
    by_check = {(finding.check, finding.member, finding.field): finding for finding in report.discrepancies}
    money = by_check[("money", None, "supplierAmount")]
    assert (money.slot, money.recorded, money.expected) == (slot, -12_345, 0)
    credited = by_check[("balances", alice.address.lower(), "balance")]
    assert credited.recorded - credited.expected == 12_345  # the chain holds 12,345 more
    supplier = by_check[("balances", community.supplier.address.lower(), "balance")]
    assert supplier.recorded - supplier.expected == -12_345


def test_debts_and_bs_exporters_below_the_feed_in_tariff(community, admin, members):
    alice, bob, carol, dave = members
    slot = use_rules(community, admin, SHARING, BS)
    # S = 3000 > D = 1000: BS pays exporters Pe * (S - D) / S = 40000 per kWh, below Pe = 60000
    community.deliver(slot, {alice: (0, 2_000), bob: (0, 1_000), carol: (1_000, 0)})
    community.past_deadline(slot)
    community.settle(slot)
    # dave withdraws everything and then buys: his charge becomes debt
    debt_slot = use_rules(community, admin, CDA)
    community.market.placeOrder(debt_slot, False, 250_000, 1_000, {"from": alice})
    community.market.placeOrder(debt_slot, True, 250_000, 1_000, {"from": dave})
    community.market.withdraw(community.market.balanceOf(dave), {"from": dave})
    community.deliver(debt_slot, {alice: (0, 1_000), dave: (3_000, 0)})  # 2000 Wh more than bought
    community.past_deadline(debt_slot)
    community.settle(debt_slot)
    assert community.market.debtOf(dave) == 2_000 * 250

    report = audit(community)
    assert report.discrepancies == []
    assert report.notes == [
        Finding("rule", slot, member.address.lower(), "energyAmount", shared, alone, "bs: worse than alone")
        for member, shared, alone in ((alice, 80_000, 120_000), (bob, 40_000, 60_000))
    ]

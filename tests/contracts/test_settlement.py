"""CommunitySettlement: slot settlement in Cda and sharing modes against committed meter
readings (hand-computed cases), budget balance and solvency after every settlement, the
backward chunk verification, deadlines, double settlement, debts and missing readings; the
deployment checks, the ledger's errors and where every custom error of the ABI is tested
(optimisation mode: test_settlement_schedules.py; profit shares: test_settlement_shares.py).

Tariffs are the defaults (import 250000, export 60000 base units per kWh); the ``market``
fixture's price tick is 1. Members alice, bob, carol and dave have ids 1..4 and 500 tokens
deposited; the supplier deposited 100 tokens.
"""

import brownie
import pytest
from conftest import (
    BS,
    CDA,
    MMR,
    OPEN,
    PAYING,
    SDR,
    SHARING,
    TALLYING,
    ChainClock,
    SettlementCommunity,
    assert_solvent,
    deltas,
    fixed_meter_key,
    settlement_config,
)

PI, PE = 250_000, 60_000


def trade(community, slot, seller, buyer, price, qty):
    community.market.placeOrder(slot, False, price, qty, {"from": seller})
    community.market.placeOrder(slot, True, price, qty, {"from": buyer})


def use_mode(community, admin, mode, rule=MMR, **fees):
    """Switches the settlement rules from the next open slot on; returns that slot."""
    slot = community.market.nextOpenSlot()
    community.settlement.setConfig(settlement_config(mode, rule, **fees), slot, {"from": admin})
    return slot


# ------------------------------------------------------------------------ Cda mode


def test_cda_trades_and_imbalances(community, alice, bob, logs, plain, member_results):
    """alice sells bob 1000 Wh at 0.2/kWh; she exports 800 Wh (200 short), he imports 1300 Wh
    (300 more than bought)."""
    slot = community.market.nextOpenSlot()
    trade(community, slot, alice, bob, 200_000, 1000)
    before = community.balances()
    community.deliver(slot, {alice: (0, 800), bob: (1300, 0)})
    community.past_deadline(slot)
    (tx,) = community.settle(slot)
    # alice: +1000 * 200000 / 1000 = 200000 for the trade, -200 Wh * 250000 / 1000 = -50000 at import
    # bob: paid 200000 at trade time (held); -300 * 250000 / 1000 = -75000 at import
    # supplier: the residual 50000 + 75000
    assert deltas(before, community.balances()) == [150_000, -75_000, 0, 0, 125_000, 0, 0]
    settled = {args[1]: args[2:] for args in member_results(tx)}
    assert settled[alice] == (1000, 200_000, -50_000, 0, 0)
    assert settled[bob] == (-1000, -200_000, -75_000, 0, 0)
    assert logs(tx, "SlotSettled") == [(slot, 2)]
    assert plain(community.market.positionOf(slot, alice)) == (0, 0, 0, 0)
    assert_solvent(community)


def test_cda_exports_beyond_the_contract_sell_at_the_export_tariff(community, alice, bob, carol):
    slot = community.market.nextOpenSlot()
    trade(community, slot, alice, bob, 150_000, 500)
    before = community.balances()
    # alice exports 900 (400 over), bob imports 500 exactly, carol exports 100 with no trade
    community.deliver(slot, {alice: (0, 900), bob: (500, 0), carol: (0, 100)})
    community.past_deadline(slot)
    community.settle(slot)
    # alice: 500 * 150000 / 1000 = 75000, + 400 * 60000 / 1000 = 24000; carol: 100 * 60 = 6000
    assert deltas(before, community.balances()) == [99_000, 0, 6_000, 0, -30_000, 0, 0]
    assert_solvent(community)


def test_cda_fees_go_to_the_dso_and_the_manager(community, admin, alice, bob):
    slot = use_mode(community, admin, CDA, grid_fee=10_000, manager_fee=2_500)
    trade(community, slot, alice, bob, 200_000, 1000)
    before = community.balances()
    community.deliver(slot, {alice: (0, 1000), bob: (1000, 0)})
    community.past_deadline(slot)
    community.settle(slot)
    # each side pays 1000 Wh * 10000 / 1000 = 10000 to the DSO and 2500 to the manager
    assert deltas(before, community.balances()) == [200_000 - 12_500, -12_500, 0, 0, 0, 20_000, 5_000]
    assert_solvent(community)


# -------------------------------------------------------------------- sharing mode


@pytest.mark.parametrize(
    "rule, flows, expected",
    [
        # MMR, shortage: S = 1000, D = 3000. Ps = Pm = 155000; Pb = (1000*155000 + 2000*250000)/3000
        # = 218333.3..; alice +1000*155000/1000 = 155000; bob -1000*218333.3/1000 = -218333;
        # carol -2000*218333.3/1000 = -436666; supplier: 218333 + 436666 - 155000 = 499999
        (MMR, [(0, 1000), (1000, 0), (2000, 0)], [155_000, -218_333, -436_666, 0, 499_999]),
        # MMR, surplus: S = 3000, D = 1000. Pb = 155000; Ps = (1000*155000 + 2000*60000)/3000 =
        # 91666.6..; alice +3000 * 91666.6 / 1000 = 275000 (exact); bob -155000
        # supplier: 155000 - 275000 = -120000 = -2000 Wh * 60000 / 1000
        (MMR, [(0, 3000), (1000, 0), (0, 0)], [275_000, -155_000, 0, 0, -120_000]),
        # SDR, shortage: S = 1000, D = 2000, SDR = 1/2. Ps = Pi*Pe / ((Pi-Pe)/2 + Pe) = 15e9 / 155000
        # = 96774.19..; Pb = Ps/2 + Pi/2 = 173387.09..; alice +96774; bob -346774
        # supplier: 346774 - 96774 = 250000 = 1000 Wh * Pi
        (SDR, [(0, 1000), (2000, 0), (0, 0)], [96_774, -346_774, 0, 0, 250_000]),
        # SDR, surplus: SDR >= 1: both at Pe. alice +2000 * 60 = 120000; bob -500 * 60 = -30000
        (SDR, [(0, 2000), (500, 0), (0, 0)], [120_000, -30_000, 0, 0, -90_000]),
        # BS, shortage: S = 1000, D = 4000: Pb = Pi * 3000 / 4000 = 187500; Ps = 0 (no surplus)
        # bob -1000 * 187.5 = -187500; carol -3000 * 187.5 = -562500; alice 0
        (BS, [(0, 1000), (1000, 0), (3000, 0)], [0, -187_500, -562_500, 0, 750_000]),
        # BS, surplus: S = 3000, D = 1000: Pb = 0; Ps = Pe * 2000 / 3000 = 40000
        (BS, [(0, 3000), (1000, 0), (0, 0)], [120_000, 0, 0, 0, -120_000]),
        # balanced (MMR): S = D = 1500: Pb = Ps = Pm = 155000 -> +-232500, supplier 0
        (MMR, [(0, 1500), (1500, 0), (0, 0)], [232_500, -232_500, 0, 0, 0]),
        # all consumers (BS): D = 1000 + 2000, S = 0: Pb = Pi
        (BS, [(1000, 0), (2000, 0), (0, 0)], [-250_000, -500_000, 0, 0, 750_000]),
        # all producers (SDR, D = 0): Ps = Pe
        (SDR, [(0, 1000), (0, 2000), (0, 0)], [60_000, 120_000, 0, 0, -180_000]),
        # one member importing (MMR): S = 0 < D: Pb = (0 + D*Pi)/D = Pi
        (MMR, [(700, 0)], [-175_000, 0, 0, 0, 175_000]),
    ],
)
def test_sharing_rules(community, admin, members, rule, flows, expected, logs):
    slot = use_mode(community, admin, SHARING, rule)
    before = community.balances()
    community.deliver(slot, dict(zip(members, flows)))
    community.past_deadline(slot)
    txs = community.settle(slot)
    assert deltas(before, community.balances())[:5] == expected
    assert sum(deltas(before, community.balances())) == 0  # budget balance to the base unit
    assert logs(txs[-1], "SlotSettled") == [(slot, len(flows))]
    assert_solvent(community)


def test_sharing_settles_in_two_passes(community, admin, alice, bob, carol, member_results, plain):
    slot = use_mode(community, admin, SHARING, MMR)
    community.deliver(slot, {alice: (0, 1000), bob: (1000, 0), carol: (2000, 0)})
    community.past_deadline(slot)
    tally, *rest = community.chunks(slot, size=2)
    tx = community.settlement.settle(slot, tally.from_chain_bytes, tally.data, {"from": bob})
    assert member_results(tx) == []
    assert plain(community.settlement.slotState(slot)) == (TALLYING, SHARING, MMR, 3, 1, 0, 3000)
    community.settlement.settle(slot, rest[0].from_chain_bytes, rest[0].data, {"from": bob})
    # totals in: S = 1000, D = 3000; payments start again from the last reading
    assert plain(community.settlement.slotState(slot)) == (PAYING, SHARING, MMR, 3, 3, 1000, 3000)


# -------------------------------------------------------------- chunk verification


def test_a_forged_chunk_is_rejected_and_changes_nothing(community, alice, bob, error_pattern):
    from settlement.chunks import Chunk, SlotReading

    slot = community.market.nextOpenSlot()
    trade(community, slot, alice, bob, 200_000, 1000)
    community.deliver(slot, {alice: (0, 1000), bob: (1000, 0)})
    community.past_deadline(slot)
    (honest,) = community.chunks(slot)
    forged = Chunk(honest.from_chain, (SlotReading(1, 0, 5000), honest.readings[1]))
    before = community.balances()
    with brownie.reverts(revert_pattern=error_pattern("SettlementChunkMismatch", slot, 2)):
        community.settlement.settle(slot, forged.from_chain_bytes, forged.data, {"from": bob})
    # a true suffix from a wrong starting chain value is no better
    with brownie.reverts(revert_pattern=error_pattern("SettlementChunkMismatch", slot, 2)):
        community.settlement.settle(slot, (5).to_bytes(32, "big"), honest.data[12:], {"from": bob})
    assert community.balances() == before
    assert community.settlement.slotState(slot)[0] == OPEN
    community.settle(slot)


def test_chunk_size_does_not_change_the_result(community, admin, members, member_results):
    """The same readings in three slots, settled in chunks of 4, 1 and 3 readings."""
    first = use_mode(community, admin, SHARING, SDR)
    flows = dict(zip(members, [(0, 1234), (987, 0), (555, 17), (3, 2001)]))
    results = []
    for slot, size in zip(range(first, first + 3), (4, 1, 3)):
        community.deliver(slot, flows)
        community.past_deadline(slot)
        before = community.balances()
        txs = community.settle(slot, size=size)
        settled = sorted(args[1:] for tx in txs for args in member_results(tx))
        results.append((deltas(before, community.balances()), settled))
    assert results[0] == results[1] == results[2]
    assert sum(results[0][0]) == 0


# ------------------------------------------------------------- deadlines and reruns


def test_not_before_the_deadline_unless_every_reading_is_in(community, alice, bob, carol, dave, error_pattern):
    slot = community.market.nextOpenSlot()
    community.deliver(slot, {alice: (100, 0), bob: (0, 100), carol: (5, 5)})
    deadline = community.settlement.readingDeadline(slot)
    with brownie.reverts(revert_pattern=error_pattern("SettlementTooEarly", slot, deadline, ...)):
        community.settle(slot)
    community.deliver(slot, {dave: (1, 0)})  # the last member's reading: settle at once
    community.settle(slot)


def test_a_slot_is_settled_once_and_sealed(community, alice, bob, error_pattern):
    slot = community.market.nextOpenSlot()
    community.deliver(slot, {alice: (100, 0)})
    community.past_deadline(slot)
    community.settle(slot)
    assert community.oracle.isSealed(slot)
    with brownie.reverts(revert_pattern=error_pattern("SettlementAlreadySettled", slot)):
        community.settlement.settle(slot, bytes(32), b"", {"from": bob})


def test_a_slot_without_readings_settles_in_one_call(community, logs):
    slot = community.market.nextOpenSlot()
    community.past_deadline(slot)
    (tx,) = community.settle(slot)
    assert logs(tx, "SlotSettled") == [(slot, 0)]


# --------------------------------------------------------------- missing readings


def test_positions_without_a_reading_are_settled_as_contracted(
    community, alice, bob, carol, logs, error_pattern, member_results
):
    slot = community.market.nextOpenSlot()
    trade(community, slot, alice, bob, 200_000, 1000)
    community.deliver(slot, {carol: (10, 0)})  # neither alice nor bob reports
    community.past_deadline(slot)
    with brownie.reverts(revert_pattern=error_pattern("SettlementNotSettled", slot)):
        community.settlement.settleUnmetered(slot, [1, 2], {"from": carol})
    community.settle(slot)
    before = community.balances()
    tx = community.settlement.settleUnmetered(slot, [1, 2, 3], {"from": carol})
    assert logs(tx, "ReadingMissing") == [(slot, alice), (slot, bob)]
    assert deltas(before, community.balances()) == [200_000, 0, 0, 0, 0, 0, 0]
    again = community.settlement.settleUnmetered(slot, [1, 2], {"from": carol})  # nothing left
    assert member_results(again) == []
    assert_solvent(community)


# ------------------------------------------------------------------------- debts


def test_a_charge_beyond_the_balance_becomes_debt(community, alice, bob, token, error_pattern, logs):
    slot = community.market.nextOpenSlot()
    community.market.withdraw(community.market.balanceOf(bob) - 1_000, {"from": bob})
    community.deliver(slot, {bob: (10_000, 0)})  # 10 kWh at 0.25: 2500000 > 1000
    community.past_deadline(slot)
    supplier_before = community.market.balanceOf(community.supplier)
    (tx,) = community.settle(slot)
    assert community.market.balanceOf(bob) == 0
    assert community.market.debtOf(bob) == 2_499_000
    assert logs(tx, "DebtIncurred") == [(bob, 2_499_000, 2_499_000)]
    # the supplier collected what bob had and stands behind the rest
    assert community.market.balanceOf(community.supplier) - supplier_before == 1_000
    with brownie.reverts(revert_pattern=error_pattern("MarketMemberInDebt", bob, 2_499_000)):
        community.market.placeOrder(slot + 5, True, 100_000, 100, {"from": bob})
    tx = community.market.deposit(3_000_000, {"from": bob})
    assert logs(tx, "DebtRepaid") == [(bob, 2_499_000, 0)]
    assert community.market.debtOf(bob) == 0
    assert community.market.balanceOf(bob) == 501_000
    assert community.market.balanceOf(community.supplier) - supplier_before == 2_500_000
    assert_solvent(community)


def test_the_supplier_must_cover_exports(community, alice, admin, error_pattern):
    slot = community.market.nextOpenSlot()
    supplier_balance = community.market.balanceOf(community.supplier)
    exported = supplier_balance * 1000 // PE + 1000  # worth more than the supplier holds
    community.deliver(slot, {alice: (0, exported)})
    community.past_deadline(slot)
    with brownie.reverts(
        revert_pattern=error_pattern("LedgerSupplierUnderfunded", community.supplier, supplier_balance, ...)
    ):
        community.settle(slot)


# ------------------------------------------------------------------ access control


def payment_record(account, amount: int, close: bool = False) -> bytes:
    """A ledger payment record: account | int95 amount | close flag (IMarketLedger)."""
    return bytes.fromhex(account.address[2:]) + ((amount << 1) | close).to_bytes(12, "big", signed=True)


def test_only_the_settlement_contract_applies_payments(community, alice, bob, admin, error_pattern):
    with brownie.reverts(revert_pattern=error_pattern("AccessControlUnauthorizedAccount", admin, ...)):
        community.market.applySettlement(1, payment_record(alice, 1), {"from": admin})
    # whole 32-byte records only, even from a holder of the role
    community.market.grantRole(community.market.SETTLEMENT_ROLE(), admin, {"from": admin})
    with brownie.reverts(revert_pattern=error_pattern("LedgerMalformedRecords", 31, 32)):
        community.market.applySettlement(1, payment_record(alice, 1)[:31], {"from": admin})
    before = community.balances()
    community.market.applySettlement(1, payment_record(alice, -7) + payment_record(bob, 5), {"from": admin})
    assert deltas(before, community.balances()) == [-7, 5, 0, 0, 2, 0, 0]  # the supplier takes the residual
    with brownie.reverts():
        community.market.fundAccount(admin, alice, 1, {"from": alice})


def test_only_the_admin_changes_rules_and_only_for_open_slots(community, admin, alice, error_pattern, plain):
    slot = community.market.nextOpenSlot()
    with brownie.reverts(revert_pattern=error_pattern("SettlementNotAdmin", alice)):
        community.settlement.setConfig(settlement_config(SHARING), slot, {"from": alice})
    with brownie.reverts(revert_pattern=error_pattern("SettlementConfigNotFuture", slot - 1, slot)):
        community.settlement.setConfig(settlement_config(SHARING), slot - 1, {"from": admin})
    community.settlement.setConfig(settlement_config(SHARING, BS), slot + 2, {"from": admin})
    assert community.settlement.configAt(slot + 1)[0] == CDA
    assert plain(community.settlement.configAt(slot + 2))[:2] == (SHARING, BS)
    assert plain(community.settlement.configAt(slot + 200))[:2] == (SHARING, BS)


# ----------------------------------------------------------------- errors and ledger

ZERO_ADDRESS = "0x" + "00" * 20
# where each custom error of the settlement contract's ABI is tested
ERRORS_TESTED_HERE = {
    "SettlementNotAdmin",
    "SettlementZeroAddress",
    "SettlementInvalidConfig",
    "SettlementInvalidPeriod",
    "SettlementConfigNotFuture",
    "SettlementTooEarly",
    "SettlementAlreadySettled",
    "SettlementNotSettled",
    "SettlementMalformedChunk",
    "SettlementChunkMismatch",
}
ERRORS_TESTED_IN_SCHEDULES = {
    "SettlementNotManager",
    "SettlementWrongMode",
    "SettlementGateClosed",
    "SettlementScheduleComplete",
    "SettlementMembersNotAscending",
    "SettlementPriceOutOfBand",
    "SettlementPriceChanged",
    "SettlementTradeExceedsFlow",
    "SettlementNotRational",
    "SettlementTradesUnbalanced",
    "SettlementUnknownMember",
}
ERRORS_TESTED_IN_SHARES = {
    "SettlementPeriodOpen",
    "SettlementSharesDistributed",
    "SettlementShareMismatch",
    "SettlementSharesExceedPot",
    "SettlementSharesIncomplete",
    "SafeCastOverflowedUintDowncast",  # fundPot of 2^128 base units
}


def test_every_custom_error_is_accounted_for(community):
    """The settlement ABI's errors are the ones tested here, in test_settlement_schedules.py and
    in test_settlement_shares.py; none is left as unreachable."""
    errors = {entry["name"] for entry in community.settlement.abi if entry["type"] == "error"}
    assert errors == ERRORS_TESTED_HERE | ERRORS_TESTED_IN_SCHEDULES | ERRORS_TESTED_IN_SHARES


def deploy_settlement(CommunitySettlement, admin, market, oracle, dso, manager, config, period_slots=4):
    return CommunitySettlement.deploy(market, oracle, dso, manager, config, period_slots, 600, {"from": admin})


def test_deployment_checks(community, CommunitySettlement, admin, error_pattern, plain):
    market, oracle, dso, fees = community.market, community.oracle, community.dso, community.fee_manager
    for args in (
        (ZERO_ADDRESS, oracle, dso, fees),
        (market, ZERO_ADDRESS, dso, fees),
        (market, oracle, ZERO_ADDRESS, fees),
        (market, oracle, dso, ZERO_ADDRESS),
    ):
        with brownie.reverts(revert_pattern=error_pattern("SettlementZeroAddress")):
            deploy_settlement(CommunitySettlement, admin, *args, settlement_config())
    with brownie.reverts(revert_pattern=error_pattern("SettlementInvalidPeriod", 0)):
        deploy_settlement(CommunitySettlement, admin, market, oracle, dso, fees, settlement_config(), 0)
    # savings above 100%; fees reaching the top of the price band (1000000 per kWh)
    for bad in (settlement_config(savings_bps=10_001), settlement_config(grid_fee=600_000, manager_fee=400_000)):
        with brownie.reverts(revert_pattern=error_pattern("SettlementInvalidConfig")):
            deploy_settlement(CommunitySettlement, admin, market, oracle, dso, fees, bad)
        with brownie.reverts(revert_pattern=error_pattern("SettlementInvalidConfig")):
            community.settlement.setConfig(bad, market.nextOpenSlot(), {"from": admin})
    edge = settlement_config(SHARING, BS, 2, 600_000, 399_999, 10_000)
    deployed = deploy_settlement(CommunitySettlement, admin, market, oracle, dso, fees, edge, 1)
    assert plain(deployed.configAt(0)) == edge
    assert deployed.periodSlots() == 1
    assert deployed.market() == market and deployed.oracle() == oracle
    assert deployed.dsoAccount() == dso and deployed.managerAccount() == fees


def test_malformed_chunks_are_rejected(community, alice, bob, error_pattern):
    slot = community.market.nextOpenSlot()
    community.deliver(slot, {alice: (100, 0), bob: (0, 100)})
    community.past_deadline(slot)
    (chunk,) = community.chunks(slot)
    for data in (chunk.data[:13], chunk.data + b"\x00", b"\x01"):
        with brownie.reverts(revert_pattern=error_pattern("SettlementMalformedChunk", len(data))):
            community.settlement.settle(slot, chunk.from_chain_bytes, data, {"from": bob})
    assert community.settlement.slotState(slot)[0] == OPEN
    with brownie.reverts(revert_pattern=error_pattern("SettlementMalformedChunk", 1)):
        community.settlement.distributeShares(slot // 4, [1, 2], [0], {"from": bob})
    community.settle(slot)


def test_ledger_member_ids_must_be_registered(community, alice, bob, error_pattern):
    slot = community.market.nextOpenSlot()
    trade(community, slot, alice, bob, 200_000, 1000)
    community.past_deadline(slot)
    community.settle(slot)
    for member_id in (5, 2**32 - 1):
        with brownie.reverts(revert_pattern=error_pattern("LedgerNotMemberId", member_id)):
            community.settlement.settleUnmetered(slot, [1, 2, member_id], {"from": bob})
    with brownie.reverts(revert_pattern=error_pattern("SettlementMembersNotAscending", 0, 0)):
        community.settlement.settleUnmetered(slot, [0], {"from": bob})  # ids start at 1
    with brownie.reverts(revert_pattern=error_pattern("LedgerNotMemberId", 5)):
        community.market.settlementPositions(slot, (5).to_bytes(4, "big"), 4, True)
    # packed per member: the account, then its position boughtWh | soldWh << 64 | paid << 128 |
    # received << 192; the ids start records of any length (here readings: id | import | export)
    answer = bytes(community.market.settlementPositions(slot, bytes.fromhex("0000000100000000000003e8"), 12, True))
    position = community.market.positionOf(slot, alice)
    assert answer[12:32].hex() == alice.address[2:].lower()
    assert int.from_bytes(answer[32:], "big") == sum(int(field) << (64 * i) for i, field in enumerate(position))
    for records, size in ((b"\x00\x00\x00", 4), (b"\x00" * 24, 0), (b"\x00" * 12, 8)):
        with brownie.reverts(revert_pattern=error_pattern("LedgerMalformedRecords", len(records), size)):
            community.market.settlementPositions(slot, records, size, True)
    assert community.market.positionOf(slot, alice)[1] == 1000  # nothing was settled
    community.settlement.settleUnmetered(slot, [1, 2], {"from": bob})
    assert community.market.positionOf(slot, alice)[1] == 0
    assert_solvent(community)


def test_settling_needs_a_supplier_account(
    community,
    deploy_community,
    config,
    MeterOracle,
    CommunitySettlement,
    admin,
    manager,
    members,
    chain,
    web3,
    error_pattern,
):
    """A second community whose admin has not named the supplier: nothing settles that moves
    money until it does."""
    market = deploy_community(config)
    oracle = MeterOracle.deploy(market, {"from": admin})
    settlement = deploy_settlement(
        CommunitySettlement, admin, market, oracle, community.dso, community.fee_manager, settlement_config()
    )
    market.grantRole(market.SETTLEMENT_ROLE(), settlement, {"from": admin})
    oracle.setSealer(settlement, {"from": admin})
    keys = [fixed_meter_key(f"no supplier {index}") for index in range(len(members))]
    for key, member in zip(keys, members):
        oracle.registerMeter(key.address, member, 0, {"from": manager})
    assert market.supplierAccount() == ZERO_ADDRESS
    second = SettlementCommunity(
        market,
        community.token,
        oracle,
        settlement,
        ChainClock(chain, web3, market),
        members,
        keys,
        community.supplier,
        community.dso,
        community.fee_manager,
        community.relayer,
    )
    slot = market.nextOpenSlot()
    second.deliver(slot, {members[0]: (1000, 0)})
    second.past_deadline(slot)
    with brownie.reverts(revert_pattern=error_pattern("LedgerNoSupplier")):
        second.settle(slot)
    assert settlement.slotState(slot)[0] == OPEN
    with brownie.reverts(revert_pattern=error_pattern("RegistryZeroAddress")):
        market.setSupplierAccount(ZERO_ADDRESS, {"from": admin})
    with brownie.reverts():
        market.setSupplierAccount(community.supplier, {"from": manager})  # not the admin
    market.setSupplierAccount(community.supplier, {"from": admin})
    second.settle(slot)
    # 1000 Wh at the import tariff, collected by the supplier
    assert market.balanceOf(community.supplier) == 250_000


def test_a_repeated_member_id_does_not_settle_a_position_twice(community, alice, bob, error_pattern):
    """settleUnmetered reads every id's position before closing any: ids must be ascending, so
    no member is settled twice in one call (nor, its position closed, in a later one)."""
    slot = community.market.nextOpenSlot()
    trade(community, slot, alice, bob, 200_000, 1000)
    community.past_deadline(slot)
    community.settle(slot)
    before = community.balances()
    with brownie.reverts(revert_pattern=error_pattern("SettlementMembersNotAscending", 1, 1)):
        community.settlement.settleUnmetered(slot, [1, 1, 2, 2], {"from": bob})
    community.settlement.settleUnmetered(slot, [1, 2], {"from": bob})
    community.settlement.settleUnmetered(slot, [1, 2], {"from": bob})  # nothing left
    # alice receives the 200000 of her sale once; bob paid at trade time; the supplier nothing
    assert deltas(before, community.balances()) == [200_000, 0, 0, 0, 0, 0, 0]
    assert_solvent(community)

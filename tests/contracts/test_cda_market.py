"""CdaMarket: deposits and withdrawals, order entry and its checks, the matching rules of
DESIGN.md section 4 one by one, cancellation, expiry, views, positions and escrow.

Every rejected call is checked twice: it reverts with the custom error and its arguments, and
it leaves the market as it was (``snapshot_state``). SafeERC20FailedOperation is the only
market error not exercised: the settlement token reverts on failure instead of returning
false, so SafeERC20 never gets to raise it.
"""

from dataclasses import replace

import brownie
import pytest

from peerwatt.config import CommunityConfig
from peerwatt.orderbook_model import CancelReason, OrderRequest
from peerwatt.units import MAX_QTY_WH, value_of

PRICE = 250_000  # 0.25 token per kWh
QTY = 1_000  # Wh
MAX_UINT32 = 2**32 - 1
BY_MEMBER, SELF_TRADE, FILL_CAP, EXPIRED = (int(reason) for reason in CancelReason)
MIN_QTY = CommunityConfig().market.min_qty_wh  # the deployed defaults (tests/conftest.py)
DEPOSIT = CommunityConfig().member_deposit_base_units

TESTED_ERRORS = {
    "AccessControlBadConfirmation",
    "AccessControlUnauthorizedAccount",
    "MarketGateClosed",
    "MarketInsufficientBalance",
    "MarketNotMember",
    "MarketNotOrderOwner",
    "MarketOrderNotExpired",
    "MarketOrderNotFound",
    "MarketPriceOutOfBand",
    "MarketQuantityTooLarge",
    "MarketQuantityTooSmall",
    "MarketZeroAmount",
    "RegistryAlreadyMember",
    "RegistryInvalidClock",
    "RegistryInvalidFillCap",
    "RegistryInvalidMinQty",
    "RegistryInvalidPriceBand",
    "RegistryInvalidTariffs",
    "RegistryNotMember",
    "RegistryZeroAddress",
    "SafeCastOverflowedUintDowncast",
}
UNREACHABLE_ERRORS = {"SafeERC20FailedOperation"}  # see the module docstring


def buy(market, who, slot, price=PRICE, qty=QTY):
    return market.placeOrder(slot, True, price, qty, {"from": who})


def sell(market, who, slot, price=PRICE, qty=QTY):
    return market.placeOrder(slot, False, price, qty, {"from": who})


def set_params(market, admin, config, **changes):
    market.setMarketParams(replace(config.market, **changes).as_tuple(), {"from": admin})


def test_every_custom_error_is_accounted_for(market):
    """The market ABI's errors are the ones tested here and in test_community_registry.py."""
    errors = {entry["name"] for entry in market.abi if entry["type"] == "error"}
    assert errors == TESTED_ERRORS | UNREACHABLE_ERRORS


def test_constants_and_empty_views(market, token, slot, plain, error_pattern):
    assert market.MAX_QTY_WH() == MAX_QTY_WH
    assert market.token() == token
    assert market.lastOrderId() == 0
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.bookSide(slot, True, 10)) == ()
    assert plain(market.bookSide(slot, False, 10)) == ()
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", 1)):
        market.getOrder(1)


# ------------------------------------------------------------------------- deposits


def test_deposit(market, token, alice, config, logs):
    wallet = token.balanceOf(alice)
    held = token.balanceOf(market)
    tx = market.deposit(123, {"from": alice})
    balance = config.member_deposit_base_units + 123
    assert logs(tx, "Deposited") == [(alice, 123, balance)]
    assert logs(tx, "Transfer") == [(alice, market, 123)]
    assert market.balanceOf(alice) == balance
    assert token.balanceOf(alice) == wallet - 123
    assert token.balanceOf(market) == held + 123


def test_deposit_rejects_zero(market, alice, slot, snapshot_state, error_pattern):
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketZeroAmount")):
        market.deposit(0, {"from": alice})
    assert snapshot_state(slot) == before


def test_deposit_rejects_outsider(market, token, admin, outsider, slot, snapshot_state, error_pattern):
    token.mint(outsider, 1_000, {"from": admin})
    token.approve(market, 1_000, {"from": outsider})
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketNotMember", outsider)):
        market.deposit(1_000, {"from": outsider})
    assert snapshot_state(slot) == before


def test_deposit_rejects_removed_member(market, manager, bob, slot, snapshot_state, error_pattern):
    market.removeMember(bob, {"from": manager})
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketNotMember", bob)):
        market.deposit(1_000, {"from": bob})
    assert snapshot_state(slot) == before


def test_deposit_without_allowance(market, token, manager, admin, accounts, error_pattern):
    newcomer = accounts[10]
    market.addMember(newcomer, {"from": manager})
    token.mint(newcomer, 1_000, {"from": admin})
    with brownie.reverts(revert_pattern=error_pattern("ERC20InsufficientAllowance", market, 0, 1_000)):
        market.deposit(1_000, {"from": newcomer})
    assert market.balanceOf(newcomer) == 0
    assert token.balanceOf(newcomer) == 1_000


def test_deposit_beyond_wallet(market, token, alice, slot, snapshot_state, error_pattern):
    wallet = token.balanceOf(alice)
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("ERC20InsufficientBalance", alice, wallet, wallet + 1)):
        market.deposit(wallet + 1, {"from": alice})
    assert snapshot_state(slot) == before


def test_deposit_beyond_uint128_balance(market, token, admin, alice, error_pattern):
    token.mint(alice, 2**129, {"from": admin})
    balance = market.balanceOf(alice)
    market.deposit(2**128 - 1 - balance, {"from": alice})
    assert market.balanceOf(alice) == 2**128 - 1
    with brownie.reverts(revert_pattern=error_pattern("SafeCastOverflowedUintDowncast", 128, 2**128)):
        market.deposit(1, {"from": alice})
    assert market.balanceOf(alice) == 2**128 - 1


# ---------------------------------------------------------------------- withdrawals


def test_withdraw(market, token, alice, config, logs):
    wallet = token.balanceOf(alice)
    tx = market.withdraw(1_000, {"from": alice})
    balance = config.member_deposit_base_units - 1_000
    assert logs(tx, "Withdrawn") == [(alice, 1_000, balance)]
    assert logs(tx, "Transfer") == [(market, alice, 1_000)]
    assert market.balanceOf(alice) == balance
    assert token.balanceOf(alice) == wallet + 1_000


def test_withdraw_everything(market, token, alice, config):
    market.withdraw(config.member_deposit_base_units, {"from": alice})
    assert market.balanceOf(alice) == 0
    assert token.balanceOf(alice) == config.member_funding_base_units


def test_withdraw_rejects_zero(market, alice, slot, snapshot_state, error_pattern):
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketZeroAmount")):
        market.withdraw(0, {"from": alice})
    assert snapshot_state(slot) == before


def test_withdraw_more_than_balance(market, alice, config, slot, snapshot_state, error_pattern):
    balance = config.member_deposit_base_units
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketInsufficientBalance", alice, balance, balance + 1)):
        market.withdraw(balance + 1, {"from": alice})
    assert snapshot_state(slot) == before


def test_withdraw_escrowed_funds_is_refused(market, alice, config, slot, error_pattern):
    buy(market, alice, slot)
    free = config.member_deposit_base_units - value_of(QTY, PRICE)
    with brownie.reverts(revert_pattern=error_pattern("MarketInsufficientBalance", alice, free, free + 1)):
        market.withdraw(free + 1, {"from": alice})
    market.withdraw(free, {"from": alice})
    assert market.balanceOf(alice) == 0
    assert market.getOrder(1)["escrow"] == value_of(QTY, PRICE)


def test_withdraw_by_outsider(market, outsider, slot, snapshot_state, error_pattern):
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketInsufficientBalance", outsider, 0, 1)):
        market.withdraw(1, {"from": outsider})
    assert snapshot_state(slot) == before


def test_removed_member_can_withdraw(market, token, manager, bob, config):
    market.removeMember(bob, {"from": manager})
    market.withdraw(config.member_deposit_base_units, {"from": bob})
    assert market.balanceOf(bob) == 0
    assert token.balanceOf(bob) == config.member_funding_base_units


# ---------------------------------------------------------------------- order entry


def test_sell_order_rests(market, alice, slot, config, plain, logs):
    tx = sell(market, alice, slot)
    assert tx.return_value == 1
    assert logs(tx, address=market) == [("OrderPlaced", (slot, 1, alice, False, PRICE, QTY))]
    assert plain(market.getOrder(1)) == (1, alice, slot, False, PRICE, QTY, 0)
    assert plain(market.bookSide(slot, False, 10)) == ((1, alice, slot, False, PRICE, QTY, 0),)
    assert plain(market.bestPrices(slot)) == (0, PRICE)
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert market.lastOrderId() == 1


def test_buy_order_rests_and_escrows(market, token, alice, slot, config, plain, logs):
    held = token.balanceOf(market)
    tx = buy(market, alice, slot)
    escrow = value_of(QTY, PRICE)
    assert logs(tx, address=market) == [("OrderPlaced", (slot, 1, alice, True, PRICE, QTY))]
    assert plain(market.getOrder(1)) == (1, alice, slot, True, PRICE, QTY, escrow)
    assert plain(market.bestPrices(slot)) == (PRICE, 0)
    assert market.balanceOf(alice) == config.member_deposit_base_units - escrow
    assert token.balanceOf(market) == held  # escrow stays in the market


def test_sell_needs_no_balance(market, alice, slot, config):
    market.withdraw(config.member_deposit_base_units, {"from": alice})
    sell(market, alice, slot)
    assert market.getOrder(1)["remainingWh"] == QTY


def test_order_ids_are_sequential_across_slots_sides_and_members(market, alice, bob, slot):
    ids = [
        sell(market, alice, slot).return_value,
        buy(market, bob, slot + 1, PRICE - 1).return_value,
        buy(market, alice, slot, PRICE - 10).return_value,
    ]
    assert ids == [1, 2, 3]
    assert market.lastOrderId() == 3


def test_min_and_max_quantities_accepted(market, config, alice, slot):
    sell(market, alice, slot, qty=config.market.min_qty_wh)
    sell(market, alice, slot, qty=MAX_QTY_WH)
    assert market.getOrder(2)["remainingWh"] == MAX_QTY_WH


def test_band_edges_accepted(market, admin, config, alice, slot, plain):
    set_params(market, admin, config, min_price_per_kwh=100, max_price_per_kwh=200)
    sell(market, alice, slot, price=200)
    buy(market, alice, slot, price=100)
    assert plain(market.bestPrices(slot)) == (100, 200)


CALLER = object()  # stands for the caller's address in an expected error
BAD_ORDERS = {
    # name: ((is_buy, price, qty), expected error), with the band set to [100, 200_000]
    "price-below-band": ((True, 99, QTY), ("MarketPriceOutOfBand", 99, 100, 200_000)),
    "price-above-band": ((False, 200_001, QTY), ("MarketPriceOutOfBand", 200_001, 100, 200_000)),
    "price-zero": ((False, 0, QTY), ("MarketPriceOutOfBand", 0, 100, 200_000)),
    "qty-too-small": ((True, 150_000, MIN_QTY - 1), ("MarketQuantityTooSmall", MIN_QTY - 1, MIN_QTY)),
    "qty-zero": ((False, 150_000, 0), ("MarketQuantityTooSmall", 0, MIN_QTY)),
    "qty-too-large": ((False, 1_000, MAX_QTY_WH + 1), ("MarketQuantityTooLarge", MAX_QTY_WH + 1, MAX_QTY_WH)),
    "qty-uint64-max": ((False, 1_000, 2**64 - 1), ("MarketQuantityTooLarge", 2**64 - 1, MAX_QTY_WH)),
    "escrow-above-balance": (
        (True, 200_000, DEPOSIT // 200 + 1),  # escrow = DEPOSIT + 200
        ("MarketInsufficientBalance", CALLER, DEPOSIT, DEPOSIT + 200),
    ),
}


def book_with_both_sides(market, admin, config, bob, slot):
    """Band [100, 200_000] and a resting order on each side of ``slot``, so that a wrongly
    accepted order would trade."""
    set_params(market, admin, config, min_price_per_kwh=100, max_price_per_kwh=200_000)
    sell(market, bob, slot, 150_000, QTY)
    buy(market, bob, slot, 120_000, QTY)


@pytest.mark.parametrize("case", list(BAD_ORDERS))
def test_bad_orders_revert_and_change_nothing(
    market, admin, config, alice, bob, slot, snapshot_state, error_pattern, case
):
    (is_buy, price, qty), error = BAD_ORDERS[case]
    error = tuple(alice if arg is CALLER else arg for arg in error)
    book_with_both_sides(market, admin, config, bob, slot)
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern(*error)):
        market.placeOrder(slot, is_buy, price, qty, {"from": alice})
    # in a batch, the earlier good order is rolled back with it
    with brownie.reverts(revert_pattern=error_pattern(*error)):
        market.placeOrders([(slot, False, 150_000, QTY), (slot, is_buy, price, qty)], {"from": alice})
    assert snapshot_state(slot) == before


@pytest.mark.parametrize("which", ["slot-zero", "slot-in-delivery", "closed-a-while-ago"])
def test_orders_for_closed_slots_revert_and_change_nothing(
    market, admin, config, alice, bob, slot, clock, snapshot_state, error_pattern, which
):
    book_with_both_sides(market, admin, config, bob, slot)
    if which == "closed-a-while-ago":
        clock.to_gate_closure(slot, config.slot_seconds)
        target = slot
    else:
        target = 0 if which == "slot-zero" else market.currentSlot()
    open_slot = market.nextOpenSlot() + 1
    pattern = error_pattern("MarketGateClosed", target, market.gateClosure(target), ...)
    before = snapshot_state(slot, target, open_slot)
    with brownie.reverts(revert_pattern=pattern):
        market.placeOrder(target, True, 150_000, QTY, {"from": alice})
    with brownie.reverts(revert_pattern=pattern):
        market.placeOrders([(open_slot, False, 150_000, QTY), (target, False, 120_000, QTY)], {"from": alice})
    assert snapshot_state(slot, target, open_slot) == before


@pytest.mark.parametrize("who", ["outsider", "removed"])
def test_orders_from_non_members_revert(market, manager, bob, outsider, slot, snapshot_state, error_pattern, who):
    caller = outsider if who == "outsider" else bob
    if who == "removed":
        market.removeMember(bob, {"from": manager})
    before = snapshot_state(slot)
    pattern = error_pattern("MarketNotMember", caller)
    with brownie.reverts(revert_pattern=pattern):
        sell(market, caller, slot)
    with brownie.reverts(revert_pattern=pattern):
        market.placeOrders([(slot, True, PRICE, QTY)], {"from": caller})
    with brownie.reverts(revert_pattern=pattern):
        market.placeOrders([], {"from": caller})
    assert snapshot_state(slot) == before


def test_escrow_equal_to_balance_is_accepted(market, alice, slot, config, error_pattern):
    balance = config.member_deposit_base_units
    qty = balance * 1000 // PRICE  # value_of(qty, PRICE) == balance exactly
    assert value_of(qty, PRICE) == balance
    needed = value_of(qty + 4, PRICE)
    with brownie.reverts(revert_pattern=error_pattern("MarketInsufficientBalance", alice, balance, needed)):
        buy(market, alice, slot, qty=qty + 4)
    buy(market, alice, slot, qty=qty)
    assert market.balanceOf(alice) == 0


def test_validation_order(market, alice, error_pattern):
    """Checks run in a fixed order: price band, minimum, maximum, gate, balance."""
    closed = market.currentSlot()
    checks = [
        ((closed, True, 0, 0), ("MarketPriceOutOfBand", 0, 1, 1_000_000)),
        ((closed, True, PRICE, 0), ("MarketQuantityTooSmall", 0, 10)),
        ((closed, True, PRICE, MAX_QTY_WH + 1), ("MarketQuantityTooLarge", MAX_QTY_WH + 1, MAX_QTY_WH)),
        ((closed, True, PRICE, MAX_QTY_WH), ("MarketGateClosed", closed, market.gateClosure(closed), ...)),
    ]
    for request, error in checks:
        with brownie.reverts(revert_pattern=error_pattern(*error)):
            market.placeOrder(*request, {"from": alice})
    assert market.lastOrderId() == 0


def test_gate_closure_boundary(market, alice, bob, slot, clock, snapshot_state, error_pattern, plain):
    closure = market.gateClosure(slot)
    clock.next_tx_at(closure - 1)
    sell(market, alice, slot)  # one second before gate closure: accepted
    clock.next_tx_at(closure)
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketGateClosed", slot, closure, closure)):
        buy(market, bob, slot)
    assert snapshot_state(slot) == before
    # the next slot is still open
    sell(market, bob, slot + 1)
    assert plain(market.bestPrices(slot + 1)) == (0, PRICE)


def test_place_orders_returns_ids_and_matches_one_by_one(market, alice, bob, slot, model, logs, plain):
    """A batch gives the same ids, events and book as the same orders placed one by one
    (computed by the reference model)."""
    for s, is_buy, price, qty in ((slot + 1, False, PRICE - 5_000, 50), (slot, True, PRICE, 400)):
        tx = market.placeOrder(s, is_buy, price, qty, {"from": bob})
        model.place_order(str(bob), s, is_buy, price, qty, now=tx.timestamp)
    requests = [
        OrderRequest(slot, False, PRICE, 300),
        OrderRequest(slot, False, PRICE - 1_000, 200),
        OrderRequest(slot + 1, True, PRICE, 100),
    ]
    tx = market.placeOrders([r.as_tuple() for r in requests], {"from": alice})
    first_event = len(model.log)
    ids = [model.place_order(str(alice), *r.as_tuple(), now=tx.timestamp) for r in requests]
    assert list(tx.return_value) == ids == [3, 4, 5]
    assert logs(tx, address=market) == [(event.name, event.as_tuple()) for event in model.log[first_event:]]
    assert len(logs(tx, "TradeExecuted")) == 3
    for s in (slot, slot + 1):
        for side in (True, False):
            assert plain(market.bookSide(s, side, 20)) == tuple(v.as_tuple() for v in model.book_side(s, side))
    for member in (alice, bob):
        assert market.balanceOf(member) == model.balance_of(str(member))


def test_place_orders_checks_balance_as_it_goes(market, alice, slot, config, snapshot_state, error_pattern):
    """Escrow of earlier orders in the batch counts: the second buy does not fit any more."""
    balance = config.member_deposit_base_units
    qty = balance * 1000 // PRICE * 6 // 10  # 60% of the balance each
    escrow = value_of(qty, PRICE)
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketInsufficientBalance", alice, balance - escrow, escrow)):
        market.placeOrders([(slot, True, PRICE, qty), (slot, True, PRICE, qty)], {"from": alice})
    assert snapshot_state(slot) == before


def test_place_orders_empty_batch(market, alice, slot, logs):
    tx = market.placeOrders([], {"from": alice})
    assert list(tx.return_value) == []
    assert logs(tx) == []
    assert market.lastOrderId() == 0


def test_place_orders_self_trade_inside_batch(market, alice, slot, config, logs, plain):
    tx = market.placeOrders([(slot, True, PRICE, QTY), (slot, False, PRICE, QTY)], {"from": alice})
    escrow = value_of(QTY, PRICE)
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, 1, alice, True, PRICE, QTY)),
        ("OrderPlaced", (slot, 2, alice, False, PRICE, QTY)),
        ("OrderCancelled", (slot, 1, alice, QTY, escrow, SELF_TRADE)),
    ]
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert plain(market.bestPrices(slot)) == (0, PRICE)


# ------------------------------------------------------------------------- matching


def test_buy_takes_the_lowest_ask_first(market, alice, bob, carol, dave, slot, config, logs, plain):
    sell(market, bob, slot, 260_000, 100)  # 1
    sell(market, carol, slot, 240_000, 100)  # 2
    sell(market, dave, slot, 250_000, 100)  # 3
    tx = buy(market, alice, slot, 270_000, 300)  # 4
    assert logs(tx, "TradeExecuted") == [
        (slot, alice, carol, 4, 2, 240_000, 100, False, 0),
        (slot, alice, dave, 4, 3, 250_000, 100, False, 0),
        (slot, alice, bob, 4, 1, 260_000, 100, False, 0),
    ]
    paid = value_of(100, 240_000) + value_of(100, 250_000) + value_of(100, 260_000)
    assert market.balanceOf(alice) == config.member_deposit_base_units - paid
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.positionOf(slot, alice)) == (300, 0, paid, 0)


def test_sell_takes_the_highest_bid_first(market, alice, bob, carol, dave, slot, logs, plain):
    buy(market, bob, slot, 240_000, 100)  # 1
    buy(market, carol, slot, 260_000, 100)  # 2
    buy(market, dave, slot, 250_000, 100)  # 3
    tx = sell(market, alice, slot, 245_000, 300)  # 4: crosses 260k and 250k only
    assert logs(tx, "TradeExecuted") == [
        (slot, carol, alice, 2, 4, 260_000, 100, True, 0),
        (slot, dave, alice, 3, 4, 250_000, 100, True, 0),
    ]
    assert market.getOrder(4)["remainingWh"] == 100
    assert plain(market.bestPrices(slot)) == (240_000, 245_000)


def test_fifo_at_equal_price(market, alice, bob, carol, dave, slot, logs, plain):
    sell(market, bob, slot, qty=100)  # 1
    sell(market, carol, slot, qty=100)  # 2
    sell(market, dave, slot, qty=100)  # 3
    tx = buy(market, alice, slot, qty=150)
    assert logs(tx, "TradeExecuted") == [
        (slot, alice, bob, 4, 1, PRICE, 100, False, 0),
        (slot, alice, carol, 4, 2, PRICE, 50, False, 50),
    ]
    assert [order[0] for order in plain(market.bookSide(slot, False, 10))] == [2, 3]


def test_buy_trades_at_resting_price_and_keeps_the_difference(market, alice, bob, slot, config, logs, plain):
    sell(market, bob, slot, 200_000, QTY)
    tx = buy(market, alice, slot, 300_000, QTY)
    assert logs(tx, "TradeExecuted") == [(slot, alice, bob, 2, 1, 200_000, QTY, False, 0)]
    # escrow at 300k was only checked; the buyer pays the 200k trade value
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(QTY, 200_000)
    assert plain(market.positionOf(slot, alice)) == (QTY, 0, value_of(QTY, 200_000), 0)
    assert plain(market.positionOf(slot, bob)) == (0, QTY, 0, value_of(QTY, 200_000))


def test_sell_trades_at_resting_bid_price(market, alice, bob, slot, config, logs, plain):
    buy(market, bob, slot, 300_000, QTY)
    tx = sell(market, alice, slot, 200_000, QTY)
    assert logs(tx, "TradeExecuted") == [(slot, bob, alice, 1, 2, 300_000, QTY, True, 0)]
    assert market.balanceOf(bob) == config.member_deposit_base_units - value_of(QTY, 300_000)
    # proceeds are not credited to the seller's balance: they settle after delivery
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert plain(market.positionOf(slot, alice)) == (0, QTY, 0, value_of(QTY, 300_000))


def test_equal_limits_cross(market, alice, bob, slot, logs):
    sell(market, bob, slot, PRICE, QTY)
    tx = buy(market, alice, slot, PRICE, QTY)
    assert len(logs(tx, "TradeExecuted")) == 1


def test_no_cross_rests_on_both_sides(market, alice, bob, slot, logs, plain):
    sell(market, bob, slot, PRICE + 1, QTY)
    tx = buy(market, alice, slot, PRICE, QTY)
    assert logs(tx, "TradeExecuted") == []
    assert plain(market.bestPrices(slot)) == (PRICE, PRICE + 1)


def test_partial_fill_of_the_resting_order(market, alice, bob, slot, config, logs, plain):
    buy(market, bob, slot, PRICE, QTY)
    tx = sell(market, alice, slot, PRICE, 300)
    assert logs(tx, "TradeExecuted") == [(slot, bob, alice, 1, 2, PRICE, 300, True, 700)]
    assert plain(market.getOrder(1)) == (1, bob, slot, True, PRICE, 700, value_of(700, PRICE))
    assert market.balanceOf(bob) == config.member_deposit_base_units - value_of(QTY, PRICE)
    with brownie.reverts():
        market.getOrder(2)  # fully filled incoming orders never rest


def test_partial_fill_of_the_incoming_order_rests_the_rest(market, alice, bob, slot, config, logs, plain):
    sell(market, bob, slot, 200_000, 300)
    tx = buy(market, alice, slot, 300_000, QTY)
    assert logs(tx, "TradeExecuted") == [(slot, alice, bob, 2, 1, 200_000, 300, False, 0)]
    assert plain(market.getOrder(2)) == (2, alice, slot, True, 300_000, 700, value_of(700, 300_000))
    spent = value_of(300, 200_000) + value_of(700, 300_000)
    assert market.balanceOf(alice) == config.member_deposit_base_units - spent
    assert plain(market.bestPrices(slot)) == (300_000, 0)


def test_taker_pays_trades_plus_rest_escrow_rounded_down(market, alice, bob, carol, admin, config, slot, plain):
    set_params(market, admin, config, min_price_per_kwh=1)
    sell(market, bob, slot, 1_030, 10)
    sell(market, carol, slot, 1_040, 10)
    buy(market, alice, slot, 1_050, 25)  # escrow checked: value_of(25, 1050) = 26
    spent = value_of(10, 1_030) + value_of(10, 1_040) + value_of(5, 1_050)  # 10 + 10 + 5
    assert spent == 25
    assert market.balanceOf(alice) == config.member_deposit_base_units - spent
    assert plain(market.getOrder(3)) == (3, alice, slot, True, 1_050, 5, 5)


def test_sweep_across_levels_then_rest(market, alice, bob, carol, slot, logs, plain):
    sell(market, bob, slot, 240_000, 100)
    sell(market, carol, slot, 250_000, 100)
    sell(market, bob, slot, 270_000, 100)
    tx = buy(market, alice, slot, 260_000, 500)
    assert [trade[5] for trade in logs(tx, "TradeExecuted")] == [240_000, 250_000]
    assert plain(market.getOrder(4))[5] == 300
    assert plain(market.bestPrices(slot)) == (260_000, 270_000)


# ------------------------------------------------------------------ self-trade rule


def test_self_trade_cancels_own_resting_order_and_continues(market, alice, bob, slot, config, logs, plain):
    sell(market, alice, slot, PRICE, 100)  # 1: alice's own, best ask, reached first
    sell(market, bob, slot, PRICE, 100)  # 2
    tx = buy(market, alice, slot, PRICE, 150)  # 3
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, 3, alice, True, PRICE, 150)),
        ("OrderCancelled", (slot, 1, alice, 100, 0, SELF_TRADE)),
        ("TradeExecuted", (slot, alice, bob, 3, 2, PRICE, 100, False, 0)),
    ]
    assert plain(market.getOrder(3)) == (3, alice, slot, True, PRICE, 50, value_of(50, PRICE))
    assert plain(market.bookSide(slot, False, 10)) == ()


def test_self_trade_releases_the_resting_buy_escrow(market, alice, bob, slot, config, logs, plain):
    buy(market, alice, slot, PRICE, QTY)  # 1: escrow taken
    buy(market, bob, slot, PRICE - 1, QTY)  # 2
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(QTY, PRICE)
    tx = sell(market, alice, slot, PRICE - 1, QTY)  # 3: cancels 1, then fills bob's 2
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, 3, alice, False, PRICE - 1, QTY)),
        ("OrderCancelled", (slot, 1, alice, QTY, value_of(QTY, PRICE), SELF_TRADE)),
        ("TradeExecuted", (slot, bob, alice, 2, 3, PRICE - 1, QTY, True, 0)),
    ]
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_self_trade_only_for_orders_matching_reaches(market, alice, bob, slot, plain):
    """A resting order of the same member behind a non-crossing price is left alone."""
    sell(market, bob, slot, PRICE, 100)
    sell(market, alice, slot, PRICE + 10, 100)
    buy(market, alice, slot, PRICE, 100)
    assert plain(market.getOrder(2))[5] == 100
    assert plain(market.bestPrices(slot)) == (0, PRICE + 10)


# ------------------------------------------------------------------------ fill cap


def test_fill_cap_cancels_the_rest_while_the_book_still_crosses(
    market, admin, config, alice, bob, carol, dave, slot, logs, plain
):
    set_params(market, admin, config, fill_cap=2)
    for seller in (bob, carol, dave):
        sell(market, seller, slot, PRICE, 100)
    tx = buy(market, alice, slot, PRICE, 300)  # 4
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, 4, alice, True, PRICE, 300)),
        ("TradeExecuted", (slot, alice, bob, 4, 1, PRICE, 100, False, 0)),
        ("TradeExecuted", (slot, alice, carol, 4, 2, PRICE, 100, False, 0)),
        ("OrderCancelled", (slot, 4, alice, 100, value_of(100, PRICE), FILL_CAP)),
    ]
    # nothing was taken for the cancelled rest; dave's ask is untouched
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(200, PRICE)
    assert plain(market.bookSide(slot, False, 10)) == ((3, dave, slot, False, PRICE, 100, 0),)
    assert plain(market.bestPrices(slot)) == (0, PRICE)
    with brownie.reverts():
        market.getOrder(4)


def test_fill_cap_cancels_sell_remainder_without_refund(market, admin, config, alice, bob, carol, slot, logs, plain):
    set_params(market, admin, config, fill_cap=1)
    buy(market, bob, slot, PRICE, 100)
    buy(market, carol, slot, PRICE, 100)
    tx = sell(market, alice, slot, PRICE, 300)
    assert logs(tx, "OrderCancelled") == [(slot, 3, alice, 200, 0, FILL_CAP)]
    assert plain(market.bestPrices(slot)) == (PRICE, 0)


def test_fill_cap_rests_the_rest_when_the_book_is_empty(market, admin, config, alice, bob, carol, slot, logs, plain):
    set_params(market, admin, config, fill_cap=2)
    sell(market, bob, slot, PRICE, 100)
    sell(market, carol, slot, PRICE, 100)
    tx = buy(market, alice, slot, PRICE, 300)
    assert logs(tx, "OrderCancelled") == []
    assert plain(market.getOrder(3))[5] == 100
    assert plain(market.bestPrices(slot)) == (PRICE, 0)


def test_fill_cap_rests_the_rest_when_the_next_price_does_not_cross(
    market, admin, config, alice, bob, carol, slot, logs, plain
):
    set_params(market, admin, config, fill_cap=2)
    sell(market, bob, slot, PRICE, 100)
    sell(market, carol, slot, PRICE, 100)
    sell(market, carol, slot, PRICE + 1, 100)
    tx = buy(market, alice, slot, PRICE, 300)
    assert logs(tx, "OrderCancelled") == []
    assert plain(market.bestPrices(slot)) == (PRICE, PRICE + 1)


def test_fill_cap_reached_by_the_last_needed_fill(market, admin, config, alice, bob, carol, dave, slot, logs, plain):
    set_params(market, admin, config, fill_cap=2)
    for seller in (bob, carol, dave):
        sell(market, seller, slot, PRICE, 100)
    tx = buy(market, alice, slot, PRICE, 200)
    assert len(logs(tx, "TradeExecuted")) == 2
    assert logs(tx, "OrderCancelled") == []
    assert [order[0] for order in plain(market.bookSide(slot, False, 10))] == [3]


def test_self_trade_cancellations_have_their_own_cap(market, admin, config, alice, bob, carol, slot, logs, plain):
    """Cap 2: own, bob, own, carol at one price. Two fills are allowed, but the second
    self-trade cancellation exhausts the other counter while carol's ask still crosses."""
    set_params(market, admin, config, fill_cap=2)
    sell(market, alice, slot, PRICE, 100)  # 1
    sell(market, bob, slot, PRICE, 100)  # 2
    sell(market, alice, slot, PRICE, 100)  # 3
    sell(market, carol, slot, PRICE, 100)  # 4
    tx = buy(market, alice, slot, PRICE, 400)  # 5
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, 5, alice, True, PRICE, 400)),
        ("OrderCancelled", (slot, 1, alice, 100, 0, SELF_TRADE)),
        ("TradeExecuted", (slot, alice, bob, 5, 2, PRICE, 100, False, 0)),
        ("OrderCancelled", (slot, 3, alice, 100, 0, SELF_TRADE)),
        ("OrderCancelled", (slot, 5, alice, 300, value_of(300, PRICE), FILL_CAP)),
    ]
    assert [order[0] for order in plain(market.bookSide(slot, False, 10))] == [4]


def test_fill_cap_counts_own_orders_as_crossing(market, admin, config, alice, bob, slot, logs, plain):
    """Capped while only the member's own order is left crossing: still cancelled (FillCap)."""
    set_params(market, admin, config, fill_cap=1)
    sell(market, bob, slot, PRICE, 100)  # 1
    sell(market, alice, slot, PRICE, 100)  # 2
    tx = buy(market, alice, slot, PRICE, 300)  # 3
    assert logs(tx, "OrderCancelled") == [(slot, 3, alice, 200, value_of(200, PRICE), FILL_CAP)]
    assert [order[0] for order in plain(market.bookSide(slot, False, 10))] == [2]


def test_many_fills_under_the_default_cap(market, admin, config, alice, bob, slot, logs):
    cap = config.market.fill_cap
    market.placeOrders([(slot, False, PRICE, 10)] * (cap + 1), {"from": bob})
    tx = buy(market, alice, slot, PRICE, 10 * (cap + 1))
    assert len(logs(tx, "TradeExecuted")) == cap
    assert logs(tx, "OrderCancelled") == [(slot, cap + 2, alice, 10, value_of(10, PRICE), FILL_CAP)]


# -------------------------------------------------------------------- book views


def test_book_side_ordering_and_truncation(market, alice, bob, carol, slot, plain):
    sell(market, bob, slot, 250_000, 10)  # 1
    sell(market, carol, slot, 240_000, 20)  # 2
    sell(market, alice, slot, 250_000, 30)  # 3
    sell(market, carol, slot, 260_000, 40)  # 4
    buy(market, bob, slot, 200_000, 50)  # 5
    buy(market, alice, slot, 210_000, 60)  # 6
    buy(market, carol, slot, 200_000, 70)  # 7
    asks = plain(market.bookSide(slot, False, 10))
    bids = plain(market.bookSide(slot, True, 10))
    assert [(o[0], o[4], o[5]) for o in asks] == [
        (2, 240_000, 20),
        (1, 250_000, 10),
        (3, 250_000, 30),
        (4, 260_000, 40),
    ]
    assert [(o[0], o[4], o[5]) for o in bids] == [(6, 210_000, 60), (5, 200_000, 50), (7, 200_000, 70)]
    assert [o[6] for o in bids] == [value_of(60, 210_000), value_of(50, 200_000), value_of(70, 200_000)]
    assert [o[0] for o in plain(market.bookSide(slot, False, 2))] == [2, 1]
    assert plain(market.bookSide(slot, False, 0)) == ()
    assert plain(market.bookSide(slot + 1, False, 10)) == ()
    assert plain(market.bestPrices(slot)) == (210_000, 240_000)


def test_best_prices_follow_fills_and_cancels(market, alice, bob, slot, plain):
    sell(market, bob, slot, 250_000, 10)  # 1
    sell(market, bob, slot, 260_000, 10)  # 2
    buy(market, bob, slot, 200_000, 10)  # 3
    buy(market, bob, slot, 190_000, 10)  # 4
    assert plain(market.bestPrices(slot)) == (200_000, 250_000)
    buy(market, alice, slot, 250_000, 10)  # empties the best ask level
    assert plain(market.bestPrices(slot)) == (200_000, 260_000)
    market.cancelOrder(3, {"from": bob})  # the best bid level
    assert plain(market.bestPrices(slot)) == (190_000, 260_000)
    market.cancelOrder(2, {"from": bob})
    market.cancelOrder(4, {"from": bob})
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_get_order_of_gone_orders(market, alice, bob, slot, error_pattern):
    sell(market, bob, slot, qty=100)
    buy(market, alice, slot, qty=100)
    for order_id in (1, 2, 3, 2**40 - 1):
        with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", order_id)):
            market.getOrder(order_id)


# ---------------------------------------------------------------------- positions


def test_positions_accumulate_per_member_and_slot(market, alice, bob, carol, slot, plain):
    sell(market, bob, slot, 200_000, 100)
    sell(market, carol, slot, 210_000, 100)
    buy(market, alice, slot, 210_000, 150)  # 100 @200k from bob, 50 @210k from carol
    buy(market, bob, slot, 205_000, 80)  # bob buys now: rests (best ask 210k)
    sell(market, alice, slot, 200_000, 30)  # alice sells into bob's bid at 205k
    sell(market, carol, slot + 1, 220_000, 40)
    buy(market, alice, slot + 1, 220_000, 40)
    alice_paid = value_of(100, 200_000) + value_of(50, 210_000)
    assert plain(market.positionOf(slot, alice)) == (150, 30, alice_paid, value_of(30, 205_000))
    assert plain(market.positionOf(slot, bob)) == (30, 100, value_of(30, 205_000), value_of(100, 200_000))
    assert plain(market.positionOf(slot, carol)) == (0, 50, 0, value_of(50, 210_000))
    assert plain(market.positionOf(slot + 1, alice)) == (40, 0, value_of(40, 220_000), 0)
    assert plain(market.positionOf(slot + 1, carol)) == (0, 40, 0, value_of(40, 220_000))
    assert plain(market.positionOf(slot + 2, alice)) == (0, 0, 0, 0)


def test_position_of_non_member_is_empty(market, outsider, slot, plain):
    assert plain(market.positionOf(slot, outsider)) == (0, 0, 0, 0)


def test_solvency_after_trading(market, token, members, alice, bob, carol, slot, plain):
    sell(market, bob, slot, 200_000, 100)
    buy(market, alice, slot, 250_000, 300)
    buy(market, carol, slot, 240_000, 77)
    sell(market, bob, slot, 230_000, 150)
    balances = sum(market.balanceOf(m) for m in members)
    escrow = sum(o[6] for o in plain(market.bookSide(slot, True, 50)))
    paid = sum(plain(market.positionOf(slot, m))[2] for m in members)
    assert token.balanceOf(market) == balances + escrow + paid


# -------------------------------------------------------------------- escrow dust


def dusty_bid(market, admin, config, alice, slot):
    """Alice bids 40 Wh at 1050: escrow value_of(40, 1050) = 42, while four fills of 10 Wh
    are worth 10 each, so two base units of rounding stay in the order as it fills."""
    set_params(market, admin, config, min_price_per_kwh=1)
    buy(market, alice, slot, 1_050, 40)
    assert market.balanceOf(alice) == config.member_deposit_base_units - 42


def test_escrow_dust_accumulates_and_returns_on_full_fill(market, admin, config, alice, bob, slot, plain):
    dusty_bid(market, admin, config, alice, slot)
    expected_escrow = [31 + 1, 21 + 1, 10 + 2]  # value_of(rem, 1050) + dust after each fill
    for escrow in expected_escrow:
        sell(market, bob, slot, 1_050, 10)
        assert plain(market.getOrder(1))[6] == escrow
        assert market.balanceOf(alice) == config.member_deposit_base_units - 42  # dust is held
    sell(market, bob, slot, 1_050, 10)  # the last fill: order gone, dust paid back
    assert market.balanceOf(alice) == config.member_deposit_base_units - 40
    assert plain(market.positionOf(slot, alice)) == (40, 0, 40, 0)


def test_escrow_dust_returns_on_cancel(market, admin, config, alice, bob, slot, logs):
    dusty_bid(market, admin, config, alice, slot)
    sell(market, bob, slot, 1_050, 10)
    tx = market.cancelOrder(1, {"from": alice})
    assert logs(tx, "OrderCancelled") == [(slot, 1, alice, 30, 32, BY_MEMBER)]
    assert market.balanceOf(alice) == config.member_deposit_base_units - 10


def test_escrow_dust_returns_on_expiry(market, admin, config, alice, bob, outsider, slot, clock, logs):
    dusty_bid(market, admin, config, alice, slot)
    sell(market, bob, slot, 1_050, 10)
    sell(market, bob, slot, 1_050, 10)
    sell(market, bob, slot, 1_050, 10)
    clock.to_gate_closure(slot)
    tx = market.expireOrders([1], {"from": outsider})
    assert logs(tx, "OrderCancelled") == [(slot, 1, alice, 10, 12, EXPIRED)]
    assert market.balanceOf(alice) == config.member_deposit_base_units - 30


def test_escrow_dust_returns_on_self_trade(market, admin, config, alice, bob, slot, logs):
    dusty_bid(market, admin, config, alice, slot)
    sell(market, bob, slot, 1_050, 10)
    tx = sell(market, alice, slot, 1_050, 10)
    assert logs(tx, "OrderCancelled") == [(slot, 1, alice, 30, 32, SELF_TRADE)]
    assert market.balanceOf(alice) == config.member_deposit_base_units - 10


# ------------------------------------------------------------------- cancellation


def test_cancel_buy_order(market, alice, slot, config, logs, plain):
    buy(market, alice, slot)
    tx = market.cancelOrder(1, {"from": alice})
    assert logs(tx, address=market) == [("OrderCancelled", (slot, 1, alice, QTY, value_of(QTY, PRICE), BY_MEMBER))]
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.bookSide(slot, True, 10)) == ()


def test_cancel_sell_order(market, alice, slot, logs):
    sell(market, alice, slot)
    tx = market.cancelOrder(1, {"from": alice})
    assert logs(tx, "OrderCancelled") == [(slot, 1, alice, QTY, 0, BY_MEMBER)]


@pytest.mark.parametrize("position", [0, 1, 2])
def test_cancel_keeps_fifo_of_the_others(market, alice, bob, carol, dave, slot, logs, plain, position):
    """Cancel the head, middle or tail of a level; the others still fill in time order, and
    new orders queue behind them."""
    owners = [bob, carol, dave]
    for owner in owners:
        sell(market, owner, slot, PRICE, 100)
    market.cancelOrder(position + 1, {"from": owners[position]})
    sell(market, bob, slot, PRICE, 100)  # 4 joins the tail
    kept = [i for i in (1, 2, 3) if i != position + 1] + [4]
    assert [o[0] for o in plain(market.bookSide(slot, False, 10))] == kept
    tx = buy(market, alice, slot, PRICE, 300)
    assert [trade[4] for trade in logs(tx, "TradeExecuted")] == kept
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_cancel_orders_batch(market, alice, slot, config, logs):
    buy(market, alice, slot, PRICE, 100)
    sell(market, alice, slot, PRICE + 5, 100)
    buy(market, alice, slot + 1, PRICE, 100)
    tx = market.cancelOrders([3, 1], {"from": alice})
    assert [event[1] for event in logs(tx, "OrderCancelled")] == [3, 1]
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert market.getOrder(2)["remainingWh"] == 100


def test_cancel_orders_is_all_or_nothing(market, alice, bob, slot, snapshot_state, error_pattern):
    buy(market, alice, slot, PRICE, 100)
    sell(market, bob, slot, PRICE + 5, 100)
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketNotOrderOwner", 2, alice, bob)):
        market.cancelOrders([1, 2], {"from": alice})
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", 1)):
        market.cancelOrders([1, 1], {"from": alice})
    assert snapshot_state(slot) == before


def test_cancel_unknown_or_gone_orders(market, alice, bob, slot, snapshot_state, error_pattern):
    sell(market, bob, slot, qty=100)  # 1
    buy(market, alice, slot, qty=100)  # 2 fills 1 completely
    buy(market, alice, slot, qty=100)  # 3 rests
    market.cancelOrder(3, {"from": alice})
    before = snapshot_state(slot)
    for order_id, owner in ((0, alice), (1, bob), (2, alice), (3, alice), (99, alice)):
        with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", order_id)):
            market.cancelOrder(order_id, {"from": owner})
    assert snapshot_state(slot) == before


def test_cancel_someone_elses_order(market, alice, bob, outsider, slot, snapshot_state, error_pattern):
    buy(market, alice, slot)
    before = snapshot_state(slot)
    for caller in (bob, outsider):
        with brownie.reverts(revert_pattern=error_pattern("MarketNotOrderOwner", 1, caller, alice)):
            market.cancelOrder(1, {"from": caller})
    assert snapshot_state(slot) == before


def test_cancel_at_gate_closure(market, alice, slot, clock, snapshot_state, error_pattern):
    buy(market, alice, slot, qty=100)
    buy(market, alice, slot, qty=200)
    closure = market.gateClosure(slot)
    clock.next_tx_at(closure - 1)
    market.cancelOrder(1, {"from": alice})  # the last second: still allowed
    clock.next_tx_at(closure)
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketGateClosed", slot, closure, closure)):
        market.cancelOrder(2, {"from": alice})
    assert snapshot_state(slot) == before


# ------------------------------------------------------------------------ expiry


def test_expire_orders_at_gate_closure(market, alice, bob, outsider, slot, config, clock, logs, plain):
    buy(market, alice, slot, PRICE, 100)  # 1
    sell(market, bob, slot, PRICE + 10, 100)  # 2
    buy(market, alice, slot + 1, PRICE, 100)  # 3: next slot, still open
    closure = clock.to_gate_closure(slot)
    # after gate closure the book still shows the orders until they are expired
    assert [o[0] for o in plain(market.bookSide(slot, True, 10))] == [1]
    tx = market.expireOrders([2, 1], {"from": outsider})  # anyone may call it
    assert logs(tx, address=market) == [
        ("OrderCancelled", (slot, 2, bob, 100, 0, EXPIRED)),
        ("OrderCancelled", (slot, 1, alice, 100, value_of(100, PRICE), EXPIRED)),
    ]
    assert tx.timestamp >= closure
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(100, PRICE)
    assert market.getOrder(3)["remainingWh"] == 100


def test_expire_skips_orders_already_gone(market, alice, bob, slot, clock, logs):
    sell(market, bob, slot, qty=100)  # 1
    buy(market, alice, slot, qty=100)  # 2 fills 1
    buy(market, alice, slot, qty=50)  # 3
    clock.to_gate_closure(slot, 5)
    tx = market.expireOrders([0, 1, 2, 3, 3, 77], {"from": bob})
    assert [event[1] for event in logs(tx, "OrderCancelled")] == [3]
    tx = market.expireOrders([3], {"from": bob})
    assert logs(tx) == []


def test_expire_before_gate_closure_reverts(market, alice, slot, clock, snapshot_state, error_pattern):
    buy(market, alice, slot, qty=100)  # 1
    buy(market, alice, slot + 1, qty=100)  # 2
    closure = market.gateClosure(slot)
    clock.next_tx_at(closure - 1)
    before = snapshot_state(slot, slot + 1)
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotExpired", 1, closure, closure - 1)):
        market.expireOrders([1], {"from": alice})
    clock.next_tx_at(closure)
    next_closure = market.gateClosure(slot + 1)
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotExpired", 2, next_closure, closure)):
        market.expireOrders([1, 2], {"from": alice})  # one order of an open slot: nothing expires
    assert snapshot_state(slot, slot + 1) == before


def test_closed_slot_refuses_orders_but_keeps_its_book(market, alice, bob, slot, clock, error_pattern, plain):
    sell(market, bob, slot, PRICE, 100)
    clock.to_gate_closure(slot, 1)
    closure = market.gateClosure(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketGateClosed", slot, closure, ...)):
        buy(market, alice, slot, PRICE, 100)
    with brownie.reverts(revert_pattern=error_pattern("MarketGateClosed", slot, closure, ...)):
        market.cancelOrder(1, {"from": bob})
    assert plain(market.bestPrices(slot)) == (0, PRICE)


# -------------------------------------------------------------- removed members


def test_removed_member_orders_still_fill_and_can_be_cancelled(market, manager, alice, bob, slot, config, logs, plain):
    buy(market, bob, slot, PRICE, 100)  # 1
    buy(market, bob, slot, PRICE - 1, 100)  # 2
    market.removeMember(bob, {"from": manager})
    tx = sell(market, alice, slot, PRICE, 100)
    assert logs(tx, "TradeExecuted") == [(slot, bob, alice, 1, 3, PRICE, 100, True, 0)]
    assert plain(market.positionOf(slot, bob)) == (100, 0, value_of(100, PRICE), 0)
    market.cancelOrder(2, {"from": bob})
    expected = config.member_deposit_base_units - value_of(100, PRICE)
    assert market.balanceOf(bob) == expected


# ----------------------------------------------------------- overflow guards (fix)


def whales(market, token, admin, config, members, amount):
    """Open the whole price band and give the members huge balances."""
    set_params(market, admin, config, min_price_per_kwh=1, max_price_per_kwh=MAX_UINT32, min_qty_wh=1)
    for member in members:
        token.mint(member, amount, {"from": admin})
        market.deposit(amount, {"from": member})


@pytest.mark.parametrize("maker_is_buy", [False, True])
def test_largest_fill_is_booked_exactly(market, token, admin, config, alice, bob, slot, maker_is_buy):
    """MAX_QTY_WH at the highest price is worth less than 2^64 base units: the position holds the
    exact value (the quantity bound is what makes the uint64 casts exact)."""
    whales(market, token, admin, config, [alice, bob], 2**100)
    value = value_of(MAX_QTY_WH, MAX_UINT32)
    assert value < 2**64
    market.placeOrder(slot, maker_is_buy, MAX_UINT32, MAX_QTY_WH, {"from": bob})
    market.placeOrder(slot, not maker_is_buy, MAX_UINT32, MAX_QTY_WH, {"from": alice})
    buyer, seller = (bob, alice) if maker_is_buy else (alice, bob)
    assert market.positionOf(slot, buyer)["paid"] == value
    assert market.positionOf(slot, seller)["received"] == value


def test_position_sum_beyond_uint64_reverts(market, token, admin, config, alice, bob, slot, snapshot_state):
    """Four of the largest fills overflow a uint64 position sum: the fourth reverts instead of
    wrapping around."""
    whales(market, token, admin, config, [alice, bob], 2**100)
    largest = value_of(MAX_QTY_WH, MAX_UINT32)
    assert 3 * largest < 2**64 <= 4 * largest
    for _ in range(3):
        sell(market, bob, slot, MAX_UINT32, MAX_QTY_WH)
        buy(market, alice, slot, MAX_UINT32, MAX_QTY_WH)
    sell(market, bob, slot, MAX_UINT32, MAX_QTY_WH)
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern="Integer overflow"):
        buy(market, alice, slot, MAX_UINT32, MAX_QTY_WH)
    assert snapshot_state(slot) == before


def test_taker_balance_beyond_uint128_reverts_instead_of_truncating(
    market, token, admin, alice, slot, snapshot_state, error_pattern
):
    """Self-trade releases credit the taker in memory; writing back more than uint128 reverts
    (before the fix the balance was silently truncated, losing 2^128 base units)."""
    token.mint(alice, 2**129, {"from": admin})
    buy(market, alice, slot)  # escrow E
    market.deposit(2**128 - 1 - market.balanceOf(alice), {"from": alice})
    before = snapshot_state(slot)
    overflowing = 2**128 - 1 + value_of(QTY, PRICE)
    with brownie.reverts(revert_pattern=error_pattern("SafeCastOverflowedUintDowncast", 128, overflowing)):
        sell(market, alice, slot)  # cancels the own bid, releasing E
    assert snapshot_state(slot) == before

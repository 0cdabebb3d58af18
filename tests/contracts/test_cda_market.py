"""CdaMarket: deposits and withdrawals, order entry and its checks, order ids, the matching
rules of DESIGN.md section 4 one by one, gaps left by cancellations, cancellation, expiry,
views, positions and escrow.

Order ids are not sequential (peerwatt.order_ids): a test takes them from ``tx.return_value``
or computes them with :func:`resting_id` / :func:`crossing_id` from the slot's id nonce, which
counts, from 1, the price levels created by orders that do not cross the book and the orders
that cross it (each takes a fresh level at its limit price before matching), in the order they
happen (shared by both sides of a slot).

Every rejected call is checked twice: it reverts with the custom error and its arguments, and
it leaves the market as it was (``snapshot_state``). SafeERC20FailedOperation is the only
market error not exercised: the settlement token reverts on failure instead of returning
false, so SafeERC20 never gets to raise it.
"""

from dataclasses import replace

import brownie
import pytest

from peerwatt.config import CommunityConfig
from peerwatt.order_ids import decode_order_id, first_seq, order_id_at
from peerwatt.orderbook_model import MAX_PRICE_TICKS, CancelReason, OrderRequest
from peerwatt.units import MAX_QTY_WH, value_of

PRICE = 250_000  # 0.25 token per kWh
QTY = 1_000  # Wh
TICK = 1_000  # the price tick of the markets that test it (the ``market`` fixture's is 1)
WIDE_TICK = 256  # the largest tick whose MAX_PRICE_TICKS ticks fit in uint32
TOP_PRICE = MAX_PRICE_TICKS * WIDE_TICK  # the highest price any market accepts: 2^32 - 256
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
    "MarketPriceOffTick",
    "MarketPriceOutOfBand",
    "MarketQuantityTooLarge",
    "MarketQuantityTooSmall",
    "MarketZeroAmount",
    "RegistryAlreadyMember",
    "RegistryInvalidClock",
    "RegistryInvalidFillCap",
    "RegistryInvalidMinQty",
    "RegistryInvalidPriceBand",
    "RegistryInvalidPriceTick",
    "RegistryInvalidTariffs",
    "RegistryNotMember",
    "RegistryZeroAddress",
    "SafeCastOverflowedUintDowncast",
}
# the settlement ledger's errors are tested in test_settlement.py
LEDGER_ERRORS = {
    "MarketMemberInDebt",
    "LedgerNoSupplier",
    "LedgerSupplierUnderfunded",
    "LedgerNotMemberId",
    "LedgerMalformedRecords",
}
# see the module docstring; amounts converted to int256 are token sums, far below 2^255
UNREACHABLE_ERRORS = {"SafeERC20FailedOperation", "SafeCastOverflowedUintToInt"}


def buy(market, who, slot, price=PRICE, qty=QTY):
    return market.placeOrder(slot, True, price, qty, {"from": who})


def sell(market, who, slot, price=PRICE, qty=QTY):
    return market.placeOrder(slot, False, price, qty, {"from": who})


def set_params(market, admin, config, **changes):
    market.setMarketParams(replace(config.market, **changes).as_tuple(), {"from": admin})


def resting_id(slot, is_buy, price, nonce, place=0):
    """Id of the order at ``place`` (0: the first) of the price level that took the slot's id
    ``nonce`` when it was created."""
    return order_id_at(slot, is_buy, price, first_seq(nonce) + place)


def crossing_id(slot, is_buy, price, nonce):
    """Id of an order that crossed the book when the slot's next id nonce was ``nonce``: the
    first place of a fresh level at its limit price, taken before matching, whether the order
    then rests there (the rest of a partial fill) or never rests (filled, or capped)."""
    return resting_id(slot, is_buy, price, nonce)


def ids_of(orders):
    """The order ids of a ``bookSide`` result."""
    return [order[0] for order in orders]


def test_every_custom_error_is_accounted_for(market):
    """The market ABI's errors are the ones tested here, in test_community_registry.py and in
    test_settlement.py (the ledger)."""
    errors = {entry["name"] for entry in market.abi if entry["type"] == "error"}
    assert errors == TESTED_ERRORS | LEDGER_ERRORS | UNREACHABLE_ERRORS


def test_constants_and_empty_views(market, token, slot, plain, error_pattern):
    assert market.MAX_QTY_WH() == MAX_QTY_WH
    assert market.token() == token
    assert market.MAX_FILL_CAP() == 256
    assert market.MAX_PRICE_TICKS() == MAX_PRICE_TICKS == 2**24 - 1
    assert market.priceTick() == 1  # tests/conftest.py's config
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.bookSide(slot, True, 10)) == ()
    assert plain(market.bookSide(slot, False, 10)) == ()
    for order_id in (1, resting_id(slot, True, PRICE, 1), resting_id(slot, False, PRICE, 1), 2**256 - 1):
        with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", order_id)):
            market.getOrder(order_id)


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
    bid = buy(market, alice, slot).return_value
    free = config.member_deposit_base_units - value_of(QTY, PRICE)
    with brownie.reverts(revert_pattern=error_pattern("MarketInsufficientBalance", alice, free, free + 1)):
        market.withdraw(free + 1, {"from": alice})
    market.withdraw(free, {"from": alice})
    assert market.balanceOf(alice) == 0
    assert market.getOrder(bid)["escrow"] == value_of(QTY, PRICE)


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
    ask = resting_id(slot, False, PRICE, 1)  # the first place of the slot's first level
    assert tx.return_value == ask
    assert logs(tx, address=market) == [("OrderPlaced", (slot, ask, alice, False, PRICE, QTY))]
    assert plain(market.getOrder(ask)) == (ask, alice, slot, False, PRICE, QTY, 0)
    assert plain(market.bookSide(slot, False, 10)) == ((ask, alice, slot, False, PRICE, QTY, 0),)
    assert plain(market.bestPrices(slot)) == (0, PRICE)
    assert market.balanceOf(alice) == config.member_deposit_base_units


def test_buy_order_rests_and_escrows(market, token, alice, slot, config, plain, logs):
    held = token.balanceOf(market)
    tx = buy(market, alice, slot)
    bid = resting_id(slot, True, PRICE, 1)
    assert tx.return_value == bid
    escrow = value_of(QTY, PRICE)
    assert logs(tx, address=market) == [("OrderPlaced", (slot, bid, alice, True, PRICE, QTY))]
    assert plain(market.getOrder(bid)) == (bid, alice, slot, True, PRICE, QTY, escrow)
    assert plain(market.bestPrices(slot)) == (PRICE, 0)
    assert market.balanceOf(alice) == config.member_deposit_base_units - escrow
    assert token.balanceOf(market) == held  # escrow stays in the market


def test_sell_needs_no_balance(market, alice, slot, config):
    market.withdraw(config.member_deposit_base_units, {"from": alice})
    ask = sell(market, alice, slot).return_value
    assert market.getOrder(ask)["remainingWh"] == QTY


def test_min_and_max_quantities_accepted(market, config, alice, slot):
    sell(market, alice, slot, qty=config.market.min_qty_wh)
    largest = sell(market, alice, slot, qty=MAX_QTY_WH).return_value
    assert market.getOrder(largest)["remainingWh"] == MAX_QTY_WH


def test_band_edges_accepted(market, admin, config, alice, slot, plain):
    set_params(market, admin, config, min_price_per_kwh=100, max_price_per_kwh=200)
    sell(market, alice, slot, price=200)
    buy(market, alice, slot, price=100)
    assert plain(market.bestPrices(slot)) == (100, 200)


# ------------------------------------------------------------------------ price tick


def test_orders_on_the_tick_are_accepted(ticked_market, alice, bob, plain, logs):
    """With a tick of 1000 (the ``ticked_market`` fixture) every multiple of it in the band is a
    price: the band's edges and prices in between rest, show in the views and trade."""
    market = ticked_market
    slot = market.nextOpenSlot() + 1
    assert market.priceTick() == TICK
    low, high = plain(market.marketParams())[:2]
    assert (low, high) == (TICK, 1_000 * TICK)
    top = sell(market, alice, slot, high, 10).return_value
    ask = sell(market, alice, slot, PRICE + TICK, 10).return_value
    bid = buy(market, bob, slot, low, 10).return_value
    assert plain(market.bestPrices(slot)) == (low, PRICE + TICK)
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [ask, top]
    assert [top, ask, bid] == [
        resting_id(slot, False, high, 1),
        resting_id(slot, False, PRICE + TICK, 2),
        resting_id(slot, True, low, 3),
    ]
    tx = buy(market, bob, slot, PRICE + 2 * TICK, 10)
    assert logs(tx, "TradeExecuted") == [(slot, bob, alice, tx.return_value, ask, PRICE + TICK, 10, False)]
    assert tx.return_value == crossing_id(slot, True, PRICE + 2 * TICK, 4)


@pytest.mark.parametrize(
    "is_buy, price",
    [(True, TICK + 1), (True, 150_001), (False, 119_999), (False, PRICE + TICK - 1), (False, 1_000 * TICK - 1)],
)
def test_orders_off_the_tick_revert_and_change_nothing(
    ticked_market, alice, bob, snapshot_state, error_pattern, is_buy, price
):
    """A price inside the band that is not a multiple of the tick reverts MarketPriceOffTick,
    also in a batch (the earlier good order is rolled back). The book has an order on each side
    (150_000 and 120_000), which 150_001 and 119_999 would cross."""
    market = ticked_market
    slot = market.nextOpenSlot() + 1
    sell(market, bob, slot, 150_000, QTY)
    buy(market, bob, slot, 120_000, QTY)
    before = snapshot_state(slot, market=market)
    pattern = error_pattern("MarketPriceOffTick", price, TICK)
    with brownie.reverts(revert_pattern=pattern):
        market.placeOrder(slot, is_buy, price, QTY, {"from": alice})
    with brownie.reverts(revert_pattern=pattern):
        market.placeOrders([(slot, False, 150_000, QTY), (slot, is_buy, price, QTY)], {"from": alice})
    assert snapshot_state(slot, market=market) == before


def test_the_tick_is_checked_after_the_band_and_before_the_rest(ticked_market, alice, snapshot_state, error_pattern):
    """Validation order with a tick: price band, price tick, minimum quantity, maximum quantity,
    gate, balance. An off-tick price outside the band is out of band; inside it, it is off the
    tick whatever else is wrong with the order."""
    market = ticked_market
    slot = market.nextOpenSlot() + 1
    closed = market.currentSlot()
    low, high = TICK, 1_000 * TICK
    huge = DEPOSIT  # value_of(DEPOSIT, 1_500) is far above the balance
    before = snapshot_state(slot, closed, market=market)
    checks = [
        ((slot, True, low - 1, QTY), ("MarketPriceOutOfBand", low - 1, low, high)),
        ((slot, False, high + 1, QTY), ("MarketPriceOutOfBand", high + 1, low, high)),
        ((closed, True, 1, 0), ("MarketPriceOutOfBand", 1, low, high)),
        ((closed, True, 1_500, 0), ("MarketPriceOffTick", 1_500, TICK)),
        ((closed, True, 1_500, MAX_QTY_WH + 1), ("MarketPriceOffTick", 1_500, TICK)),
        ((slot, True, 1_500, huge), ("MarketPriceOffTick", 1_500, TICK)),
        ((closed, True, 2_000, 0), ("MarketQuantityTooSmall", 0, MIN_QTY)),
        ((slot, True, 2_000, huge), ("MarketInsufficientBalance", alice, DEPOSIT, value_of(huge, 2_000))),
    ]
    for request, error in checks:
        with brownie.reverts(revert_pattern=error_pattern(*error)):
            market.placeOrder(*request, {"from": alice})
    assert snapshot_state(slot, closed, market=market) == before


# ------------------------------------------------------------------------- order ids


def test_resting_ids_encode_slot_side_price_and_place(market, alice, bob, slot, plain):
    """A resting order's id is its price level (slot, side, price) and its place in the level's
    queue: a new level takes the slot's next nonce (each slot has its own, shared by both
    sides), a later order at its price the place after the tail."""
    placed = [
        (sell(market, alice, slot), resting_id(slot, False, PRICE, 1)),
        (buy(market, bob, slot + 1, PRICE - 1), resting_id(slot + 1, True, PRICE - 1, 1)),
        (buy(market, alice, slot, PRICE - 10), resting_id(slot, True, PRICE - 10, 2)),
        (sell(market, bob, slot), resting_id(slot, False, PRICE, 1, 1)),
        (sell(market, bob, slot, PRICE + 10), resting_id(slot, False, PRICE + 10, 3)),
        (sell(market, alice, slot), resting_id(slot, False, PRICE, 1, 2)),
        (buy(market, bob, slot + 1, PRICE - 2), resting_id(slot + 1, True, PRICE - 2, 2)),
    ]
    for tx, expected in placed:
        assert tx.return_value == expected
        parts = decode_order_id(expected)
        view = plain(market.getOrder(expected))
        assert (view[0], view[2], view[3], view[4]) == (expected, parts.slot, parts.is_buy, parts.price_per_kwh)
    ids = [expected for _, expected in placed]
    assert len(set(ids)) == len(ids)
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [ids[0], ids[3], ids[5], ids[4]]
    assert ids_of(plain(market.bookSide(slot + 1, True, 10))) == [ids[1], ids[6]]


def test_crossing_orders_take_the_first_place_of_a_fresh_level(
    market, admin, config, alice, bob, carol, dave, slot, logs, plain, snapshot_state, error_pattern
):
    """An order that crosses the book takes the slot's next nonce before matching: its id is the
    first place of a fresh level at its limit price (the book never crosses, so that level is
    empty), known before any fill, so every event of the order carries it. Filled on arrival or
    stopped by the fill cap, it keeps that id, which names no order afterwards; partly filled,
    it rests there as the level's first order (no second nonce) and later orders at its price
    queue behind it. Level creations and crossing orders take the nonces in the order they
    happen."""
    set_params(market, admin, config, fill_cap=1)
    asks = [sell(market, who, slot, PRICE, 100).return_value for who in (bob, carol, dave)]  # nonce 1
    tx = buy(market, alice, slot, PRICE + 5, 100)  # filled on arrival: nonce 2
    filled = crossing_id(slot, True, PRICE + 5, 2)
    assert tx.return_value == filled
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, filled, alice, True, PRICE + 5, 100)),
        ("TradeExecuted", (slot, alice, bob, filled, asks[0], PRICE, 100, False)),
    ]
    tx = buy(market, alice, slot, PRICE, 300)  # one fill, then capped while dave's ask crosses: nonce 3
    capped = crossing_id(slot, True, PRICE, 3)
    assert tx.return_value == capped
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, capped, alice, True, PRICE, 300)),
        ("TradeExecuted", (slot, alice, carol, capped, asks[1], PRICE, 100, False)),
        ("OrderCancelled", (slot, capped, alice, 200, value_of(200, PRICE), FILL_CAP)),
    ]
    high = sell(market, bob, slot, PRICE + 10, 100).return_value  # a new level: nonce 4
    assert high == resting_id(slot, False, PRICE + 10, 4)
    tx = buy(market, alice, slot, PRICE, 150)  # fills dave's, rests 50 where it stands: nonce 5
    rested = crossing_id(slot, True, PRICE, 5)
    assert tx.return_value == rested
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, rested, alice, True, PRICE, 150)),
        ("TradeExecuted", (slot, alice, dave, rested, asks[2], PRICE, 100, False)),
    ]
    assert plain(market.getOrder(rested)) == (rested, alice, slot, True, PRICE, 50, value_of(50, PRICE))
    joined = buy(market, bob, slot, PRICE, 20).return_value  # does not cross: behind alice's rest
    assert joined == resting_id(slot, True, PRICE, 5, 1)
    assert ids_of(plain(market.bookSide(slot, True, 10))) == [rested, joined]
    assert plain(market.bestPrices(slot)) == (PRICE, PRICE + 10)
    tx = sell(market, carol, slot, PRICE, 50)  # fills the rest of alice's bid: nonce 6
    sold = crossing_id(slot, False, PRICE, 6)
    assert tx.return_value == sold
    assert logs(tx, "TradeExecuted") == [(slot, alice, carol, rested, sold, PRICE, 50, True)]
    ids = [*asks, filled, capped, high, rested, joined, sold]
    assert len(set(ids)) == len(ids)
    parts = decode_order_id(capped)
    assert (parts.slot, parts.is_buy, parts.price_per_kwh, parts.seq) == (slot, True, PRICE, first_seq(3))
    assert ids_of(plain(market.bookSide(slot, True, 10))) == [joined]
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [high]
    before = snapshot_state(slot)
    for gone, owner in ((filled, alice), (capped, alice), (rested, alice), (sold, carol)):
        with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", gone)):
            market.getOrder(gone)
        with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", gone)):
            market.cancelOrder(gone, {"from": owner})
    assert snapshot_state(slot) == before


def test_a_crossing_order_that_rests_starts_a_level_a_taker_reaches(market, alice, bob, carol, slot, logs, plain):
    """The rest of a partly filled crossing order is a level of its own (the first place of its
    nonce): it shows as the best price, comes before later orders at its price, a taker fills it
    and then the order queued behind it, and its owner can cancel it like any resting order."""
    sell(market, bob, slot, PRICE - 1, 40)  # nonce 1
    first = buy(market, alice, slot, PRICE, 100).return_value  # crosses: nonce 2, rests 60
    second = buy(market, carol, slot, PRICE, 30).return_value
    assert [first, second] == [crossing_id(slot, True, PRICE, 2), resting_id(slot, True, PRICE, 2, 1)]
    assert plain(market.bestPrices(slot)) == (PRICE, 0)
    tx = sell(market, bob, slot, PRICE, 70)  # crosses: nonce 3, filled on arrival
    taker = crossing_id(slot, False, PRICE, 3)
    assert tx.return_value == taker
    assert logs(tx, "TradeExecuted") == [
        (slot, alice, bob, first, taker, PRICE, 60, True),
        (slot, carol, bob, second, taker, PRICE, 10, True),
    ]
    assert plain(market.bookSide(slot, True, 10)) == ((second, carol, slot, True, PRICE, 20, value_of(20, PRICE)),)
    tx = sell(market, alice, slot, PRICE, 50)  # crosses carol's rest: nonce 4, rests 30
    ask = crossing_id(slot, False, PRICE, 4)
    assert tx.return_value == ask
    assert plain(market.bestPrices(slot)) == (0, PRICE)
    tx = market.cancelOrder(ask, {"from": alice})
    assert logs(tx, address=market) == [("OrderCancelled", (slot, ask, alice, 30, 0, BY_MEMBER))]
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_a_recreated_level_gets_a_fresh_nonce_so_ids_never_repeat(
    market, alice, bob, slot, plain, snapshot_state, error_pattern
):
    """A level that empties (by a cancellation or a fill) is deleted; the next order at its
    price creates it again with a new nonce, so the id of a gone order never names a new one."""
    first = sell(market, alice, slot).return_value  # nonce 1
    market.cancelOrder(first, {"from": alice})  # the level empties
    second = sell(market, alice, slot).return_value  # nonce 2, not the first place of nonce 1
    buy(market, bob, slot)  # fills it (the level empties again): nonce 3
    third = sell(market, alice, slot).return_value  # nonce 4
    assert [first, second, third] == [resting_id(slot, False, PRICE, nonce) for nonce in (1, 2, 4)]
    before = snapshot_state(slot)
    for gone in (first, second):
        with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", gone)):
            market.cancelOrder(gone, {"from": alice})
        with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", gone)):
            market.getOrder(gone)
    assert snapshot_state(slot) == before
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [third]


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


def test_validation_order(market, alice, config, snapshot_state, error_pattern):
    """Checks run in a fixed order: price band, (price tick: see the tick tests,) minimum,
    maximum, gate, balance."""
    closed = market.currentSlot()
    before = snapshot_state(closed)
    low, high = config.market.min_price_per_kwh, config.market.max_price_per_kwh
    checks = [
        ((closed, True, 0, 0), ("MarketPriceOutOfBand", 0, low, high)),
        ((closed, True, PRICE, 0), ("MarketQuantityTooSmall", 0, 10)),
        ((closed, True, PRICE, MAX_QTY_WH + 1), ("MarketQuantityTooLarge", MAX_QTY_WH + 1, MAX_QTY_WH)),
        ((closed, True, PRICE, MAX_QTY_WH), ("MarketGateClosed", closed, market.gateClosure(closed), ...)),
    ]
    for request, error in checks:
        with brownie.reverts(revert_pattern=error_pattern(*error)):
            market.placeOrder(*request, {"from": alice})
    assert snapshot_state(closed) == before


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
    (computed by the reference model). Bob's bid and ask take nonce 1 of their slots; alice's
    first sell fills on arrival (nonce 2), her second rests at a new level (nonce 3) and her buy
    in the next slot too (nonce 2 of that slot)."""
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
    expected = [
        crossing_id(slot, False, PRICE, 2),
        resting_id(slot, False, PRICE - 1_000, 3),
        resting_id(slot + 1, True, PRICE, 2),
    ]
    assert list(tx.return_value) == ids == expected
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


def test_place_orders_empty_batch(market, alice, slot, snapshot_state, logs):
    before = snapshot_state(slot)
    tx = market.placeOrders([], {"from": alice})
    assert list(tx.return_value) == []
    assert logs(tx) == []
    assert snapshot_state(slot) == before


def test_place_orders_self_trade_inside_batch(market, alice, slot, config, logs, plain):
    tx = market.placeOrders([(slot, True, PRICE, QTY), (slot, False, PRICE, QTY)], {"from": alice})
    escrow = value_of(QTY, PRICE)
    bid, ask = resting_id(slot, True, PRICE, 1), resting_id(slot, False, PRICE, 2)
    assert list(tx.return_value) == [bid, ask]
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, bid, alice, True, PRICE, QTY)),
        ("OrderPlaced", (slot, ask, alice, False, PRICE, QTY)),
        ("OrderCancelled", (slot, bid, alice, QTY, escrow, SELF_TRADE)),
    ]
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert plain(market.bestPrices(slot)) == (0, PRICE)


# ------------------------------------------------------------------------- matching


def test_buy_takes_the_lowest_ask_first(market, alice, bob, carol, dave, slot, config, logs, plain):
    ask_bob = sell(market, bob, slot, 260_000, 100).return_value
    ask_carol = sell(market, carol, slot, 240_000, 100).return_value
    ask_dave = sell(market, dave, slot, 250_000, 100).return_value
    tx = buy(market, alice, slot, 270_000, 300)
    taker = tx.return_value
    assert taker == crossing_id(slot, True, 270_000, 4)  # filled on arrival
    assert logs(tx, "TradeExecuted") == [
        (slot, alice, carol, taker, ask_carol, 240_000, 100, False),
        (slot, alice, dave, taker, ask_dave, 250_000, 100, False),
        (slot, alice, bob, taker, ask_bob, 260_000, 100, False),
    ]
    paid = value_of(100, 240_000) + value_of(100, 250_000) + value_of(100, 260_000)
    assert market.balanceOf(alice) == config.member_deposit_base_units - paid
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.positionOf(slot, alice)) == (300, 0, paid, 0)


def test_sell_takes_the_highest_bid_first(market, alice, bob, carol, dave, slot, logs, plain):
    buy(market, bob, slot, 240_000, 100)
    bid_carol = buy(market, carol, slot, 260_000, 100).return_value
    bid_dave = buy(market, dave, slot, 250_000, 100).return_value
    tx = sell(market, alice, slot, 245_000, 300)  # crosses 260k and 250k only
    taker = tx.return_value
    assert taker == crossing_id(slot, False, 245_000, 4)  # its rest stays at that fresh level
    assert logs(tx, "TradeExecuted") == [
        (slot, carol, alice, bid_carol, taker, 260_000, 100, True),
        (slot, dave, alice, bid_dave, taker, 250_000, 100, True),
    ]
    assert market.getOrder(taker)["remainingWh"] == 100
    assert plain(market.bestPrices(slot)) == (240_000, 245_000)


def test_fifo_at_equal_price(market, alice, bob, carol, dave, slot, logs, plain):
    asks = [sell(market, owner, slot, qty=100).return_value for owner in (bob, carol, dave)]
    assert asks == [resting_id(slot, False, PRICE, 1, place) for place in range(3)]
    tx = buy(market, alice, slot, qty=150)
    taker = tx.return_value
    assert logs(tx, "TradeExecuted") == [
        (slot, alice, bob, taker, asks[0], PRICE, 100, False),
        (slot, alice, carol, taker, asks[1], PRICE, 50, False),
    ]
    assert ids_of(plain(market.bookSide(slot, False, 10))) == asks[1:]
    assert market.getOrder(asks[1])["remainingWh"] == 50


def test_buy_trades_at_resting_price_and_keeps_the_difference(market, alice, bob, slot, config, logs, plain):
    ask = sell(market, bob, slot, 200_000, QTY).return_value
    tx = buy(market, alice, slot, 300_000, QTY)
    assert logs(tx, "TradeExecuted") == [(slot, alice, bob, tx.return_value, ask, 200_000, QTY, False)]
    # escrow at 300k was only checked; the buyer pays the 200k trade value
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(QTY, 200_000)
    assert plain(market.positionOf(slot, alice)) == (QTY, 0, value_of(QTY, 200_000), 0)
    assert plain(market.positionOf(slot, bob)) == (0, QTY, 0, value_of(QTY, 200_000))


def test_sell_trades_at_resting_bid_price(market, alice, bob, slot, config, logs, plain):
    bid = buy(market, bob, slot, 300_000, QTY).return_value
    tx = sell(market, alice, slot, 200_000, QTY)
    assert logs(tx, "TradeExecuted") == [(slot, bob, alice, bid, tx.return_value, 300_000, QTY, True)]
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


def test_partial_fill_of_the_resting_order(market, alice, bob, slot, config, logs, plain, error_pattern):
    bid = buy(market, bob, slot, PRICE, QTY).return_value
    tx = sell(market, alice, slot, PRICE, 300)
    taker = tx.return_value
    assert logs(tx, "TradeExecuted") == [(slot, bob, alice, bid, taker, PRICE, 300, True)]
    assert plain(market.getOrder(bid)) == (bid, bob, slot, True, PRICE, 700, value_of(700, PRICE))
    assert market.balanceOf(bob) == config.member_deposit_base_units - value_of(QTY, PRICE)
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", taker)):
        market.getOrder(taker)  # fully filled incoming orders never rest


def test_partial_fill_of_the_incoming_order_rests_the_rest(market, alice, bob, slot, config, logs, plain):
    ask = sell(market, bob, slot, 200_000, 300).return_value
    tx = buy(market, alice, slot, 300_000, QTY)
    bid = tx.return_value
    assert bid == crossing_id(slot, True, 300_000, 2)  # it crossed: its rest rests at that level
    assert logs(tx, "TradeExecuted") == [(slot, alice, bob, bid, ask, 200_000, 300, False)]
    assert plain(market.getOrder(bid)) == (bid, alice, slot, True, 300_000, 700, value_of(700, 300_000))
    spent = value_of(300, 200_000) + value_of(700, 300_000)
    assert market.balanceOf(alice) == config.member_deposit_base_units - spent
    assert plain(market.bestPrices(slot)) == (300_000, 0)


def test_taker_pays_trades_plus_rest_escrow_rounded_down(market, alice, bob, carol, admin, config, slot, plain):
    set_params(market, admin, config, min_price_per_kwh=1)
    sell(market, bob, slot, 1_030, 10)
    sell(market, carol, slot, 1_040, 10)
    bid = buy(market, alice, slot, 1_050, 25).return_value  # escrow checked: value_of(25, 1050) = 26
    spent = value_of(10, 1_030) + value_of(10, 1_040) + value_of(5, 1_050)  # 10 + 10 + 5
    assert spent == 25
    assert market.balanceOf(alice) == config.member_deposit_base_units - spent
    assert plain(market.getOrder(bid)) == (bid, alice, slot, True, 1_050, 5, 5)


def test_sweep_across_levels_then_rest(market, alice, bob, carol, slot, logs, plain):
    sell(market, bob, slot, 240_000, 100)
    sell(market, carol, slot, 250_000, 100)
    sell(market, bob, slot, 270_000, 100)
    tx = buy(market, alice, slot, 260_000, 500)
    assert [trade[5] for trade in logs(tx, "TradeExecuted")] == [240_000, 250_000]
    assert plain(market.getOrder(tx.return_value))[5] == 300
    assert plain(market.bestPrices(slot)) == (260_000, 270_000)


# ------------------------------------------------------------------ self-trade rule


def test_self_trade_cancels_own_resting_order_and_continues(market, alice, bob, slot, config, logs, plain):
    own = sell(market, alice, slot, PRICE, 100).return_value  # alice's own, best ask, reached first
    other = sell(market, bob, slot, PRICE, 100).return_value
    tx = buy(market, alice, slot, PRICE, 150)
    bid = tx.return_value
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, bid, alice, True, PRICE, 150)),
        ("OrderCancelled", (slot, own, alice, 100, 0, SELF_TRADE)),
        ("TradeExecuted", (slot, alice, bob, bid, other, PRICE, 100, False)),
    ]
    assert plain(market.getOrder(bid)) == (bid, alice, slot, True, PRICE, 50, value_of(50, PRICE))
    assert plain(market.bookSide(slot, False, 10)) == ()


def test_self_trade_releases_the_resting_buy_escrow(market, alice, bob, slot, config, logs, plain):
    own = buy(market, alice, slot, PRICE, QTY).return_value  # escrow taken
    other = buy(market, bob, slot, PRICE - 1, QTY).return_value
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(QTY, PRICE)
    tx = sell(market, alice, slot, PRICE - 1, QTY)  # cancels its own bid, then fills bob's
    ask = tx.return_value
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, ask, alice, False, PRICE - 1, QTY)),
        ("OrderCancelled", (slot, own, alice, QTY, value_of(QTY, PRICE), SELF_TRADE)),
        ("TradeExecuted", (slot, bob, alice, other, ask, PRICE - 1, QTY, True)),
    ]
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_self_trade_only_for_orders_matching_reaches(market, alice, bob, slot, plain):
    """A resting order of the same member behind a non-crossing price is left alone."""
    sell(market, bob, slot, PRICE, 100)
    own = sell(market, alice, slot, PRICE + 10, 100).return_value
    buy(market, alice, slot, PRICE, 100)
    assert plain(market.getOrder(own))[5] == 100
    assert plain(market.bestPrices(slot)) == (0, PRICE + 10)


# ------------------------------------------------------------------------ fill cap


def test_fill_cap_cancels_the_rest_while_the_book_still_crosses(
    market, admin, config, alice, bob, carol, dave, slot, logs, plain, error_pattern
):
    set_params(market, admin, config, fill_cap=2)
    asks = [sell(market, seller, slot, PRICE, 100).return_value for seller in (bob, carol, dave)]
    tx = buy(market, alice, slot, PRICE, 300)
    taker = crossing_id(slot, True, PRICE, 2)  # capped: it never rests
    assert tx.return_value == taker
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, taker, alice, True, PRICE, 300)),
        ("TradeExecuted", (slot, alice, bob, taker, asks[0], PRICE, 100, False)),
        ("TradeExecuted", (slot, alice, carol, taker, asks[1], PRICE, 100, False)),
        ("OrderCancelled", (slot, taker, alice, 100, value_of(100, PRICE), FILL_CAP)),
    ]
    # nothing was taken for the cancelled rest; dave's ask is untouched
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(200, PRICE)
    assert plain(market.bookSide(slot, False, 10)) == ((asks[2], dave, slot, False, PRICE, 100, 0),)
    assert plain(market.bestPrices(slot)) == (0, PRICE)
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", taker)):
        market.getOrder(taker)


def test_fill_cap_cancels_sell_remainder_without_refund(market, admin, config, alice, bob, carol, slot, logs, plain):
    set_params(market, admin, config, fill_cap=1)
    buy(market, bob, slot, PRICE, 100)
    buy(market, carol, slot, PRICE, 100)
    tx = sell(market, alice, slot, PRICE, 300)
    assert tx.return_value == crossing_id(slot, False, PRICE, 2)
    assert logs(tx, "OrderCancelled") == [(slot, tx.return_value, alice, 200, 0, FILL_CAP)]
    assert plain(market.bestPrices(slot)) == (PRICE, 0)


def test_fill_cap_rests_the_rest_when_the_book_is_empty(market, admin, config, alice, bob, carol, slot, logs, plain):
    set_params(market, admin, config, fill_cap=2)
    sell(market, bob, slot, PRICE, 100)
    sell(market, carol, slot, PRICE, 100)
    tx = buy(market, alice, slot, PRICE, 300)
    assert logs(tx, "OrderCancelled") == []
    assert tx.return_value == crossing_id(slot, True, PRICE, 2)  # the asks' level had nonce 1
    assert plain(market.getOrder(tx.return_value))[5] == 100
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
    asks = [sell(market, seller, slot, PRICE, 100).return_value for seller in (bob, carol, dave)]
    tx = buy(market, alice, slot, PRICE, 200)
    assert len(logs(tx, "TradeExecuted")) == 2
    assert logs(tx, "OrderCancelled") == []
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [asks[2]]


def test_self_trade_cancellations_have_their_own_cap(market, admin, config, alice, bob, carol, slot, logs, plain):
    """Cap 2: own, bob, own, carol at one price. Two fills are allowed, but the second
    self-trade cancellation exhausts the other counter while carol's ask still crosses."""
    set_params(market, admin, config, fill_cap=2)
    own1, other, own2, last = (sell(market, who, slot, PRICE, 100).return_value for who in (alice, bob, alice, carol))
    tx = buy(market, alice, slot, PRICE, 400)
    taker = tx.return_value
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, taker, alice, True, PRICE, 400)),
        ("OrderCancelled", (slot, own1, alice, 100, 0, SELF_TRADE)),
        ("TradeExecuted", (slot, alice, bob, taker, other, PRICE, 100, False)),
        ("OrderCancelled", (slot, own2, alice, 100, 0, SELF_TRADE)),
        ("OrderCancelled", (slot, taker, alice, 300, value_of(300, PRICE), FILL_CAP)),
    ]
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [last]


def test_fill_cap_counts_own_orders_as_crossing(market, admin, config, alice, bob, slot, logs, plain):
    """Capped while only the member's own order is left crossing: still cancelled (FillCap)."""
    set_params(market, admin, config, fill_cap=1)
    sell(market, bob, slot, PRICE, 100)
    own = sell(market, alice, slot, PRICE, 100).return_value
    tx = buy(market, alice, slot, PRICE, 300)
    assert logs(tx, "OrderCancelled") == [(slot, tx.return_value, alice, 200, value_of(200, PRICE), FILL_CAP)]
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [own]


def test_many_fills_under_the_default_cap(market, admin, config, alice, bob, slot, logs):
    cap = config.market.fill_cap
    market.placeOrders([(slot, False, PRICE, 10)] * (cap + 1), {"from": bob})
    tx = buy(market, alice, slot, PRICE, 10 * (cap + 1))
    assert len(logs(tx, "TradeExecuted")) == cap
    taker = crossing_id(slot, True, PRICE, 2)  # bob's asks are one level (nonce 1)
    assert logs(tx, "OrderCancelled") == [(slot, taker, alice, 10, value_of(10, PRICE), FILL_CAP)]


def test_the_largest_fill_cap(market, admin, config, alice, bob, slot, logs, plain):
    """Cap MAX_FILL_CAP (256): one order fills 256 resting orders in one transaction, and the
    rest is cancelled (FillCap) as the next fill would be the 257th. The 257 asks are placed in
    three batches (a few million gas each, well inside a block)."""
    cap = market.MAX_FILL_CAP()
    set_params(market, admin, config, fill_cap=cap)
    for start in range(0, cap + 1, 86):
        market.placeOrders([(slot, False, PRICE, 10)] * min(86, cap + 1 - start), {"from": bob})
    tx = buy(market, alice, slot, PRICE, 10 * (cap + 1))
    taker = crossing_id(slot, True, PRICE, 2)
    events = logs(tx, address=market)
    assert events[0] == ("OrderPlaced", (slot, taker, alice, True, PRICE, 10 * (cap + 1)))
    assert [name for name, _ in events[1:]] == ["TradeExecuted"] * cap + ["OrderCancelled"]
    assert [args[4] for _, args in events[1:-1]] == [resting_id(slot, False, PRICE, 1, i) for i in range(cap)]
    assert events[-1] == ("OrderCancelled", (slot, taker, alice, 10, value_of(10, PRICE), FILL_CAP))
    assert plain(market.positionOf(slot, alice)) == (10 * cap, 0, value_of(10, PRICE) * cap, 0)
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [resting_id(slot, False, PRICE, 1, cap)]


# ---------------------------------------------------------------------------- gaps


def test_cancelling_inside_a_level_leaves_a_gap_the_taker_steps_over(
    market, alice, bob, carol, dave, slot, config, logs, plain
):
    """The cancelled middle order's place stays empty: the book view and the next taker step
    over it without an event, and a new order still queues after the tail."""
    asks = [sell(market, owner, slot, PRICE, 100).return_value for owner in (bob, carol, dave)]
    market.cancelOrder(asks[1], {"from": carol})
    joined = sell(market, bob, slot, PRICE, 100).return_value
    assert joined == resting_id(slot, False, PRICE, 1, 3)
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [asks[0], asks[2], joined]
    tx = buy(market, alice, slot, PRICE, 250)
    taker = crossing_id(slot, True, PRICE, 2)
    assert tx.return_value == taker
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, taker, alice, True, PRICE, 250)),
        ("TradeExecuted", (slot, alice, bob, taker, asks[0], PRICE, 100, False)),
        ("TradeExecuted", (slot, alice, dave, taker, asks[2], PRICE, 100, False)),
        ("TradeExecuted", (slot, alice, bob, taker, joined, PRICE, 50, False)),
    ]
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(250, PRICE)
    assert plain(market.bookSide(slot, False, 10)) == ((joined, bob, slot, False, PRICE, 50, 0),)


@pytest.mark.parametrize("cancelled", ["head", "middle"])
def test_only_a_cancellation_behind_the_head_leaves_a_gap(
    market, admin, config, alice, bob, carol, dave, slot, logs, plain, cancelled
):
    """Cap 1, three asks at one price, one cancelled, then two takers of one ask each.
    Cancelling the head moves the head to the next order: both takers fill. Cancelling the
    middle leaves a gap: the first taker fills the head, the second steps onto the gap, which
    uses up its one skip, and is capped (FillCap) while dave's ask still crosses."""
    set_params(market, admin, config, fill_cap=1)
    owners = [bob, carol, dave]
    asks = [sell(market, owner, slot, PRICE, 100).return_value for owner in owners]
    gone = 0 if cancelled == "head" else 1
    market.cancelOrder(asks[gone], {"from": owners[gone]})
    first, second = buy(market, alice, slot, PRICE, 100), buy(market, alice, slot, PRICE, 100)
    left = [order_id for i, order_id in enumerate(asks) if i != gone]
    assert [trade[4] for trade in logs(first, "TradeExecuted")] == [left[0]]
    if cancelled == "head":
        assert [trade[4] for trade in logs(second, "TradeExecuted")] == [left[1]]
        assert logs(second, "OrderCancelled") == []
        assert plain(market.bestPrices(slot)) == (0, 0)
    else:
        assert logs(second, address=market) == [
            ("OrderPlaced", (slot, second.return_value, alice, True, PRICE, 100)),
            ("OrderCancelled", (slot, second.return_value, alice, 100, value_of(100, PRICE), FILL_CAP)),
        ]
        assert ids_of(plain(market.bookSide(slot, False, 10))) == [left[1]]
        # the gap is behind the head now: the next taker fills dave's ask at once
        third = buy(market, alice, slot, PRICE, 100)
        assert [trade[4] for trade in logs(third, "TradeExecuted")] == [left[1]]
        assert logs(third, "OrderCancelled") == []


def test_gaps_count_against_the_fill_cap(market, admin, config, alice, bob, carol, dave, slot, logs, plain):
    """Cap 2: bob's ask, two gaps, dave's ask at one price. One fill and two gaps stop the
    taker (gaps are counted apart from fills, like self-trade cancellations) while dave's ask
    still crosses; the rest is cancelled (FillCap). The next taker starts at dave's ask."""
    set_params(market, admin, config, fill_cap=2)
    asks = [sell(market, owner, slot, PRICE, 100).return_value for owner in (bob, carol, carol, dave)]
    market.cancelOrders([asks[1], asks[2]], {"from": carol})
    tx = buy(market, alice, slot, PRICE, 400)
    taker = crossing_id(slot, True, PRICE, 2)
    assert tx.return_value == taker
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, taker, alice, True, PRICE, 400)),
        ("TradeExecuted", (slot, alice, bob, taker, asks[0], PRICE, 100, False)),
        ("OrderCancelled", (slot, taker, alice, 300, value_of(300, PRICE), FILL_CAP)),
    ]
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(100, PRICE)
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [asks[3]]
    assert plain(market.bestPrices(slot)) == (0, PRICE)
    tx = buy(market, alice, slot, PRICE, 100)
    assert logs(tx, "TradeExecuted") == [(slot, alice, dave, tx.return_value, asks[3], PRICE, 100, False)]
    assert logs(tx, "OrderCancelled") == []
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_gaps_and_self_trade_cancellations_share_their_cap(market, admin, config, alice, bob, carol, slot, logs, plain):
    """Cap 2: alice's own ask, a gap, bob's ask. The self-trade cancellation and the gap use up
    the steps other than fills: capped before any fill while bob's ask still crosses."""
    set_params(market, admin, config, fill_cap=2)
    own, gap, other = (sell(market, who, slot, PRICE, 100).return_value for who in (alice, carol, bob))
    market.cancelOrder(gap, {"from": carol})
    tx = buy(market, alice, slot, PRICE, 100)
    taker = tx.return_value
    assert logs(tx, address=market) == [
        ("OrderPlaced", (slot, taker, alice, True, PRICE, 100)),
        ("OrderCancelled", (slot, own, alice, 100, 0, SELF_TRADE)),
        ("OrderCancelled", (slot, taker, alice, 100, value_of(100, PRICE), FILL_CAP)),
    ]
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [other]


def test_cancelling_the_head_moves_it_one_place_only(market, admin, config, alice, bob, carol, dave, slot, logs, plain):
    """Cancel the middle, then the head: the head moves onto the middle's gap (cancelling never
    scans), so with cap 1 the next taker is capped on that gap; the one after fills."""
    set_params(market, admin, config, fill_cap=1)
    owners = [bob, carol, dave]
    asks = [sell(market, owner, slot, PRICE, 100).return_value for owner in owners]
    market.cancelOrder(asks[1], {"from": carol})
    market.cancelOrder(asks[0], {"from": bob})
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [asks[2]]
    tx = buy(market, alice, slot, PRICE, 100)
    assert logs(tx, "TradeExecuted") == []
    assert logs(tx, "OrderCancelled") == [(slot, tx.return_value, alice, 100, value_of(100, PRICE), FILL_CAP)]
    tx = buy(market, alice, slot, PRICE, 100)
    assert logs(tx, "TradeExecuted") == [(slot, alice, dave, tx.return_value, asks[2], PRICE, 100, False)]


@pytest.mark.parametrize("emptied_by", ["fill", "cancel"])
def test_a_level_whose_last_order_leaves_is_deleted_with_its_gaps(
    market, admin, config, alice, bob, carol, slot, logs, plain, emptied_by
):
    """Two asks, the later cancelled (a gap at the tail); when the first leaves too, by a fill
    or a cancellation, the level goes with its gap: the price leaves the book and the next
    order at that price starts a new level (a fresh nonce) that a taker reaches at once."""
    set_params(market, admin, config, fill_cap=1)
    first = sell(market, bob, slot, PRICE, 100).return_value
    tail = sell(market, carol, slot, PRICE, 100).return_value
    market.cancelOrder(tail, {"from": carol})
    if emptied_by == "fill":
        buy(market, alice, slot, PRICE, 100)  # nonce 2
        nonce = 3
    else:
        market.cancelOrder(first, {"from": bob})
        nonce = 2
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.bookSide(slot, False, 10)) == ()
    again = sell(market, carol, slot, PRICE, 100).return_value
    assert again == resting_id(slot, False, PRICE, nonce)
    tx = buy(market, alice, slot, PRICE, 100)
    assert logs(tx, "TradeExecuted") == [(slot, alice, carol, tx.return_value, again, PRICE, 100, False)]
    assert logs(tx, "OrderCancelled") == []


# -------------------------------------------------------------------- book views


def test_book_side_ordering_and_truncation(market, alice, bob, carol, slot, plain):
    placed = [
        sell(market, bob, slot, 250_000, 10),
        sell(market, carol, slot, 240_000, 20),
        sell(market, alice, slot, 250_000, 30),
        sell(market, carol, slot, 260_000, 40),
        buy(market, bob, slot, 200_000, 50),
        buy(market, alice, slot, 210_000, 60),
        buy(market, carol, slot, 200_000, 70),
    ]
    ids = [None] + [tx.return_value for tx in placed]  # ids[n]: the n-th order placed
    asks = plain(market.bookSide(slot, False, 10))
    bids = plain(market.bookSide(slot, True, 10))
    assert [(o[0], o[1], o[4], o[5]) for o in asks] == [
        (ids[2], carol, 240_000, 20),
        (ids[1], bob, 250_000, 10),
        (ids[3], alice, 250_000, 30),
        (ids[4], carol, 260_000, 40),
    ]
    assert [(o[0], o[1], o[4], o[5]) for o in bids] == [
        (ids[6], alice, 210_000, 60),
        (ids[5], bob, 200_000, 50),
        (ids[7], carol, 200_000, 70),
    ]
    assert [o[6] for o in bids] == [value_of(60, 210_000), value_of(50, 200_000), value_of(70, 200_000)]
    assert ids_of(plain(market.bookSide(slot, False, 2))) == [ids[2], ids[1]]
    assert plain(market.bookSide(slot, False, 0)) == ()
    assert plain(market.bookSide(slot + 1, False, 10)) == ()
    assert plain(market.bestPrices(slot)) == (210_000, 240_000)


def test_best_prices_follow_fills_and_cancels(market, alice, bob, slot, plain):
    sell(market, bob, slot, 250_000, 10)
    ask = sell(market, bob, slot, 260_000, 10).return_value
    best_bid = buy(market, bob, slot, 200_000, 10).return_value
    bid = buy(market, bob, slot, 190_000, 10).return_value
    assert plain(market.bestPrices(slot)) == (200_000, 250_000)
    buy(market, alice, slot, 250_000, 10)  # empties the best ask level
    assert plain(market.bestPrices(slot)) == (200_000, 260_000)
    market.cancelOrder(best_bid, {"from": bob})  # the best bid level
    assert plain(market.bestPrices(slot)) == (190_000, 260_000)
    market.cancelOrder(ask, {"from": bob})
    market.cancelOrder(bid, {"from": bob})
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_cancelling_the_lone_best_bid_shows_the_next_bid(market, config, alice, bob, carol, slot, logs, plain):
    """The best bid level is cancelled while a worse bid rests: the views show the worse bid,
    a sell between the two prices rests without trading, and a sell at the worse bid trades
    with it. Cancelling the only bid left empties the side."""
    best = buy(market, bob, slot, PRICE, 100).return_value
    worse = buy(market, carol, slot, PRICE - 1_000, 100).return_value
    market.cancelOrder(best, {"from": bob})
    assert plain(market.bestPrices(slot)) == (PRICE - 1_000, 0)
    assert ids_of(plain(market.bookSide(slot, True, 10))) == [worse]
    tx = sell(market, alice, slot, PRICE - 500, 100)  # would cross the cancelled bid only
    assert logs(tx, "TradeExecuted") == []
    between = tx.return_value
    assert plain(market.bestPrices(slot)) == (PRICE - 1_000, PRICE - 500)
    market.cancelOrder(between, {"from": alice})
    tx = sell(market, alice, slot, PRICE - 2_000, 40)
    assert logs(tx, "TradeExecuted") == [(slot, carol, alice, worse, tx.return_value, PRICE - 1_000, 40, True)]
    assert market.getOrder(worse)["remainingWh"] == 60
    assert plain(market.bestPrices(slot)) == (PRICE - 1_000, 0)
    market.cancelOrder(worse, {"from": carol})
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.bookSide(slot, True, 10)) == ()
    low = config.market.min_price_per_kwh
    tx = sell(market, alice, slot, low, 10)  # nothing left to cross: it rests
    assert logs(tx, "TradeExecuted") == []
    assert plain(market.bestPrices(slot)) == (0, low)


def test_cancelling_the_lone_best_ask_shows_the_next_ask(market, alice, bob, carol, slot, logs, plain):
    """The same on the ask side, with a new ask resting between the cancelled best and the
    worse one, and a bid at the cancelled price that is new again."""
    best = sell(market, bob, slot, PRICE, 100).return_value
    worse = sell(market, carol, slot, PRICE + 1_000, 100).return_value
    market.cancelOrder(best, {"from": bob})
    assert plain(market.bestPrices(slot)) == (0, PRICE + 1_000)
    between = sell(market, bob, slot, PRICE + 500, 100).return_value
    assert plain(market.bestPrices(slot)) == (0, PRICE + 500)
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [between, worse]
    tx = buy(market, alice, slot, PRICE + 1_000, 150)
    assert [trade[4] for trade in logs(tx, "TradeExecuted")] == [between, worse]
    assert plain(market.bestPrices(slot)) == (0, PRICE + 1_000)
    market.cancelOrder(worse, {"from": carol})
    assert plain(market.bestPrices(slot)) == (0, 0)
    again = sell(market, bob, slot, PRICE, 100).return_value
    assert plain(market.bestPrices(slot)) == (0, PRICE)
    assert ids_of(plain(market.bookSide(slot, False, 10))) == [again]


def test_get_order_of_gone_orders(market, alice, bob, slot, error_pattern):
    maker = sell(market, bob, slot, qty=100).return_value
    taker = buy(market, alice, slot, qty=100).return_value
    # the id the next crossing buy at PRICE would take, the place after the filled ask, ...
    never_used = (crossing_id(slot, True, PRICE, 3), resting_id(slot, False, PRICE, 1, 1), 1, 2**256 - 1)
    for order_id in (maker, taker, *never_used):
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
    are worth 10 each, so two base units of rounding stay in the order as it fills. Returns
    the bid's id."""
    set_params(market, admin, config, min_price_per_kwh=1)
    bid = buy(market, alice, slot, 1_050, 40).return_value
    assert market.balanceOf(alice) == config.member_deposit_base_units - 42
    return bid


def test_escrow_dust_accumulates_and_returns_on_full_fill(market, admin, config, alice, bob, slot, plain):
    bid = dusty_bid(market, admin, config, alice, slot)
    expected_escrow = [31 + 1, 21 + 1, 10 + 2]  # value_of(rem, 1050) + dust after each fill
    for escrow in expected_escrow:
        sell(market, bob, slot, 1_050, 10)
        assert plain(market.getOrder(bid))[6] == escrow
        assert market.balanceOf(alice) == config.member_deposit_base_units - 42  # dust is held
    sell(market, bob, slot, 1_050, 10)  # the last fill: order gone, dust paid back
    assert market.balanceOf(alice) == config.member_deposit_base_units - 40
    assert plain(market.positionOf(slot, alice)) == (40, 0, 40, 0)


def test_escrow_dust_returns_on_cancel(market, admin, config, alice, bob, slot, logs):
    bid = dusty_bid(market, admin, config, alice, slot)
    sell(market, bob, slot, 1_050, 10)
    tx = market.cancelOrder(bid, {"from": alice})
    assert logs(tx, "OrderCancelled") == [(slot, bid, alice, 30, 32, BY_MEMBER)]
    assert market.balanceOf(alice) == config.member_deposit_base_units - 10


def test_escrow_dust_returns_on_expiry(market, admin, config, alice, bob, outsider, slot, clock, logs):
    bid = dusty_bid(market, admin, config, alice, slot)
    sell(market, bob, slot, 1_050, 10)
    sell(market, bob, slot, 1_050, 10)
    sell(market, bob, slot, 1_050, 10)
    clock.to_gate_closure(slot)
    tx = market.expireOrders([bid], {"from": outsider})
    assert logs(tx, "OrderCancelled") == [(slot, bid, alice, 10, 12, EXPIRED)]
    assert market.balanceOf(alice) == config.member_deposit_base_units - 30


def test_escrow_dust_returns_on_self_trade(market, admin, config, alice, bob, slot, logs):
    bid = dusty_bid(market, admin, config, alice, slot)
    sell(market, bob, slot, 1_050, 10)
    tx = sell(market, alice, slot, 1_050, 10)
    assert logs(tx, "OrderCancelled") == [(slot, bid, alice, 30, 32, SELF_TRADE)]
    assert market.balanceOf(alice) == config.member_deposit_base_units - 10


# ------------------------------------------------------------------- cancellation


def test_cancel_buy_order(market, alice, slot, config, logs, plain):
    bid = buy(market, alice, slot).return_value
    tx = market.cancelOrder(bid, {"from": alice})
    assert logs(tx, address=market) == [("OrderCancelled", (slot, bid, alice, QTY, value_of(QTY, PRICE), BY_MEMBER))]
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.bookSide(slot, True, 10)) == ()


def test_cancel_sell_order(market, alice, slot, logs):
    ask = sell(market, alice, slot).return_value
    tx = market.cancelOrder(ask, {"from": alice})
    assert logs(tx, "OrderCancelled") == [(slot, ask, alice, QTY, 0, BY_MEMBER)]


@pytest.mark.parametrize("position", [0, 1, 2])
def test_cancel_keeps_fifo_of_the_others(market, alice, bob, carol, dave, slot, logs, plain, position):
    """Cancel the head, middle or tail of a level; the others still fill in time order, and
    new orders queue behind them, at the place after the tail (the places of the level's
    queue are never reused while it has orders)."""
    owners = [bob, carol, dave]
    asks = [sell(market, owner, slot, PRICE, 100).return_value for owner in owners]
    market.cancelOrder(asks[position], {"from": owners[position]})
    joined = sell(market, bob, slot, PRICE, 100).return_value
    assert joined == resting_id(slot, False, PRICE, 1, 3)
    kept = [order_id for i, order_id in enumerate(asks) if i != position] + [joined]
    assert ids_of(plain(market.bookSide(slot, False, 10))) == kept
    tx = buy(market, alice, slot, PRICE, 300)
    assert [trade[4] for trade in logs(tx, "TradeExecuted")] == kept
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_cancel_orders_batch(market, alice, slot, config, logs):
    first = buy(market, alice, slot, PRICE, 100).return_value
    kept = sell(market, alice, slot, PRICE + 5, 100).return_value
    third = buy(market, alice, slot + 1, PRICE, 100).return_value
    tx = market.cancelOrders([third, first], {"from": alice})
    assert [event[1] for event in logs(tx, "OrderCancelled")] == [third, first]
    assert market.balanceOf(alice) == config.member_deposit_base_units
    assert market.getOrder(kept)["remainingWh"] == 100


def test_cancel_orders_is_all_or_nothing(market, alice, bob, slot, snapshot_state, error_pattern):
    own = buy(market, alice, slot, PRICE, 100).return_value
    other = sell(market, bob, slot, PRICE + 5, 100).return_value
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketNotOrderOwner", other, alice, bob)):
        market.cancelOrders([own, other], {"from": alice})
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", own)):
        market.cancelOrders([own, own], {"from": alice})
    assert snapshot_state(slot) == before


def test_cancel_unknown_or_gone_orders(market, alice, bob, slot, snapshot_state, error_pattern):
    filled = sell(market, bob, slot, qty=100).return_value
    taker = buy(market, alice, slot, qty=100).return_value  # fills it completely: never rests
    cancelled = buy(market, alice, slot, qty=100).return_value  # rests
    market.cancelOrder(cancelled, {"from": alice})
    never_used = resting_id(slot, False, PRICE, 1, 1)  # the place after the filled ask
    before = snapshot_state(slot)
    for order_id, owner in ((0, alice), (filled, bob), (taker, alice), (cancelled, alice), (never_used, bob)):
        with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotFound", order_id)):
            market.cancelOrder(order_id, {"from": owner})
    assert snapshot_state(slot) == before


def test_cancel_someone_elses_order(market, alice, bob, outsider, slot, snapshot_state, error_pattern):
    bid = buy(market, alice, slot).return_value
    before = snapshot_state(slot)
    for caller in (bob, outsider):
        with brownie.reverts(revert_pattern=error_pattern("MarketNotOrderOwner", bid, caller, alice)):
            market.cancelOrder(bid, {"from": caller})
    assert snapshot_state(slot) == before


def test_cancel_at_gate_closure(market, alice, slot, clock, snapshot_state, error_pattern):
    first = buy(market, alice, slot, qty=100).return_value
    second = buy(market, alice, slot, qty=200).return_value
    closure = market.gateClosure(slot)
    clock.next_tx_at(closure - 1)
    market.cancelOrder(first, {"from": alice})  # the last second: still allowed
    clock.next_tx_at(closure)
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketGateClosed", slot, closure, closure)):
        market.cancelOrder(second, {"from": alice})
    assert snapshot_state(slot) == before


# ------------------------------------------------------------------------ expiry


def test_expire_orders_at_gate_closure(market, alice, bob, outsider, slot, config, clock, logs, plain):
    bid = buy(market, alice, slot, PRICE, 100).return_value
    ask = sell(market, bob, slot, PRICE + 10, 100).return_value
    open_bid = buy(market, alice, slot + 1, PRICE, 100).return_value  # next slot, still open
    closure = clock.to_gate_closure(slot)
    # after gate closure the book still shows the orders until they are expired
    assert ids_of(plain(market.bookSide(slot, True, 10))) == [bid]
    tx = market.expireOrders([ask, bid], {"from": outsider})  # anyone may call it
    assert logs(tx, address=market) == [
        ("OrderCancelled", (slot, ask, bob, 100, 0, EXPIRED)),
        ("OrderCancelled", (slot, bid, alice, 100, value_of(100, PRICE), EXPIRED)),
    ]
    assert tx.timestamp >= closure
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert market.balanceOf(alice) == config.member_deposit_base_units - value_of(100, PRICE)
    assert market.getOrder(open_bid)["remainingWh"] == 100


def test_expire_skips_orders_already_gone(market, alice, bob, slot, clock, logs):
    filled = sell(market, bob, slot, qty=100).return_value
    taker = buy(market, alice, slot, qty=100).return_value  # fills it: never rests
    bid = buy(market, alice, slot, qty=50).return_value
    clock.to_gate_closure(slot, 5)
    tx = market.expireOrders([0, filled, taker, bid, bid, 77], {"from": bob})
    assert [event[1] for event in logs(tx, "OrderCancelled")] == [bid]
    tx = market.expireOrders([bid], {"from": bob})
    assert logs(tx) == []


def test_expire_before_gate_closure_reverts(market, alice, slot, clock, snapshot_state, error_pattern):
    bid = buy(market, alice, slot, qty=100).return_value
    open_bid = buy(market, alice, slot + 1, qty=100).return_value
    closure = market.gateClosure(slot)
    clock.next_tx_at(closure - 1)
    before = snapshot_state(slot, slot + 1)
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotExpired", bid, closure, closure - 1)):
        market.expireOrders([bid], {"from": alice})
    clock.next_tx_at(closure)
    next_closure = market.gateClosure(slot + 1)
    with brownie.reverts(revert_pattern=error_pattern("MarketOrderNotExpired", open_bid, next_closure, closure)):
        market.expireOrders([bid, open_bid], {"from": alice})  # one order of an open slot: nothing expires
    assert snapshot_state(slot, slot + 1) == before


def test_closed_slot_refuses_orders_but_keeps_its_book(market, alice, bob, slot, clock, error_pattern, plain):
    ask = sell(market, bob, slot, PRICE, 100).return_value
    clock.to_gate_closure(slot, 1)
    closure = market.gateClosure(slot)
    with brownie.reverts(revert_pattern=error_pattern("MarketGateClosed", slot, closure, ...)):
        buy(market, alice, slot, PRICE, 100)
    with brownie.reverts(revert_pattern=error_pattern("MarketGateClosed", slot, closure, ...)):
        market.cancelOrder(ask, {"from": bob})
    assert plain(market.bestPrices(slot)) == (0, PRICE)


# -------------------------------------------------------------- removed members


def test_removed_member_orders_still_fill_and_can_be_cancelled(market, manager, alice, bob, slot, config, logs, plain):
    filled = buy(market, bob, slot, PRICE, 100).return_value
    kept = buy(market, bob, slot, PRICE - 1, 100).return_value
    market.removeMember(bob, {"from": manager})
    tx = sell(market, alice, slot, PRICE, 100)
    assert logs(tx, "TradeExecuted") == [(slot, bob, alice, filled, tx.return_value, PRICE, 100, True)]
    assert plain(market.positionOf(slot, bob)) == (100, 0, value_of(100, PRICE), 0)
    market.cancelOrder(kept, {"from": bob})
    expected = config.member_deposit_base_units - value_of(100, PRICE)
    assert market.balanceOf(bob) == expected


# ----------------------------------------------------------- overflow guards (fix)


@pytest.fixture(scope="module")
def wide_market(deploy_community, config):
    """A market with tick WIDE_TICK and the widest band, [WIDE_TICK, TOP_PRICE]: the highest
    price of any market (with tick 1 the band ends at MAX_PRICE_TICKS), and 1 Wh minimum."""
    params = replace(config.market, min_price_per_kwh=WIDE_TICK, max_price_per_kwh=TOP_PRICE, min_qty_wh=1)
    return deploy_community(replace(config, price_tick=WIDE_TICK, market=params))


def whales(market, token, admin, members, amount):
    """Give the members huge balances in ``market``; returns a slot open for trading in it."""
    for member in members:
        token.mint(member, amount, {"from": admin})
        market.deposit(amount, {"from": member})
    return market.nextOpenSlot() + 1


@pytest.mark.parametrize("maker_is_buy", [False, True])
def test_largest_fill_is_booked_exactly(wide_market, token, admin, alice, bob, plain, maker_is_buy):
    """MAX_QTY_WH at the highest price is worth less than 2^64 base units: the position holds the
    exact value (the quantity bound is what makes the uint64 casts exact)."""
    market = wide_market
    slot = whales(market, token, admin, [alice, bob], 2**100)
    assert market.priceTick() == WIDE_TICK
    assert plain(market.marketParams())[:2] == (WIDE_TICK, TOP_PRICE) == (256, 2**32 - 256)
    value = value_of(MAX_QTY_WH, TOP_PRICE)
    assert value < 2**64
    market.placeOrder(slot, maker_is_buy, TOP_PRICE, MAX_QTY_WH, {"from": bob})
    market.placeOrder(slot, not maker_is_buy, TOP_PRICE, MAX_QTY_WH, {"from": alice})
    buyer, seller = (bob, alice) if maker_is_buy else (alice, bob)
    assert market.positionOf(slot, buyer)["paid"] == value
    assert market.positionOf(slot, seller)["received"] == value


def test_position_sum_beyond_uint64_reverts(wide_market, token, admin, alice, bob, snapshot_state):
    """Four of the largest fills overflow a uint64 position sum: the fourth reverts instead of
    wrapping around."""
    market = wide_market
    slot = whales(market, token, admin, [alice, bob], 2**100)
    largest = value_of(MAX_QTY_WH, TOP_PRICE)
    assert 3 * largest < 2**64 <= 4 * largest
    for _ in range(3):
        sell(market, bob, slot, TOP_PRICE, MAX_QTY_WH)
        buy(market, alice, slot, TOP_PRICE, MAX_QTY_WH)
    sell(market, bob, slot, TOP_PRICE, MAX_QTY_WH)
    before = snapshot_state(slot, market=market)
    with brownie.reverts(revert_pattern="Integer overflow"):
        buy(market, alice, slot, TOP_PRICE, MAX_QTY_WH)
    assert snapshot_state(slot, market=market) == before


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

"""The reference model of the CDA market (peerwatt/orderbook_model.py), without a chain.

The same rules are checked on chain in tests/contracts/test_cda_market.py and, against this
model, in tests/properties/test_market_stateful.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerwatt.config import CommunityConfig, MarketParams
from peerwatt.order_ids import OrderIdParts, decode_order_id, first_seq, order_id_at
from peerwatt.orderbook_model import (
    MAX_FILL_CAP,
    MAX_PRICE_TICKS,
    MAX_QTY_WH,
    ZERO_ADDRESS,
    CancelReason,
    Deposited,
    MarketParamsUpdated,
    MemberAdded,
    MemberRemoved,
    ModelRevert,
    OrderBookModel,
    OrderCancelled,
    OrderPlaced,
    OrderRequest,
    OrderView,
    Position,
    TradeExecuted,
    Withdrawn,
)
from peerwatt.units import value_of

CONFIG = CommunityConfig()
EPOCH = 1_800_000_000 - 1_800_000_000 % CONFIG.slot_seconds
SLOT = 10
NOW = EPOCH + CONFIG.slot_seconds  # slot 1 in delivery; SLOT open for hours
PRICE = 250_000
QTY = 1_000
DEPOSIT = CONFIG.member_deposit_base_units
A, B, C, D = (f"0x{i:040x}" for i in (0xA, 0xB, 0xC, 0xD))
OUTSIDER = f"0x{0xE:040x}"


def make_model(price_tick: int = 1, **changes: int) -> OrderBookModel:
    """Four members (ids 1..4) with the default deposit, config params with ``changes``; a price
    tick of 1 (any price in the band) unless given."""
    model = OrderBookModel(EPOCH, CONFIG.slot_seconds, replace(CONFIG.market, **changes), price_tick=price_tick)
    for member in (A, B, C, D):
        model.add_member(member)
        model.deposit(member, DEPOSIT)
    return model


def buy(model: OrderBookModel, who: str, price: int = PRICE, qty: int = QTY, slot: int = SLOT) -> int:
    return model.place_order(who, slot, True, price, qty, now=NOW)


def sell(model: OrderBookModel, who: str, price: int = PRICE, qty: int = QTY, slot: int = SLOT) -> int:
    return model.place_order(who, slot, False, price, qty, now=NOW)


def place_id(is_buy: bool, price: int, nonce: int, place: int = 0, slot: int = SLOT) -> int:
    """Id of the order at ``place`` (0: the first) of the price level created with the slot's
    ``nonce`` (the slot's nonces count level creations by orders that do not cross the book and
    orders that cross it, from 1)."""
    return order_id_at(slot, is_buy, price, first_seq(nonce) + place)


def crossing_id(is_buy: bool, price: int, nonce: int, slot: int = SLOT) -> int:
    """Id of an order that crosses the book: the first place of a fresh level at its limit price,
    with the slot's next ``nonce``, taken before matching -- whether it then rests there, is
    filled or is stopped by the fill cap."""
    return place_id(is_buy, price, nonce, slot=slot)


def nonce_and_place(order_id: int) -> tuple[int, int]:
    """(the nonce of the level the id is a place of, the place: 0 for the first)."""
    seq = decode_order_id(order_id).seq
    return seq >> 32, seq - first_seq(seq >> 32)


def ask_ids(model: OrderBookModel, slot: int = SLOT) -> list[int]:
    return [o.order_id for o in model.book_side(slot, False)]


@contextmanager
def raises(error: str, *values: object) -> Iterator[None]:
    """The block raises a ModelRevert named ``error`` with exactly ``values``."""
    with pytest.raises(ModelRevert) as info:
        yield
    assert (info.value.error, info.value.values) == (error, values)


def state(model: OrderBookModel) -> tuple[object, ...]:
    """Everything observable, to check that a failed call changed nothing."""
    return (
        model.resting_orders(),
        [model.balance_of(m) for m in (A, B, C, D, OUTSIDER)],
        [model.position_of(s, m) for s in (SLOT, SLOT + 1) for m in (A, B, C, D)],
        model.token_held,
        len(model.log),
        [model.member_of(m) for m in (A, B, C, D, OUTSIDER)],
        model.params,
    )


# ---------------------------------------------------------------------- registry


def test_constructor_checks() -> None:
    with raises("RegistryInvalidClock", 5, 0):
        OrderBookModel(5, 0)
    with raises("RegistryInvalidPriceBand", 0, 10):
        OrderBookModel(0, 900, MarketParams(0, 10, 1, 0, 1))
    with raises("RegistryInvalidPriceBand", 11, 10):
        OrderBookModel(0, 900, MarketParams(11, 10, 1, 0, 1))
    with raises("RegistryInvalidMinQty", 0):
        OrderBookModel(0, 900, MarketParams(1, 10, 0, 0, 1))
    with raises("RegistryInvalidFillCap", 0):
        OrderBookModel(0, 900, MarketParams(1, 10, 1, 0, 0))
    with raises("RegistryInvalidFillCap", MAX_FILL_CAP + 1):
        OrderBookModel(0, 900, MarketParams(1, 10, 1, 0, MAX_FILL_CAP + 1))
    with raises("RegistryInvalidPriceTick", 0):
        OrderBookModel(0, 900, price_tick=0)
    with raises("RegistryInvalidClock", 5, 0):  # the clock first, then the tick, then the params
        OrderBookModel(5, 0, MarketParams(0, 10, 1, 0, 1), price_tick=0)
    with raises("RegistryInvalidPriceTick", 0):
        OrderBookModel(0, 900, MarketParams(0, 10, 1, 0, 1), price_tick=0)
    model = OrderBookModel(EPOCH, 900)
    assert model.params == CONFIG.market
    assert model.price_tick == 1  # the model's own default: any price in the band
    assert model.clock.gate_closure(SLOT) == EPOCH + SLOT * 900 - CONFIG.market.gate_seconds


def test_members() -> None:
    model = OrderBookModel(EPOCH, 900)
    assert model.add_member(A) == 1
    assert model.last_events == (MemberAdded(A, 1),)
    assert model.add_member(B) == 2
    assert model.member_count == 2
    with raises("RegistryAlreadyMember", A):
        model.add_member(A)
    with raises("RegistryZeroAddress"):
        model.add_member(ZERO_ADDRESS)
    model.remove_member(A)
    assert model.log[-1] == MemberRemoved(A, 1)
    assert model.member_of(A) == (1, False)
    assert model.member_count == 1
    with raises("RegistryNotMember", A):
        model.remove_member(A)
    with raises("RegistryNotMember", OUTSIDER):
        model.remove_member(OUTSIDER)
    assert model.add_member(A) == 1  # re-activated with its id
    assert model.member_address(2) == B
    assert model.member_address(7) == ZERO_ADDRESS
    assert model.members == (A, B)


def test_set_market_params() -> None:
    model = make_model()
    params = MarketParams(5, 50, 2, 60, 3)
    model.set_market_params(params)
    assert model.last_events == (MarketParamsUpdated(5, 50, 2, 60, 3),)
    assert model.clock.gate_seconds == 60
    before = state(model)
    with raises("RegistryInvalidFillCap", 0):
        model.set_market_params(replace(params, fill_cap=0))
    assert state(model) == before


def test_fill_cap_is_at_most_256() -> None:
    """The cap bounds the steps of one order (and the contract's step buffer): 1..256."""
    assert MAX_FILL_CAP == 256
    model = OrderBookModel(EPOCH, 900, replace(CONFIG.market, fill_cap=256))
    assert model.params.fill_cap == 256
    model.set_market_params(replace(CONFIG.market, fill_cap=1))
    before = (model.params, len(model.log))
    for fill_cap in (257, 2**16 - 1):
        with raises("RegistryInvalidFillCap", fill_cap):
            model.set_market_params(replace(CONFIG.market, fill_cap=fill_cap))
        with raises("RegistryInvalidFillCap", fill_cap):
            OrderBookModel(EPOCH, 900, replace(CONFIG.market, fill_cap=fill_cap))
    assert (model.params, len(model.log)) == before
    model.set_market_params(replace(CONFIG.market, fill_cap=256))
    assert model.last_events == (MarketParamsUpdated(*replace(CONFIG.market, fill_cap=256).as_tuple()),)


# ---------------------------------------------------------------------- balances


def test_deposit_and_withdraw() -> None:
    model = make_model()
    model.deposit(A, 7)
    assert model.last_events == (Deposited(A, 7, DEPOSIT + 7),)
    model.withdraw(A, DEPOSIT)
    assert model.log[-1] == Withdrawn(A, DEPOSIT, 7)
    assert model.balance_of(A) == 7
    assert model.token_held == 3 * DEPOSIT + 7
    before = state(model)
    with raises("MarketZeroAmount"):
        model.deposit(A, 0)
    with raises("MarketZeroAmount"):
        model.withdraw(A, 0)
    with raises("MarketInsufficientBalance", A, 7, 8):
        model.withdraw(A, 8)
    with raises("MarketNotMember", OUTSIDER):
        model.deposit(OUTSIDER, 1)
    with raises("MarketInsufficientBalance", OUTSIDER, 0, 1):
        model.withdraw(OUTSIDER, 1)
    with raises("SafeCastOverflowedUintDowncast", 128, 2**128 + 6):
        model.deposit(A, 2**128 - 1)
    assert state(model) == before


def test_removed_member_withdraws_but_cannot_deposit_or_place() -> None:
    model = make_model()
    model.remove_member(B)
    with raises("MarketNotMember", B):
        model.deposit(B, 1)
    with raises("MarketNotMember", B):
        sell(model, B)
    with raises("MarketNotMember", B):
        model.place_orders(B, [], now=NOW)
    model.withdraw(B, DEPOSIT)
    assert model.balance_of(B) == 0


# -------------------------------------------------------------------- order entry


def test_resting_orders_and_escrow() -> None:
    model = make_model()
    ask = sell(model, A)
    assert ask == place_id(False, PRICE, 1)
    assert model.last_events == (OrderPlaced(SLOT, ask, A, False, PRICE, QTY),)
    bid = buy(model, B, PRICE - 1)
    assert bid == place_id(True, PRICE - 1, 2)
    assert model.get_order(bid) == OrderView(bid, B, SLOT, True, PRICE - 1, QTY, value_of(QTY, PRICE - 1))
    assert model.balance_of(B) == DEPOSIT - value_of(QTY, PRICE - 1)
    assert model.best_prices(SLOT) == (PRICE - 1, PRICE)
    assert model.best_prices(SLOT + 1) == (0, 0)
    assert model.solvency_gap() == 0


@pytest.mark.parametrize(
    "request_, error",
    [
        (OrderRequest(SLOT, True, 0, QTY), ("MarketPriceOutOfBand", 0, 1_000, 1_000_000)),
        (OrderRequest(SLOT, False, 999, QTY), ("MarketPriceOutOfBand", 999, 1_000, 1_000_000)),
        (OrderRequest(SLOT, True, 1_000_001, QTY), ("MarketPriceOutOfBand", 1_000_001, 1_000, 1_000_000)),
        (OrderRequest(SLOT, False, PRICE, 9), ("MarketQuantityTooSmall", 9, 10)),
        (OrderRequest(SLOT, False, PRICE, MAX_QTY_WH + 1), ("MarketQuantityTooLarge", MAX_QTY_WH + 1, MAX_QTY_WH)),
        (OrderRequest(1, False, PRICE, QTY), ("MarketGateClosed", 1, EPOCH + 900 - 300, NOW)),
        (OrderRequest(SLOT, True, PRICE, 2_000_001), ("MarketInsufficientBalance", A, DEPOSIT, DEPOSIT + 250)),
        # the first failing check wins: band, tick (see the price tick tests), minimum, maximum, gate, balance
        (OrderRequest(1, True, 0, 0), ("MarketPriceOutOfBand", 0, 1_000, 1_000_000)),
        (OrderRequest(1, True, PRICE, 0), ("MarketQuantityTooSmall", 0, 10)),
        (OrderRequest(1, True, PRICE, MAX_QTY_WH), ("MarketGateClosed", 1, EPOCH + 900 - 300, NOW)),
    ],
)
def test_bad_orders(request_: OrderRequest, error: tuple[str, ...]) -> None:
    assert_refused_atomically(make_model(), request_, error, good_price=PRICE + 10)


def assert_refused_atomically(
    model: OrderBookModel, request_: OrderRequest, error: tuple[str, ...], good_price: int
) -> None:
    """``request_`` fails with ``error`` alone and after a good order in the same batch, and
    changes nothing: the good order is rolled back without using up a nonce."""
    sell(model, B, PRICE)  # a bad buy above it would cross
    before = state(model)
    with raises(*error):
        model.place_orders(A, [request_], now=NOW)
    with raises(*error):
        model.place_orders(A, [OrderRequest(SLOT, False, good_price, QTY), request_], now=NOW)
    assert state(model) == before
    assert sell(model, A, good_price) == place_id(False, good_price, 2)


def test_gate_closure_boundary() -> None:
    model = make_model()
    closure = model.clock.gate_closure(SLOT)
    ask = model.place_order(A, SLOT, False, PRICE, QTY, now=closure - 1)
    with raises("MarketGateClosed", SLOT, closure, closure):
        model.place_order(A, SLOT, False, PRICE, QTY, now=closure)
    with raises("MarketGateClosed", SLOT, closure, closure):
        model.cancel_order(A, ask, now=closure)
    model.cancel_order(A, ask, now=closure - 1)


# ----------------------------------------------------------------------- order ids


def test_level_creations_and_crossing_orders_share_the_slot_nonce() -> None:
    """An order that does not cross rests at once: in a new level (the slot's next nonce, first
    place) or at the next place of its level. An order that crosses takes a fresh level's first
    place (the next nonce) before matching, whether or not it rests there. Both sides alike."""
    model = make_model()
    a1 = sell(model, A, PRICE, 100)
    assert a1 == place_id(False, PRICE, 1)  # level created: nonce 1, first place
    assert decode_order_id(a1) == OrderIdParts(SLOT, False, PRICE, first_seq(1))
    b1 = sell(model, B, PRICE, 100)
    assert b1 == place_id(False, PRICE, 1, 1) == a1 + 1  # same level: the next place, no nonce
    assert buy(model, C, PRICE - 10, 100) == place_id(True, PRICE - 10, 2)  # the other side shares the nonce
    d1 = sell(model, D, PRICE + 10, 100)
    assert d1 == place_id(False, PRICE + 10, 3)
    assert buy(model, D, PRICE - 10, 100) == place_id(True, PRICE - 10, 2, 1)

    filled = buy(model, D, PRICE, 50)  # crosses: a fresh level's first place, the next nonce; filled
    assert filled == crossing_id(True, PRICE, 4)
    assert decode_order_id(filled) == OrderIdParts(SLOT, True, PRICE, first_seq(4))  # its own limit price
    assert model.last_events == (
        OrderPlaced(SLOT, filled, D, True, PRICE, 50),
        TradeExecuted(SLOT, D, A, filled, a1, PRICE, 50, False),
    )
    assert model.get_order(a1).remaining_wh == 50
    with raises("MarketOrderNotFound", filled):
        model.get_order(filled)
    with raises("MarketOrderNotFound", filled):
        model.cancel_order(D, filled, now=NOW)

    # each slot has its own nonce
    assert buy(model, C, PRICE, 100, slot=SLOT + 1) == place_id(True, PRICE, 1, slot=SLOT + 1)

    # a batch takes nonces in sequence
    assert model.place_orders(
        C, [OrderRequest(SLOT, True, PRICE - 10, 10), OrderRequest(SLOT, True, PRICE - 20, 10)], now=NOW
    ) == [place_id(True, PRICE - 10, 2, 2), place_id(True, PRICE - 20, 5)]

    # the ask level at PRICE empties (its last order is filled) and is dropped; created again,
    # it takes a fresh nonce, so its first place is not a1 again
    assert buy(model, D, PRICE, 150) == crossing_id(True, PRICE, 6)
    assert model.best_prices(SLOT) == (PRICE - 10, PRICE + 10)
    a2 = sell(model, A, PRICE, 100)
    assert a2 == place_id(False, PRICE, 7) != a1
    # the same when a cancellation empties the level
    model.cancel_order(A, a2, now=NOW)
    a3 = sell(model, A, PRICE, 100)
    assert a3 == place_id(False, PRICE, 8)

    # a taker that fills part and rests the rest: its id, taken before matching, is the first
    # place of the fresh level it rests in; OrderPlaced comes first and the fills name it
    rest = buy(model, B, PRICE + 10, 300)
    assert rest == crossing_id(True, PRICE + 10, 9)
    assert model.last_events == (
        OrderPlaced(SLOT, rest, B, True, PRICE + 10, 300),
        TradeExecuted(SLOT, B, A, rest, a3, PRICE, 100, False),
        TradeExecuted(SLOT, B, D, rest, d1, PRICE + 10, 100, False),
    )
    assert model.get_order(rest).remaining_wh == 100

    placed = [e.order_id for e in model.log if isinstance(e, OrderPlaced)]
    assert len(placed) == len(set(placed))  # ids never repeat
    assert model.solvency_gap() == 0


def test_crossing_order_that_rests_is_the_first_place_of_a_fresh_level() -> None:
    """A crossing order that is partly filled keeps the id it took before matching and rests as
    the first place of the fresh level; the next order at its price takes the next place (no
    nonce), and FIFO puts the crossing order first."""
    model = make_model()
    a = sell(model, A, PRICE, 100)  # nonce 1
    b = sell(model, B, PRICE + 10, 100)  # nonce 2
    taker = buy(model, C, PRICE + 20, 300)  # crosses: nonce 3; fills a and b, rests 100
    assert taker == crossing_id(True, PRICE + 20, 3)
    assert decode_order_id(taker) == OrderIdParts(SLOT, True, PRICE + 20, first_seq(3))
    assert model.last_events == (
        OrderPlaced(SLOT, taker, C, True, PRICE + 20, 300),
        TradeExecuted(SLOT, C, A, taker, a, PRICE, 100, False),
        TradeExecuted(SLOT, C, B, taker, b, PRICE + 10, 100, False),
    )
    view = OrderView(taker, C, SLOT, True, PRICE + 20, 100, value_of(100, PRICE + 20))
    assert model.get_order(taker) == view
    assert model.book_side(SLOT, True) == [view]
    assert model.best_prices(SLOT) == (PRICE + 20, 0)
    paid = value_of(100, PRICE) + value_of(100, PRICE + 10)
    assert model.balance_of(C) == DEPOSIT - paid - value_of(100, PRICE + 20)
    assert model.position_of(SLOT, C) == Position(200, 0, paid, 0)

    nxt = buy(model, D, PRICE + 20, 50)  # does not cross: the level's next place, no nonce
    assert nxt == place_id(True, PRICE + 20, 3, 1) == taker + 1
    assert model.last_events == (OrderPlaced(SLOT, nxt, D, True, PRICE + 20, 50),)
    assert buy(model, D, PRICE, 50) == place_id(True, PRICE, 4)  # the next level creation: nonce 4
    assert [o.order_id for o in model.book_side(SLOT, True)] == [taker, nxt, place_id(True, PRICE, 4)]

    seller = sell(model, A, PRICE + 20, 120)  # crosses: nonce 5; the crossing order first (FIFO)
    assert seller == crossing_id(False, PRICE + 20, 5)
    assert model.last_events == (
        OrderPlaced(SLOT, seller, A, False, PRICE + 20, 120),
        TradeExecuted(SLOT, C, A, taker, seller, PRICE + 20, 100, True),
        TradeExecuted(SLOT, D, A, nxt, seller, PRICE + 20, 20, True),
    )
    with raises("MarketOrderNotFound", taker):
        model.get_order(taker)
    assert model.get_order(nxt).remaining_wh == 30
    assert model.position_of(SLOT, C) == Position(300, 0, paid + value_of(100, PRICE + 20), 0)
    assert model.solvency_gap() == 0


def test_crossing_order_that_only_cancels_own_orders_rests_first_in_a_fresh_level() -> None:
    """Self-trade cancellations alone: the crossing order rests with the id it took; cancelling
    it (the head) leaves no gap in front of the next place."""
    model = make_model(fill_cap=1)  # a single gap would stop a taker
    own = buy(model, A, PRICE, 100)  # nonce 1
    ask = sell(model, A, PRICE - 10, 100)  # crosses its own bid only: nonce 2
    assert ask == crossing_id(False, PRICE - 10, 2)
    assert model.last_events == (
        OrderPlaced(SLOT, ask, A, False, PRICE - 10, 100),
        OrderCancelled(SLOT, own, A, 100, value_of(100, PRICE), CancelReason.SELF_TRADE),
    )
    assert model.book_side(SLOT, False) == [OrderView(ask, A, SLOT, False, PRICE - 10, 100, 0)]
    assert model.balance_of(A) == DEPOSIT
    nxt = sell(model, B, PRICE - 10, 100)
    assert nxt == place_id(False, PRICE - 10, 2, 1)
    model.cancel_order(A, ask, now=NOW)
    assert model.last_events == (OrderCancelled(SLOT, ask, A, 100, 0, CancelReason.BY_MEMBER),)
    taker = buy(model, C, PRICE - 10, 100)  # reaches nxt at once
    assert taker == crossing_id(True, PRICE - 10, 3)
    assert model.last_events[1:] == (TradeExecuted(SLOT, C, B, taker, nxt, PRICE - 10, 100, False),)
    assert model.best_prices(SLOT) == (0, 0)
    assert model.solvency_gap() == 0


def test_filled_or_capped_crossing_orders_are_never_found_and_nonces_interleave() -> None:
    """A crossing order that is filled (or stopped by the fill cap) keeps its id but never rests:
    no call finds it afterwards, and the level that is later created at its price takes a new
    nonce. The slot's nonces go, one each, to level creations and crossing orders, in order."""
    model = make_model(fill_cap=1)
    a = sell(model, A, PRICE, 100)  # nonce 1: level creation
    filled = buy(model, B, PRICE + 10, 100)  # nonce 2: crossing, filled
    assert filled == crossing_id(True, PRICE + 10, 2)
    assert model.last_events[1:] == (TradeExecuted(SLOT, B, A, filled, a, PRICE, 100, False),)
    assert model.best_prices(SLOT) == (0, 0)
    assert model.resting_orders() == []
    before = state(model)
    with raises("MarketOrderNotFound", filled):
        model.get_order(filled)
    with raises("MarketOrderNotFound", filled):
        model.cancel_order(B, filled, now=NOW)
    assert state(model) == before

    # a level at the filled order's price is created later: a new nonce, not the filled one's
    c = buy(model, C, PRICE + 10, 100)  # nonce 3
    assert c == place_id(True, PRICE + 10, 3) != filled
    d = buy(model, D, PRICE + 10, 100)  # the same level: no nonce
    assert d == place_id(True, PRICE + 10, 3, 1)
    e = buy(model, D, PRICE, 100)  # nonce 4
    assert e == place_id(True, PRICE, 4)
    with raises("MarketOrderNotFound", filled):
        model.get_order(filled)

    capped = sell(model, A, PRICE + 10, 150)  # nonce 5: fills c, then the cap stops it (d still crosses)
    assert capped == crossing_id(False, PRICE + 10, 5)
    assert model.last_events == (
        OrderPlaced(SLOT, capped, A, False, PRICE + 10, 150),
        TradeExecuted(SLOT, C, A, c, capped, PRICE + 10, 100, True),
        OrderCancelled(SLOT, capped, A, 50, 0, CancelReason.FILL_CAP),
    )
    with raises("MarketOrderNotFound", capped):
        model.get_order(capped)
    with raises("MarketOrderNotFound", capped):
        model.cancel_order(A, capped, now=NOW)

    ask = sell(model, B, PRICE + 20, 100)  # nonce 6: does not cross (best bid PRICE + 10)
    assert ask == place_id(False, PRICE + 20, 6)
    # a batch: level creation, crossing, next place, crossing
    batch = model.place_orders(
        A,
        [
            OrderRequest(SLOT, False, PRICE + 30, 10),  # nonce 7
            OrderRequest(SLOT, True, PRICE + 20, 10),  # crosses ask: nonce 8, filled
            OrderRequest(SLOT, False, PRICE + 30, 10),  # the level of the first: no nonce
            OrderRequest(SLOT, False, PRICE + 10, 10),  # crosses d: nonce 9, filled
        ],
        now=NOW,
    )
    assert batch == [
        place_id(False, PRICE + 30, 7),
        crossing_id(True, PRICE + 20, 8),
        place_id(False, PRICE + 30, 7, 1),
        crossing_id(False, PRICE + 10, 9),
    ]
    assert ask_ids(model) == [ask, batch[0], batch[2]]
    # a rolled-back crossing order takes no nonce
    with raises("MarketPriceOutOfBand", 0, 1_000, 1_000_000):
        model.place_orders(A, [OrderRequest(SLOT, True, PRICE + 20, 10), OrderRequest(SLOT, True, 0, 10)], now=NOW)
    again = buy(model, A, PRICE + 20, 10)
    assert again == crossing_id(True, PRICE + 20, 10)
    # another slot counts from 1, crossing orders included
    assert buy(model, A, PRICE, 10, slot=SLOT + 1) == place_id(True, PRICE, 1, slot=SLOT + 1)
    assert sell(model, B, PRICE, 10, slot=SLOT + 1) == crossing_id(False, PRICE, 2, slot=SLOT + 1)

    placed = [e.order_id for e in model.log if isinstance(e, OrderPlaced) and e.slot == SLOT]
    assert [nonce_and_place(i) for i in placed] == [
        (1, 0),  # a
        (2, 0),  # filled
        (3, 0),  # c
        (3, 1),  # d
        (4, 0),  # e
        (5, 0),  # capped
        (6, 0),  # ask
        (7, 0),
        (8, 0),
        (7, 1),
        (9, 0),  # the batch
        (10, 0),  # again
    ]
    assert len(set(placed)) == len(placed)

    # after gate closure, expiring them is a no-op: they are not in the book
    gone = [filled, capped, batch[1], batch[3], again]
    model.expire_orders(gone, now=model.clock.gate_closure(SLOT))
    assert model.last_events == ()
    assert model.solvency_gap() == 0


# ----------------------------------------------------------------------- matching


def test_price_priority_and_resting_price() -> None:
    model = make_model()
    b = sell(model, B, 260_000, 100)
    c = sell(model, C, 240_000, 100)
    d = sell(model, D, 250_000, 100)
    a = buy(model, A, 270_000, 300)
    assert (b, c, d, a) == (
        place_id(False, 260_000, 1),
        place_id(False, 240_000, 2),
        place_id(False, 250_000, 3),
        crossing_id(True, 270_000, 4),
    )
    assert model.last_events[1:] == (
        TradeExecuted(SLOT, A, C, a, c, 240_000, 100, False),
        TradeExecuted(SLOT, A, D, a, d, 250_000, 100, False),
        TradeExecuted(SLOT, A, B, a, b, 260_000, 100, False),
    )
    paid = sum(trade.value for trade in model.trades)
    assert paid == value_of(100, 240_000) + value_of(100, 250_000) + value_of(100, 260_000)
    assert model.balance_of(A) == DEPOSIT - paid  # below-limit trades release the difference
    assert model.position_of(SLOT, A) == Position(300, 0, paid, 0)
    assert model.position_of(SLOT, C) == Position(0, 100, 0, value_of(100, 240_000))
    assert model.solvency_gap() == 0


def test_fifo_and_partial_fills() -> None:
    model = make_model()
    b = buy(model, B, PRICE, 100)
    c = buy(model, C, PRICE, 100)
    assert (b, c) == (place_id(True, PRICE, 1), place_id(True, PRICE, 1, 1))
    a1 = sell(model, A, PRICE - 5, 150)
    assert a1 == crossing_id(False, PRICE - 5, 2)
    assert model.last_events[1:] == (
        TradeExecuted(SLOT, B, A, b, a1, PRICE, 100, True),
        TradeExecuted(SLOT, C, A, c, a1, PRICE, 50, True),
    )
    assert [o.order_id for o in model.book_side(SLOT, True)] == [c]
    assert model.get_order(c).remaining_wh == 50
    a2 = sell(model, A, PRICE, 80)  # fills C's 50, rests 30
    assert a2 == crossing_id(False, PRICE, 3)  # and rests there: the first place of its level
    assert model.last_events == (
        OrderPlaced(SLOT, a2, A, False, PRICE, 80),
        TradeExecuted(SLOT, C, A, c, a2, PRICE, 50, True),
    )
    assert model.book_side(SLOT, False) == [OrderView(a2, A, SLOT, False, PRICE, 30, 0)]
    assert model.best_prices(SLOT) == (0, PRICE)


def test_book_side_order_and_limit() -> None:
    model = make_model()
    ids = [buy(model, who, price, 10) for who, price in ((A, 100_000), (B, 300_000), (C, 200_000), (D, 300_000))]
    assert ids == [
        place_id(True, 100_000, 1),
        place_id(True, 300_000, 2),
        place_id(True, 200_000, 3),
        place_id(True, 300_000, 2, 1),
    ]
    assert [(o.order_id, o.price_per_kwh) for o in model.book_side(SLOT, True)] == [
        (ids[1], 300_000),
        (ids[3], 300_000),
        (ids[2], 200_000),
        (ids[0], 100_000),
    ]
    assert len(model.book_side(SLOT, True, 2)) == 2
    assert model.book_side(SLOT, True, 0) == []
    assert model.book_side(SLOT, False) == []


def test_self_trade_prevention() -> None:
    model = make_model()
    a1 = buy(model, A, PRICE, QTY)  # escrow held
    b = buy(model, B, PRICE - 1, QTY)
    a2 = sell(model, A, PRICE - 1, QTY)  # cancels a1, fills b
    assert a2 == crossing_id(False, PRICE - 1, 3)
    assert model.last_events == (
        OrderPlaced(SLOT, a2, A, False, PRICE - 1, QTY),
        OrderCancelled(SLOT, a1, A, QTY, value_of(QTY, PRICE), CancelReason.SELF_TRADE),
        TradeExecuted(SLOT, B, A, b, a2, PRICE - 1, QTY, True),
    )
    assert model.balance_of(A) == DEPOSIT
    assert model.best_prices(SLOT) == (0, 0)


def test_fill_cap_cancels_when_still_crossing_and_rests_otherwise() -> None:
    model = make_model(fill_cap=2)
    for who in (B, C, D):
        sell(model, who, PRICE, 100)
    capped = buy(model, A, PRICE, 300)
    assert capped == crossing_id(True, PRICE, 2)  # stopped by the cap: never rests
    assert model.last_events[-1] == OrderCancelled(SLOT, capped, A, 100, value_of(100, PRICE), CancelReason.FILL_CAP)
    with raises("MarketOrderNotFound", capped):
        model.get_order(capped)
    assert model.balance_of(A) == DEPOSIT - value_of(200, PRICE)
    rests = buy(model, A, PRICE, 300)  # one fill left in the book: the rest rests
    assert rests == crossing_id(True, PRICE, 3)
    assert model.get_order(rests).remaining_wh == 200
    assert model.solvency_gap() == 0


def test_self_trade_cancellations_have_their_own_cap() -> None:
    model = make_model(fill_cap=2)
    ids = [sell(model, who, PRICE, 100) for who in (A, B, A, C)]
    buy(model, A, PRICE, 400)
    reasons = [(type(e).__name__, getattr(e, "reason", None)) for e in model.last_events]
    assert reasons == [
        ("OrderPlaced", None),
        ("OrderCancelled", CancelReason.SELF_TRADE),
        ("TradeExecuted", None),
        ("OrderCancelled", CancelReason.SELF_TRADE),
        ("OrderCancelled", CancelReason.FILL_CAP),
    ]
    assert ask_ids(model) == [ids[3]] == [place_id(False, PRICE, 1, 3)]


def test_fill_cap_counts_own_order_as_crossing() -> None:
    model = make_model(fill_cap=1)
    sell(model, B, PRICE, 100)
    own = sell(model, A, PRICE, 100)
    capped = buy(model, A, PRICE, 300)
    assert capped == crossing_id(True, PRICE, 2)
    assert model.last_events[-1] == OrderCancelled(SLOT, capped, A, 200, value_of(200, PRICE), CancelReason.FILL_CAP)
    assert ask_ids(model) == [own]  # not reached: not cancelled


def test_escrow_dust() -> None:
    model = make_model()
    bid = buy(model, A, 1_050, 40)  # escrow 42; four fills of 10 are worth 10 each
    escrows = []
    for _ in range(3):
        sell(model, B, 1_050, 10)
        escrows.append(model.get_order(bid).escrow)
        assert model.balance_of(A) == DEPOSIT - 42
        assert model.solvency_gap() == 0
    assert escrows == [32, 22, 12]
    sell(model, B, 1_050, 10)
    assert model.balance_of(A) == DEPOSIT - 40  # dust back when the order leaves the book
    assert model.position_of(SLOT, A) == Position(40, 0, 40, 0)


def test_taker_balance_is_trades_plus_rest_escrow() -> None:
    model = make_model()
    sell(model, B, 1_030, 10)
    sell(model, C, 1_040, 10)
    rest = buy(model, A, 1_050, 25)
    assert rest == crossing_id(True, 1_050, 3)
    assert model.balance_of(A) == DEPOSIT - (10 + 10 + 5)
    assert model.get_order(rest).escrow == 5


# --------------------------------------------------------------------- price tick


def test_default_band_starts_at_one_default_tick() -> None:
    """The config's defaults deploy: the band is a whole number of default ticks."""
    assert CONFIG.price_tick == 1_000
    assert MarketParams().min_price_per_kwh == CONFIG.price_tick
    model = OrderBookModel(EPOCH, CONFIG.slot_seconds, CONFIG.market, price_tick=CONFIG.price_tick)
    assert (model.price_tick, model.params) == (CONFIG.price_tick, CONFIG.market)


def test_price_band_must_be_on_the_tick() -> None:
    tick = 1_000
    model = make_model(price_tick=tick)
    for low, high in ((1_500, 1_000_000), (1_000, 1_000_500), (999, 1_000_000), (1, 1_000_000), (1_000, 1_001)):
        params = replace(CONFIG.market, min_price_per_kwh=low, max_price_per_kwh=high)
        with raises("RegistryInvalidPriceBand", low, high):
            OrderBookModel(EPOCH, 900, params, price_tick=tick)
        before = state(model)
        with raises("RegistryInvalidPriceBand", low, high):
            model.set_market_params(params)
        assert state(model) == before
    # the other band checks still hold for multiples of the tick
    with raises("RegistryInvalidPriceBand", 0, 1_000):
        OrderBookModel(EPOCH, 900, MarketParams(0, 1_000, 1, 0, 1), price_tick=tick)
    with raises("RegistryInvalidPriceBand", 2_000, 1_000):
        OrderBookModel(EPOCH, 900, MarketParams(2_000, 1_000, 1, 0, 1), price_tick=tick)
    # the band is checked before the quantity and the fill cap
    with raises("RegistryInvalidPriceBand", 1_500, 1_000_000):
        OrderBookModel(EPOCH, 900, MarketParams(1_500, 1_000_000, 0, 0, 0), price_tick=tick)
    # a band of a single tick is fine
    OrderBookModel(EPOCH, 900, MarketParams(tick, tick, 1, 0, 1), price_tick=tick)
    model.set_market_params(replace(CONFIG.market, min_price_per_kwh=2_000, max_price_per_kwh=500_000))
    assert model.last_events == (MarketParamsUpdated(2_000, 500_000, 10, 300, 20),)
    assert model.price_tick == tick  # fixed at deployment
    with raises("MarketPriceOutOfBand", 1_000, 2_000, 500_000):
        buy(model, A, 1_000)


@pytest.mark.parametrize("tick", [1, 7, 100, 255])
def test_price_band_is_at_most_max_price_ticks(tick: int) -> None:
    """The highest price is at most MAX_PRICE_TICKS ticks (the price bitmap's range)."""
    assert MAX_PRICE_TICKS == 2**24 - 1
    top = MAX_PRICE_TICKS * tick
    assert top + tick < 2**32  # every price here fits the contract's uint32
    params = MarketParams(tick, top, 10, 300, 20)
    model = OrderBookModel(EPOCH, 900, params, price_tick=tick)
    too_high = replace(params, max_price_per_kwh=top + tick)
    with raises("RegistryInvalidPriceBand", tick, top + tick):
        OrderBookModel(EPOCH, 900, too_high, price_tick=tick)
    with raises("RegistryInvalidPriceBand", tick, top + tick):
        model.set_market_params(too_high)
    assert model.params == params
    # the band's ends are valid prices
    model.add_member(A)
    model.deposit(A, 2**64)
    low = model.place_order(A, SLOT, True, tick, 10, now=NOW)
    high = model.place_order(A, SLOT, False, top, 10, now=NOW)
    assert (decode_order_id(low).price_per_kwh, decode_order_id(high).price_per_kwh) == (tick, top)
    assert model.best_prices(SLOT) == (tick, top)
    with raises("MarketPriceOutOfBand", top + tick, tick, top):
        model.place_order(A, SLOT, False, top + tick, 10, now=NOW)


@pytest.mark.parametrize(
    "request_, error",
    [
        (OrderRequest(SLOT, True, PRICE + 1, QTY), ("MarketPriceOffTick", PRICE + 1, 1_000)),
        (OrderRequest(SLOT, False, PRICE - 500, QTY), ("MarketPriceOffTick", PRICE - 500, 1_000)),
        (OrderRequest(SLOT, True, 1_999, QTY), ("MarketPriceOffTick", 1_999, 1_000)),
        (OrderRequest(SLOT, False, 999_999, QTY), ("MarketPriceOffTick", 999_999, 1_000)),
        # after the band, before the quantity, the gate and the balance
        (OrderRequest(SLOT, True, 999, QTY), ("MarketPriceOutOfBand", 999, 1_000, 1_000_000)),
        (OrderRequest(SLOT, True, 1_000_500, QTY), ("MarketPriceOutOfBand", 1_000_500, 1_000, 1_000_000)),
        (OrderRequest(SLOT, True, PRICE + 1, 0), ("MarketPriceOffTick", PRICE + 1, 1_000)),
        (OrderRequest(SLOT, True, PRICE + 1, MAX_QTY_WH + 1), ("MarketPriceOffTick", PRICE + 1, 1_000)),
        (OrderRequest(1, False, PRICE + 1, QTY), ("MarketPriceOffTick", PRICE + 1, 1_000)),
        (OrderRequest(SLOT, True, PRICE + 1, 2_000_001), ("MarketPriceOffTick", PRICE + 1, 1_000)),
        (OrderRequest(SLOT, True, PRICE, 0), ("MarketQuantityTooSmall", 0, 10)),
    ],
)
def test_off_tick_order_is_rejected_and_changes_nothing(request_: OrderRequest, error: tuple[str, ...]) -> None:
    assert_refused_atomically(make_model(price_tick=1_000), request_, error, good_price=PRICE + 10_000)


def test_orders_at_tick_multiples_trade_with_a_tick_of_1000() -> None:
    model = make_model(price_tick=1_000)
    a = sell(model, A, 250_000, 100)  # nonce 1
    b = sell(model, B, 251_000, 100)  # nonce 2
    c = buy(model, C, 249_000, 100)  # nonce 3
    assert (a, b, c) == (place_id(False, 250_000, 1), place_id(False, 251_000, 2), place_id(True, 249_000, 3))
    assert model.best_prices(SLOT) == (249_000, 250_000)
    taker = buy(model, D, 252_000, 250)  # crosses both asks: nonce 4, rests 50
    assert taker == crossing_id(True, 252_000, 4)
    assert model.last_events == (
        OrderPlaced(SLOT, taker, D, True, 252_000, 250),
        TradeExecuted(SLOT, D, A, taker, a, 250_000, 100, False),
        TradeExecuted(SLOT, D, B, taker, b, 251_000, 100, False),
    )
    assert model.get_order(taker) == OrderView(taker, D, SLOT, True, 252_000, 50, value_of(50, 252_000))
    assert model.best_prices(SLOT) == (252_000, 0)
    # the ends of the band
    low = buy(model, A, 1_000, 10)
    high = sell(model, B, 1_000_000, 10)
    assert (low, high) == (place_id(True, 1_000, 5), place_id(False, 1_000_000, 6))
    assert model.best_prices(SLOT) == (252_000, 1_000_000)
    seller = sell(model, C, 249_000, 150)  # crosses: nonce 7; taker's 50, then c is C's own: cancelled
    assert seller == crossing_id(False, 249_000, 7)
    assert model.last_events == (
        OrderPlaced(SLOT, seller, C, False, 249_000, 150),
        TradeExecuted(SLOT, D, C, taker, seller, 252_000, 50, True),
        OrderCancelled(SLOT, c, C, 100, value_of(100, 249_000), CancelReason.SELF_TRADE),
    )
    assert model.get_order(seller) == OrderView(seller, C, SLOT, False, 249_000, 100, 0)
    assert model.best_prices(SLOT) == (1_000, 249_000)
    assert model.solvency_gap() == 0


# ------------------------------------------------------------------------- gaps


def test_cancelled_middle_order_leaves_a_gap_the_taker_steps_over() -> None:
    model = make_model(fill_cap=2)
    b, c, d = (sell(model, who, PRICE, 100) for who in (B, C, D))
    model.cancel_order(C, c, now=NOW)
    assert ask_ids(model) == [b, d]
    with raises("MarketOrderNotFound", c):
        model.get_order(c)
    taker = buy(model, A, PRICE, 200)  # b, the gap (one skip), d: within the cap of 2 and 2
    assert model.last_events == (
        OrderPlaced(SLOT, taker, A, True, PRICE, 200),
        TradeExecuted(SLOT, A, B, taker, b, PRICE, 100, False),
        TradeExecuted(SLOT, A, D, taker, d, PRICE, 100, False),
    )
    assert model.best_prices(SLOT) == (0, 0)
    assert model.solvency_gap() == 0


@pytest.mark.parametrize("fill_cap", [2, 3])
def test_gaps_count_against_the_fill_cap(fill_cap: int) -> None:
    """Two gaps before a live order: a taker with a cap of 2 stops on them while the book still
    crosses (and loses its remainder); with a cap of 3 it reaches the order."""
    model = make_model(fill_cap=fill_cap)
    b1, c, d, b2 = (sell(model, who, PRICE, 100) for who in (B, C, D, B))
    model.cancel_order(C, c, now=NOW)
    model.cancel_order(D, d, now=NOW)
    assert ask_ids(model) == [b1, b2]
    buy(model, D, PRICE, 100)  # fills b1 and stops: the head is now the first gap
    assert ask_ids(model) == [b2]

    taker = buy(model, A, PRICE, 100)
    assert taker == crossing_id(True, PRICE, 3)
    if fill_cap == 2:
        assert model.last_events == (
            OrderPlaced(SLOT, taker, A, True, PRICE, 100),
            OrderCancelled(SLOT, taker, A, 100, value_of(100, PRICE), CancelReason.FILL_CAP),
        )
        assert model.best_prices(SLOT) == (0, PRICE)  # still crosses the taker's limit
        assert model.balance_of(A) == DEPOSIT
        # the gaps stepped over are gone: the next taker reaches b2 at once
        taker = buy(model, A, PRICE, 100)
        assert taker == crossing_id(True, PRICE, 4)
    assert model.last_events == (
        OrderPlaced(SLOT, taker, A, True, PRICE, 100),
        TradeExecuted(SLOT, A, B, taker, b2, PRICE, 100, False),
    )
    assert model.best_prices(SLOT) == (0, 0)
    assert model.solvency_gap() == 0


def test_fills_and_skips_are_capped_separately() -> None:
    model = make_model(fill_cap=2)
    b1, c1, d, c2, b2 = (sell(model, who, PRICE, 100) for who in (B, C, D, C, B))
    model.cancel_orders(C, [c1, c2], now=NOW)
    # fill b1, skip the gap c1, fill d (three steps, two fills); then the gap c2 is not reached
    capped = buy(model, A, PRICE, 300)
    assert model.last_events == (
        OrderPlaced(SLOT, capped, A, True, PRICE, 300),
        TradeExecuted(SLOT, A, B, capped, b1, PRICE, 100, False),
        TradeExecuted(SLOT, A, D, capped, d, PRICE, 100, False),
        OrderCancelled(SLOT, capped, A, 100, value_of(100, PRICE), CancelReason.FILL_CAP),
    )
    assert ask_ids(model) == [b2]


def test_self_trades_and_gaps_share_the_skip_count() -> None:
    model = make_model(fill_cap=2)
    a, c, b = (sell(model, who, PRICE, 100) for who in (A, C, B))
    model.cancel_order(C, c, now=NOW)
    capped = buy(model, A, PRICE, 100)  # cancels a (skip 1), steps over c (skip 2): capped before b
    assert model.last_events == (
        OrderPlaced(SLOT, capped, A, True, PRICE, 100),
        OrderCancelled(SLOT, a, A, 100, 0, CancelReason.SELF_TRADE),
        OrderCancelled(SLOT, capped, A, 100, value_of(100, PRICE), CancelReason.FILL_CAP),
    )
    assert ask_ids(model) == [b]


def test_cancelling_the_head_leaves_no_gap() -> None:
    model = make_model(fill_cap=1)  # a single gap would stop a taker
    b, c = (sell(model, who, PRICE, 100) for who in (B, C))
    model.cancel_order(B, b, now=NOW)
    taker = buy(model, A, PRICE, 100)
    assert model.last_events == (
        OrderPlaced(SLOT, taker, A, True, PRICE, 100),
        TradeExecuted(SLOT, A, C, taker, c, PRICE, 100, False),
    )


def test_cancelling_the_head_advances_it_by_one_place() -> None:
    """Cancelling the head moves it one place on, even onto a gap left earlier."""
    model = make_model(fill_cap=1)
    b, c, d = (sell(model, who, PRICE, 100) for who in (B, C, D))
    model.cancel_order(C, c, now=NOW)
    model.cancel_order(B, b, now=NOW)
    assert ask_ids(model) == [d]
    capped = buy(model, A, PRICE, 100)  # the gap c is the head
    assert model.last_events[1:] == (OrderCancelled(SLOT, capped, A, 100, value_of(100, PRICE), CancelReason.FILL_CAP),)
    taker = buy(model, A, PRICE, 100)
    assert model.last_events[1:] == (TradeExecuted(SLOT, A, D, taker, d, PRICE, 100, False),)


def test_level_is_dropped_with_its_gaps_when_its_last_order_leaves() -> None:
    model = make_model(fill_cap=1)
    b, c, d = (sell(model, who, PRICE, 100) for who in (B, C, D))
    model.cancel_order(C, c, now=NOW)
    model.cancel_order(D, d, now=NOW)  # the tail: a gap too
    model.cancel_order(B, b, now=NOW)  # the last live order: the level goes, gaps and all
    assert model.best_prices(SLOT) == (0, 0)
    again = sell(model, B, PRICE, 100)
    assert again == place_id(False, PRICE, 2)
    taker = buy(model, A, PRICE, 100)  # no gap in front of it
    assert model.last_events[1:] == (TradeExecuted(SLOT, A, B, taker, again, PRICE, 100, False),)

    # by a fill: b2 is filled while the gap c2 behind it is left; the level goes with it
    b2, c2 = (sell(model, who, PRICE, 100) for who in (B, C))
    assert (b2, c2) == (place_id(False, PRICE, 4), place_id(False, PRICE, 4, 1))
    model.cancel_order(C, c2, now=NOW)
    buy(model, A, PRICE, 100)
    assert model.best_prices(SLOT) == (0, 0)
    d = sell(model, D, PRICE, 100)
    assert d == place_id(False, PRICE, 6)  # a new level: not the place after the gap c2
    taker = buy(model, A, PRICE, 100)
    assert model.last_events[1:] == (TradeExecuted(SLOT, A, D, taker, d, PRICE, 100, False),)


# ------------------------------------------------------------ cancel and expire


def test_cancel() -> None:
    model = make_model()
    b, c, d = (sell(model, who, PRICE, 100) for who in (B, C, D))
    a = buy(model, A, PRICE - 10, 100)
    model.cancel_order(C, c, now=NOW)
    assert model.last_events == (OrderCancelled(SLOT, c, C, 100, 0, CancelReason.BY_MEMBER),)
    assert ask_ids(model) == [b, d]
    model.cancel_orders(A, [a], now=NOW)
    assert model.balance_of(A) == DEPOSIT
    before = state(model)
    with raises("MarketOrderNotFound", c):
        model.cancel_order(C, c, now=NOW)
    with raises("MarketNotOrderOwner", b, A, B):
        model.cancel_order(A, b, now=NOW)
    with raises("MarketNotOrderOwner", b, OUTSIDER, B):
        model.cancel_order(OUTSIDER, b, now=NOW)
    with raises("MarketOrderNotFound", b):
        model.cancel_orders(B, [b, b], now=NOW)
    with raises("MarketOrderNotFound", 1):
        model.cancel_order(B, 1, now=NOW)
    assert state(model) == before


def test_expire() -> None:
    model = make_model()
    a1 = buy(model, A, PRICE, 100)
    b = sell(model, B, PRICE + 1, 100)
    a3 = buy(model, A, PRICE, 100, slot=SLOT + 1)
    assert a3 == place_id(True, PRICE, 1, slot=SLOT + 1)
    closure = model.clock.gate_closure(SLOT)
    before = state(model)
    with raises("MarketOrderNotExpired", a1, closure, closure - 1):
        model.expire_orders([a1], now=closure - 1)
    with raises("MarketOrderNotExpired", a3, model.clock.gate_closure(SLOT + 1), closure):
        model.expire_orders([a1, a3], now=closure)
    assert state(model) == before
    # unknown ids are skipped: 0, a place of a level never created, the place after a1
    model.expire_orders([0, b, a1, b, place_id(True, PRICE, 3), a1 + 1], now=closure)
    assert model.last_events == (
        OrderCancelled(SLOT, b, B, 100, 0, CancelReason.EXPIRED),
        OrderCancelled(SLOT, a1, A, 100, value_of(100, PRICE), CancelReason.EXPIRED),
    )
    assert model.best_prices(SLOT) == (0, 0)
    assert model.balance_of(A) == DEPOSIT - value_of(100, PRICE)


def test_removed_member_orders_fill_and_cancel() -> None:
    model = make_model()
    buy(model, B, PRICE, 100)
    second = buy(model, B, PRICE - 1, 100)
    model.remove_member(B)
    sell(model, A, PRICE, 100)
    assert model.position_of(SLOT, B) == Position(100, 0, value_of(100, PRICE), 0)
    model.cancel_order(B, second, now=NOW)
    assert model.balance_of(B) == DEPOSIT - value_of(100, PRICE)


# ------------------------------------------------------------ overflow guards


def test_overflow_guards() -> None:
    """The largest fill is booked exactly; the fourth such fill overflows the uint64 position sum
    and reverts (Panic 0x11) instead of wrapping."""
    # a band up to the largest uint32 price: at most MAX_PRICE_TICKS ticks, so a tick above 256;
    # 2**32 - 1 = 257 * 16_711_935
    with raises("RegistryInvalidPriceBand", 1_000, 2**32 - 1):
        make_model(max_price_per_kwh=2**32 - 1)
    model = make_model(price_tick=257, min_price_per_kwh=257, max_price_per_kwh=2**32 - 1)
    for who in (A, B):
        model.deposit(who, 2**100)
    largest = value_of(MAX_QTY_WH, 2**32 - 1)
    assert 3 * largest < 2**64 <= 4 * largest
    for _ in range(3):
        sell(model, B, 2**32 - 1, MAX_QTY_WH)
        buy(model, A, 2**32 - 1, MAX_QTY_WH)
    assert model.position_of(SLOT, A).paid == 3 * largest
    sell(model, B, 2**32 - 1, MAX_QTY_WH)
    with raises("Panic", 0x11):
        buy(model, A, 2**32 - 1, MAX_QTY_WH)
    assert model.solvency_gap() == 0


def test_taker_balance_overflow_guard() -> None:
    model = make_model()
    bid = buy(model, A)
    model.deposit(A, 2**128 - 1 - model.balance_of(A))
    with raises("SafeCastOverflowedUintDowncast", 128, 2**128 - 1 + value_of(QTY, PRICE)):
        sell(model, A)
    assert model.get_order(bid).remaining_wh == QTY


# ------------------------------------------------------------- random sequences

operations = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell", "cancel", "deposit", "withdraw", "expire", "batch"]),
        st.sampled_from([A, B, C, OUTSIDER]),
        st.integers(0, 2),  # slot offset
        st.integers(997, 1_005),  # price (band 998..1004; with a tick of 2, odd prices are off it)
        st.integers(5, 60),  # quantity (minimum 10)
        st.integers(0, 30),  # order selector (among the ids placed so far) / amount selector
    ),
    min_size=20,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([1, 2]), operations)
def test_random_sequences_keep_the_invariants(price_tick: int, ops: list[tuple[str, str, int, int, int, int]]) -> None:
    """Solvency, an uncrossed book, FIFO ids within levels, ids that never repeat and describe
    where the order rests, nonces taken in sequence, prices on the tick, and all-or-nothing
    failures."""
    model = OrderBookModel(
        EPOCH,
        CONFIG.slot_seconds,
        replace(CONFIG.market, min_price_per_kwh=998, max_price_per_kwh=1_004, fill_cap=3),
        price_tick=price_tick,
    )
    for member in (A, B, C):
        model.add_member(member)
        model.deposit(member, 300)
    now = model.clock.gate_closure(SLOT) - 100
    placed: list[int] = []  # ids returned so far (resting or not); cancels and expiries pick among them
    for kind, who, offset, price, qty, pick in ops:
        slot = SLOT + offset
        before = state(model)
        try:
            if kind in ("buy", "sell"):
                placed.append(model.place_order(who, slot, kind == "buy", price, qty, now=now))
            elif kind == "batch":
                placed += model.place_orders(
                    who, [OrderRequest(slot, True, price, qty), OrderRequest(slot, False, price, qty)], now=now
                )
            elif kind == "cancel":
                model.cancel_order(who, placed[pick % len(placed)] if placed else pick, now=now)
            elif kind == "deposit":
                model.deposit(who, pick * 10)
            elif kind == "withdraw":
                model.withdraw(who, pick * 10)
            else:
                model.expire_orders(placed[:pick], now=now)
                now += 60 * offset  # time moves on now and then
        except ModelRevert:
            assert state(model) == before
        assert model.solvency_gap() == 0
        for s in model.slots():
            bid, ask = model.best_prices(s)
            assert bid == 0 or ask == 0 or bid < ask
            for side in (True, False):
                orders = model.book_side(s, side)
                keys = [(-o.price_per_kwh if side else o.price_per_kwh, o.order_id) for o in orders]
                assert keys == sorted(keys)
                assert all(o.remaining_wh > 0 for o in orders)
                # escrow never falls below the value of what is left (dust only adds to it)
                assert all(o.escrow >= value_of(o.remaining_wh, o.price_per_kwh) for o in orders if side)
                for o in orders:  # a resting order's id names its slot, side and price
                    parts = decode_order_id(o.order_id)
                    assert (parts.slot, parts.is_buy, parts.price_per_kwh) == (s, side, o.price_per_kwh)
    events = [e for e in model.log if isinstance(e, OrderPlaced)]
    assert [e.order_id for e in events] == placed
    assert len(set(placed)) == len(placed)  # ids never repeat
    assert {o.order_id for o in model.resting_orders()} <= set(placed)  # a resting order keeps its id
    for event in events:  # an order's id has its slot, side and limit price, whether it rested or not
        parts = decode_order_id(event.order_id)
        assert (parts.slot, parts.is_buy, parts.price_per_kwh) == (event.slot, event.is_buy, event.price_per_kwh)
        assert event.price_per_kwh % price_tick == 0
    for s in range(SLOT, SLOT + 3):
        # each of a slot's nonces is taken once, in order, by the first place of a level or by a
        # crossing order; every other id is a later place of a level created with one of them
        ids = [nonce_and_place(e.order_id) for e in events if e.slot == s]
        nonces = [nonce for nonce, place in ids if place == 0]
        assert nonces == list(range(1, len(nonces) + 1))
        assert all(1 <= nonce <= len(nonces) for nonce, _ in ids)
    traded_wh = sum(t.qty_wh for t in model.trades)
    positions = [model.position_of(s, m) for s in range(SLOT, SLOT + 3) for m in (A, B, C)]
    assert sum(p.bought_wh for p in positions) == sum(p.sold_wh for p in positions) == traded_wh
    assert sum(p.paid for p in positions) == sum(p.received for p in positions) == sum(t.value for t in model.trades)

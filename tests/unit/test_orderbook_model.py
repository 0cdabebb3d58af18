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
from peerwatt.order_ids import OrderIdParts, decode_order_id, first_seq, order_id_at, transient_order_id
from peerwatt.orderbook_model import (
    MAX_FILL_CAP,
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


def make_model(**changes: int) -> OrderBookModel:
    """Four members (ids 1..4) with the default deposit, config params with ``changes``."""
    model = OrderBookModel(EPOCH, CONFIG.slot_seconds, replace(CONFIG.market, **changes))
    for member in (A, B, C, D):
        model.add_member(member)
        model.deposit(member, DEPOSIT)
    return model


def buy(model: OrderBookModel, who: str, price: int = PRICE, qty: int = QTY, slot: int = SLOT) -> int:
    return model.place_order(who, slot, True, price, qty, now=NOW)


def sell(model: OrderBookModel, who: str, price: int = PRICE, qty: int = QTY, slot: int = SLOT) -> int:
    return model.place_order(who, slot, False, price, qty, now=NOW)


def rested_id(is_buy: bool, price: int, nonce: int, place: int = 0, slot: int = SLOT) -> int:
    """Id of the order at ``place`` (0: the first) of the price level created with the slot's
    ``nonce`` (the slot's nonces count level creations and transient orders, from 1)."""
    return order_id_at(slot, is_buy, price, first_seq(nonce) + place)


def transient_id(is_buy: bool, nonce: int, slot: int = SLOT) -> int:
    """Id of an order that never rested, numbered with the slot's ``nonce``."""
    return transient_order_id(slot, is_buy, nonce)


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
    model = OrderBookModel(EPOCH, 900)
    assert model.params == CONFIG.market
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
    assert ask == rested_id(False, PRICE, 1)
    assert model.last_events == (OrderPlaced(SLOT, ask, A, False, PRICE, QTY),)
    bid = buy(model, B, PRICE - 1)
    assert bid == rested_id(True, PRICE - 1, 2)
    assert model.get_order(bid) == OrderView(bid, B, SLOT, True, PRICE - 1, QTY, value_of(QTY, PRICE - 1))
    assert model.balance_of(B) == DEPOSIT - value_of(QTY, PRICE - 1)
    assert model.best_prices(SLOT) == (PRICE - 1, PRICE)
    assert model.best_prices(SLOT + 1) == (0, 0)
    assert model.solvency_gap() == 0


@pytest.mark.parametrize(
    "request_, error",
    [
        (OrderRequest(SLOT, True, 0, QTY), ("MarketPriceOutOfBand", 0, 1, 1_000_000)),
        (OrderRequest(SLOT, True, 1_000_001, QTY), ("MarketPriceOutOfBand", 1_000_001, 1, 1_000_000)),
        (OrderRequest(SLOT, False, PRICE, 9), ("MarketQuantityTooSmall", 9, 10)),
        (OrderRequest(SLOT, False, PRICE, MAX_QTY_WH + 1), ("MarketQuantityTooLarge", MAX_QTY_WH + 1, MAX_QTY_WH)),
        (OrderRequest(1, False, PRICE, QTY), ("MarketGateClosed", 1, EPOCH + 900 - 300, NOW)),
        (OrderRequest(SLOT, True, PRICE, 2_000_001), ("MarketInsufficientBalance", A, DEPOSIT, DEPOSIT + 250)),
        # the first failing check wins: band, minimum, maximum, gate, balance
        (OrderRequest(1, True, 0, 0), ("MarketPriceOutOfBand", 0, 1, 1_000_000)),
        (OrderRequest(1, True, PRICE, 0), ("MarketQuantityTooSmall", 0, 10)),
        (OrderRequest(1, True, PRICE, MAX_QTY_WH), ("MarketGateClosed", 1, EPOCH + 900 - 300, NOW)),
    ],
)
def test_bad_orders(request_: OrderRequest, error: tuple[str, ...]) -> None:
    model = make_model()
    sell(model, B, PRICE)
    before = state(model)
    with raises(*error):
        model.place_orders(A, [request_], now=NOW)
    with raises(*error):  # an earlier good order of the batch is rolled back too
        model.place_orders(A, [OrderRequest(SLOT, False, PRICE + 10, QTY), request_], now=NOW)
    assert state(model) == before
    # the rolled-back order's level creation did not use up a nonce
    assert sell(model, A, PRICE + 10) == rested_id(False, PRICE + 10, 2)


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


def test_order_ids_resting_and_transient_share_the_slot_nonce() -> None:
    """A resting order's id is its place in its price level; a level takes the slot's next nonce
    when it is created, an order that never rests takes one too, both sides alike."""
    model = make_model()
    a1 = sell(model, A, PRICE, 100)
    assert a1 == rested_id(False, PRICE, 1)  # level created: nonce 1, first place
    assert decode_order_id(a1) == OrderIdParts(SLOT, False, PRICE, first_seq(1))
    b1 = sell(model, B, PRICE, 100)
    assert b1 == rested_id(False, PRICE, 1, 1) == a1 + 1  # same level: the next place, no nonce
    assert buy(model, C, PRICE - 10, 100) == rested_id(True, PRICE - 10, 2)  # the other side shares the nonce
    d1 = sell(model, D, PRICE + 10, 100)
    assert d1 == rested_id(False, PRICE + 10, 3)
    assert buy(model, D, PRICE - 10, 100) == rested_id(True, PRICE - 10, 2, 1)

    filled = buy(model, D, PRICE, 50)  # filled on arrival: transient, with the next nonce
    assert filled == transient_id(True, 4)
    assert decode_order_id(filled) == OrderIdParts(SLOT, True, 0, 4)
    assert not decode_order_id(filled).rested
    assert model.last_events == (
        OrderPlaced(SLOT, filled, D, True, PRICE, 50),
        TradeExecuted(SLOT, D, A, filled, a1, PRICE, 50, False, 50),
    )
    with raises("MarketOrderNotFound", filled):
        model.get_order(filled)
    with raises("MarketOrderNotFound", filled):
        model.cancel_order(D, filled, now=NOW)

    # each slot has its own nonce
    assert buy(model, C, PRICE, 100, slot=SLOT + 1) == rested_id(True, PRICE, 1, slot=SLOT + 1)

    # a batch takes nonces in sequence
    assert model.place_orders(
        C, [OrderRequest(SLOT, True, PRICE - 10, 10), OrderRequest(SLOT, True, PRICE - 20, 10)], now=NOW
    ) == [rested_id(True, PRICE - 10, 2, 2), rested_id(True, PRICE - 20, 5)]

    # the ask level at PRICE empties (its last order is filled) and is dropped; created again,
    # it takes a fresh nonce, so its first place is not a1 again
    assert buy(model, D, PRICE, 150) == transient_id(True, 6)
    assert model.best_prices(SLOT) == (PRICE - 10, PRICE + 10)
    a2 = sell(model, A, PRICE, 100)
    assert a2 == rested_id(False, PRICE, 7) != a1
    # the same when a cancellation empties the level
    model.cancel_order(A, a2, now=NOW)
    a3 = sell(model, A, PRICE, 100)
    assert a3 == rested_id(False, PRICE, 8)

    # a taker that fills part and rests the rest: its id (a place in a new level) is known only
    # after matching, yet OrderPlaced comes first and the fills name it
    rest = buy(model, B, PRICE + 10, 300)
    assert rest == rested_id(True, PRICE + 10, 9)
    assert model.last_events == (
        OrderPlaced(SLOT, rest, B, True, PRICE + 10, 300),
        TradeExecuted(SLOT, B, A, rest, a3, PRICE, 100, False, 0),
        TradeExecuted(SLOT, B, D, rest, d1, PRICE + 10, 100, False, 0),
    )
    assert model.get_order(rest).remaining_wh == 100

    placed = [e.order_id for e in model.log if isinstance(e, OrderPlaced)]
    assert len(placed) == len(set(placed))  # ids never repeat
    assert model.solvency_gap() == 0


# ----------------------------------------------------------------------- matching


def test_price_priority_and_resting_price() -> None:
    model = make_model()
    b = sell(model, B, 260_000, 100)
    c = sell(model, C, 240_000, 100)
    d = sell(model, D, 250_000, 100)
    a = buy(model, A, 270_000, 300)
    assert (b, c, d, a) == (
        rested_id(False, 260_000, 1),
        rested_id(False, 240_000, 2),
        rested_id(False, 250_000, 3),
        transient_id(True, 4),
    )
    assert model.last_events[1:] == (
        TradeExecuted(SLOT, A, C, a, c, 240_000, 100, False, 0),
        TradeExecuted(SLOT, A, D, a, d, 250_000, 100, False, 0),
        TradeExecuted(SLOT, A, B, a, b, 260_000, 100, False, 0),
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
    assert (b, c) == (rested_id(True, PRICE, 1), rested_id(True, PRICE, 1, 1))
    a1 = sell(model, A, PRICE - 5, 150)
    assert a1 == transient_id(False, 2)
    assert model.last_events[1:] == (
        TradeExecuted(SLOT, B, A, b, a1, PRICE, 100, True, 0),
        TradeExecuted(SLOT, C, A, c, a1, PRICE, 50, True, 50),
    )
    assert [o.order_id for o in model.book_side(SLOT, True)] == [c]
    a2 = sell(model, A, PRICE, 80)  # fills C's 50, rests 30
    assert a2 == rested_id(False, PRICE, 3)
    assert model.last_events == (
        OrderPlaced(SLOT, a2, A, False, PRICE, 80),
        TradeExecuted(SLOT, C, A, c, a2, PRICE, 50, True, 0),
    )
    assert model.book_side(SLOT, False) == [OrderView(a2, A, SLOT, False, PRICE, 30, 0)]
    assert model.best_prices(SLOT) == (0, PRICE)


def test_book_side_order_and_limit() -> None:
    model = make_model()
    ids = [buy(model, who, price, 10) for who, price in ((A, 100), (B, 300), (C, 200), (D, 300))]
    assert ids == [
        rested_id(True, 100, 1),
        rested_id(True, 300, 2),
        rested_id(True, 200, 3),
        rested_id(True, 300, 2, 1),
    ]
    assert [(o.order_id, o.price_per_kwh) for o in model.book_side(SLOT, True)] == [
        (ids[1], 300),
        (ids[3], 300),
        (ids[2], 200),
        (ids[0], 100),
    ]
    assert len(model.book_side(SLOT, True, 2)) == 2
    assert model.book_side(SLOT, True, 0) == []
    assert model.book_side(SLOT, False) == []


def test_self_trade_prevention() -> None:
    model = make_model()
    a1 = buy(model, A, PRICE, QTY)  # escrow held
    b = buy(model, B, PRICE - 1, QTY)
    a2 = sell(model, A, PRICE - 1, QTY)  # cancels a1, fills b
    assert a2 == transient_id(False, 3)
    assert model.last_events == (
        OrderPlaced(SLOT, a2, A, False, PRICE - 1, QTY),
        OrderCancelled(SLOT, a1, A, QTY, value_of(QTY, PRICE), CancelReason.SELF_TRADE),
        TradeExecuted(SLOT, B, A, b, a2, PRICE - 1, QTY, True, 0),
    )
    assert model.balance_of(A) == DEPOSIT
    assert model.best_prices(SLOT) == (0, 0)


def test_fill_cap_cancels_when_still_crossing_and_rests_otherwise() -> None:
    model = make_model(fill_cap=2)
    for who in (B, C, D):
        sell(model, who, PRICE, 100)
    capped = buy(model, A, PRICE, 300)
    assert capped == transient_id(True, 2)  # stopped by the cap: never rests
    assert model.last_events[-1] == OrderCancelled(SLOT, capped, A, 100, value_of(100, PRICE), CancelReason.FILL_CAP)
    assert model.balance_of(A) == DEPOSIT - value_of(200, PRICE)
    rests = buy(model, A, PRICE, 300)  # one fill left in the book: the rest rests
    assert rests == rested_id(True, PRICE, 3)
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
    assert ask_ids(model) == [ids[3]] == [rested_id(False, PRICE, 1, 3)]


def test_fill_cap_counts_own_order_as_crossing() -> None:
    model = make_model(fill_cap=1)
    sell(model, B, PRICE, 100)
    own = sell(model, A, PRICE, 100)
    capped = buy(model, A, PRICE, 300)
    assert capped == transient_id(True, 2)
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
    assert rest == rested_id(True, 1_050, 3)
    assert model.balance_of(A) == DEPOSIT - (10 + 10 + 5)
    assert model.get_order(rest).escrow == 5


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
        TradeExecuted(SLOT, A, B, taker, b, PRICE, 100, False, 0),
        TradeExecuted(SLOT, A, D, taker, d, PRICE, 100, False, 0),
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
    assert taker == transient_id(True, 3)
    if fill_cap == 2:
        assert model.last_events == (
            OrderPlaced(SLOT, taker, A, True, PRICE, 100),
            OrderCancelled(SLOT, taker, A, 100, value_of(100, PRICE), CancelReason.FILL_CAP),
        )
        assert model.best_prices(SLOT) == (0, PRICE)  # still crosses the taker's limit
        assert model.balance_of(A) == DEPOSIT
        # the gaps stepped over are gone: the next taker reaches b2 at once
        taker = buy(model, A, PRICE, 100)
        assert taker == transient_id(True, 4)
    assert model.last_events == (
        OrderPlaced(SLOT, taker, A, True, PRICE, 100),
        TradeExecuted(SLOT, A, B, taker, b2, PRICE, 100, False, 0),
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
        TradeExecuted(SLOT, A, B, capped, b1, PRICE, 100, False, 0),
        TradeExecuted(SLOT, A, D, capped, d, PRICE, 100, False, 0),
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
        TradeExecuted(SLOT, A, C, taker, c, PRICE, 100, False, 0),
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
    assert model.last_events[1:] == (TradeExecuted(SLOT, A, D, taker, d, PRICE, 100, False, 0),)


def test_level_is_dropped_with_its_gaps_when_its_last_order_leaves() -> None:
    model = make_model(fill_cap=1)
    b, c, d = (sell(model, who, PRICE, 100) for who in (B, C, D))
    model.cancel_order(C, c, now=NOW)
    model.cancel_order(D, d, now=NOW)  # the tail: a gap too
    model.cancel_order(B, b, now=NOW)  # the last live order: the level goes, gaps and all
    assert model.best_prices(SLOT) == (0, 0)
    again = sell(model, B, PRICE, 100)
    assert again == rested_id(False, PRICE, 2)
    taker = buy(model, A, PRICE, 100)  # no gap in front of it
    assert model.last_events[1:] == (TradeExecuted(SLOT, A, B, taker, again, PRICE, 100, False, 0),)

    # by a fill: b2 is filled while the gap c2 behind it is left; the level goes with it
    b2, c2 = (sell(model, who, PRICE, 100) for who in (B, C))
    assert (b2, c2) == (rested_id(False, PRICE, 4), rested_id(False, PRICE, 4, 1))
    model.cancel_order(C, c2, now=NOW)
    buy(model, A, PRICE, 100)
    assert model.best_prices(SLOT) == (0, 0)
    d = sell(model, D, PRICE, 100)
    assert d == rested_id(False, PRICE, 6)  # a new level: not the place after the gap c2
    taker = buy(model, A, PRICE, 100)
    assert model.last_events[1:] == (TradeExecuted(SLOT, A, D, taker, d, PRICE, 100, False, 0),)


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
    assert a3 == rested_id(True, PRICE, 1, slot=SLOT + 1)
    closure = model.clock.gate_closure(SLOT)
    before = state(model)
    with raises("MarketOrderNotExpired", a1, closure, closure - 1):
        model.expire_orders([a1], now=closure - 1)
    with raises("MarketOrderNotExpired", a3, model.clock.gate_closure(SLOT + 1), closure):
        model.expire_orders([a1, a3], now=closure)
    assert state(model) == before
    model.expire_orders([0, b, a1, b, transient_id(True, 1), a1 + 1], now=closure)
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
    model = make_model(max_price_per_kwh=2**32 - 1)
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
        st.integers(997, 1_004),  # price (band 998..1003)
        st.integers(5, 60),  # quantity (minimum 10)
        st.integers(0, 30),  # order selector (among the ids placed so far) / amount selector
    ),
    min_size=20,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_random_sequences_keep_the_invariants(ops: list[tuple[str, str, int, int, int, int]]) -> None:
    """Solvency, an uncrossed book, FIFO ids within levels, ids that never repeat and describe
    where the order rests, and all-or-nothing failures."""
    model = OrderBookModel(
        EPOCH, CONFIG.slot_seconds, replace(CONFIG.market, min_price_per_kwh=998, max_price_per_kwh=1_003, fill_cap=3)
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
    for event in events:  # an order's id has its slot and side, and its limit price if it rested
        parts = decode_order_id(event.order_id)
        assert (parts.slot, parts.is_buy) == (event.slot, event.is_buy)
        assert parts.price_per_kwh in (0, event.price_per_kwh)
    traded_wh = sum(t.qty_wh for t in model.trades)
    positions = [model.position_of(s, m) for s in range(SLOT, SLOT + 3) for m in (A, B, C)]
    assert sum(p.bought_wh for p in positions) == sum(p.sold_wh for p in positions) == traded_wh
    assert sum(p.paid for p in positions) == sum(p.received for p in positions) == sum(t.value for t in model.trades)

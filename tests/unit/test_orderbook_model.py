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
from peerwatt.orderbook_model import (
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


@contextmanager
def raises(error: str, *values: object) -> Iterator[None]:
    """The block raises a ModelRevert named ``error`` with exactly ``values``."""
    with pytest.raises(ModelRevert) as info:
        yield
    assert (info.value.error, info.value.values) == (error, values)


def state(model: OrderBookModel) -> tuple[object, ...]:
    """Everything observable, to check that a failed call changed nothing."""
    return (
        model.last_order_id,
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
    assert sell(model, A) == 1
    assert model.last_events == (OrderPlaced(SLOT, 1, A, False, PRICE, QTY),)
    assert buy(model, B, PRICE - 1) == 2
    assert model.get_order(2) == OrderView(2, B, SLOT, True, PRICE - 1, QTY, value_of(QTY, PRICE - 1))
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


def test_gate_closure_boundary() -> None:
    model = make_model()
    closure = model.clock.gate_closure(SLOT)
    model.place_order(A, SLOT, False, PRICE, QTY, now=closure - 1)
    with raises("MarketGateClosed", SLOT, closure, closure):
        model.place_order(A, SLOT, False, PRICE, QTY, now=closure)
    with raises("MarketGateClosed", SLOT, closure, closure):
        model.cancel_order(A, 1, now=closure)
    model.cancel_order(A, 1, now=closure - 1)


# ----------------------------------------------------------------------- matching


def test_price_priority_and_resting_price() -> None:
    model = make_model()
    sell(model, B, 260_000, 100)
    sell(model, C, 240_000, 100)
    sell(model, D, 250_000, 100)
    buy(model, A, 270_000, 300)
    assert model.last_events[1:] == (
        TradeExecuted(SLOT, A, C, 4, 2, 240_000, 100, False, 0),
        TradeExecuted(SLOT, A, D, 4, 3, 250_000, 100, False, 0),
        TradeExecuted(SLOT, A, B, 4, 1, 260_000, 100, False, 0),
    )
    paid = sum(trade.value for trade in model.trades)
    assert paid == value_of(100, 240_000) + value_of(100, 250_000) + value_of(100, 260_000)
    assert model.balance_of(A) == DEPOSIT - paid  # below-limit trades release the difference
    assert model.position_of(SLOT, A) == Position(300, 0, paid, 0)
    assert model.position_of(SLOT, C) == Position(0, 100, 0, value_of(100, 240_000))
    assert model.solvency_gap() == 0


def test_fifo_and_partial_fills() -> None:
    model = make_model()
    buy(model, B, PRICE, 100)
    buy(model, C, PRICE, 100)
    sell(model, A, PRICE - 5, 150)
    assert model.last_events[1:] == (
        TradeExecuted(SLOT, B, A, 1, 3, PRICE, 100, True, 0),
        TradeExecuted(SLOT, C, A, 2, 3, PRICE, 50, True, 50),
    )
    assert [o.order_id for o in model.book_side(SLOT, True)] == [2]
    sell(model, A, PRICE, 80)  # fills C's 50, rests 30
    assert model.book_side(SLOT, False) == [OrderView(4, A, SLOT, False, PRICE, 30, 0)]
    assert model.best_prices(SLOT) == (0, PRICE)


def test_book_side_order_and_limit() -> None:
    model = make_model()
    for who, price in ((A, 100), (B, 300), (C, 200), (D, 300)):
        buy(model, who, price, 10)
    assert [(o.order_id, o.price_per_kwh) for o in model.book_side(SLOT, True)] == [
        (2, 300),
        (4, 300),
        (3, 200),
        (1, 100),
    ]
    assert len(model.book_side(SLOT, True, 2)) == 2
    assert model.book_side(SLOT, True, 0) == []
    assert model.book_side(SLOT, False) == []


def test_self_trade_prevention() -> None:
    model = make_model()
    buy(model, A, PRICE, QTY)  # 1, escrow held
    buy(model, B, PRICE - 1, QTY)  # 2
    sell(model, A, PRICE - 1, QTY)  # 3: cancels 1, fills 2
    assert model.last_events == (
        OrderPlaced(SLOT, 3, A, False, PRICE - 1, QTY),
        OrderCancelled(SLOT, 1, A, QTY, value_of(QTY, PRICE), CancelReason.SELF_TRADE),
        TradeExecuted(SLOT, B, A, 2, 3, PRICE - 1, QTY, True, 0),
    )
    assert model.balance_of(A) == DEPOSIT
    assert model.best_prices(SLOT) == (0, 0)


def test_fill_cap_cancels_when_still_crossing_and_rests_otherwise() -> None:
    model = make_model(fill_cap=2)
    for who in (B, C, D):
        sell(model, who, PRICE, 100)
    buy(model, A, PRICE, 300)
    assert model.last_events[-1] == OrderCancelled(SLOT, 4, A, 100, value_of(100, PRICE), CancelReason.FILL_CAP)
    assert model.balance_of(A) == DEPOSIT - value_of(200, PRICE)
    buy(model, A, PRICE, 300)  # one fill left in the book: the rest rests
    assert model.get_order(5).remaining_wh == 200
    assert model.solvency_gap() == 0


def test_self_trade_cancellations_have_their_own_cap() -> None:
    model = make_model(fill_cap=2)
    for who in (A, B, A, C):
        sell(model, who, PRICE, 100)
    buy(model, A, PRICE, 400)
    reasons = [(type(e).__name__, getattr(e, "reason", None)) for e in model.last_events]
    assert reasons == [
        ("OrderPlaced", None),
        ("OrderCancelled", CancelReason.SELF_TRADE),
        ("TradeExecuted", None),
        ("OrderCancelled", CancelReason.SELF_TRADE),
        ("OrderCancelled", CancelReason.FILL_CAP),
    ]
    assert [o.order_id for o in model.book_side(SLOT, False)] == [4]


def test_fill_cap_counts_own_order_as_crossing() -> None:
    model = make_model(fill_cap=1)
    sell(model, B, PRICE, 100)
    sell(model, A, PRICE, 100)
    buy(model, A, PRICE, 300)
    assert model.last_events[-1] == OrderCancelled(SLOT, 3, A, 200, value_of(200, PRICE), CancelReason.FILL_CAP)
    assert [o.order_id for o in model.book_side(SLOT, False)] == [2]  # not reached: not cancelled


def test_escrow_dust() -> None:
    model = make_model()
    buy(model, A, 1_050, 40)  # escrow 42; four fills of 10 are worth 10 each
    escrows = []
    for _ in range(3):
        sell(model, B, 1_050, 10)
        escrows.append(model.get_order(1).escrow)
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
    buy(model, A, 1_050, 25)
    assert model.balance_of(A) == DEPOSIT - (10 + 10 + 5)
    assert model.get_order(3).escrow == 5


# ------------------------------------------------------------ cancel and expire


def test_cancel() -> None:
    model = make_model()
    for who in (B, C, D):
        sell(model, who, PRICE, 100)
    buy(model, A, PRICE - 10, 100)
    model.cancel_order(C, 2, now=NOW)
    assert model.last_events == (OrderCancelled(SLOT, 2, C, 100, 0, CancelReason.BY_MEMBER),)
    assert [o.order_id for o in model.book_side(SLOT, False)] == [1, 3]
    model.cancel_orders(A, [4], now=NOW)
    assert model.balance_of(A) == DEPOSIT
    before = state(model)
    with raises("MarketOrderNotFound", 2):
        model.cancel_order(C, 2, now=NOW)
    with raises("MarketNotOrderOwner", 1, A, B):
        model.cancel_order(A, 1, now=NOW)
    with raises("MarketNotOrderOwner", 1, OUTSIDER, B):
        model.cancel_order(OUTSIDER, 1, now=NOW)
    with raises("MarketOrderNotFound", 1):
        model.cancel_orders(B, [1, 1], now=NOW)
    assert state(model) == before


def test_expire() -> None:
    model = make_model()
    buy(model, A, PRICE, 100)
    sell(model, B, PRICE + 1, 100)
    buy(model, A, PRICE, 100, slot=SLOT + 1)
    closure = model.clock.gate_closure(SLOT)
    before = state(model)
    with raises("MarketOrderNotExpired", 1, closure, closure - 1):
        model.expire_orders([1], now=closure - 1)
    with raises("MarketOrderNotExpired", 3, model.clock.gate_closure(SLOT + 1), closure):
        model.expire_orders([1, 3], now=closure)
    assert state(model) == before
    model.expire_orders([0, 2, 1, 2, 99], now=closure)
    assert model.last_events == (
        OrderCancelled(SLOT, 2, B, 100, 0, CancelReason.EXPIRED),
        OrderCancelled(SLOT, 1, A, 100, value_of(100, PRICE), CancelReason.EXPIRED),
    )
    assert model.best_prices(SLOT) == (0, 0)
    assert model.balance_of(A) == DEPOSIT - value_of(100, PRICE)


def test_removed_member_orders_fill_and_cancel() -> None:
    model = make_model()
    buy(model, B, PRICE, 100)
    buy(model, B, PRICE - 1, 100)
    model.remove_member(B)
    sell(model, A, PRICE, 100)
    assert model.position_of(SLOT, B) == Position(100, 0, value_of(100, PRICE), 0)
    model.cancel_order(B, 2, now=NOW)
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
    buy(model, A)
    model.deposit(A, 2**128 - 1 - model.balance_of(A))
    with raises("SafeCastOverflowedUintDowncast", 128, 2**128 - 1 + value_of(QTY, PRICE)):
        sell(model, A)
    assert model.get_order(1).remaining_wh == QTY


# ------------------------------------------------------------- random sequences

operations = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell", "cancel", "deposit", "withdraw", "expire", "batch"]),
        st.sampled_from([A, B, C, OUTSIDER]),
        st.integers(0, 2),  # slot offset
        st.integers(997, 1_004),  # price (band 998..1003)
        st.integers(5, 60),  # quantity (minimum 10)
        st.integers(0, 30),  # order id / amount selector
    ),
    min_size=20,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_random_sequences_keep_the_invariants(ops: list[tuple[str, str, int, int, int, int]]) -> None:
    """Solvency, an uncrossed book, FIFO ids within levels and all-or-nothing failures."""
    model = OrderBookModel(
        EPOCH, CONFIG.slot_seconds, replace(CONFIG.market, min_price_per_kwh=998, max_price_per_kwh=1_003, fill_cap=3)
    )
    for member in (A, B, C):
        model.add_member(member)
        model.deposit(member, 300)
    now = model.clock.gate_closure(SLOT) - 100
    for kind, who, offset, price, qty, pick in ops:
        slot = SLOT + offset
        before = state(model)
        try:
            if kind in ("buy", "sell"):
                model.place_order(who, slot, kind == "buy", price, qty, now=now)
            elif kind == "batch":
                model.place_orders(
                    who, [OrderRequest(slot, True, price, qty), OrderRequest(slot, False, price, qty)], now=now
                )
            elif kind == "cancel":
                model.cancel_order(who, pick, now=now)
            elif kind == "deposit":
                model.deposit(who, pick * 10)
            elif kind == "withdraw":
                model.withdraw(who, pick * 10)
            else:
                model.expire_orders(list(range(pick)), now=now)
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
    traded_wh = sum(t.qty_wh for t in model.trades)
    positions = [model.position_of(s, m) for s in range(SLOT, SLOT + 3) for m in (A, B, C)]
    assert sum(p.bought_wh for p in positions) == sum(p.sold_wh for p in positions) == traded_wh
    assert sum(p.paid for p in positions) == sum(p.received for p in positions) == sum(t.value for t in model.trades)

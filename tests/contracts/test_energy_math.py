"""EnergyMath.value (through CdaMarket): the value of q Wh at p per kWh is q * p // 1000,
rounded down, the same figure for payer and payee (peerwatt.units.value_of), exact up to
the largest quantity and price the market accepts."""

from dataclasses import replace

import pytest

from peerwatt.units import MAX_QTY_WH, value_of

MAX_PRICE = 2**32 - 1

CASES = [
    (1, 1),  # worth nothing
    (999, 1),  # still nothing: 0.999 base units
    (1_000, 1),
    (1_001, 999),
    (7, 142_857),
    (1_234_567, 250_000),
    (MAX_QTY_WH, 1),
    (MAX_QTY_WH, MAX_PRICE),  # the largest value the market computes, still below 2^64
    (4_294_967, MAX_PRICE),
]


@pytest.fixture
def wide_market(market, token, admin, config, members):
    """Whole price band, 1 Wh minimum, and balances large enough for any case."""
    market.setMarketParams(
        replace(config.market, min_price_per_kwh=1, max_price_per_kwh=MAX_PRICE, min_qty_wh=1).as_tuple(),
        {"from": admin},
    )
    for member in members[:2]:
        token.mint(member, 2**70, {"from": admin})
        market.deposit(2**70, {"from": member})
    return market


@pytest.mark.parametrize("qty, price", CASES)
def test_trade_value_is_the_same_for_payer_and_payee(wide_market, alice, bob, slot, qty, price, logs, plain):
    market = wide_market
    expected = value_of(qty, price)
    assert expected < 2**64
    ask = market.placeOrder(slot, False, price, qty, {"from": bob}).return_value
    balance = market.balanceOf(alice)
    tx = market.placeOrder(slot, True, price, qty, {"from": alice})
    assert logs(tx, "TradeExecuted") == [(slot, alice, bob, tx.return_value, ask, price, qty, False, 0)]
    assert plain(market.positionOf(slot, alice)) == (qty, 0, expected, 0)
    assert plain(market.positionOf(slot, bob)) == (0, qty, 0, expected)
    assert market.balanceOf(alice) == balance - expected


@pytest.mark.parametrize("qty, price", CASES)
def test_escrow_is_the_value_at_the_limit(wide_market, alice, slot, qty, price, plain):
    market = wide_market
    balance = market.balanceOf(alice)
    bid = market.placeOrder(slot, True, price, qty, {"from": alice}).return_value
    assert plain(market.getOrder(bid))[6] == value_of(qty, price)
    assert market.balanceOf(alice) == balance - value_of(qty, price)


def test_split_fills_never_pay_more_than_the_whole(wide_market, alice, bob, slot, plain):
    """Three fills of 333 Wh at 1003 per kWh are worth 333 each (333.999 rounded down), 999 in
    all, while 999 Wh at once are worth 1001: each payment is rounded down on its own."""
    market = wide_market
    for _ in range(3):
        market.placeOrder(slot, False, 1_003, 333, {"from": bob})
    market.placeOrder(slot, True, 1_003, 999, {"from": alice})
    paid = plain(market.positionOf(slot, alice))[2]
    assert paid == 3 * value_of(333, 1_003) == 999
    assert paid <= value_of(999, 1_003) == 1_001
    assert plain(market.positionOf(slot, bob))[3] == paid

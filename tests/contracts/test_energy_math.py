"""EnergyMath.value (through CdaMarket): the value of q Wh at p per kWh is q * p // 1000,
rounded down, the same figure for payer and payee (peerwatt.units.value_of), exact up to
the largest quantity and price the market accepts.

With a tick of 1 (the ``market`` fixture) prices go up to MAX_PRICE_TICKS (2^24 - 1); the
highest price of any market, 2^32 - 256, takes a tick of 256 (``top_market``)."""

from dataclasses import replace

import pytest

from peerwatt.orderbook_model import MAX_PRICE_TICKS
from peerwatt.units import MAX_QTY_WH, value_of

TOP_TICK = 256  # the largest tick whose MAX_PRICE_TICKS ticks fit in uint32
MAX_PRICE = MAX_PRICE_TICKS * TOP_TICK  # 2^32 - 256

CASES = [
    (1, 1),  # worth nothing
    (999, 1),  # still nothing: 0.999 base units
    (1_000, 1),
    (1_001, 999),
    (7, 142_857),
    (1_234_567, 250_000),
    (MAX_QTY_WH, 1),
    (MAX_QTY_WH, MAX_PRICE_TICKS),  # the highest price with tick 1
    (MAX_QTY_WH, MAX_PRICE),  # the largest value the market computes, still below 2^64
    (4_294_967, MAX_PRICE),
]


@pytest.fixture(scope="module")
def top_market(deploy_community, config):
    """A market with tick 256 and the band [256, 2^32 - 256], 1 Wh minimum."""
    params = replace(config.market, min_price_per_kwh=TOP_TICK, max_price_per_kwh=MAX_PRICE, min_qty_wh=1)
    return deploy_community(replace(config, price_tick=TOP_TICK, market=params))


@pytest.fixture
def wide_market(market, top_market, token, admin, config, members):
    """``wide_market(price)``: a market that takes ``price`` and a slot open in it, with 1 Wh
    minimum and balances large enough for any case: the ``market`` fixture with its whole band
    [1, MAX_PRICE_TICKS] (tick 1), or ``top_market`` for a higher price."""

    def pick(price):
        if price <= MAX_PRICE_TICKS:
            chosen = market
            params = replace(config.market, min_price_per_kwh=1, max_price_per_kwh=MAX_PRICE_TICKS, min_qty_wh=1)
            chosen.setMarketParams(params.as_tuple(), {"from": admin})
        else:
            chosen = top_market
            assert price % chosen.priceTick() == 0
        for member in members[:2]:
            token.mint(member, 2**70, {"from": admin})
            chosen.deposit(2**70, {"from": member})
        return chosen, chosen.nextOpenSlot() + 1

    return pick


@pytest.mark.parametrize("qty, price", CASES)
def test_trade_value_is_the_same_for_payer_and_payee(wide_market, alice, bob, qty, price, logs, plain):
    market, slot = wide_market(price)
    expected = value_of(qty, price)
    assert expected < 2**64
    ask = market.placeOrder(slot, False, price, qty, {"from": bob}).return_value
    balance = market.balanceOf(alice)
    tx = market.placeOrder(slot, True, price, qty, {"from": alice})
    assert logs(tx, "TradeExecuted") == [(slot, alice, bob, tx.return_value, ask, price, qty, False)]
    assert plain(market.positionOf(slot, alice)) == (qty, 0, expected, 0)
    assert plain(market.positionOf(slot, bob)) == (0, qty, 0, expected)
    assert market.balanceOf(alice) == balance - expected


@pytest.mark.parametrize("qty, price", CASES)
def test_escrow_is_the_value_at_the_limit(wide_market, alice, qty, price, plain):
    market, slot = wide_market(price)
    balance = market.balanceOf(alice)
    bid = market.placeOrder(slot, True, price, qty, {"from": alice}).return_value
    assert plain(market.getOrder(bid))[6] == value_of(qty, price)
    assert market.balanceOf(alice) == balance - value_of(qty, price)


def test_split_fills_never_pay_more_than_the_whole(wide_market, alice, bob, plain):
    """Three fills of 333 Wh at 1003 per kWh are worth 333 each (333.999 rounded down), 999 in
    all, while 999 Wh at once are worth 1001: each payment is rounded down on its own."""
    market, slot = wide_market(1_003)
    for _ in range(3):
        market.placeOrder(slot, False, 1_003, 333, {"from": bob})
    market.placeOrder(slot, True, 1_003, 999, {"from": alice})
    paid = plain(market.positionOf(slot, alice))[2]
    assert paid == 3 * value_of(333, 1_003) == 999
    assert paid <= value_of(999, 1_003) == 1_001
    assert plain(market.positionOf(slot, bob))[3] == paid

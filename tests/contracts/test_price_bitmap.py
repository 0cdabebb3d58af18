"""PriceBitmap (through CdaMarket): best-price search and book traversal at the edges of the
three-level bitmap, which the market indexes in price ticks (``price / tick``, below 2^24) --
tick 1, the lowest and highest tick (MAX_PRICE_TICKS), and levels on both sides of the 256 and
65536 word boundaries -- for resting, cancelling (bitmap clear) and matching (bitmap walk); and
the same with a tick of 1000, where the bitmap holds ticks, not prices."""

import random
from dataclasses import replace

import brownie
import pytest

from peerwatt.config import MarketParams
from peerwatt.orderbook_model import MAX_PRICE_TICKS

MAX_PRICE = MAX_PRICE_TICKS  # the highest price with the ``market`` fixture's tick of 1
EDGE_PRICES = [
    1,
    2,
    255,
    256,
    257,
    511,
    512,
    65_535,
    65_536,
    65_537,
    2**23,
    MAX_PRICE - 65_536,  # the last tick of the second-to-last depth-1 word
    MAX_PRICE - 65_535,  # the first tick of the last one
    MAX_PRICE - 256,
    MAX_PRICE - 255,  # the first tick of the last depth-0 word
    MAX_PRICE - 1,
    MAX_PRICE,
]


@pytest.fixture
def full_band(market, admin, config):
    """The whole price band of tick 1, [1, MAX_PRICE_TICKS], 1 Wh minimum."""
    market.setMarketParams(
        replace(config.market, min_price_per_kwh=1, max_price_per_kwh=MAX_PRICE, min_qty_wh=1).as_tuple(),
        {"from": admin},
    )


def place_all(market, who, slot, is_buy, prices, qty=1):
    """One order per price, in the given order (a batch keeps it fast); returns their ids by
    price."""
    tx = market.placeOrders([(slot, is_buy, price, qty) for price in prices], {"from": who})
    return dict(zip(prices, tx.return_value, strict=True))


def side_prices(market, slot, is_buy, plain):
    return [order[4] for order in plain(market.bookSide(slot, is_buy, 100))]


@pytest.mark.parametrize("is_buy", [True, False])
def test_edge_prices_rest_in_price_order(market, full_band, alice, slot, plain, is_buy):
    shuffled = EDGE_PRICES[:]
    random.Random(1).shuffle(shuffled)
    place_all(market, alice, slot, is_buy, shuffled)
    expected = sorted(EDGE_PRICES, reverse=is_buy)
    assert side_prices(market, slot, is_buy, plain) == expected
    best = plain(market.bestPrices(slot))
    assert best == ((MAX_PRICE, 0) if is_buy else (0, 1))


@pytest.mark.parametrize("is_buy", [True, False])
def test_cancelling_the_best_level_finds_the_next_across_words(market, full_band, alice, slot, plain, is_buy):
    ids = place_all(market, alice, slot, is_buy, EDGE_PRICES)
    remaining = sorted(EDGE_PRICES, reverse=is_buy)
    while remaining:
        market.cancelOrder(ids[remaining.pop(0)], {"from": alice})
        best = remaining[0] if remaining else 0
        assert plain(market.bestPrices(slot)) == ((best, 0) if is_buy else (0, best))
        assert side_prices(market, slot, is_buy, plain) == remaining


@pytest.mark.parametrize("is_buy", [True, False])
def test_cancelling_from_the_worst_end_keeps_the_best(market, full_band, alice, slot, plain, is_buy):
    ids = place_all(market, alice, slot, is_buy, EDGE_PRICES)
    remaining = sorted(EDGE_PRICES, reverse=is_buy)
    best = remaining[0]
    while len(remaining) > 1:
        market.cancelOrder(ids[remaining.pop()], {"from": alice})
        assert plain(market.bestPrices(slot)) == ((best, 0) if is_buy else (0, best))
        assert side_prices(market, slot, is_buy, plain) == remaining


def test_prices_beyond_the_top_tick_are_out_of_band(market, full_band, alice, slot, error_pattern):
    """The band ends at MAX_PRICE_TICKS ticks: the next price is out of it, and so is a band
    reaching it (see test_community_registry.py)."""
    with brownie.reverts(revert_pattern=error_pattern("MarketPriceOutOfBand", MAX_PRICE + 1, 1, MAX_PRICE)):
        market.placeOrder(slot, False, MAX_PRICE + 1, 1, {"from": alice})


def test_buy_sweeps_asks_across_all_words(market, full_band, alice, bob, slot, logs, plain):
    prices = EDGE_PRICES[:10]
    random.Random(2).shuffle(prices)
    place_all(market, bob, slot, False, prices)
    tx = market.placeOrder(slot, True, MAX_PRICE, len(prices), {"from": alice})
    assert [trade[5] for trade in logs(tx, "TradeExecuted")] == sorted(prices)
    assert plain(market.bestPrices(slot)) == (0, 0)
    assert plain(market.bookSide(slot, False, 10)) == ()


def test_sell_sweeps_bids_across_all_words(market, full_band, alice, bob, slot, logs, plain):
    prices = EDGE_PRICES[-10:]
    place_all(market, bob, slot, True, prices)
    tx = market.placeOrder(slot, False, 1, len(prices) + 3, {"from": alice})
    assert [trade[5] for trade in logs(tx, "TradeExecuted")] == sorted(prices, reverse=True)
    assert plain(market.bestPrices(slot)) == (0, 1)  # the rest of the sell rests at price 1
    assert side_prices(market, slot, False, plain) == [1]


def test_partial_sweep_stops_at_the_limit_across_a_boundary(market, full_band, alice, bob, slot, logs, plain):
    place_all(market, bob, slot, False, [255, 256, 65_535, 65_536])
    tx = market.placeOrder(slot, True, 65_535, 5, {"from": alice})
    assert [trade[5] for trade in logs(tx, "TradeExecuted")] == [255, 256, 65_535]
    assert plain(market.bestPrices(slot)) == (65_535, 65_536)


def test_emptied_words_are_found_again(market, full_band, alice, slot, plain):
    """Clearing the last level of a word clears its parents; setting a level in a sibling or
    an unrelated word afterwards must be found by the search from any depth."""
    ids = place_all(market, alice, slot, True, [65_536])
    market.cancelOrder(ids[65_536], {"from": alice})
    assert plain(market.bestPrices(slot)) == (0, 0)
    ids = place_all(market, alice, slot, True, [65_537, 1])
    assert plain(market.bestPrices(slot)) == (65_537, 0)
    market.cancelOrder(ids[65_537], {"from": alice})
    assert plain(market.bestPrices(slot)) == (1, 0)
    ids = place_all(market, alice, slot, True, [2**23 + 255, MAX_PRICE])
    market.cancelOrder(ids[MAX_PRICE], {"from": alice})
    assert plain(market.bestPrices(slot)) == (2**23 + 255, 0)
    assert side_prices(market, slot, True, plain) == [2**23 + 255, 1]


def test_sides_and_slots_have_separate_bitmaps(market, full_band, alice, slot, plain):
    place_all(market, alice, slot, True, [100])
    place_all(market, alice, slot, False, [300])
    place_all(market, alice, slot + 1, True, [200])
    assert plain(market.bestPrices(slot)) == (100, 300)
    assert plain(market.bestPrices(slot + 1)) == (200, 0)
    assert side_prices(market, slot, True, plain) == [100]


def test_random_levels_against_sorting(market, full_band, alice, slot, plain):
    """Many levels spread over all depths (incl. shared words), cancelled in random order."""
    rng = random.Random(3)
    prices = sorted(
        {rng.choice([rng.randint(1, 600), rng.randint(65_000, 66_000), rng.randint(1, MAX_PRICE)]) for _ in range(30)}
    )
    shuffled = prices[:]
    rng.shuffle(shuffled)
    ids = place_all(market, alice, slot, True, shuffled)
    assert side_prices(market, slot, True, plain) == sorted(prices, reverse=True)
    rng.shuffle(shuffled)
    left = set(prices)
    for price in shuffled:
        market.cancelOrder(ids[price], {"from": alice})
        left.discard(price)
        assert plain(market.bestPrices(slot)) == (max(left, default=0), 0)
    assert side_prices(market, slot, True, plain) == []


# ------------------------------------------------------------------- tick of 1000

TICK = 1_000
TOP_TICK = (2**32 - 1) // TICK  # 4_294_967: the highest tick whose price fits in uint32
TICK_EDGES = [1, 2, 255, 256, 257, 65_535, 65_536, 65_537, TOP_TICK // 256 * 256 - 1, TOP_TICK // 256 * 256, TOP_TICK]
TICK_PRICES = [TICK * index for index in TICK_EDGES]


@pytest.fixture
def ticked(ticked_market, admin):
    """The ``ticked_market`` fixture (tick 1000) with the widest band of its tick, [1000,
    4_294_967_000], and 1 Wh minimum; returns the market and a slot open for trading."""
    params = MarketParams(TICK, TICK * TOP_TICK, 1, 300, 20)
    ticked_market.setMarketParams(params.as_tuple(), {"from": admin})
    return ticked_market, ticked_market.nextOpenSlot() + 1


@pytest.mark.parametrize("is_buy", [True, False])
def test_ticks_rest_in_price_order(ticked, alice, plain, is_buy):
    """Prices are kept in the bitmap as ticks: levels at the edges of its words in ticks (and at
    the top tick, 4_294_967_000 per kWh, whose price is far above 2^24) show in price order, and
    cancelling the best level finds the next across words."""
    market, slot = ticked
    assert market.priceTick() == TICK
    shuffled = TICK_PRICES[:]
    random.Random(4).shuffle(shuffled)
    ids = place_all(market, alice, slot, is_buy, shuffled)
    remaining = sorted(TICK_PRICES, reverse=is_buy)
    assert side_prices(market, slot, is_buy, plain) == remaining
    assert [order[0] for order in plain(market.bookSide(slot, is_buy, 100))] == [ids[price] for price in remaining]
    while remaining:
        best = remaining[0]
        assert plain(market.bestPrices(slot)) == ((best, 0) if is_buy else (0, best))
        market.cancelOrder(ids[remaining.pop(0)], {"from": alice})
        assert side_prices(market, slot, is_buy, plain) == remaining
    assert plain(market.bestPrices(slot)) == (0, 0)


def test_ticks_match_across_words(ticked, alice, bob, logs, plain):
    """A buy at the top tick sweeps asks across words at their own prices, lowest first; a sell
    at the lowest tick sweeps bids highest first, and its rest becomes the best ask."""
    market, slot = ticked
    place_all(market, bob, slot, False, TICK_PRICES)
    tx = market.placeOrder(slot, True, TICK * TOP_TICK, len(TICK_PRICES) - 1, {"from": alice})
    assert [trade[5] for trade in logs(tx, "TradeExecuted")] == TICK_PRICES[:-1]
    assert plain(market.bestPrices(slot)) == (0, TICK * TOP_TICK)
    place_all(market, bob, slot, True, TICK_PRICES[:-1])
    tx = market.placeOrder(slot, False, TICK, len(TICK_PRICES) + 1, {"from": alice})
    assert [trade[5] for trade in logs(tx, "TradeExecuted")] == TICK_PRICES[-2::-1]
    assert plain(market.bestPrices(slot)) == (0, TICK)
    assert side_prices(market, slot, False, plain) == [TICK, TICK * TOP_TICK]


def test_ticks_partial_sweep_stops_at_the_limit_across_a_boundary(ticked, alice, bob, logs, plain):
    market, slot = ticked
    place_all(market, bob, slot, False, [255 * TICK, 256 * TICK, 65_535 * TICK, 65_536 * TICK])
    tx = market.placeOrder(slot, True, 65_535 * TICK, 5, {"from": alice})
    assert [trade[5] for trade in logs(tx, "TradeExecuted")] == [255 * TICK, 256 * TICK, 65_535 * TICK]
    assert plain(market.bestPrices(slot)) == (65_535 * TICK, 65_536 * TICK)

"""peerwatt.market.Market in-process against a real anvil chain (started by the CLI): batch
placement, self-trade and fill-cap outcomes, views and trades in execution order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from peerwatt_cli import Cli, free_port, stop_quietly

from peerwatt.chain import connect
from peerwatt.deployment import load_checked
from peerwatt.dev_keys import key_store_path, load_dev_keys
from peerwatt.errors import ContractRevertError
from peerwatt.market import CancelReason, Market, OrderRequest, Side
from peerwatt.order_ids import first_seq, order_id_at
from peerwatt.transactions import call

FILL_CAP = 2


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A 3-member community deployed by the CLI on its own anvil."""
    cli = Cli(tmp_path_factory.mktemp("client"), free_port())
    try:
        cli.ok("chain", "start", "--engine", "anvil")
        cli.ok("deploy", "--members", 3, "--fill-cap", FILL_CAP)
        yield cli
    finally:
        stop_quietly(cli.port)


@pytest.fixture(scope="module")
def deployment_file(community: Cli) -> Path:
    return Path(community.deployment)


@pytest.fixture(scope="module")
def market(community: Cli, deployment_file: Path) -> Market:
    w3 = connect(community.rpc_url)
    return Market(w3, load_checked(w3, deployment_file)[0])


_SLOT_OFFSETS = itertools.count(1)


@pytest.fixture
def slot(market: Market) -> int:
    """A slot of its own per test (books do not interfere), open for the whole test."""
    return market.slot_clock().next_open_slot(market.now()) + next(_SLOT_OFFSETS)


def test_batch_outcomes_and_self_trade(market: Market, slot: int) -> None:
    [ask] = market.place_batch("member0", [OrderRequest(slot, Side.SELL, 250_000, 100)])
    crossing, resting = market.place_batch(
        "member0", [OrderRequest(slot, Side.BUY, 260_000, 100), OrderRequest(slot, Side.SELL, 300_000, 50)]
    )
    # each order opens a price level: places created with the slot's nonces 1, 2, 3
    assert [ask.order_id, crossing.order_id, resting.order_id] == [
        order_id_at(slot, False, 250_000, first_seq(1)),
        order_id_at(slot, True, 260_000, first_seq(2)),
        order_id_at(slot, False, 300_000, first_seq(3)),
    ]
    # the member's own ask is cancelled instead of traded, and the bid rests
    assert crossing.events.trades == ()
    [self_trade] = crossing.events.cancellations
    assert (self_trade.order_id, self_trade.reason) == (ask.order_id, CancelReason.SELF_TRADE)
    assert crossing.resting_wh == 100 and resting.resting_wh == 50
    assert market.best_prices(slot) == (260_000, 300_000)
    assert market.order(crossing.order_id).escrow == 26_000


def test_fill_cap_drops_the_rest_of_a_crossing_order(market: Market, slot: int) -> None:
    market.place_batch("member0", [OrderRequest(slot, Side.SELL, 200_000 + 1_000 * i, 100) for i in range(3)])
    [taker] = market.place_batch("member1", [OrderRequest(slot, Side.BUY, 210_000, 500)])
    assert taker.traded_wh == 200 and taker.dropped_wh == 300 and taker.resting_wh == 0
    assert [c.reason for c in taker.events.cancellations] == [CancelReason.FILL_CAP]
    assert [(o.price_per_kwh, o.remaining_wh) for o in market.book_side(slot, Side.SELL)] == [(202_000, 100)]
    assert market.book_side(slot, Side.BUY) == []


def test_trades_in_execution_order(market: Market, slot: int) -> None:
    market.place("member0", OrderRequest(slot, Side.SELL, 240_000, 100))
    market.place("member2", OrderRequest(slot, Side.SELL, 230_000, 100))
    first = market.place("member1", OrderRequest(slot, Side.BUY, 250_000, 150))
    second = market.place("member2", OrderRequest(slot, Side.BUY, 250_000, 50))
    trades = market.trades(slot)
    assert [(t.price_per_kwh, t.qty_wh, t.tx_hash) for t in trades] == [
        (230_000, 100, first.events.tx_hash),  # best price first within one transaction
        (240_000, 50, first.events.tx_hash),
        (240_000, 50, second.events.tx_hash),
    ]
    assert trades[0].value == 23_000
    assert market.trades(slot + 1000) == []


def test_deploy_gives_each_dev_member_a_registered_meter_key(market: Market, deployment_file: Path) -> None:
    deployment = market.deployment
    keys = load_dev_keys(key_store_path(deployment_file))
    assert [key.member for key in keys] == list(deployment.members) == list(deployment.meters)
    for key in keys:
        assert Account.from_key(key.private_key).address == key.address == deployment.meters[key.member]
        member, _, from_slot, until_slot, has_reading, *_ = call(
            market.w3, deployment.oracle, "MeterOracle", "meter", key.address
        )[0]
        assert member.lower() == deployment.members[key.member].lower()
        assert (from_slot, until_slot, has_reading) == (0, 2**32 - 1, False)


def test_a_missing_order_is_a_decoded_revert(market: Market) -> None:
    with pytest.raises(ContractRevertError) as caught:
        market.order(10**9)
    assert caught.value.error == "MarketOrderNotFound"

"""Replay a CSV of orders through Brownie, like `peerwatt orders replay FILE`:

    brownie run scripts/orders_replay.py main orders.csv --network peerwatt-anvil
"""

from __future__ import annotations

from pathlib import Path

from brownie import web3

from peerwatt.deployment import load_checked
from peerwatt.market import Market
from peerwatt.replay import CommunityRules, ReplayResult, read_rows, replay


def main(csv_file: str) -> ReplayResult:
    deployment, _ = load_checked(web3, None)
    market = Market(web3, deployment)
    rules = CommunityRules(deployment.members, market.market_params(), market.slot_clock(), market.now())
    result = replay(market, read_rows(Path(csv_file), rules))
    print(
        f"{result.rows} rows, {result.transactions} transactions, {result.placed} placed, "
        f"{result.cancelled} cancelled, {result.trades} trades, {result.orders_per_second:.0f} orders/s"
    )
    for failure in result.failures:
        print(f"failed: {failure.describe()}")
    return result

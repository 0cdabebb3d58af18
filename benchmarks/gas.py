"""Gas of the market's frequent operations, measured on a local anvil through Brownie.

Gas is deterministic, so one run of each scenario is the figure. Every scenario starts from the
same funded community (a chain snapshot) and measures one transaction's receipt gas (after
refunds, as a member pays it). Results go to benchmarks/results/gas.json and a Markdown table
to stdout (the table in README.md comes from it).

    python benchmarks/gas.py [--port 8710] [--out benchmarks/results/gas.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any, Callable

from community import launch_community

from peerwatt.config import CommunityConfig
from peerwatt.toolchain import PROJECT_ROOT

MEMBERS = 16
PRICE = 250_000
TICK = CommunityConfig().price_tick  # the deployed default: one bitmap word covers 256 ticks
QTY = 1_000

# operation -> (target gas, anchor from the issue)
TARGETS: dict[str, tuple[int | None, str]] = {
    "place_rest_existing_level_buy": (70_000, "85k-127k"),
    "place_rest_existing_level_sell": (70_000, "85k-127k"),
    "place_new_level": (95_000, "85k-127k"),
    "place_new_level_new_bitmap_word": (95_000, "85k-127k"),
    "place_full_fill_one_new_positions": (100_000, "125k-155k"),
    "place_full_fill_one_existing_positions": (100_000, "125k-155k"),
    "place_full_fill_one_new_positions_live_book": (100_000, "125k-155k"),
    "additional_fill_maker_has_position": (15_000, "9.4k-23k"),
    "additional_fill_maker_first_in_slot": (15_000, "9.4k-23k"),
    "cancel_order_middle_of_level": (40_000, "-"),
    "cancel_order_lone_best_level": (40_000, "-"),
    "cancel_order_lone_best_level_live_book": (40_000, "-"),
    "batch_place_per_order_resting_x20": (None, "-"),
    "deposit": (None, "-"),
    "withdraw": (None, "-"),
    "expire_per_order_x20": (None, "-"),
}


class Bench:
    """A deployed community on a Brownie-launched anvil, reset to a snapshot per scenario."""

    def __init__(self, port: int) -> None:
        community = launch_community(port, MEMBERS, "PeerwattGasBench")
        self.chain, self.market, self.members = community.chain, community.market, community.members
        self.slot = self.market.nextOpenSlot() + 1
        self.chain.snapshot()

    def place(self, member: int, is_buy: bool, price: int = PRICE, qty: int = QTY) -> Any:
        return self.market.placeOrder(self.slot, is_buy, price, qty, {"from": self.members[member]})

    def run(self, scenario: Callable[["Bench"], int]) -> int:
        self.chain.revert()
        return scenario(self)


def rest_existing(is_buy: bool) -> Callable[[Bench], int]:
    def scenario(b: Bench) -> int:
        b.place(0, is_buy)
        return b.place(1, is_buy).gas_used

    return scenario


def new_level(offset: int) -> Callable[[Bench], int]:
    def scenario(b: Bench) -> int:
        b.place(0, True, PRICE)
        return b.place(1, True, PRICE - offset).gas_used

    return scenario


def live_book(b: Bench) -> None:
    """Other price levels on both sides, as in a trading slot: emptying the measured level then
    clears one bitmap word instead of all four."""
    b.place(12, True, PRICE - 50_000)
    b.place(12, True, PRICE - TICK)
    b.place(13, False, PRICE + 50_000)
    b.place(13, False, PRICE + TICK)


def full_fill_one(existing_positions: bool, live: bool = False) -> Callable[[Bench], int]:
    def scenario(b: Bench) -> int:
        if live:
            live_book(b)
        if existing_positions:  # both members traded in this slot before
            b.place(0, False, PRICE, 10)
            b.place(1, True, PRICE, 10)
        b.place(0, False)
        return b.place(1, True).gas_used

    return scenario


def sweep(makers: int, maker_has_position: bool) -> int:
    """Gas of one buy that fills `makers` resting sells of distinct members."""

    def scenario(b: Bench) -> int:
        taker = 15
        b.place(taker, False, PRICE, 10)  # the taker's position exists in both variants
        b.place(14, True, PRICE, 10)
        if maker_has_position:  # each maker sells 10 Wh first, so its position word exists
            for maker in range(1, makers + 1):
                b.place(maker, False, PRICE, 10)
                b.place(0, True, PRICE, 10)
        for maker in range(1, makers + 1):
            b.place(maker, False, PRICE, QTY)
        return b.place(taker, True, PRICE, QTY * makers).gas_used

    return scenario


def additional_fill(maker_has_position: bool) -> Callable[[Bench], int]:
    def scenario(b: Bench) -> int:
        one = b.run(lambda bb: sweep(1, maker_has_position)(bb))
        six = b.run(lambda bb: sweep(6, maker_has_position)(bb))
        return round((six - one) / 5)

    return scenario


def cancel(lone: bool, live: bool = False) -> Callable[[Bench], int]:
    def scenario(b: Bench) -> int:
        if live:
            live_book(b)
        if lone:
            order = b.place(0, True, PRICE).return_value
        else:
            b.place(0, True, PRICE)
            order = b.place(0, True, PRICE).return_value
            b.place(0, True, PRICE)
        return b.market.cancelOrder(order, {"from": b.members[0]}).gas_used

    return scenario


def batch_place(b: Bench) -> int:
    orders = [(b.slot, True, PRICE - 1000 * (i % 5), QTY) for i in range(20)]
    b.place(1, True, PRICE)  # levels exist, as in a live book
    return round(b.market.placeOrders(orders, {"from": b.members[0]}).gas_used / 20)


def deposit(b: Bench) -> int:
    return b.market.deposit(10**6, {"from": b.members[0]}).gas_used


def withdraw(b: Bench) -> int:
    return b.market.withdraw(10**6, {"from": b.members[0]}).gas_used


def expire(b: Bench) -> int:
    ids = [b.place(i % MEMBERS, True, PRICE - 1000 * (i % 5)).return_value for i in range(20)]
    b.chain.sleep(b.market.gateClosure(b.slot) - b.chain.time() + 1)
    b.chain.mine()
    return round(b.market.expireOrders(ids, {"from": b.members[0]}).gas_used / 20)


def deep_book(b: Bench, orders: int = 1000) -> None:
    """Fills the book with `orders` resting orders on both sides, away from PRICE."""
    rng = random.Random(7)
    batch: list[tuple[int, bool, int, int]] = []
    for i in range(orders):
        is_buy = i % 2 == 0
        price = TICK * (rng.randint(100, 200) if is_buy else rng.randint(300, 400))
        batch.append((b.slot, is_buy, price, rng.randint(10, 5_000)))
        if len(batch) == 50:
            b.market.placeOrders(batch, {"from": b.members[2 + (i // 50) % 12]})
            batch = []


def with_deep_book(scenario: Callable[[Bench], int]) -> Callable[[Bench], int]:
    def deep(b: Bench) -> int:
        deep_book(b)
        return scenario(b)

    return deep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8710)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "gas.json")
    args = parser.parse_args()
    bench = Bench(args.port)

    measured: dict[str, int] = {
        "place_rest_existing_level_buy": bench.run(rest_existing(True)),
        "place_rest_existing_level_sell": bench.run(rest_existing(False)),
        # 0.03 token/kWh below the best bid (and between the deep book's sides): the same
        # bitmap word (256 ticks)
        "place_new_level": bench.run(new_level(30_000)),
        # the best bid becomes 260_000, tick 260: the first level of the next bitmap word
        "place_new_level_new_bitmap_word": bench.run(new_level(-10_000)),
        "place_full_fill_one_new_positions": bench.run(full_fill_one(False)),
        "place_full_fill_one_existing_positions": bench.run(full_fill_one(True)),
        "place_full_fill_one_new_positions_live_book": bench.run(full_fill_one(False, live=True)),
        "additional_fill_maker_has_position": additional_fill(True)(bench),
        "additional_fill_maker_first_in_slot": additional_fill(False)(bench),
        "cancel_order_middle_of_level": bench.run(cancel(False)),
        "cancel_order_lone_best_level": bench.run(cancel(True)),
        "cancel_order_lone_best_level_live_book": bench.run(cancel(True, live=True)),
        "batch_place_per_order_resting_x20": bench.run(batch_place),
        "deposit": bench.run(deposit),
        "withdraw": bench.run(withdraw),
        "expire_per_order_x20": bench.run(expire),
    }
    empty_rest = measured["place_rest_existing_level_buy"]
    deep_rest = bench.run(with_deep_book(rest_existing(True)))
    empty_new = measured["place_new_level"]
    deep_new = bench.run(with_deep_book(new_level(30_000)))
    depth = {
        "place_rest_existing_level_buy": {"empty_book": empty_rest, "book_1000_orders": deep_rest},
        "place_new_level": {"empty_book": empty_new, "book_1000_orders": deep_new},
    }
    for row in depth.values():
        row["increase_pct"] = round(100 * (row["book_1000_orders"] / row["empty_book"] - 1), 2)

    results: dict[str, Any] = {
        "chain": "anvil (Brownie-launched), EVM shanghai, solc 0.8.37 via-IR, optimizer runs 10000",
        "operations": {
            name: {
                "gas": gas,
                "target": TARGETS[name][0],
                "anchor": TARGETS[name][1],
                "meets_target": None if TARGETS[name][0] is None else gas <= TARGETS[name][0],
            }
            for name, gas in measured.items()
        },
        "book_depth": {**depth, "target_increase_pct": 10},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print("| operation | gas | target | anchor |")
    print("|---|---:|---:|---|")
    for name, row in results["operations"].items():
        target = "report" if row["target"] is None else f"<= {row['target']:,}"
        mark = "" if row["meets_target"] in (None, True) else " (missed)"
        print(f"| {name} | {row['gas']:,}{mark} | {target} | {row['anchor']} |")
    for name, row in depth.items():
        print(
            f"| {name}, 1,000 resting orders vs empty | {row['book_1000_orders']:,} vs {row['empty_book']:,} "
            f"({row['increase_pct']:+}%) | within +10% | O(log n)-O(n) |"
        )


if __name__ == "__main__":
    main()

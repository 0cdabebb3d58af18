"""The main flow of the ``peerwatt`` command line on ganache and on anvil: chain start, deploy,
members, slot, order place/cancel, book, trades, orders replay, chain advance past gate
closure, orders expire, session and chain stop."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from peerwatt_cli import ENGINES, Cli, write_csv

from peerwatt.order_ids import first_seq, order_id_at

TRADE_HEADER = "slot,buy_order,sell_order,buyer,seller,price,qty_wh,maker_side,tx_hash"


def place(member: str, slot: int, side: str, price: int, qty: int) -> list[object]:
    return ["order", "place", "--member", member, "--slot", slot, "--side", side, "--price", price, "--qty", qty]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("engine", ENGINES)
def test_main_flow(engine: str, new_cli: Callable[[], Cli], tmp_path: Path) -> None:
    cli = new_cli()

    started = cli.ok("chain", "start", "--engine", engine, "--port", cli.port)
    assert f"{engine} chain started at {cli.rpc_url}" in started.stdout
    status = cli.ok("chain", "status")
    assert any(line.split()[:2] == [str(cli.port), engine] and "answering" in line for line in status.lines())

    cli.ok("deploy", "--members", 4)
    assert cli.deployment.exists()

    members = csv_rows(cli.ok("members", "--format", "csv").stdout)
    assert [m["name"] for m in members] == ["member0", "member1", "member2", "member3"]
    assert all(int(m["balance"]) == 500_000_000 for m in members)
    address = {m["name"]: m["address"] for m in members}
    assert cli.ok("members", "--format", "json").json() == [
        {"name": m["name"], "address": m["address"], "balance": int(m["balance"])} for m in members
    ]

    slot_info = cli.ok("slot", "--format", "json").json()
    assert slot_info["next_open_slot"] > slot_info["current_slot"]
    assert "next open slot" in cli.ok("slot").stdout
    slot = slot_info["next_open_slot"] + 1  # open for at least one more slot length

    # ids (peerwatt.order_ids): an order's place in its price level; a level is created with the
    # slot's next nonce, and an order that crosses the book takes a fresh level's first place
    ask_1 = order_id_at(slot, False, 240_000, first_seq(1))
    bid_2 = order_id_at(slot, True, 250_000, first_seq(2))
    # two orders: the buy fills 1500 Wh of the resting ask at the ask's price
    placed = cli.ok(*place("member0", slot, "sell", 240_000, 2000))
    assert placed.stdout.startswith(f"order {ask_1}:") and "2000 Wh resting" in placed.stdout
    taken = cli.ok(*place("member1", slot, "buy", 250_000, 1500))
    assert "1 trade, 1500 Wh traded, 0 Wh resting" in taken.stdout

    book = cli.ok("book", "--slot", slot, "--format", "json").json()
    assert book["best_ask"] == 240_000 and book["best_bid"] == 0
    assert [(o["order_id"], o["member"], o["remaining_wh"]) for o in book["asks"]] == [(ask_1, "member0", 500)]
    assert "member0" in cli.ok("book", "--slot", slot).stdout

    trades_csv = cli.ok("trades", "--slot", slot, "--format", "csv").stdout
    assert trades_csv.splitlines()[0] == TRADE_HEADER
    [trade] = csv_rows(trades_csv)
    assert trade["buyer"] == address["member1"] and trade["seller"] == address["member0"]
    assert (trade["buy_order"], trade["sell_order"], trade["price"], trade["qty_wh"], trade["maker_side"]) == (
        str(bid_2), str(ask_1), "240000", "1500", "sell",
    )  # fmt: skip
    assert trade["tx_hash"].startswith("0x") and len(trade["tx_hash"]) == 66

    # replay: a cancel of an earlier row, then a buy that sweeps two asks (nonces 3..6)
    orders_csv = write_csv(
        tmp_path / "orders.csv",
        [
            f"place,r1,member2,{slot},sell,245000,1000",
            f"place,r2,member2,{slot},sell,246000,1000",
            f"place,r3,member3,{slot},buy,230000,500",
            "cancel,r2,member2,,,,",
            f"place,r4,member3,{slot},buy,246000,1200",
        ],
    )
    ids_out = tmp_path / "ids.csv"
    replayed = cli.ok("orders", "replay", orders_csv, "--ids-out", ids_out)
    assert "replayed 5 rows" in replayed.stdout and "4 orders placed, 1 cancelled, 2 trades" in replayed.stdout
    assert "orders/s" in replayed.stdout
    r1, r2 = order_id_at(slot, False, 245_000, first_seq(3)), order_id_at(slot, False, 246_000, first_seq(4))
    r3, r4 = order_id_at(slot, True, 230_000, first_seq(5)), order_id_at(slot, True, 246_000, first_seq(6))
    assert csv_rows(ids_out.read_text()) == [
        {"ref": ref, "order_id": str(order_id)} for ref, order_id in (("r1", r1), ("r2", r2), ("r3", r3), ("r4", r4))
    ]

    trades = cli.ok("trades", "--slot", slot, "--format", "json").json()
    assert [(t["buy_order"], t["sell_order"], t["price"], t["qty_wh"], t["maker_side"]) for t in trades] == [
        (bid_2, ask_1, 240_000, 1500, "sell"),
        (r4, ask_1, 240_000, 500, "sell"),  # price-time priority: the best ask first
        (r4, r1, 245_000, 700, "sell"),
    ]
    book = cli.ok("book", "--slot", slot, "--format", "json").json()
    assert [(o["order_id"], o["remaining_wh"]) for o in book["asks"]] == [(r1, 300)]
    assert [(o["order_id"], o["remaining_wh"], o["escrow"]) for o in book["bids"]] == [(r3, 500, 115_000)]

    cancelled = cli.ok("order", "cancel", "--member", "member3", "--order", r3)
    assert f"order {r3} cancelled: 500 Wh left the book" in cancelled.stdout

    # past the slot's gate closure: orders are refused and the rest expires
    cli.fails("orders", "expire", "--slot", slot, match="is open for trading")
    now = cli.ok("slot", "--format", "json").json()
    gate_closure = now["next_open_gate_closure"] + (slot - now["next_open_slot"]) * now["slot_seconds"]
    cli.ok("chain", "advance", "--seconds", gate_closure - now["chain_time"] + 5)
    cli.fails(*place("member0", slot, "sell", 240_000, 100), match="MarketGateClosed")
    expired = cli.ok("orders", "expire", "--slot", slot)
    assert f"slot {slot}: 1 orders expired" in expired.stdout
    assert cli.ok("book", "--slot", slot, "--format", "json").json()["asks"] == []

    session = cli.ok("session")
    assert "trades of slot" in session.stdout and "member3" in session.stdout

    cli.ok("chain", "stop")
    status = cli.run("chain", "status")
    assert status.returncode == 75 and "not answering" in status.stdout
    assert str(cli.port) not in status.stdout.split("rpc")[0]

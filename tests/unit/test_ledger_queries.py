"""Ledger queries over a store filled from encoded logs: order status and fills, a slot's book
replayed at any block, trades and readings with filters and paging, the daily summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from ledger_logs import BINDING, batch_of, block_hash, raw_log

from peerwatt.errors import InputError
from peerwatt.order_ids import first_seq, order_id_at
from settlement.ledger.queries import Ledger
from settlement.ledger.records import checksum
from settlement.ledger.store import Store

ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CAROL = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
SLOT = 10
ASK_1 = order_id_at(SLOT, False, 240_000, first_seq(1))
ASK_2 = order_id_at(SLOT, False, 240_000, first_seq(1) + 1)
BID = order_id_at(SLOT, True, 250_000, first_seq(2))
LOW_BID = order_id_at(SLOT, True, 200_000, first_seq(3))


def place(block: int, index: int, order_id: int, member: str, is_buy: bool, price: int, qty: int) -> dict[str, object]:
    return raw_log(
        "CdaMarket", "OrderPlaced", block, index,
        slot=SLOT, orderId=order_id, member=member, isBuy=is_buy, pricePerKwh=price, qtyWh=qty,
    )  # fmt: skip


def reading(meter: str, slot: int, import_wh: int, export_wh: int) -> bytes:
    return (
        bytes.fromhex(meter[2:]) + slot.to_bytes(4, "big") + import_wh.to_bytes(4, "big") + export_wh.to_bytes(4, "big")
        + (0).to_bytes(6, "big") + (0).to_bytes(6, "big")
    )  # fmt: skip


METER_A = "0x" + "aa" * 20
METER_B = "0x" + "bb" * 20


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return sample_ledger(tmp_path / "ledger.sqlite")


def sample_ledger(path: Path) -> Ledger:
    """Blocks 2-6: two asks of Alice, Bob's bid takes 1,500 Wh (all of ask 1, part of ask 2),
    Carol bids low and cancels at block 6; readings of two meters for two slots."""
    store = Store(path)
    store.bind(BINDING)
    logs = [
        raw_log("MeterOracle", "MeterRegistered", 1, 0, meter=METER_A, member=ALICE, fromSlot=0),
        raw_log("MeterOracle", "MeterRegistered", 1, 1, meter=METER_B, member=BOB, fromSlot=0),
        place(2, 0, ASK_1, ALICE, False, 240_000, 1_000),
        place(3, 0, ASK_2, ALICE, False, 240_000, 2_000),
        place(4, 0, BID, BOB, True, 250_000, 1_500),
        raw_log("CdaMarket", "TradeExecuted", 4, 1, slot=SLOT, buyer=BOB, seller=ALICE, buyOrderId=BID,
                sellOrderId=ASK_1, pricePerKwh=240_000, qtyWh=1_000, makerIsBuy=False),
        raw_log("CdaMarket", "TradeExecuted", 4, 2, slot=SLOT, buyer=BOB, seller=ALICE, buyOrderId=BID,
                sellOrderId=ASK_2, pricePerKwh=240_000, qtyWh=500, makerIsBuy=False),
        place(5, 0, LOW_BID, CAROL, True, 200_000, 333),
        raw_log("CdaMarket", "OrderCancelled", 6, 0, slot=SLOT, orderId=LOW_BID, member=CAROL, remainingWh=333,
                escrowReleased=66_600, reason=0),
        raw_log("MeterOracle", "ReadingsAccepted", 7, 0, readings=reading(METER_A, SLOT, 100, 1_600)
                + reading(METER_B, SLOT, 1_500, 0) + reading(METER_A, SLOT + 200, 50, 0)),
    ]  # fmt: skip
    assert store.write_range(1, 7, block_hash(7), batch_of(*logs))
    return Ledger(store)


def book_rows(frame: pd.DataFrame) -> list[tuple[str, int, int, int]]:
    return [(r.side, r.price, int(r.order_id), r.remaining_wh) for r in frame.itertuples()]


def test_the_book_is_replayed_at_any_block(ledger: Ledger) -> None:
    assert book_rows(ledger.book(SLOT, at_block=1)) == []
    assert book_rows(ledger.book(SLOT, at_block=3)) == [
        ("sell", 240_000, ASK_1, 1_000),
        ("sell", 240_000, ASK_2, 2_000),
    ]
    assert book_rows(ledger.book(SLOT, at_block=4)) == [("sell", 240_000, ASK_2, 1_500)]
    assert book_rows(ledger.book(SLOT, at_block=5)) == [("sell", 240_000, ASK_2, 1_500), ("buy", 200_000, LOW_BID, 333)]
    assert book_rows(ledger.book(SLOT)) == [("sell", 240_000, ASK_2, 1_500)]
    assert ledger.book(SLOT + 1).empty


def test_orders_carry_fills_and_status_at_a_block(ledger: Ledger) -> None:
    orders = ledger.orders()
    assert list(orders["order_id"]) == [str(i) for i in (ASK_1, ASK_2, BID, LOW_BID)]
    assert list(orders["filled_wh"]) == [1_000, 500, 1_500, 0]
    assert list(orders["remaining_wh"]) == [0, 1_500, 0, 0]
    assert list(orders["status"]) == ["filled", "open", "filled", "cancelled"]
    assert list(orders["cancel_reason"]) == [None, None, None, "by_member"]
    at_5 = ledger.orders(at_block=5)
    assert list(at_5["status"]) == ["filled", "open", "filled", "open"]
    assert list(ledger.orders(member=CAROL.lower())["order_id"]) == [str(LOW_BID)]
    assert list(ledger.orders(limit=2, offset=1)["order_id"]) == [str(ASK_2), str(BID)]
    assert ledger.orders(slot_from=SLOT + 1).empty


def test_trades_with_values_and_filters(ledger: Ledger) -> None:
    trades = ledger.trades()
    assert list(trades["qty_wh"]) == [1_000, 500]
    assert list(trades["value"]) == [240_000, 120_000]  # qty * price // 1000
    assert list(trades["maker_side"]) == ["sell", "sell"]
    assert len(ledger.trades(member=BOB)) == 2 and ledger.trades(member=CAROL).empty
    assert len(ledger.trades(slot_from=SLOT, slot_to=SLOT, limit=1)) == 1


def test_readings_name_the_member_of_their_meter(ledger: Ledger) -> None:
    readings = ledger.readings()
    assert [(r.slot, r.member, r.import_wh, r.export_wh) for r in readings.itertuples()] == [
        (SLOT, ALICE, 100, 1_600), (SLOT, BOB, 1_500, 0), (SLOT + 200, ALICE, 50, 0),
    ]  # fmt: skip
    assert list(ledger.readings(member=BOB)["meter"]) == [checksum(METER_B)]
    assert list(ledger.readings(slot_to=SLOT)["slot"]) == [SLOT, SLOT]


def test_daily_summary(ledger: Ledger) -> None:
    days = ledger.daily_summary()
    assert len(days) == 2  # slot 10 and slot 210 fall on two days (96 slots a day)
    first = days.iloc[0]
    assert (first.trades, first.traded_wh, first.traded_value, first.average_price_per_kwh) == (
        2,
        1_500,
        360_000,
        240_000,
    )
    assert (first.net_export_wh, first.net_import_wh, first.shared_wh) == (1_500, 1_500, 1_500)
    assert (first.grid_import_wh, first.grid_export_wh, first.self_sufficiency) == (0, 0, 1.0)
    second = days.iloc[1]
    assert (second.trades, second.net_import_wh, second.shared_wh, second.self_sufficiency) == (0, 50, 0, 0.0)
    assert pd.isna(second.average_price_per_kwh)


@pytest.mark.parametrize(
    "call",
    [
        lambda ledger: ledger.orders(member="alice"),
        lambda ledger: ledger.trades(slot_from=5, slot_to=4),
        lambda ledger: ledger.readings(slot_from=-1),
        lambda ledger: ledger.trades(limit=-1),
        lambda ledger: ledger.book(2**32),
        lambda ledger: ledger.orders(at_block=-3),
    ],
)
def test_bad_parameters_are_input_errors(ledger: Ledger, call: object) -> None:
    with pytest.raises(InputError):
        call(ledger)  # type: ignore[operator]


def test_an_empty_ledger_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        Ledger(Store(tmp_path / "empty.sqlite"))

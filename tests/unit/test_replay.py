"""Parsing, checking and batching of ``orders replay`` files (pure Python, no chain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerwatt.config import MarketParams
from peerwatt.errors import InputError, NotFoundError
from peerwatt.market import OrderRequest, Side
from peerwatt.replay import (
    Action,
    Batch,
    CommunityRules,
    ReplayFileError,
    ReplayRow,
    parse_rows,
    plan_batches,
    read_rows,
)
from peerwatt.slots import SlotClock
from peerwatt.units import MAX_QTY_WH

HEADER = "action,ref,member,slot,side,price,qty_wh"
CLOCK = SlotClock(epoch=1_000_000, slot_seconds=900, gate_seconds=300)
NOW = CLOCK.slot_start(10)  # slot 10 in delivery; slots >= 11 are open
TICK = 1_000
RULES = CommunityRules(("alice", "bob"), MarketParams(), CLOCK, NOW, TICK)


def parse(*rows: str, header: str = HEADER, rules: CommunityRules | None = None) -> list[ReplayRow]:
    return parse_rows([header, *rows], "orders.csv", rules)


def problems(*rows: str, header: str = HEADER, rules: CommunityRules | None = None) -> dict[int, str]:
    with pytest.raises(ReplayFileError) as caught:
        parse(*rows, header=header, rules=rules)
    return {problem.line: problem.message for problem in caught.value.problems}


def test_parses_places_and_cancels() -> None:
    rows = parse("place,r1,alice,12,sell,240000,1000", "PLACE, r2 ,bob,12,BUY,250000,500", "cancel,r1,alice,,,,")
    assert rows == [
        ReplayRow(2, Action.PLACE, "r1", "alice", OrderRequest(12, Side.SELL, 240_000, 1000)),
        ReplayRow(3, Action.PLACE, "r2", "bob", OrderRequest(12, Side.BUY, 250_000, 500)),
        ReplayRow(4, Action.CANCEL, "r1", "alice"),
    ]


def test_columns_may_come_in_any_order_and_blank_lines_are_skipped() -> None:
    rows = parse("", "1000,sell,240000,12,alice,r1,place", "", header="qty_wh,side,price,slot,member,ref,action")
    assert rows == [ReplayRow(3, Action.PLACE, "r1", "alice", OrderRequest(12, Side.SELL, 240_000, 1000))]


def test_cancel_rows_ignore_the_order_columns() -> None:
    rows = parse("place,r1,alice,12,sell,240000,1000", "cancel,r1,alice,12,sell,240000,1000")
    assert rows[1] == ReplayRow(3, Action.CANCEL, "r1", "alice")


@pytest.mark.parametrize(
    "row, message",
    [
        ("buy,r1,alice,12,buy,1,10", "action must be place or cancel, got 'buy'"),
        ("place,,alice,12,buy,1,10", "ref is empty"),
        ("place,r1,,12,buy,1,10", "member is empty"),
        ("place,r1,alice,12,long,1,10", "side must be buy or sell, got 'long'"),
        ("place,r1,alice,12,buy,0.25,10", "price must be a non-negative integer, got '0.25'"),
        ("place,r1,alice,12,buy,-5,10", "price must be a non-negative integer, got '-5'"),
        ("place,r1,alice,twelve,buy,1,10", "slot must be a non-negative integer, got 'twelve'"),
        ("place,r1,alice,12,buy,1,", "qty_wh must be a non-negative integer, got ''"),
        ("place,r1,alice,12,buy,1,1e3", "qty_wh must be a non-negative integer, got '1e3'"),
        (f"place,r1,alice,{2**32},buy,1,10", f"slot must be between 0 and {2**32 - 1}, got {2**32}"),
        (f"place,r1,alice,12,buy,{2**32},10", f"price must be between 0 and {2**32 - 1}, got {2**32}"),
        ("place,r1,alice,12,buy,1", "expected 7 fields, got 6"),
        ("place,r1,alice,12,buy,1,10,extra", "expected 7 fields, got 8"),
    ],
)
def test_bad_values_are_reported_with_their_line(row: str, message: str) -> None:
    assert problems("place,ok,alice,12,sell,1,10", row) == {3: message}


def test_refs_must_be_consistent() -> None:
    found = problems(
        "place,r1,alice,12,sell,1,10",  # 2
        "place,r1,bob,12,buy,1,10",  # 3: duplicate ref
        "cancel,r9,alice,,,,",  # 4: unknown ref
        "cancel,r1,bob,,,,",  # 5: someone else's order
        "cancel,r1,alice,,,,",  # 6: fine
        "cancel,r1,alice,,,,",  # 7: twice
        "cancel,r8,alice,,,,",  # 8: a later row's ref
        "place,r8,alice,12,sell,1,10",  # 9
    )
    assert found == {
        3: "ref 'r1' already used on line 2",
        4: "cancel names ref 'r9', which no earlier place row has",
        5: "ref 'r1' (line 2) is an order of alice, not of bob",
        7: "ref 'r1' is already cancelled on line 6",
        8: "cancel names ref 'r8', which no earlier place row has",
    }


def test_every_bad_row_is_reported_in_one_line() -> None:
    with pytest.raises(ReplayFileError) as caught:
        parse(*[f"place,r{i},alice,12,sideways,1,10" for i in range(12)])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("orders.csv: 12 bad rows, nothing sent: line 2: side must be buy or sell")
    assert message.endswith("; and 4 more")
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 64


@pytest.mark.parametrize(
    "header, detail",
    [
        ("action,ref,member,slot,side,price", "missing qty_wh"),
        (HEADER + ",comment", "unknown comment"),
        ("action,ref,member,slot,side,price,qty_wh,ref", "duplicate columns"),
    ],
)
def test_header_must_name_the_columns(header: str, detail: str) -> None:
    found = problems("place,r1,alice,12,sell,1,10", header=header)
    assert list(found) == [1] and detail in found[1]


def test_empty_file() -> None:
    with pytest.raises(ReplayFileError, match="line 1: empty file"):
        parse_rows([], "orders.csv")


def test_community_rules() -> None:
    params = MarketParams()
    found = problems(
        "place,r1,alice,11,sell,240000,1000",  # 2: fine (slot 11 open)
        "place,r2,carol,11,sell,240000,1000",  # 3: unknown member
        f"place,r3,alice,11,sell,{params.max_price_per_kwh + 1},1000",  # 4: above the band
        "place,r4,alice,11,sell,0,1000",  # 5: below the band
        f"place,r5,alice,11,sell,240000,{params.min_qty_wh - 1}",  # 6: too small
        f"place,r6,alice,11,sell,240000,{MAX_QTY_WH + 1}",  # 7: above the market's maximum
        "place,r7,alice,10,sell,240000,1000",  # 8: slot in delivery
        "cancel,r1,carol,,,,",  # 9: unknown member (and not carol's)
        "place,r8,alice,11,sell,240500,1000",  # 10: off the price tick
        rules=RULES,
    )
    assert found == {
        3: "unknown member 'carol'",
        4: f"price {params.max_price_per_kwh + 1} outside the band [1000, {params.max_price_per_kwh}]",
        5: f"price 0 outside the band [1000, {params.max_price_per_kwh}]",
        6: f"qty_wh {params.min_qty_wh - 1} below the minimum {params.min_qty_wh}",
        7: f"qty_wh {MAX_QTY_WH + 1} above the maximum {MAX_QTY_WH}",
        8: f"slot 10 closed for trading at {CLOCK.gate_closure(10)} (chain time {NOW})",
        9: "ref 'r1' (line 2) is an order of alice, not of carol",
        10: f"price 240500 not a multiple of the price tick {TICK}",
    }


def test_gate_closure_is_exclusive() -> None:
    """A slot closes at its gate closure: open one second before, closed at the instant."""
    row = "place,r1,alice,11,sell,240000,1000"
    closure = CLOCK.gate_closure(11)
    assert parse(row, rules=CommunityRules(("alice",), MarketParams(), CLOCK, closure - 1))
    assert 2 in problems(row, rules=CommunityRules(("alice",), MarketParams(), CLOCK, closure))


def test_read_rows(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("\ufeff" + HEADER + "\r\nplace,r1,alice,12,sell,240000,1000\r\n", encoding="utf-8")  # BOM, CRLF
    assert [row.ref for row in read_rows(path)] == ["r1"]
    with pytest.raises(NotFoundError, match="no such file"):
        read_rows(tmp_path / "missing.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not UTF-8"):
        read_rows(binary)


def _row(line: int, member: str, action: Action = Action.PLACE) -> ReplayRow:
    order = OrderRequest(12, Side.BUY, 1, 10) if action is Action.PLACE else None
    return ReplayRow(line, action, f"r{line}", member, order)


def test_batches_group_consecutive_rows_of_one_member_and_action() -> None:
    rows = [
        _row(2, "alice"),
        _row(3, "alice"),
        _row(4, "bob"),
        _row(5, "alice", Action.CANCEL),
        _row(6, "alice", Action.CANCEL),
        _row(7, "alice"),
        _row(8, "alice"),
        _row(9, "alice"),
    ]
    batches = plan_batches(rows, max_places=2, max_cancels=10)
    assert [(b.member, b.action, [r.line for r in b.rows]) for b in batches] == [
        ("alice", Action.PLACE, [2, 3]),
        ("bob", Action.PLACE, [4]),
        ("alice", Action.CANCEL, [5, 6]),
        ("alice", Action.PLACE, [7, 8]),  # split at the per-transaction limit
        ("alice", Action.PLACE, [9]),
    ]
    assert plan_batches([], 5, 5) == []
    assert plan_batches(rows[:1], 1, 1) == [Batch("alice", Action.PLACE, (rows[0],))]

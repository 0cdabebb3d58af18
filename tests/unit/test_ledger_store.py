"""The ledger store without a chain: atomic range writes and the resume point, refusal of a
range that does not continue the store, roll-back above a block, exact integers, and the
binary search for the last block a reorganised chain still has."""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from pathlib import Path

import pytest
from ledger_logs import BINDING, batch_of, block_hash, raw_log

from peerwatt.errors import ConflictError, InputError
from settlement.ledger.indexer import last_on_chain
from settlement.ledger.records import Batch, args_json, parse_args, sql_int
from settlement.ledger.store import LOG_TABLES, Binding, Store, default_path, resolve_path

MEMBER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def placed(block: int, index: int, order_id: int, fork: int = 0) -> dict[str, object]:
    return raw_log(
        "CdaMarket", "OrderPlaced", block, index, fork,
        slot=7, orderId=order_id, member=MEMBER, isBuy=False, pricePerKwh=240_000, qtyWh=1_000,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "ledger.sqlite")
    store.bind(BINDING)
    return store


def counts(store: Store) -> dict[str, int]:
    return {table: store.count(table) for table in (*LOG_TABLES, "blocks")}


def test_a_range_is_written_with_its_last_block_as_the_resume_point(store: Store) -> None:
    assert store.binding() == BINDING
    assert store.last_block() is None
    assert store.write_range(1, 10, block_hash(10), batch_of(placed(3, 0, 11), placed(3, 1, 12), placed(8, 0, 13)))
    assert store.last_block() == (10, block_hash(10))
    assert store.block_numbers() == [3, 8, 10]  # blocks with events and the range's last block
    assert store.block_hash(3) == block_hash(3)
    assert counts(store)["events"] == 3 and counts(store)["orders"] == 3


def test_a_range_that_does_not_continue_the_store_is_refused_whole(store: Store) -> None:
    assert store.write_range(1, 10, block_hash(10), batch_of(placed(3, 0, 11)))
    before = counts(store)
    assert not store.write_range(1, 10, block_hash(10), batch_of(placed(3, 0, 11)))  # the same range again
    assert not store.write_range(12, 20, block_hash(20), batch_of(placed(15, 0, 12)))  # a gap
    assert counts(store) == before
    assert store.write_range(11, 20, block_hash(20), batch_of(placed(15, 0, 12)))
    assert store.last_block() == (20, block_hash(20))


def test_a_failing_write_leaves_nothing_behind(store: Store) -> None:
    batch = batch_of(placed(3, 0, 11))
    batch.typed["orders"].append(("not", "a", "row"))  # wrong arity: the executemany fails mid-transaction
    with pytest.raises(sqlite3.ProgrammingError):
        store.write_range(1, 10, block_hash(10), batch)
    assert store.last_block() is None
    assert counts(store)["events"] == 0


def test_rollback_removes_every_row_above_a_block(store: Store) -> None:
    store.write_range(1, 10, block_hash(10), batch_of(placed(3, 0, 11), placed(8, 0, 12)))
    store.write_range(11, 20, block_hash(20), batch_of(placed(15, 0, 13)))
    assert store.rollback_above(3) == 2
    assert store.block_numbers() == [3]
    assert store.query("SELECT order_id FROM orders") == [("11",)]
    assert store.write_range(4, 9, block_hash(9, fork=1), batch_of(placed(5, 0, 14, fork=1)))
    store.clear()
    assert store.binding() is None and all(count == 0 for count in counts(store).values())


def test_integers_stay_exact_beyond_64_bits(store: Store) -> None:
    huge = 2**64 - 1  # uint64 quantities do not fit SQLite's signed 64-bit INTEGER
    log = raw_log(
        "CdaMarket", "OrderCancelled", 2, 0, slot=7, orderId=2**128 + 5, member=MEMBER,
        remainingWh=huge, escrowReleased=2**255, reason=3,
    )  # fmt: skip
    store.write_range(1, 2, block_hash(2), batch_of(log))
    assert store.query("SELECT order_id, remaining_wh, escrow_released FROM cancellations") == [
        (str(2**128 + 5), str(huge), str(2**255))
    ]
    [(name, text)] = store.query("SELECT event, args FROM events")
    assert json.loads(text)["escrowReleased"] == str(2**255)
    assert parse_args(name, text)["remainingWh"] == huge
    assert [sql_int(v) for v in (2**63 - 1, 2**63, -(2**63), -(2**63) - 1)] == [
        2**63 - 1,
        str(2**63),
        -(2**63),
        str(-(2**63) - 1),
    ]


def test_arguments_round_trip_through_json() -> None:
    args = {"meter": MEMBER.lower(), "slot": 3, "chain": b"\x01" * 32, "readings": 2**200, "ok": True}
    text = args_json(args)
    assert json.loads(text) == {
        "meter": MEMBER,
        "slot": "3",
        "chain": "0x" + "01" * 32,
        "readings": str(2**200),
        "ok": True,
    }


def test_an_event_no_abi_knows_is_kept_raw(store: Store) -> None:
    log = placed(3, 0, 11)
    log["topics"] = ["0x" + "ab" * 32, *log["topics"][1:]]
    batch = batch_of(log)
    assert batch.typed == {}
    store.write_range(1, 3, block_hash(3), batch)
    [(name, text)] = store.query("SELECT event, args FROM events")
    assert name is None and json.loads(text) == {"topics": log["topics"], "data": log["data"]}


def test_readings_are_unpacked_one_row_each(store: Store) -> None:
    meter = bytes.fromhex(OTHER[2:])
    packed = b"".join(
        meter + slot.to_bytes(4, "big") + (100 + slot).to_bytes(4, "big") + (5).to_bytes(4, "big")
        + (1000 + slot).to_bytes(6, "big") + (50).to_bytes(6, "big")
        for slot in range(3)
    )  # fmt: skip
    store.write_range(1, 4, block_hash(4), batch_of(raw_log("MeterOracle", "ReadingsAccepted", 4, 0, readings=packed)))
    rows = store.query("SELECT position, meter, slot, import_wh, export_wh, import_register_wh FROM readings")
    assert rows == [(slot, OTHER, slot, 100 + slot, 5, 1000 + slot) for slot in range(3)]


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    Store(path).db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(ConflictError, match="schema version 0"):
        Store(path)


def test_a_missing_ledger_is_reported_for_reading(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ledger sync"):
        Store(tmp_path / "none.sqlite", readonly=True)


def test_binding_round_trips_through_meta() -> None:
    assert Binding.from_meta(BINDING.to_meta()) == BINDING


def test_default_path_is_beside_the_deployment_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PEERWATT_LEDGER_DB", raising=False)
    assert default_path(Path("deployments/31337.json")) == Path("deployments/31337.ledger.sqlite")
    assert resolve_path(None, Path("d/x.json")) == Path("d/x.ledger.sqlite")
    monkeypatch.setenv("PEERWATT_LEDGER_DB", str(tmp_path / "env.sqlite"))
    assert resolve_path(None, Path("d/x.json")) == tmp_path / "env.sqlite"
    assert resolve_path(Path("flag.sqlite"), Path("d/x.json")) == Path("flag.sqlite")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000])
def test_last_on_chain_finds_the_divergence_in_log_n_requests(size: int) -> None:
    numbers = [3 * n + 1 for n in range(size)]
    for diverged in range(size):  # numbers[diverged:] are off the chain (the last one always is)
        asked: list[int] = []

        def on_chain(number: int, asked: list[int] = asked, first_off: int = numbers[diverged]) -> bool:
            asked.append(number)
            return number < first_off

        expected = numbers[diverged - 1] if diverged > 0 else None
        assert last_on_chain(numbers, on_chain) == expected
        assert len(asked) <= math.ceil(math.log2(size)) + 1


def test_last_on_chain_of_every_prefix() -> None:
    for size, diverged in itertools.product(range(1, 9), range(9)):
        if diverged < size:
            numbers = list(range(size))
            assert last_on_chain(numbers, lambda n, d=diverged: n < d) == (diverged - 1 if diverged else None)


def test_an_empty_batch_still_moves_the_resume_point(store: Store) -> None:
    assert store.write_range(1, 50, block_hash(50), Batch())
    assert store.last_block() == (50, block_hash(50))

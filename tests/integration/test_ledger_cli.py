"""The auditor's ledger end to end with the real ``peerwatt`` executable on real chains:
``ledger sync`` rebuilds orders, trades, books and readings that match what the chain holds (read
back through other commands and raw ``eth_getLogs``); a sync killed with SIGKILL resumes with no
duplicates or gaps; a reset chain and a reorganised one (``evm_revert``) are re-indexed from the
divergence; ``ledger export`` writes CSV and Parquet files that read back to the same tables."""

from __future__ import annotations

import csv
import io
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peerwatt_cli import ENGINES, PEERWATT, Cli, rpc, start_community, write_csv

from peerwatt.config import CommunityConfig
from peerwatt.deployment import Deployment
from settlement.ledger.queries import Ledger

SLOT_SECONDS = CommunityConfig().slot_seconds
EVENT_KEYS = "SELECT block_number, log_index, block_hash, tx_hash, contract, event, args FROM events ORDER BY 1, 2"


def raw_logs(cli: Cli) -> list[tuple[int, int, str, str]]:
    """(block, log index, block hash, tx hash) of every log of the deployment's contracts, read
    straight from the node."""
    deployment = Deployment.load(cli.deployment)
    logs = rpc(
        cli.rpc_url,
        "eth_getLogs",
        [{"address": list(deployment.addresses().values()), "fromBlock": "0x0", "toBlock": "latest"}],
    )
    return sorted(
        (int(log["blockNumber"], 16), int(log["logIndex"], 16), log["blockHash"], log["transactionHash"])
        for log in logs
    )


def stored_logs(db: Path) -> list[tuple[int, int, str, str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT block_number, log_index, block_hash, tx_hash FROM events ORDER BY 1, 2"
        ).fetchall()


def rows_of(db: Path, sql: str = EVENT_KEYS) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql).fetchall()


def fresh_sync(cli: Cli, name: str) -> Path:
    """A sync into a new ledger: what the chain holds now, indexed from scratch."""
    db = cli.workdir / name
    cli.ok("ledger", "sync", "--db", db)
    return db


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def next_open_slot(cli: Cli) -> int:
    return int(cli.ok("slot", "--format", "json").json()["next_open_slot"])


def pass_gate_closure(cli: Cli, slot: int) -> None:
    now = cli.ok("slot", "--format", "json").json()
    gate_closure = now["next_open_gate_closure"] + (slot - now["next_open_slot"]) * now["slot_seconds"]
    cli.ok("chain", "advance", "--seconds", gate_closure - now["chain_time"] + 5)


READINGS_HEADER = "meter,slot,import_wh,export_wh,import_register_wh,export_register_wh"


def reading_rows(slots: int, members: int) -> list[str]:
    """Every member's reading for slots 0..slots-1, with registers that add up."""
    rows = []
    for member in range(members):
        imported = exported = 0
        for slot in range(slots):
            import_wh, export_wh = 100 + 10 * member + slot, (400 * member + 70 * slot) % 900
            imported, exported = imported + import_wh, exported + export_wh
            rows.append(f"member{member},{slot},{import_wh},{export_wh},{imported},{exported}")
    return rows


def nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """CSV has one empty cell for None and NaN alike."""
    return frame.astype(object).where(frame.notna(), None)


def book_view(frame: pd.DataFrame, names: dict[str, str]) -> dict[str, list[tuple[int, str, int, int]]]:
    """The ledger's book in the shape `peerwatt book --format json` has."""
    sides: dict[str, list[tuple[int, str, int, int]]] = {"asks": [], "bids": []}
    for row in frame.itertuples():
        entry = (int(row.order_id), names[row.member.lower()], row.price, row.remaining_wh)
        sides["asks" if row.side == "sell" else "bids"].append(entry)
    return sides


def chain_book(cli: Cli, slot: int) -> dict[str, list[tuple[int, str, int, int]]]:
    book = cli.ok("book", "--slot", slot, "--format", "json").json()
    return {
        side: [(o["order_id"], o["member"], o["price"], o["remaining_wh"]) for o in book[side]]
        for side in ("asks", "bids")
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_sync_rebuilds_what_the_chain_holds(engine: str, new_cli: Callable[[], Cli], tmp_path: Path) -> None:
    cli = new_cli()
    start_community(cli, engine)
    deployment = Deployment.load(cli.deployment)
    names = deployment.member_names()
    slot = next_open_slot(cli) + 1
    orders_csv = write_csv(
        tmp_path / "orders.csv",
        [
            f"place,a,member0,{slot},sell,240000,2000",
            f"place,b,member1,{slot},buy,250000,1500",  # takes 1500 of a
            f"place,c,member2,{slot},buy,230000,1000",
            f"place,d,member3,{slot},sell,260000,700",
            "cancel,d,member3,,,,",
            f"place,e,member2,{slot},sell,230000,300",  # reaches its own bid c: c is cancelled (self-trade)
            f"place,f,member3,{slot},buy,245000,800",  # takes 500 of a and 300 of e
            f"place,g,member1,{slot},buy,235000,400",  # rests, expires later
        ],
    )
    cli.ok("orders", "replay", orders_csv)
    db = cli.workdir / "ledger.sqlite"
    first = cli.ok("ledger", "sync", "--db", db)
    assert "indexed" in first.stdout and "events/s" in first.stdout
    book_before_expiry, block_before_expiry = chain_book(cli, slot), cli.block_number()
    assert book_before_expiry["bids"]  # g rests

    pass_gate_closure(cli, slot)
    cli.ok("orders", "expire", "--slot", slot)
    cli.ok("chain", "advance", "--seconds", 3 * SLOT_SECONDS)  # slots 0..2 have ended
    readings = reading_rows(slots=3, members=4)
    cli.ok("readings", "push", write_csv(tmp_path / "readings.csv", readings, header=READINGS_HEADER))
    second = cli.ok("ledger", "sync", "--db", db)
    assert "indexed" in second.stdout
    assert "the ledger is up to date" in cli.ok("ledger", "sync", "--db", db).stdout

    # every log of the four contracts, once, as the node has it
    assert stored_logs(db) == raw_logs(cli)

    ledger = Ledger.open(db)
    # trades: the same rows as `peerwatt trades`, which reads the chain
    chain_trades = csv_rows(cli.ok("trades", "--slot", slot, "--format", "csv").stdout)
    ledger_trades = csv_rows(cli.ok("ledger", "export", "--table", "trades", "--db", db).stdout)
    columns = list(chain_trades[0])
    assert [{c: t[c] for c in columns} for t in ledger_trades] == chain_trades
    assert len(chain_trades) == 3
    # the book: as the chain showed it before expiry, and empty after
    assert book_view(ledger.book(slot, at_block=block_before_expiry), names) == book_before_expiry
    assert book_view(ledger.book(slot), names) == chain_book(cli, slot) == {"asks": [], "bids": []}
    # orders and how they ended
    orders = ledger.orders(slot_from=slot, slot_to=slot)
    ended = [(names[o.member.lower()], o.side, o.status, o.cancel_reason, o.filled_wh) for o in orders.itertuples()]
    assert ended == [
        ("member0", "sell", "filled", None, 2000),
        ("member1", "buy", "filled", None, 1500),
        ("member2", "buy", "cancelled", "self_trade", 0),
        ("member3", "sell", "cancelled", "by_member", 0),
        ("member2", "sell", "filled", None, 300),
        ("member3", "buy", "filled", None, 800),
        ("member1", "buy", "cancelled", "expired", 0),
    ]
    # readings: the same as `peerwatt readings --slot`
    for reading_slot in range(3):
        listed = cli.ok("readings", "--slot", reading_slot, "--format", "json").json()
        indexed = ledger.readings(slot_from=reading_slot, slot_to=reading_slot)
        assert [
            (names[r.member.lower()], r.meter, r.import_wh, r.export_wh, r.import_register_wh, r.tx_hash)
            for r in indexed.itertuples()
        ] == [
            (r["member"], r["meter"], r["import_wh"], r["export_wh"], r["import_register_wh"], r["tx_hash"])
            for r in listed
        ]
    summary = ledger.daily_summary()
    assert summary["traded_wh"].sum() == 2300 and summary["readings"].sum() == 12

    # exports read back to the same tables
    for table, frame in (
        ("orders", ledger.orders()),
        ("trades", ledger.trades()),
        ("readings", ledger.readings()),
        ("events", ledger.events()),
        ("daily", ledger.daily_summary()),
    ):
        csv_file, parquet_file = tmp_path / f"{table}.csv", tmp_path / f"{table}.parquet"
        written = cli.ok("ledger", "export", "--table", table, "--out", csv_file, "--db", db)
        assert f"{len(frame)} {table} rows written" in written.stdout
        cli.ok("ledger", "export", "--table", table, "--format", "parquet", "--out", parquet_file, "--db", db)
        text_columns = {c: str for c in ("order_id", "buy_order", "sell_order", "args", "cancel_reason")}
        from_csv = pd.read_csv(csv_file, dtype=text_columns, keep_default_na=False, na_values=[""])
        pd.testing.assert_frame_equal(nulls_as_none(from_csv), nulls_as_none(frame), check_dtype=False)
        pd.testing.assert_frame_equal(pd.read_parquet(parquet_file), frame, check_dtype=False)


def start_sync(cli: Cli, db: Path, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PEERWATT), "ledger", "sync", "--db", str(db), *map(str, args)],
        cwd=cli.workdir,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def indexed_blocks(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM blocks").fetchone()[0])
    except sqlite3.OperationalError:  # the sync has not created its tables yet
        return 0


def place_interleaved(cli: Cli, path: Path, slot: int, count: int, tag: str) -> None:
    """``count`` orders, each from another member than the one before (one transaction, and on
    anvil one block, each)."""
    rows = [
        f"place,{tag}{i},member{i % 4},{slot},{'buy' if i % 2 else 'sell'},{(230 + i % 20) * 1000},{100 + i}"
        for i in range(count)
    ]
    cli.ok("orders", "replay", write_csv(path, rows))


def test_a_killed_sync_resumes_without_duplicates_or_gaps(new_cli: Callable[[], Cli], tmp_path: Path) -> None:
    cli = new_cli()
    start_community(cli, "anvil")
    slot = next_open_slot(cli) + 1
    place_interleaved(cli, tmp_path / "first.csv", slot, 30, "a")
    rpc(cli.rpc_url, "anvil_mine", [hex(1500)])  # empty blocks: many ranges at --max-range 2
    place_interleaved(cli, tmp_path / "second.csv", slot, 30, "b")
    db = cli.workdir / "killed.sqlite"

    for _ in range(2):  # killed twice, at different points
        sync = start_sync(cli, db, "--max-range", 2)
        target = indexed_blocks(db) + 40
        deadline = time.monotonic() + 60
        while indexed_blocks(db) < target and sync.poll() is None:
            assert time.monotonic() < deadline, "the sync made no progress"
            time.sleep(0.005)
        sync.send_signal(signal.SIGKILL)
        sync.wait()
        assert sync.returncode == -signal.SIGKILL, sync.stderr.read() if sync.stderr else ""
        # what is stored is every log up to the last indexed block, nothing after it
        [(last,)] = rows_of(db, "SELECT MAX(number) FROM blocks")
        assert stored_logs(db) == [log for log in raw_logs(cli) if log[0] <= last]
        assert last < cli.block_number()

    resumed = cli.ok("ledger", "sync", "--db", db)
    assert f"({last + 1}..{cli.block_number()})" in resumed.stdout
    assert stored_logs(db) == raw_logs(cli)
    reference = fresh_sync(cli, "reference.sqlite")
    for table in ("events", "orders", "trades", "cancellations", "readings", "meters", "members"):
        assert rows_of(db, f"SELECT * FROM {table} ORDER BY 1, 2") == rows_of(
            reference, f"SELECT * FROM {table} ORDER BY 1, 2"
        ), table


def test_a_reset_chain_is_indexed_anew(new_cli: Callable[[], Cli], tmp_path: Path) -> None:
    cli = new_cli()
    start_community(cli, "anvil")
    slot = next_open_slot(cli) + 1
    place_interleaved(cli, tmp_path / "before.csv", slot, 6, "a")
    db = cli.workdir / "ledger.sqlite"
    cli.ok("ledger", "sync", "--db", db)
    before = len(stored_logs(db))

    cli.ok("chain", "stop")
    start_community(cli, "anvil", members=3)  # a new chain, the same addresses, other blocks
    place_interleaved(cli, tmp_path / "after.csv", next_open_slot(cli) + 1, 3, "b")
    synced = cli.ok("ledger", "sync", "--db", db)
    assert f"the chain was reset under the ledger: {before} events removed, indexing anew" in synced.stdout
    assert stored_logs(db) == raw_logs(cli)
    assert rows_of(db) == rows_of(fresh_sync(cli, "reference.sqlite"))
    assert len(Ledger.open(db).orders()) == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_a_reorganised_chain_is_rolled_back_to_the_divergence(
    engine: str, new_cli: Callable[[], Cli], tmp_path: Path
) -> None:
    cli = new_cli()
    start_community(cli, engine)
    slot = next_open_slot(cli) + 1
    place_interleaved(cli, tmp_path / "common.csv", slot, 4, "c")
    db = cli.workdir / "ledger.sqlite"
    cli.ok("ledger", "sync", "--db", db)
    fork_point = cli.block_number()
    snapshot = rpc(cli.rpc_url, "evm_snapshot")

    place_interleaved(cli, tmp_path / "lost.csv", slot, 5, "l")
    cli.ok("ledger", "sync", "--db", db)
    lost = [log for log in stored_logs(db) if log[0] > fork_point]
    assert lost

    assert rpc(cli.rpc_url, "evm_revert", [snapshot]) is True
    place_interleaved(cli, tmp_path / "kept.csv", slot + 1, 3, "k")  # other orders: other blocks
    synced = cli.ok("ledger", "sync", "--db", db)
    assert f"the chain diverged after block {fork_point}: {len(lost)} events above it removed" in synced.stdout
    assert stored_logs(db) == raw_logs(cli)
    assert rows_of(db) == rows_of(fresh_sync(cli, "reference.sqlite"))
    orders = Ledger.open(db).orders()
    assert list(orders["slot"]) == [slot] * 4 + [slot + 1] * 3


def test_ledger_refusals(new_cli: Callable[[], Cli], tmp_path: Path) -> None:
    cli = new_cli()
    start_community(cli, "anvil", members=2)
    db = cli.workdir / "ledger.sqlite"
    cli.fails("ledger", "export", "--table", "trades", "--db", db, code=64, match="run `peerwatt ledger sync` first")
    cli.ok("ledger", "sync", "--db", db)
    cli.fails("ledger", "export", "--table", "trades", "--format", "parquet", "--db", db, code=64, match="--out")
    cli.fails("ledger", "export", "--table", "orders", "--member", "member0", "--db", db, code=64, match="address")
    cli.fails("ledger", "export", "--table", "events", "--from-slot", 1, "--db", db, code=64, match="no slot")
    cli.fails("ledger", "export", "--table", "nope", "--db", db, code=64)
    # the default ledger lives beside the deployment file, and PEERWATT_LEDGER_DB names another
    cli.ok("ledger", "sync")
    assert (cli.workdir / "deployment.ledger.sqlite").exists()
    cli.ok("ledger", "sync", env={"PEERWATT_LEDGER_DB": str(tmp_path / "env.sqlite")})
    assert (tmp_path / "env.sqlite").exists()
    # another community on the same chain does not mix into this ledger
    other = cli.workdir / "other.json"
    cli.ok("deploy", "--members", 2, env={"PEERWATT_DEPLOYMENT": str(other)})
    cli.fails("ledger", "sync", "--db", db, env={"PEERWATT_DEPLOYMENT": str(other)}, code=65, match="use another --db")
    # export needs no chain; sync does
    cli.ok("chain", "stop")
    assert "member" in cli.ok("ledger", "export", "--table", "events", "--db", db).stdout
    cli.fails("ledger", "sync", "--db", db, code=75)

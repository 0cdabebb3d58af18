"""The ledger's SQLite store: the schema, the binding to one deployment, atomic writes of block
ranges and the roll-back of a reorganised (or reset) chain.

Every table has the block number of the log it came from, so rolling back above a block is one
DELETE per table. The ``blocks`` table holds the hash of every block that has a stored event and
of the last block of every indexed range; the highest one is the resume point, and comparing
hashes with the chain finds where a reorganised chain diverged. A range's rows, its blocks and so
the resume point are written in one transaction: a sync killed at any moment leaves the store as
it was after some whole range, never with part of one.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from peerwatt.errors import ConflictError, InputError
from peerwatt.slots import SlotClock
from settlement.ledger.records import Batch

LEDGER_DB_ENV = "PEERWATT_LEDGER_DB"
LEDGER_SUFFIX = ".ledger.sqlite"
SCHEMA_VERSION = 2

# Columns without a type hold integers that may exceed 64 bits as decimal text (records.sql_int).
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, block_hash TEXT NOT NULL,
    tx_hash TEXT NOT NULL, tx_index INTEGER NOT NULL, contract TEXT NOT NULL,
    event TEXT,  -- NULL: an event no ABI of this version decodes (args holds its raw topics and data)
    args TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_name ON events (event, block_number);
CREATE TABLE IF NOT EXISTS orders (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, order_id TEXT NOT NULL,
    slot INTEGER NOT NULL, member TEXT NOT NULL, is_buy INTEGER NOT NULL, price INTEGER NOT NULL,
    qty_wh, tx_hash TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
CREATE INDEX IF NOT EXISTS orders_by_id ON orders (order_id);
CREATE INDEX IF NOT EXISTS orders_by_slot ON orders (slot);
CREATE INDEX IF NOT EXISTS orders_by_member ON orders (member, slot);
CREATE TABLE IF NOT EXISTS trades (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, slot INTEGER NOT NULL,
    buyer TEXT NOT NULL, seller TEXT NOT NULL, buy_order TEXT NOT NULL, sell_order TEXT NOT NULL,
    price INTEGER NOT NULL, qty_wh, maker_is_buy INTEGER NOT NULL, tx_hash TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
CREATE INDEX IF NOT EXISTS trades_by_slot ON trades (slot);
CREATE INDEX IF NOT EXISTS trades_by_buy_order ON trades (buy_order);
CREATE INDEX IF NOT EXISTS trades_by_sell_order ON trades (sell_order);
CREATE INDEX IF NOT EXISTS trades_by_buyer ON trades (buyer, slot);
CREATE INDEX IF NOT EXISTS trades_by_seller ON trades (seller, slot);
CREATE TABLE IF NOT EXISTS cancellations (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, slot INTEGER NOT NULL,
    order_id TEXT NOT NULL, member TEXT NOT NULL, remaining_wh, escrow_released, reason INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
CREATE INDEX IF NOT EXISTS cancellations_by_slot ON cancellations (slot);
CREATE INDEX IF NOT EXISTS cancellations_by_order ON cancellations (order_id);
CREATE TABLE IF NOT EXISTS readings (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, position INTEGER NOT NULL,
    meter TEXT NOT NULL, slot INTEGER NOT NULL, import_wh INTEGER NOT NULL, export_wh INTEGER NOT NULL,
    import_register_wh INTEGER NOT NULL, export_register_wh INTEGER NOT NULL, tx_hash TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index, position)
);
CREATE INDEX IF NOT EXISTS readings_by_slot ON readings (slot);
CREATE INDEX IF NOT EXISTS readings_by_meter ON readings (meter, slot);
CREATE TABLE IF NOT EXISTS meters (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, meter TEXT NOT NULL, member TEXT NOT NULL,
    from_slot INTEGER NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
CREATE INDEX IF NOT EXISTS meters_by_meter ON meters (meter);
CREATE INDEX IF NOT EXISTS meters_by_member ON meters (member);
CREATE TABLE IF NOT EXISTS schedules (  -- posted clearing results, from postSchedule calldata
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, position INTEGER NOT NULL, slot INTEGER NOT NULL,
    member_id INTEGER NOT NULL, net_export_wh INTEGER NOT NULL, internal_wh INTEGER NOT NULL,
    PRIMARY KEY (block_number, log_index, position)
);
CREATE INDEX IF NOT EXISTS schedules_by_slot ON schedules (slot);
CREATE TABLE IF NOT EXISTS slots (  -- settlement started: the slot's mode and rule (ICommunitySettlement enums)
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, slot INTEGER NOT NULL, mode INTEGER NOT NULL,
    rule INTEGER NOT NULL, readings INTEGER NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
CREATE INDEX IF NOT EXISTS slots_by_slot ON slots (slot);
CREATE TABLE IF NOT EXISTS settlements (  -- members' results, one row per member of a MembersSettled event
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, position INTEGER NOT NULL, slot INTEGER NOT NULL,
    member TEXT NOT NULL, contracted_wh, energy_amount, imbalance_amount, fees, retained, tx_hash TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index, position)
);
CREATE INDEX IF NOT EXISTS settlements_by_slot ON settlements (slot);
CREATE INDEX IF NOT EXISTS settlements_by_member ON settlements (member, slot);
CREATE TABLE IF NOT EXISTS shares (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, period INTEGER NOT NULL, member TEXT NOT NULL,
    amount, PRIMARY KEY (block_number, log_index)
);
CREATE INDEX IF NOT EXISTS shares_by_member ON shares (member, period);
CREATE TABLE IF NOT EXISTS members (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, member TEXT NOT NULL, member_id INTEGER NOT NULL,
    active INTEGER NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
"""

# Every table whose rows come from logs (rolled back together); the typed ones after "events".
LOG_TABLES = (
    "events", "orders", "trades", "cancellations", "readings", "meters", "schedules", "slots", "settlements",
    "shares", "members",
)  # fmt: skip


def default_path(deployment_file: Path) -> Path:
    """The store beside a deployment file: ``deployments/31337.ledger.sqlite``."""
    return deployment_file.with_name(deployment_file.stem + LEDGER_SUFFIX)


def resolve_path(explicit: Path | None, deployment_file: Path | None) -> Path | None:
    """``--db``, else ``PEERWATT_LEDGER_DB``, else beside the deployment file (None: unknown yet)."""
    if explicit is not None:
        return explicit
    env = os.environ.get(LEDGER_DB_ENV)
    if env:
        return Path(env)
    return default_path(deployment_file) if deployment_file is not None else None


@dataclass(frozen=True)
class Binding:
    """What a store indexes: one deployment on one chain, and the chain's slot clock."""

    chain_id: int
    contracts: dict[str, str]  # contract name -> address
    start_block: int
    slot_clock: SlotClock
    period_slots: int = 0  # slots per profit-share period (the settlement contract's; 0: none)

    def to_meta(self) -> dict[str, str]:
        clock = self.slot_clock
        return {
            "chain_id": str(self.chain_id),
            "contracts": json.dumps(self.contracts, sort_keys=True),
            "start_block": str(self.start_block),
            "slot_clock": json.dumps([clock.epoch, clock.slot_seconds, clock.gate_seconds]),
            "period_slots": str(self.period_slots),
        }

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> Binding:
        return cls(
            int(meta["chain_id"]),
            json.loads(meta["contracts"]),
            int(meta["start_block"]),
            SlotClock(*json.loads(meta["slot_clock"])),
            int(meta.get("period_slots", "0")),
        )


class Store:
    """One SQLite ledger file (WAL mode: readers never wait for the indexer)."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            if not path.exists():
                raise InputError(f"no ledger at {path}; run `peerwatt ledger sync` first (or pass --db)")
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)  # transactions are explicit
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            self.db.executescript(SCHEMA)
            version = self.meta().get("schema_version")
            if version is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(version) != SCHEMA_VERSION:
                raise ConflictError(
                    f"ledger {path} has schema version {version}, this peerwatt writes {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): one writer at a time."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ----------------------------------------------------------------- binding

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def binding(self) -> Binding | None:
        meta = self.meta()
        return Binding.from_meta(meta) if "chain_id" in meta else None

    def bind(self, binding: Binding) -> None:
        """Records what this (empty) store indexes."""
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", binding.to_meta().items())

    # ------------------------------------------------------------ block hashes

    def last_block(self) -> tuple[int, str] | None:
        """The highest indexed block and its hash (None before the first range)."""
        row = self.db.execute("SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def block_numbers(self) -> list[int]:
        """Every block whose hash is stored, ascending."""
        return [row[0] for row in self.db.execute("SELECT number FROM blocks ORDER BY number")]

    def block_hash(self, number: int) -> str | None:
        row = self.db.execute("SELECT hash FROM blocks WHERE number = ?", (number,)).fetchone()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ writes

    def write_range(self, first: int, last: int, last_hash: str, batch: Batch) -> bool:
        """Writes the rows of blocks ``first..last`` and makes ``last`` the resume point, in one
        transaction. False (nothing written) if the store no longer resumes at ``first`` (another
        sync wrote in the meantime)."""
        with self.transaction() as db:
            top = db.execute("SELECT MAX(number) FROM blocks").fetchone()[0]
            binding = self.binding()
            resume = (top + 1) if top is not None else (binding.start_block if binding else first)
            if resume != first:
                return False
            db.executemany(f"INSERT OR IGNORE INTO events VALUES ({_marks(8)})", batch.events)
            for table, rows in batch.typed.items():
                if rows:
                    db.executemany(f"INSERT OR IGNORE INTO {table} VALUES ({_marks(len(rows[0]))})", rows)
            hashes = dict(batch.block_hashes)
            hashes[last] = last_hash
            db.executemany("INSERT OR REPLACE INTO blocks VALUES (?, ?)", sorted(hashes.items()))
        return True

    def rollback_above(self, block: int) -> int:
        """Deletes every row of blocks after ``block``; returns how many events went."""
        with self.transaction() as db:
            removed = db.execute("DELETE FROM events WHERE block_number > ?", (block,)).rowcount
            for table in LOG_TABLES[1:]:
                db.execute(f"DELETE FROM {table} WHERE block_number > ?", (block,))
            db.execute("DELETE FROM blocks WHERE number > ?", (block,))
        return int(removed)

    def clear(self) -> None:
        """Forgets everything, including the binding (the chain was reset under it)."""
        with self.transaction() as db:
            for table in (*LOG_TABLES, "blocks"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key != 'schema_version'")

    # ------------------------------------------------------------------- reads

    def count(self, table: str) -> int:
        if table not in (*LOG_TABLES, "blocks"):
            raise InputError(f"no ledger table {table!r}")
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, params).fetchall()


def _marks(count: int) -> str:
    return ", ".join("?" * count)

"""The oracle's durable outbox (SQLite): signed readings waiting to be on chain.

A reading is signed and stored here before it is sent; it is marked ``sent`` with the hash of
the transaction carrying it, and ``done`` (or ``rejected``, with the oracle's reason) only once
that transaction is mined -- or once the chain shows a reading of its meter for its slot or a
later one. A crash at any point leaves every reading in one of these states, and the pusher
picks up from there (:mod:`oracle.pusher`). Rows are keyed by chain id, oracle address, meter
and slot, so a reading is stored once per deployment, whatever is fed in again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from oracle.readings import ACCEPTED_READING_BYTES, SignedReading

OUTBOX_SUFFIX = ".outbox.sqlite"


def outbox_path(deployment_file: Path) -> Path:
    """The default outbox beside a deployment file: ``deployments/31337.outbox.sqlite``."""
    return deployment_file.with_name(deployment_file.stem + OUTBOX_SUFFIX)


class Status(str, Enum):
    PENDING = "pending"  # stored, not (or no longer) in flight
    SENT = "sent"  # in a transaction not yet known to be mined
    DONE = "done"  # on chain
    REJECTED = "rejected"  # the oracle refused it (reason in `detail`)


@dataclass(frozen=True)
class Entry:
    meter: str
    slot: int
    packed: bytes  # the signed reading, as submitReadings takes it
    status: Status
    tx_hash: str | None
    detail: str | None


@dataclass(frozen=True)
class AddResult:
    added: int
    already: int  # the same reading was stored before
    conflicts: list[SignedReading]  # a different reading is stored for the same meter and slot


_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    chain_id INTEGER NOT NULL,
    oracle TEXT NOT NULL,
    meter TEXT NOT NULL,
    slot INTEGER NOT NULL,
    packed BLOB NOT NULL,
    status TEXT NOT NULL,
    tx_hash TEXT,
    detail TEXT,
    PRIMARY KEY (chain_id, oracle, meter, slot)
);
CREATE INDEX IF NOT EXISTS readings_by_status ON readings (chain_id, oracle, status, slot, meter);
"""


class Outbox:
    """The outbox of one deployment (chain id and oracle address) in the SQLite file ``path``."""

    def __init__(self, path: Path, chain_id: int, oracle: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._scope = (chain_id, oracle.lower())
        # autocommit, and every write durable before it returns: a crash loses nothing stored
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, readings: Iterable[SignedReading]) -> AddResult:
        """Stores new readings as pending, in one transaction."""
        added = already = 0
        conflicts: list[SignedReading] = []
        with self._transaction():
            for signed in readings:
                reading = signed.reading
                packed = signed.packed()
                row = self._db.execute(
                    "SELECT packed FROM readings WHERE chain_id=? AND oracle=? AND meter=? AND slot=?",
                    (*self._scope, reading.meter.lower(), reading.slot),
                ).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                        (*self._scope, reading.meter.lower(), reading.slot, packed, Status.PENDING.value),
                    )
                    added += 1
                elif bytes(row[0])[:ACCEPTED_READING_BYTES] == packed[:ACCEPTED_READING_BYTES]:
                    already += 1
                else:
                    conflicts.append(signed)
        return AddResult(added, already, conflicts)

    def entries(self, status: Status, limit: int | None = None, before_slot: int | None = None) -> list[Entry]:
        """Entries in ``status`` (of slots before ``before_slot``), slot-major: the order the
        oracle accepts them best."""
        query = "SELECT meter, slot, packed, status, tx_hash, detail FROM readings "
        query += "WHERE chain_id=? AND oracle=? AND status=? AND slot<? ORDER BY slot, meter"
        params: tuple[object, ...] = (*self._scope, status.value, 2**32 if before_slot is None else before_slot)
        if limit is not None:
            query += " LIMIT ?"
            params += (limit,)
        return [_entry(row) for row in self._db.execute(query, params)]

    def meters(self) -> list[str]:
        """Every meter with a stored reading."""
        rows = self._db.execute("SELECT DISTINCT meter FROM readings WHERE chain_id=? AND oracle=?", self._scope)
        return [row[0] for row in rows]

    def latest_done_slot(self, meter: str) -> int | None:
        row = self._db.execute(
            "SELECT MAX(slot) FROM readings WHERE chain_id=? AND oracle=? AND meter=? AND status=?",
            (*self._scope, meter.lower(), Status.DONE.value),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def set_status(
        self, keys: Sequence[tuple[str, int]], status: Status, tx_hash: str | None = None, detail: str | None = None
    ) -> None:
        """Moves the readings (meter, slot) to ``status``, in one transaction."""
        with self._transaction():
            self._db.executemany(
                "UPDATE readings SET status=?, tx_hash=?, detail=? "
                "WHERE chain_id=? AND oracle=? AND meter=? AND slot=?",
                [(status.value, tx_hash, detail, *self._scope, meter.lower(), slot) for meter, slot in keys],
            )

    def settle_pending_up_to(self, meter: str, slot: int) -> int:
        """Marks done the pending readings of ``meter`` up to ``slot``, the last slot the chain
        has for it: sending them would be a no-op, a conflict or out of order."""
        query = "UPDATE readings SET status=?, detail=? "
        query += "WHERE chain_id=? AND oracle=? AND meter=? AND status=? AND slot<=?"
        params = (Status.DONE.value, f"chain has slot {slot}", *self._scope, meter.lower(), Status.PENDING.value, slot)
        return self._db.execute(query, params).rowcount

    def requeue_after(self, meter: str, slot: int | None) -> int:
        """Marks pending again the done readings of ``meter`` after ``slot`` (all of them for None):
        the chain no longer has them (it was reset or restarted without them)."""
        query = "UPDATE readings SET status=?, tx_hash=NULL, detail=NULL "
        query += "WHERE chain_id=? AND oracle=? AND meter=? AND status=? AND slot>?"
        cursor = self._db.execute(
            query, (Status.PENDING.value, *self._scope, meter.lower(), Status.DONE.value, -1 if slot is None else slot)
        )
        return cursor.rowcount

    def counts(self) -> dict[Status, int]:
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM readings WHERE chain_id=? AND oracle=? GROUP BY status", self._scope
        )
        found = {Status(status): count for status, count in rows}
        return {status: found.get(status, 0) for status in Status}

    def _transaction(self) -> sqlite3.Connection:
        # `with connection:` commits or rolls back an explicit BEGIN in autocommit mode
        self._db.execute("BEGIN IMMEDIATE")
        return self._db


def _entry(row: tuple[object, ...]) -> Entry:
    meter, slot, packed, status, tx_hash, detail = row
    return Entry(str(meter), int(slot), bytes(packed), Status(status), tx_hash, detail)  # type: ignore[arg-type]

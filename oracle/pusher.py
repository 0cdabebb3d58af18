"""Pushes the outbox's signed readings to the MeterOracle in batches, exactly once.

Each round first reconciles the outbox with the chain, then sends pending readings slot-major
in batches of at most ``batch_size`` readings, fewer if that many would not fit in a block at
the worst-case gas per reading:

* a ``sent`` batch whose transaction is mined is settled from its events (accepted, re-sent,
  rejected with the oracle's reason); one the node no longer knows (a restarted chain) is
  pending again;
* per meter, the chain's last accepted slot decides the rest: pending readings up to it are
  not sent again (the chain has that slot, or refuses it as out of order), and readings marked
  done after it are pending again (the chain lost them, e.g. restarted from an older state).

An unreachable node (a chain restarting) is waited for with back-off. The dev chains this runs
against mine a transaction before ``eth_sendTransaction`` returns; there, a crash between
sending and recording the hash is caught by the chain check above.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from oracle.outbox import Entry, Outbox, Status
from oracle.readings import unpack_accepted
from peerwatt import artifacts
from peerwatt.chain import current_slot, request
from peerwatt.deployment import Deployment
from peerwatt.errors import PeerwattError, RpcUnavailableError
from peerwatt.meter_readings import ORACLE
from peerwatt.transactions import Receipt, TxSender, call

DEFAULT_BATCH = 100
TX_BASE_GAS = 60_000
GAS_PER_READING = 40_000  # a reading costs 13k-33k (benchmarks/oracle_gas.py): ample room
BLOCK_GAS_SHARE = 0.9  # a batch stays below the block gas limit
REJECT_REASONS = (  # IMeterOracle.RejectReason
    "UnknownMeter",
    "KeyNotActive",
    "SlotNotEnded",
    "BadSignature",
    "OutOfOrder",
    "RegistersBackwards",
    "RegistersMismatch",
)

Progress = Callable[[int], None]  # readings settled since the last call


@dataclass
class PushResult:
    accepted: int = 0  # accepted by the oracle in this run
    already_on_chain: int = 0  # not sent, or sent and found already there
    waiting: int = 0  # left pending: their slot has not ended on chain yet
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> readings
    transactions: int = 0
    gas_used: int = 0  # by the transactions sent in this run
    seconds: float = 0.0

    @property
    def readings_per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


class Pusher:
    """Sends an outbox's readings to a deployment's oracle from the node account ``relayer``."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        outbox: Outbox,
        relayer: str,
        batch_size: int = DEFAULT_BATCH,
        max_wait_seconds: float = 120.0,
    ) -> None:
        if batch_size < 1:
            raise PeerwattError(f"batch size must be at least 1, got {batch_size}")
        self.w3 = w3
        self.deployment = deployment
        self.oracle = deployment.oracle
        self._ended_before = 0  # readings of slots before it are sent (their slots have ended)
        self.outbox = outbox
        self.relayer = relayer
        self.batch_size = batch_size
        self.max_wait_seconds = max_wait_seconds
        self.sender = TxSender(w3)
        self._submit = artifacts.function(ORACLE, "submitReadings")

    def push(self, progress: Progress | None = None) -> PushResult:
        """Sends every pending reading; returns what happened to them. While the node does not
        answer it waits, with back-off, up to ``max_wait_seconds`` at a stretch, then starts
        over from a reconciliation."""
        result = PushResult()
        started = time.perf_counter()
        unavailable_since: float | None = None
        delay = 0.2
        while True:
            try:
                self.reconcile(result)
                self._ended_before = current_slot(self.w3, self.deployment.slot_clock)
                per_batch = self.readings_per_batch()
                while batch := self.outbox.entries(Status.PENDING, per_batch, before_slot=self._ended_before):
                    self._send(batch, result)
                    unavailable_since, delay = None, 0.2
                    if progress is not None:
                        progress(len(batch))
                break
            except RpcUnavailableError:
                now = time.monotonic()
                unavailable_since = unavailable_since or now
                if now + delay - unavailable_since > self.max_wait_seconds:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 5.0)
                self.sender = TxSender(self.w3)  # fees and gas limit may differ after a restart
        result.waiting = self.outbox.counts()[Status.PENDING]
        result.seconds = time.perf_counter() - started
        return result

    def reconcile(self, result: PushResult | None = None) -> None:
        """Brings the outbox in line with the chain (see the module docstring)."""
        result = result if result is not None else PushResult()
        for tx_hash, entries in _by_tx(self.outbox.entries(Status.SENT)).items():
            raw = request(self.w3, "eth_getTransactionReceipt", [tx_hash])
            if raw is not None:
                self._settle(entries, Receipt.from_rpc(raw), result)
            elif request(self.w3, "eth_getTransactionByHash", [tx_hash]) is None:
                self.outbox.set_status(_keys(entries), Status.PENDING)  # the node forgot it
        for meter in self.outbox.meters():
            last = last_slot_on_chain(self.w3, self.deployment, meter)
            self.outbox.requeue_after(meter, last)
            if last is not None:
                result.already_on_chain += self.outbox.settle_pending_up_to(meter, last)

    def readings_per_batch(self) -> int:
        """``batch_size``, or fewer if that many would not fit in a block at the worst-case gas."""
        fit = int((self.sender.block_gas_limit() * BLOCK_GAS_SHARE - TX_BASE_GAS) // GAS_PER_READING)
        return max(1, min(self.batch_size, fit))

    def _send(self, batch: list[Entry], result: PushResult) -> None:
        data = self._submit.encode(b"".join(entry.packed for entry in batch))
        gas = TX_BASE_GAS + GAS_PER_READING * len(batch)
        tx_hash = self.sender.send(self.relayer, self.oracle, data, gas=gas)
        self.outbox.set_status(_keys(batch), Status.SENT, tx_hash)
        result.transactions += 1
        receipt = self.sender.receipt(tx_hash)
        result.gas_used += receipt.gas_used
        self._settle(batch, receipt, result)

    def _settle(self, entries: Sequence[Entry], receipt: Receipt, result: PushResult) -> None:
        """Records what a mined batch did to each of its readings."""
        if not receipt.status:
            raise PeerwattError(f"batch transaction {receipt.tx_hash} reverted; its readings stay in the outbox")
        accepted: set[tuple[str, int]] = set()
        refused: dict[tuple[str, int], str] = {}
        for name, args in receipt.events(self.oracle):
            if name == "ReadingsAccepted":
                accepted |= {(r.meter.lower(), r.slot) for r in unpack_accepted(args["readings"])}
            elif name == "ReadingRejected":
                refused[(args["meter"].lower(), args["slot"])] = REJECT_REASONS[args["reason"]]
            elif name == "ReadingConflict":
                refused[(args["meter"].lower(), args["slot"])] = "Conflict"
        done = [key for key in _keys(entries) if key not in refused]
        self.outbox.set_status(done, Status.DONE, receipt.tx_hash)
        result.accepted += sum(key in accepted for key in done)
        result.already_on_chain += sum(key not in accepted for key in done)  # re-sent: a no-op
        for (meter, slot), reason in refused.items():
            if reason == "SlotNotEnded":  # not yet: the chain's clock is behind ours; wait for it
                self.outbox.set_status([(meter, slot)], Status.PENDING, detail=reason)
                self._ended_before = min(self._ended_before, slot)
                continue
            self.outbox.set_status([(meter, slot)], Status.REJECTED, receipt.tx_hash, reason)
            result.rejected[reason] = result.rejected.get(reason, 0) + 1


def _keys(entries: Sequence[Entry]) -> list[tuple[str, int]]:
    return [(entry.meter, entry.slot) for entry in entries]


def _by_tx(entries: Sequence[Entry]) -> dict[str, list[Entry]]:
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.tx_hash or "", []).append(entry)
    return groups


def last_slot_on_chain(w3: Web3, deployment: Deployment, meter: str) -> int | None:
    """The slot of the meter's last reading the oracle accepted (None if it has none)."""
    view: Any = call(w3, deployment.oracle, ORACLE, "meter", Web3.to_checksum_address(meter))[0]
    has_reading, last_slot = view[4], view[5]
    return int(last_slot) if has_reading else None

"""The ledger's indexer: every log of the community's contracts, read with ``eth_getLogs`` in
block ranges into the store, resuming where the last sync stopped.

- **Ranges adapt**: a range grows while it holds few logs and shrinks when it holds many or the
  node refuses it (nodes cap results per request); the next range is fetched while the current
  one is decoded and written.
- **Atomic and idempotent**: each range is written in one SQLite transaction together with its
  last block (the resume point), so a killed sync resumes without duplicates or gaps.
- **Reorganised or reset chains**: before reading on, the stored hash of the last indexed block
  is compared with the chain's; if they differ, a binary search over the stored block hashes
  finds the last block both agree on, everything above it is deleted and indexing resumes from
  there. (A block's hash commits to its parent, so "still on the chain" holds for every block up
  to the divergence and for none after it.) If no stored block is left, the chain was reset
  under the deployment: the store starts over for the deployment the chain holds now.
- Nothing but the chain is read, and the deployment file only for the contracts' addresses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from peerwatt.chain import NodeError, block_number, chain_id, request
from peerwatt.deployment import Deployment
from peerwatt.errors import ConflictError
from peerwatt.slots import SlotClock
from peerwatt.transactions import call
from settlement.ledger.records import MARKET, SETTLEMENT, Batch, add_log, schedule_posted_topic
from settlement.ledger.store import Binding, Store

FIRST_RANGE_BLOCKS = 1_000
MAX_RANGE_BLOCKS = 100_000
TARGET_LOGS = 5_000  # per request: large enough to amortise a round trip, small enough for memory
MAX_RETRIES = 5  # the chain moved while a range was read: read it again, this many times at most

Progress = Callable[[int, int, int], None]  # (last block written, head, events written so far)


@dataclass
class SyncReport:
    """What one sync did."""

    first_block: int  # first block read (the resume point)
    last_block: int  # last block indexed (first_block - 1: nothing new)
    events: int  # events written
    seconds: float
    rolled_back_to: int | None = None  # the last block kept after a divergence
    events_removed: int = 0
    reset: bool = False  # the chain was reset under the deployment: the store started over

    @property
    def blocks(self) -> int:
        return max(self.last_block - self.first_block + 1, 0)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Fetched:
    first: int
    last: int
    logs: list[dict[str, Any]]
    last_hash: str | None  # None: the chain has no such block any more
    inputs: dict[str, str]  # calldata of the range's schedule postings, by transaction hash


class Indexer:
    """Indexes one deployment's contracts into ``store``."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        store: Store,
        *,
        max_range: int = MAX_RANGE_BLOCKS,
        target_logs: int = TARGET_LOGS,
        confirmations: int = 0,
        progress: Progress | None = None,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.store = store
        self.max_range = max(1, max_range)
        self.target_logs = target_logs
        self.confirmations = confirmations
        self.progress = progress
        self.contracts = {address.lower(): name for name, address in deployment.addresses().items()}
        self._range = min(FIRST_RANGE_BLOCKS, self.max_range)

    # ------------------------------------------------------------------ sync

    def sync(self, to_block: int | None = None) -> SyncReport:
        """Indexes up to ``to_block`` (default: the chain's head less ``confirmations``)."""
        started = time.perf_counter()
        report = SyncReport(0, 0, 0, 0.0)
        self._check_chain()
        self._reconcile(report)
        self._bind()
        head = block_number(self.w3) - self.confirmations if to_block is None else to_block
        first = self._resume_point()
        report.first_block, report.last_block = first, first - 1
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-fetch") as pool:
            pending: Future[_Fetched] | None = pool.submit(self._fetch, first, head) if first <= head else None
            retries = 0
            while pending is not None:
                fetched = pending.result()
                pending = None
                batch = self._batch(fetched)
                if batch is None:  # the chain moved under the range: check it, read again
                    retries += 1
                    if retries > MAX_RETRIES:
                        raise ConflictError("the chain keeps reorganising while the ledger reads it; try again later")
                    self._reconcile(report)
                    first = self._resume_point()
                    pending = pool.submit(self._fetch, first, head) if first <= head else None
                    continue
                self._adapt(len(fetched.logs), fetched.last - fetched.first + 1)
                if fetched.last < head:  # read the next range while this one is written
                    pending = pool.submit(self._fetch, fetched.last + 1, head)
                if not self.store.write_range(fetched.first, fetched.last, str(fetched.last_hash), batch):
                    raise ConflictError(f"another sync is writing the ledger {self.store.path}; let it finish")
                report.events += len(batch.events)
                report.last_block = fetched.last
                if self.progress is not None:
                    self.progress(fetched.last, head, report.events)
        report.seconds = time.perf_counter() - started
        return report

    def _fetch(self, first: int, head: int) -> _Fetched:
        """The logs of the next range from ``first`` (shrinking it while the node refuses it) and
        the hash of its last block."""
        while True:
            last = min(first + self._range - 1, head)
            try:
                logs = request(
                    self.w3,
                    "eth_getLogs",
                    [{"address": list(self.contracts), "fromBlock": hex(first), "toBlock": hex(last)}],
                )
            except NodeError:
                if last == first:
                    raise
                self._range = max(1, (last - first + 1) // 2)  # e.g. "query returned more than 10000 results"
                continue
            header = request(self.w3, "eth_getBlockByNumber", [hex(last), False])
            inputs = {
                log["transactionHash"]: request(self.w3, "eth_getTransactionByHash", [log["transactionHash"]])["input"]
                for log in logs
                if log["topics"] and log["topics"][0] == schedule_posted_topic()
            }
            return _Fetched(first, last, logs, None if header is None else header["hash"], inputs)

    def _adapt(self, logs: int, blocks: int) -> None:
        if logs > self.target_logs:
            self._range = max(1, blocks * self.target_logs // logs)
        elif logs < self.target_logs // 4 and blocks >= self._range:
            self._range = min(self.max_range, self._range * 2)

    def _batch(self, fetched: _Fetched) -> Batch | None:
        """The rows of a fetched range, or None if its logs and its last block's hash disagree
        (the chain reorganised between the two requests)."""
        if fetched.last_hash is None:
            return None
        batch = Batch()
        for log in fetched.logs:
            known = batch.block_hashes.get(int(log["blockNumber"], 16), log["blockHash"])
            if log.get("removed") or known != log["blockHash"]:  # logs of one block from two forks
                return None
            add_log(batch, log, self.contracts, fetched.inputs)
        if batch.block_hashes.get(fetched.last, fetched.last_hash) != fetched.last_hash:
            return None
        return batch

    # ---------------------------------------------------------- chain checks

    def _check_chain(self) -> None:
        binding = self.store.binding()
        current = chain_id(self.w3)
        if binding is not None and binding.chain_id != current:
            raise ConflictError(
                f"the ledger {self.store.path} indexes chain id {binding.chain_id}, the RPC serves chain id {current}; "
                "use another --db"
            )

    def _bind(self) -> None:
        """Binds an empty store to this deployment; refuses a store of another deployment."""
        binding = self.store.binding()
        addresses = self.deployment.addresses()
        if binding is None:
            epoch, slot_seconds, gate_seconds = call(self.w3, self.deployment.market, MARKET, "slotClock")
            settlement = self.deployment.settlement
            period_slots = call(self.w3, settlement, SETTLEMENT, "periodSlots")[0] if settlement else 0
            self.store.bind(
                Binding(
                    chain_id(self.w3),
                    addresses,
                    self.deployment.start_block,
                    SlotClock(epoch, slot_seconds, gate_seconds),
                    int(period_slots),
                )
            )
        elif binding.contracts != addresses:
            raise ConflictError(
                f"the ledger {self.store.path} indexes the community whose market is at {binding.contracts[MARKET]}, "
                f"not the deployment at {self.deployment.market}; use another --db"
            )

    def _resume_point(self) -> int:
        top = self.store.last_block()
        binding = self.store.binding()
        assert binding is not None
        return binding.start_block if top is None else top[0] + 1

    def _chain_hash(self, number: int) -> str | None:
        header = request(self.w3, "eth_getBlockByNumber", [hex(number), False])
        return None if header is None else str(header["hash"])

    def _reconcile(self, report: SyncReport) -> None:
        """Rolls the store back to the last block the chain still has (see the module doc)."""
        top = self.store.last_block()
        if top is None or self._chain_hash(top[0]) == top[1]:
            return
        numbers = self.store.block_numbers()
        kept = last_on_chain(numbers, lambda number: self._chain_hash(number) == self.store.block_hash(number))
        if kept is None:
            report.events_removed += self.store.count("events")
            report.reset = True
            self.store.clear()
            return
        report.rolled_back_to = kept
        report.events_removed += self.store.rollback_above(kept)


def last_on_chain(numbers: Sequence[int], on_chain: Callable[[int], bool]) -> int | None:
    """The highest of the ascending block ``numbers`` for which ``on_chain`` holds, given that it
    holds up to some block and for none after it, and not for the last one; None if for none.
    O(log n) calls of ``on_chain`` (each one RPC request)."""
    matching, diverged = -1, len(numbers) - 1  # invariants: numbers[diverged] is off the chain, numbers[matching] on it
    while diverged - matching > 1:
        middle = (matching + diverged) // 2
        if on_chain(numbers[middle]):
            matching = middle
        else:
            diverged = middle
    return numbers[matching] if matching >= 0 else None

"""Rows of the ledger's tables from raw logs: the generic ``events`` row every log gets, and the
typed rows (orders, trades, cancellations, readings, meters, members) the queries need.

Integers are kept exact: an ``events`` row stores its arguments as JSON with every integer as a
decimal string (JSON readers in other languages turn large numbers into floats), and typed rows
hold integers beyond SQLite's 64 bits as decimal text (:func:`sql_int`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from eth_utils import to_checksum_address

from peerwatt import artifacts
from peerwatt.meter_readings import ORACLE, unpack_accepted
from settlement.chunks import posted_entries, unpack_member_results

MARKET = "CdaMarket"
SETTLEMENT = "CommunitySettlement"
INT64_MAX = 2**63 - 1


def sql_int(value: int) -> int | str:
    """``value`` as SQLite stores it exactly: an INTEGER when it fits 64 bits, else decimal text
    (in a column without type affinity, which would turn such text into a lossy REAL)."""
    return value if -INT64_MAX - 1 <= value <= INT64_MAX else str(value)


@lru_cache(maxsize=1 << 16)
def checksum(address: str) -> str:
    """EIP-55 form of an address (cached: a community has few, and hashing each is slow)."""
    return to_checksum_address(address)


def _json_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return checksum(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return value


def args_json(args: dict[str, Any]) -> str:
    """An event's arguments as stored: integers as decimal strings, bytes as 0x hex, addresses in
    EIP-55 form."""
    return json.dumps({name: _json_value(value) for name, value in args.items()}, separators=(",", ":"))


def parse_args(event: str, text: str) -> dict[str, Any]:
    """The arguments of a stored ``event`` row back in their Python types (ints, bytes, ...)."""
    raw = json.loads(text)
    types = artifacts.event_types(event)
    return {name: _from_json(types.get(name, ""), value) for name, value in raw.items()}


def _from_json(kind: str, value: Any) -> Any:
    if kind.endswith("]") and isinstance(value, list):
        inner = kind[: kind.rindex("[")]
        return [_from_json(inner, item) for item in value]
    if kind.startswith(("uint", "int")):
        return int(value)
    if kind.startswith("bytes"):
        return bytes.fromhex(value[2:])
    return value


@dataclass
class Batch:
    """The rows of one block range, written in one transaction."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    typed: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    block_hashes: dict[int, str] = field(default_factory=dict)

    def add(self, table: str, rows: Iterable[tuple[Any, ...]]) -> None:
        self.typed.setdefault(table, []).extend(rows)


@dataclass(frozen=True)
class Log:
    """Where a log is on chain."""

    block_number: int
    log_index: int
    tx_hash: str


TypedRows = Callable[[Log, dict[str, Any]], Iterator[tuple[str, tuple[Any, ...]]]]


def _order_placed(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "orders", (
        log.block_number, log.log_index, str(a["orderId"]), a["slot"], checksum(a["member"]), a["isBuy"],
        a["pricePerKwh"], sql_int(a["qtyWh"]), log.tx_hash,
    )  # fmt: skip


def _trade(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "trades", (
        log.block_number, log.log_index, a["slot"], checksum(a["buyer"]), checksum(a["seller"]),
        str(a["buyOrderId"]), str(a["sellOrderId"]), a["pricePerKwh"], sql_int(a["qtyWh"]), a["makerIsBuy"],
        log.tx_hash,
    )  # fmt: skip


def _cancelled(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "cancellations", (
        log.block_number, log.log_index, a["slot"], str(a["orderId"]), checksum(a["member"]),
        sql_int(a["remainingWh"]), sql_int(a["escrowReleased"]), a["reason"], log.tx_hash,
    )  # fmt: skip


def _readings(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    for position, reading in enumerate(unpack_accepted(a["readings"])):
        yield "readings", (
            log.block_number, log.log_index, position, reading.meter, reading.slot, reading.import_wh,
            reading.export_wh, reading.import_register_wh, reading.export_register_wh, log.tx_hash,
        )  # fmt: skip


def _meter(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "meters", (log.block_number, log.log_index, checksum(a["meter"]), checksum(a["member"]), a["fromSlot"])


def _member(active: bool) -> TypedRows:
    def rows(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
        yield "members", (log.block_number, log.log_index, checksum(a["member"]), a["memberId"], active)

    return rows


def _slot_started(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "slots", (log.block_number, log.log_index, a["slot"], a["mode"], a["rule"], a["readings"])


def _members_settled(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    for position, result in enumerate(unpack_member_results(a["results"])):
        yield "settlements", (
            log.block_number, log.log_index, position, a["slot"], result.member, sql_int(result.contracted_wh),
            sql_int(result.energy_amount), sql_int(result.imbalance_amount), sql_int(result.fees),
            sql_int(result.retained), log.tx_hash,
        )  # fmt: skip


def _share(log: Log, a: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "shares", (log.block_number, log.log_index, a["period"], checksum(a["member"]), sql_int(a["amount"]))


# (contract, event) -> typed rows; every other event is kept in ``events`` only
TYPED: dict[tuple[str, str], TypedRows] = {
    (MARKET, "OrderPlaced"): _order_placed,
    (MARKET, "TradeExecuted"): _trade,
    (MARKET, "OrderCancelled"): _cancelled,
    (MARKET, "MemberAdded"): _member(True),
    (MARKET, "MemberRemoved"): _member(False),
    (ORACLE, "ReadingsAccepted"): _readings,
    (ORACLE, "MeterRegistered"): _meter,
    (SETTLEMENT, "SettlementStarted"): _slot_started,
    (SETTLEMENT, "MembersSettled"): _members_settled,
    (SETTLEMENT, "ShareDistributed"): _share,
}


@lru_cache(maxsize=1)
def schedule_posted_topic() -> str:
    """Topic 0 of ``SchedulePosted``: the logs whose transactions' calldata the indexer reads."""
    return artifacts.event_topic(SETTLEMENT, "SchedulePosted")


def _schedule(log: Log, calldata: str) -> Iterator[tuple[str, tuple[Any, ...]]]:
    slot, entries = posted_entries(calldata)
    for position, (member_id, net_export_wh, internal_wh) in enumerate(entries):
        yield "schedules", (log.block_number, log.log_index, position, slot, member_id, net_export_wh, internal_wh)


def add_log(
    batch: Batch, raw: dict[str, Any], contracts: dict[str, str], inputs: Mapping[str, str] | None = None
) -> None:
    """Adds a raw JSON-RPC log to ``batch``: its ``events`` row and its typed rows.
    ``contracts``: lower-case address -> contract name; ``inputs``: transaction hash -> calldata
    of the transactions that posted clearing schedules (their entries are calldata, not events).
    A log no ABI of ours decodes (an event added after this code) is kept with its raw topics and
    data and no name."""
    block_number = int(raw["blockNumber"], 16)
    log = Log(block_number, int(raw["logIndex"], 16), raw["transactionHash"])
    contract = contracts[raw["address"].lower()]
    batch.block_hashes[block_number] = raw["blockHash"]
    decoded = artifacts.decode_event(raw["topics"], raw["data"])
    if decoded is None:
        name, text = None, json.dumps({"topics": raw["topics"], "data": raw["data"]}, separators=(",", ":"))
    else:
        name, args = decoded
        text = args_json(args)
        typed = TYPED.get((contract, name))
        if typed is not None:
            for table, row in typed(log, args):
                batch.typed.setdefault(table, []).append(row)
        if (contract, name) == (SETTLEMENT, "SchedulePosted") and inputs is not None:
            for table, row in _schedule(log, inputs[log.tx_hash]):
                batch.typed.setdefault(table, []).append(row)
    batch.events.append(
        (
            block_number,
            log.log_index,
            raw["blockHash"],
            log.tx_hash,
            int(raw["transactionIndex"], 16),
            contract,
            name,
            text,
        )
    )

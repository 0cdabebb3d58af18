"""Packed data of the settlement contract: a slot's committed readings cut into the calls
``CommunitySettlement.settle`` takes (last readings first), posted schedules, and the member
results its ``MembersSettled`` events carry.

The oracle commits a slot's accepted readings in a hash chain (:func:`oracle.readings.commitment_link`).
Settlement replays it backwards: each call passes the chain value before its chunk's first
reading and the chunk (12 bytes a reading: memberId | importWh | exportWh); the contract replays
it and must reach the value it has already verified, starting from the sealed commitment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_utils import to_checksum_address

from peerwatt import artifacts
from peerwatt.meter_readings import commitment_link

CHUNK_READING_BYTES = 12  # CommunitySettlement.CHUNK_READING_BYTES
SCHEDULE_ENTRY_BYTES = 12  # CommunitySettlement.SCHEDULE_ENTRY_BYTES
RESULT_BYTES = 96  # CommunitySettlement.RESULT_BYTES
INTERNAL_TRADE_MAX_WH = 2**19 - 1  # CommunitySettlement.INTERNAL_TRADE_MAX_WH: int20 lanes
DEFAULT_CHUNK_READINGS = 200  # ~13k gas each when paying: well inside a block


@dataclass(frozen=True)
class SlotReading:
    """A reading as the slot's commitment holds it."""

    member_id: int
    import_wh: int
    export_wh: int

    @property
    def net_export_wh(self) -> int:
        return self.export_wh - self.import_wh

    def packed(self) -> bytes:
        return self.member_id.to_bytes(4, "big") + self.import_wh.to_bytes(4, "big") + self.export_wh.to_bytes(4, "big")


@dataclass(frozen=True)
class Chunk:
    """One ``settle(slot, from_chain, readings)`` call."""

    from_chain: int
    readings: tuple[SlotReading, ...]

    @property
    def data(self) -> bytes:
        return b"".join(reading.packed() for reading in self.readings)

    @property
    def from_chain_bytes(self) -> bytes:
        return self.from_chain.to_bytes(32, "big")


def chain_values(slot: int, readings: Sequence[SlotReading]) -> list[int]:
    """The slot's chain before each reading and after the last (``len(readings) + 1`` values)."""
    values = [0]
    for reading in readings:
        values.append(commitment_link(values[-1], reading.member_id, slot, reading.import_wh, reading.export_wh))
    return values


def backward_chunks(slot: int, readings: Sequence[SlotReading], size: int = DEFAULT_CHUNK_READINGS) -> list[Chunk]:
    """The slot's readings (in acceptance order) as settle calls of at most ``size`` readings,
    in the order they must be sent: the last readings first."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    values = chain_values(slot, readings)
    chunks = []
    end = len(readings)
    while end > 0:
        start = max(0, end - size)
        chunks.append(Chunk(values[start], tuple(readings[start:end])))
        end = start
    return chunks


def pack_schedule(entries: Iterable[tuple[int, int, int]]) -> bytes:
    """A posted schedule's ``(member_id, net_export_wh, internal_wh)`` entries as
    ``CommunitySettlement.postSchedule`` takes them, 12 bytes each: memberId uint32 |
    netExportWh int32 | internalWh int32, big-endian, the signed values in two's complement."""
    return b"".join(
        member_id.to_bytes(4, "big")
        + net_export_wh.to_bytes(4, "big", signed=True)
        + internal_wh.to_bytes(4, "big", signed=True)
        for member_id, net_export_wh, internal_wh in entries
    )


def unpack_schedule(entries: bytes) -> list[tuple[int, int, int]]:
    """The ``(member_id, net_export_wh, internal_wh)`` entries of posted schedule calldata (the
    inverse of :func:`pack_schedule`)."""
    if len(entries) % SCHEDULE_ENTRY_BYTES:
        raise ValueError(f"schedule entries of {len(entries)} bytes: not a multiple of {SCHEDULE_ENTRY_BYTES}")
    return [
        (
            int.from_bytes(entries[offset : offset + 4], "big"),
            int.from_bytes(entries[offset + 4 : offset + 8], "big", signed=True),
            int.from_bytes(entries[offset + 8 : offset + 12], "big", signed=True),
        )
        for offset in range(0, len(entries), SCHEDULE_ENTRY_BYTES)
    ]


def posted_entries(calldata: str | bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """The slot and the ``(member_id, net_export_wh, internal_wh)`` entries of a
    ``postSchedule`` transaction's calldata."""
    slot, _, entries, _, _ = artifacts.function("CommunitySettlement", "postSchedule").decode_input(calldata)
    return int(slot), unpack_schedule(entries)


@dataclass(frozen=True)
class MemberResult:
    """One member's settlement in a slot as ``MembersSettled`` records it (base units, positive =
    the member receives; its net is energy + imbalance - fees - retained)."""

    member: str  # checksummed address
    contracted_wh: int
    energy_amount: int
    imbalance_amount: int
    fees: int
    retained: int

    @property
    def net_amount(self) -> int:
        return self.energy_amount + self.imbalance_amount - self.fees - self.retained


def unpack_member_results(results: bytes) -> list[MemberResult]:
    """The ``results`` of a ``MembersSettled`` event, 96 bytes a member: account (20 bytes) |
    contractedWh int96 | energyAmount int128 | imbalanceAmount int128 | fees uint128 | retained
    uint128, big-endian."""
    if len(results) % RESULT_BYTES:
        raise ValueError(f"MembersSettled results of {len(results)} bytes: not a multiple of {RESULT_BYTES}")

    def field(record: bytes, start: int, end: int, signed: bool) -> int:
        return int.from_bytes(record[start:end], "big", signed=signed)

    members = []
    for offset in range(0, len(results), RESULT_BYTES):
        record = results[offset : offset + RESULT_BYTES]
        members.append(
            MemberResult(
                member=to_checksum_address(record[:20]),
                contracted_wh=field(record, 20, 32, True),
                energy_amount=field(record, 32, 48, True),
                imbalance_amount=field(record, 48, 64, True),
                fees=field(record, 64, 80, False),
                retained=field(record, 80, 96, False),
            )
        )
    return members

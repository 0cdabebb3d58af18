"""Meter readings as the chain records them: the reading's fields, the 44-byte records of the
oracle's ``ReadingsAccepted`` events and the per-slot hash chain (``MeterOracle.slotCommitment``).
The core owns them because both the oracle (which sends readings) and settlement (which replays
a slot's committed readings) read them."""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from peerwatt.deployment import Deployment
from peerwatt.events import events

ORACLE = "MeterOracle"
ACCEPTED_READING_BYTES = 44  # MeterOracle.ACCEPTED_READING_BYTES: the packed reading without its signature
FIELD_BYTES = (20, 4, 4, 4, 6, 6)  # meter, slot, importWh, exportWh, importRegisterWh, exportRegisterWh


@dataclass(frozen=True)
class Reading:
    """What a meter reports for one slot: the energy that flowed in it and its registers at the
    slot's end (Wh)."""

    meter: str
    slot: int
    import_wh: int
    export_wh: int
    import_register_wh: int
    export_register_wh: int

    def as_tuple(self) -> tuple[str, int, int, int, int, int]:
        """ABI order of IMeterOracle.Reading."""
        return (
            self.meter,
            self.slot,
            self.import_wh,
            self.export_wh,
            self.import_register_wh,
            self.export_register_wh,
        )


def unpack_accepted(data: bytes) -> list[Reading]:
    """The readings of a ``ReadingsAccepted`` event (44 bytes each)."""
    readings = []
    for start in range(0, len(data), ACCEPTED_READING_BYTES):
        record = data[start : start + ACCEPTED_READING_BYTES]
        values, offset = [], 20
        for size in FIELD_BYTES[1:]:
            values.append(int.from_bytes(record[offset : offset + size], "big"))
            offset += size
        readings.append(Reading(to_checksum_address(record[:20]), *values))
    return readings


def commitment_link(chain: int, member_id: int, slot: int, import_wh: int, export_wh: int) -> int:
    """The next value of a slot's hash chain after an accepted reading, as
    ``MeterOracle.slotCommitment`` defines it: ``uint224(keccak256(abi.encode(chain, memberId,
    slot, importWh, exportWh)))``."""
    encoded = abi_encode(
        ["uint224", "uint32", "uint32", "uint32", "uint32"], [chain, member_id, slot, import_wh, export_wh]
    )
    return int.from_bytes(keccak(encoded), "big") % 2**224


def accepted_readings(w3: Web3, deployment: Deployment) -> list[tuple[Reading, str]]:
    """Every reading the oracle accepted, in order, with the hash of its transaction."""
    found = []
    for event in events(w3, deployment.oracle, deployment.deploy_block, ORACLE, "ReadingsAccepted"):
        found += [(reading, event.tx_hash) for reading in unpack_accepted(event.args["readings"])]
    return found

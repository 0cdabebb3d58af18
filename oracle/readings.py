"""Meter readings as the MeterOracle contract verifies them: EIP-712 typed data, signatures
and the packed batch layout (``IMeterOracle.submitReadings``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

DOMAIN_NAME = "Peerwatt MeterOracle"
DOMAIN_VERSION = "1"
READING_FIELDS = [
    {"name": "meter", "type": "address"},
    {"name": "slot", "type": "uint32"},
    {"name": "importWh", "type": "uint32"},
    {"name": "exportWh", "type": "uint32"},
    {"name": "importRegisterWh", "type": "uint48"},
    {"name": "exportRegisterWh", "type": "uint48"},
]
PACKED_READING_BYTES = 109  # MeterOracle.PACKED_READING_BYTES
ACCEPTED_READING_BYTES = 44  # MeterOracle.ACCEPTED_READING_BYTES: the packed reading without its signature
_FIELD_BYTES = (20, 4, 4, 4, 6, 6)  # meter, slot, importWh, exportWh, importRegisterWh, exportRegisterWh


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


@dataclass(frozen=True)
class OracleDomain:
    """The EIP-712 domain a deployment's meter keys sign in."""

    chain_id: int
    verifying_contract: str

    def typed_data(self, reading: Reading) -> dict[str, Any]:
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Reading": READING_FIELDS,
            },
            "primaryType": "Reading",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": self.chain_id,
                "verifyingContract": to_checksum_address(self.verifying_contract),
            },
            "message": dict(zip((f["name"] for f in READING_FIELDS), reading.as_tuple(), strict=True))
            | {"meter": to_checksum_address(reading.meter)},
        }

    def digest(self, reading: Reading) -> bytes:
        """The 32-byte EIP-712 digest the meter key signs (MeterOracle.readingDigest)."""
        signable = encode_typed_data(full_message=self.typed_data(reading))
        return keccak(b"\x19" + signable.version + signable.header + signable.body)

    def sign(self, reading: Reading, private_key: bytes | str) -> SignedReading:
        signed = Account.sign_typed_data(private_key, full_message=self.typed_data(reading))
        return SignedReading(reading, signed.v, signed.r, signed.s)


@dataclass(frozen=True)
class SignedReading:
    reading: Reading
    v: int
    r: int
    s: int

    def packed(self) -> bytes:
        """The reading's 109 bytes in a batch."""
        fields = self.reading.as_tuple()
        head = bytes.fromhex(fields[0][2:].rjust(40, "0"))
        head += b"".join(value.to_bytes(size, "big") for value, size in zip(fields[1:], _FIELD_BYTES[1:], strict=True))
        return head + self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([self.v])


def pack(readings: Iterable[SignedReading]) -> bytes:
    """A batch for ``MeterOracle.submitReadings``."""
    return b"".join(reading.packed() for reading in readings)


def unpack_accepted(data: bytes) -> list[Reading]:
    """The readings of a ``ReadingsAccepted`` event (44 bytes each)."""
    readings = []
    for start in range(0, len(data), ACCEPTED_READING_BYTES):
        record = data[start : start + ACCEPTED_READING_BYTES]
        values, offset = [], 20
        for size in _FIELD_BYTES[1:]:
            values.append(int.from_bytes(record[offset : offset + size], "big"))
            offset += size
        readings.append(Reading(to_checksum_address(record[:20]), *values))
    return readings


def commitment_link(chain: int, member_id: int, slot: int, import_wh: int, export_wh: int) -> int:
    """The next value of a slot's hash chain after an accepted reading, as
    ``MeterOracle.slotCommitment`` defines it: ``uint224(keccak256(abi.encode(chain, memberId,
    slot, importWh, exportWh)))``."""
    encoded = abi_encode(["uint224", "uint32", "uint32", "uint32", "uint32"], [chain, member_id, slot, import_wh, export_wh])
    return int.from_bytes(keccak(encoded), "big") % 2**224

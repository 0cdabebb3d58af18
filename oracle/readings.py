"""Meter readings as the MeterOracle contract verifies them: EIP-712 typed data, signatures
and the packed batch layout (``IMeterOracle.submitReadings``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

from peerwatt.meter_readings import (  # noqa: F401  (the oracle's readings are the core's)
    ACCEPTED_READING_BYTES,
    FIELD_BYTES,
    Reading,
    commitment_link,
    unpack_accepted,
)

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
        head += b"".join(value.to_bytes(size, "big") for value, size in zip(fields[1:], FIELD_BYTES[1:], strict=True))
        return head + self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([self.v])


def pack(readings: Iterable[SignedReading]) -> bytes:
    """A batch for ``MeterOracle.submitReadings``."""
    return b"".join(reading.packed() for reading in readings)

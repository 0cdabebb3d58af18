"""Event decoding: the word decoders of static types give exactly what eth_abi's general decoder
gives, for every event of every contract, at the edges of each type's range."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from peerwatt import artifacts


def _value(kind: str, rng: random.Random, edge: int) -> Any:
    if kind.startswith("uint"):
        bits = int(kind[4:] or 256)
        return [0, 2**bits - 1, rng.randrange(2**bits)][edge]
    if kind.startswith("int"):
        bits = int(kind[3:] or 256)
        return [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1))][edge]
    if kind == "address":
        return "0x" + bytes(rng.randrange(256) for _ in range(20)).hex()
    if kind == "bool":
        return edge == 1
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(44 * edge))
    size = int(kind[5:])
    return bytes(rng.randrange(256) for _ in range(size))


EVENTS = sorted(
    {(contract, entry["name"]) for contract in artifacts.CONTRACT_NAMES for entry in artifacts.abi(contract)
     if entry.get("type") == "event"}
)  # fmt: skip


@pytest.mark.parametrize("contract, name", EVENTS)
@pytest.mark.parametrize("edge", [0, 1, 2])
def test_decode_event_equals_eth_abi(contract: str, name: str, edge: int) -> None:
    rng = random.Random(f"{name}{edge}")
    entry = next(e for e in artifacts.abi(contract) if e.get("type") == "event" and e["name"] == name)
    args = {arg["name"]: _value(arg["type"], rng, edge) for arg in entry["inputs"]}
    indexed = [arg for arg in entry["inputs"] if arg["indexed"]]
    data = [arg for arg in entry["inputs"] if not arg["indexed"]]
    topics = [artifacts.event_topic(contract, name)]
    topics += ["0x" + abi_encode([arg["type"]], [args[arg["name"]]]).hex() for arg in indexed]
    encoded = abi_encode([arg["type"] for arg in data], [args[arg["name"]] for arg in data])

    expected = {
        arg["name"]: abi_decode([arg["type"]], bytes.fromhex(topic[2:]))[0] for arg, topic in zip(indexed, topics[1:])
    }
    expected.update(zip((arg["name"] for arg in data), abi_decode([arg["type"] for arg in data], encoded)))
    decoded_name, decoded = artifacts.decode_event(topics, "0x" + encoded.hex())
    assert decoded_name == name
    assert decoded == expected
    assert list(decoded) == [arg["name"] for arg in entry["inputs"]]  # declaration order
    assert artifacts.event_types(name) == {arg["name"]: arg["type"] for arg in entry["inputs"]}


def test_unknown_events_are_not_decoded() -> None:
    assert artifacts.decode_event(["0x" + "11" * 32], "0x") is None
    assert artifacts.decode_event([], "0x") is None

"""Compiled contract artifacts (ABI, bytecode) and ABI coding: the one place runtime code loads
them and encodes calls or decodes results, events and custom errors. Brownie writes them to
build/contracts (tools/setup.sh compiles).

The coders work on raw JSON-RPC values (hex strings), so callers can talk to a node without
web3.py's per-request formatters (they dominate the cost of sending many transactions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak
from eth_utils.abi import collapse_if_tuple

from peerwatt.errors import NotFoundError
from peerwatt.toolchain import BUILD_DIR

CONTRACT_NAMES = ("PeerwattToken", "CdaMarket", "MeterOracle", "CommunitySettlement")


@lru_cache(maxsize=None)
def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> dict[str, Any]:
    """Brownie's build JSON for contract ``name``."""
    path = build_dir / f"{name}.json"
    if not path.exists():
        raise NotFoundError(f"no compiled artifact {path}; run tools/setup.sh (it compiles the contracts)")
    return json.loads(path.read_text())


def abi(name: str) -> list[dict[str, Any]]:
    return load_artifact(name)["abi"]


def bytecode(name: str) -> str:
    return load_artifact(name)["bytecode"]


def _signature_hash(entry: dict[str, Any]) -> bytes:
    """keccak of an ABI entry's canonical signature, ``name(type,...)`` with tuples spelled out:
    an error's or function's selector is its first 4 bytes, an event's topic 0 all of it."""
    types = ",".join(collapse_if_tuple(arg) for arg in entry["inputs"])
    return keccak(text=f"{entry['name']}({types})")


def hex_bytes(data: bytes | str) -> bytes:
    """Bytes of a JSON-RPC hex string (with or without 0x), or ``data`` itself."""
    if isinstance(data, bytes):
        return data
    return bytes.fromhex(data[2:] if data.startswith("0x") else data)


@lru_cache(maxsize=None)
def _error_selectors() -> dict[bytes, dict[str, Any]]:
    return {
        _signature_hash(entry)[:4]: entry
        for name in CONTRACT_NAMES
        for entry in abi(name)
        if entry.get("type") == "error"
    }


def decode_custom_error(data: bytes | str) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of a custom error in revert data, or None if it is not one of ours."""
    raw = hex_bytes(data)
    entry = _error_selectors().get(raw[:4])
    if entry is None:
        return None
    types = [arg["type"] for arg in entry["inputs"]]
    values = abi_decode(types, raw[4:]) if types else ()
    return entry["name"], {arg["name"]: value for arg, value in zip(entry["inputs"], values)}


@dataclass(frozen=True)
class AbiFunction:
    """A contract function's selector and canonical argument and result types."""

    name: str
    selector: bytes
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]

    def encode(self, *args: Any) -> str:
        """Hex calldata for a call with ``args`` (structs as tuples, in ABI order)."""
        return "0x" + (self.selector + abi_encode(list(self.input_types), list(args))).hex()

    def decode(self, data: bytes | str) -> tuple[Any, ...]:
        """The call's return values (structs as tuples)."""
        return tuple(abi_decode(list(self.output_types), hex_bytes(data)))


@lru_cache(maxsize=None)
def function(contract: str, name: str) -> AbiFunction:
    """The function ``name`` of ``contract`` (our contracts overload no function)."""
    for entry in abi(contract):
        if entry.get("type") == "function" and entry["name"] == name:
            inputs = tuple(collapse_if_tuple(arg) for arg in entry["inputs"])
            outputs = tuple(collapse_if_tuple(arg) for arg in entry["outputs"])
            selector = _signature_hash(entry)[:4]
            return AbiFunction(name, selector, inputs, outputs)
    raise NotFoundError(f"{contract} has no function {name}")


def constructor_data(contract: str, *args: Any) -> str:
    """Hex init code: bytecode followed by the encoded constructor arguments."""
    types = next(
        ([collapse_if_tuple(arg) for arg in entry["inputs"]] for entry in abi(contract) if entry["type"] == "constructor"),
        [],
    )
    code = bytecode(contract)
    return (code if code.startswith("0x") else "0x" + code) + abi_encode(types, list(args)).hex()


@dataclass(frozen=True)
class _EventCoder:
    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, type) of topics 1..3
    data: tuple[tuple[str, str], ...]  # (name, type) of the data part
    order: tuple[str, ...]  # argument names in declaration order


@lru_cache(maxsize=None)
def _event_coders() -> dict[bytes, _EventCoder]:
    coders: dict[bytes, _EventCoder] = {}
    for contract in CONTRACT_NAMES:
        for entry in abi(contract):
            if entry.get("type") != "event" or entry.get("anonymous"):
                continue
            types = [collapse_if_tuple(arg) for arg in entry["inputs"]]
            topic = _signature_hash(entry)
            args = list(zip(entry["inputs"], types))
            coders[topic] = _EventCoder(
                entry["name"],
                tuple((arg["name"], kind) for arg, kind in args if arg["indexed"]),
                tuple((arg["name"], kind) for arg, kind in args if not arg["indexed"]),
                tuple(arg["name"] for arg in entry["inputs"]),
            )
    return coders


def decode_event(topics: Sequence[str | bytes], data: bytes | str) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of one of our contracts' events from a log's topics and data, or None."""
    if not topics:
        return None
    coder = _event_coders().get(hex_bytes(topics[0]))
    if coder is None:
        return None
    values: dict[str, Any] = {}
    for (name, kind), topic in zip(coder.indexed, topics[1:]):
        values[name] = abi_decode([kind], hex_bytes(topic))[0]
    decoded = abi_decode([kind for _, kind in coder.data], hex_bytes(data))
    values.update({name: value for (name, _), value in zip(coder.data, decoded)})
    return coder.name, {name: values[name] for name in coder.order}


def event_topic(contract: str, name: str) -> str:
    """Hex topic 0 of event ``name`` of ``contract`` (for eth_getLogs filters)."""
    for entry in abi(contract):
        if entry.get("type") == "event" and entry["name"] == name:
            return "0x" + _signature_hash(entry).hex()
    raise NotFoundError(f"{contract} has no event {name}")

"""Compiled contract artifacts (ABI, bytecode) and ABI coding: the one place runtime code loads
them and encodes calls or decodes results, events and custom errors. Brownie writes them to
build/contracts (tools/setup.sh compiles).

The coders work on raw JSON-RPC values (hex strings), so callers can talk to a node without
web3.py's per-request formatters (they dominate the cost of sending many transactions)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
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

    def decode_input(self, calldata: bytes | str) -> tuple[Any, ...]:
        """The arguments of a transaction's calldata for this function (after its selector)."""
        raw = hex_bytes(calldata)
        if raw[:4] != self.selector:
            raise ValueError(f"calldata is not a call of {self.name}")
        return tuple(abi_decode(list(self.input_types), raw[4:]))


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


WordDecoder = Callable[[bytes], Any]


def _word_decoder(kind: str) -> WordDecoder | None:
    """A decoder of one 32-byte ABI word holding a static elementary type (the same values as
    eth_abi gives), or None for dynamic types, arrays and tuples. Decoding words directly is
    about five times faster than eth_abi's general decoder, which the ledger's indexer feels."""
    if "[" in kind or kind.startswith("("):
        return None
    if kind.startswith("uint"):
        return lambda word: int.from_bytes(word, "big")
    if kind.startswith("int"):
        return lambda word: int.from_bytes(word, "big", signed=True)
    if kind == "address":
        return lambda word: "0x" + word[12:].hex()
    if kind == "bool":
        return lambda word: word[31] != 0
    if kind.startswith("bytes") and kind != "bytes":
        size = int(kind[5:])
        return lambda word: word[:size]
    return None


@dataclass(frozen=True)
class _EventCoder:
    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, type) of topics 1..3
    data: tuple[tuple[str, str], ...]  # (name, type) of the data part
    order: tuple[str, ...]  # argument names in declaration order
    topic_decoders: tuple[WordDecoder, ...]  # one per indexed argument (none of ours is dynamic)
    data_decoders: tuple[WordDecoder, ...] | None  # one per data word, None when a data type is dynamic

    def decode(self, topics: Sequence[str | bytes], data: bytes | str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for (name, _), decoder, topic in zip(self.indexed, self.topic_decoders, topics[1:]):
            values[name] = decoder(hex_bytes(topic))
        raw = hex_bytes(data)
        if self.data_decoders is not None:
            for index, ((name, _), decoder) in enumerate(zip(self.data, self.data_decoders)):
                values[name] = decoder(raw[32 * index : 32 * index + 32])
        else:
            decoded = abi_decode([kind for _, kind in self.data], raw)
            values.update({name: value for (name, _), value in zip(self.data, decoded)})
        return {name: values[name] for name in self.order}


def _event_coder(entry: dict[str, Any]) -> _EventCoder:
    types = [collapse_if_tuple(arg) for arg in entry["inputs"]]
    args = list(zip(entry["inputs"], types))
    indexed = tuple((arg["name"], kind) for arg, kind in args if arg["indexed"])
    data = tuple((arg["name"], kind) for arg, kind in args if not arg["indexed"])
    topic_decoders = tuple(_word_decoder(kind) or _eth_abi_word(kind) for _, kind in indexed)
    data_decoders = tuple(_word_decoder(kind) for _, kind in data)
    return _EventCoder(
        entry["name"],
        indexed,
        data,
        tuple(arg["name"] for arg in entry["inputs"]),
        topic_decoders,
        data_decoders if all(decoder is not None for decoder in data_decoders) else None,  # type: ignore[arg-type]
    )


def _eth_abi_word(kind: str) -> WordDecoder:
    return lambda word: abi_decode([kind], word)[0]


@lru_cache(maxsize=None)
def _event_coders() -> dict[bytes, _EventCoder]:
    """Topic 0 -> coder, for the events of every contract (an event declared by several contracts,
    e.g. the AccessControl ones, has one signature and so one coder)."""
    coders: dict[bytes, _EventCoder] = {}
    for contract in CONTRACT_NAMES:
        for entry in abi(contract):
            if entry.get("type") == "event" and not entry.get("anonymous"):
                coders[_signature_hash(entry)] = _event_coder(entry)
    return coders


def decode_event(topics: Sequence[str | bytes], data: bytes | str) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of one of our contracts' events from a log's topics and data, or None."""
    if not topics:
        return None
    coder = _event_coders().get(hex_bytes(topics[0]))
    if coder is None:
        return None
    return coder.name, coder.decode(topics, data)


def event_types(name: str) -> dict[str, str]:
    """Argument name -> ABI type of the event ``name`` (of any of our contracts)."""
    for coder in _event_coders().values():
        if coder.name == name:
            return dict(coder.indexed + coder.data)
    raise NotFoundError(f"no contract has an event {name}")


def event_topic(contract: str, name: str) -> str:
    """Hex topic 0 of event ``name`` of ``contract`` (for eth_getLogs filters)."""
    for entry in abi(contract):
        if entry.get("type") == "event" and entry["name"] == name:
            return "0x" + _signature_hash(entry).hex()
    raise NotFoundError(f"{contract} has no event {name}")

"""Raw JSON-RPC logs of the community's events, encoded with eth_abi from the compiled ABIs, for
the ledger's unit tests (the indexer reads exactly this shape from a node)."""

from __future__ import annotations

from typing import Any

from eth_abi import encode as abi_encode

from peerwatt import artifacts
from peerwatt.slots import SlotClock
from settlement.ledger.records import Batch, add_log
from settlement.ledger.store import Binding

ADDRESSES = {
    "PeerwattToken": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "CdaMarket": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "MeterOracle": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
    "CommunitySettlement": "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9",
}
CONTRACTS = {address.lower(): name for name, address in ADDRESSES.items()}
BINDING = Binding(31337, ADDRESSES, 1, SlotClock(epoch=1_700_000_000, slot_seconds=900, gate_seconds=300))


def block_hash(block: int, fork: int = 0) -> str:
    return f"0x{fork:08x}{block:056x}"


def raw_log(contract: str, event: str, block: int, log_index: int, fork: int = 0, **args: Any) -> dict[str, Any]:
    """The log ``contract`` emits for ``event(args)`` at ``block``/``log_index``."""
    entry = next(e for e in artifacts.abi(contract) if e.get("type") == "event" and e["name"] == event)
    topics = [artifacts.event_topic(contract, event)]
    types, values = [], []
    for arg in entry["inputs"]:
        if arg["indexed"]:
            topics.append("0x" + abi_encode([arg["type"]], [args[arg["name"]]]).hex())
        else:
            types.append(arg["type"])
            values.append(args[arg["name"]])
    return {
        "address": ADDRESSES[contract].lower(),
        "topics": topics,
        "data": "0x" + abi_encode(types, values).hex(),
        "blockNumber": hex(block),
        "blockHash": block_hash(block, fork),
        "transactionHash": f"0x{fork:04x}{block:056x}{log_index:04x}",
        "transactionIndex": "0x0",
        "logIndex": hex(log_index),
        "removed": False,
    }


def batch_of(*logs: dict[str, Any]) -> Batch:
    batch = Batch()
    for log in logs:
        add_log(batch, log, CONTRACTS)
    return batch

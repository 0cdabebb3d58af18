"""Events of the deployed contracts read back from the node's logs: the one place that queries
them (from the deployment block on), puts them in chain order and decodes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3

from peerwatt import artifacts
from peerwatt.chain import request


@dataclass(frozen=True)
class Event:
    """A decoded event and where it is on chain."""

    name: str
    args: dict[str, Any]
    tx_hash: str


def events(w3: Web3, address: str, from_block: int, contract: str, name: str, *indexed: int) -> list[Event]:
    """Every ``name`` event ``address`` emitted since ``from_block``, in chain order (block, then
    log position); ``indexed`` filters on the event's first indexed integer arguments."""
    topics = [artifacts.event_topic(contract, name), *("0x" + value.to_bytes(32, "big").hex() for value in indexed)]
    logs = request(
        w3, "eth_getLogs", [{"address": address, "fromBlock": hex(from_block), "toBlock": "latest", "topics": topics}]
    )
    logs.sort(key=lambda log: (int(log["blockNumber"], 16), int(log["logIndex"], 16)))
    found = []
    for log in logs:
        decoded = artifacts.decode_event(log["topics"], log["data"])
        if decoded is not None and decoded[0] == name:
            found.append(Event(decoded[0], decoded[1], log["transactionHash"]))
    return found

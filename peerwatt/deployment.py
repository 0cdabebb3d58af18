"""The deployment file: where a community's contracts live on one chain and who its members are.

Default location: ``deployments/<chain-id>.json`` under the current directory; ``--deployment``
or ``PEERWATT_DEPLOYMENT`` name another file. A file is checked against the chain before use,
so a file left over from an earlier (restarted) dev chain is reported instead of being trusted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from peerwatt.chain import chain_id, request
from peerwatt.errors import InputError, NotFoundError
from peerwatt.slots import SlotClock

DEPLOYMENT_ENV = "PEERWATT_DEPLOYMENT"
FORMAT_VERSION = 3  # 2: the meter oracle and the members' meters; 3: settlement and its accounts


@dataclass(frozen=True)
class Deployment:
    """Addresses and facts fixed at deployment time."""

    chain_id: int
    token: str
    market: str
    oracle: str
    settlement: str
    deployer: str
    deploy_block: int
    deploy_block_hash: str
    slot_clock: SlotClock
    members: dict[str, str] = field(default_factory=dict)  # name -> address, in registration order
    meters: dict[str, str] = field(default_factory=dict)  # member name -> its meter key's address
    # who settlement pays besides members: "supplier", "dso", "manager" -> address
    parties: dict[str, str] = field(default_factory=dict)
    # the block of the first contract (the token, whose constructor emits events before the market
    # exists): where a ledger starts reading; None in files written before it was recorded
    first_block: int | None = None

    @property
    def start_block(self) -> int:
        """The first block that can hold an event of the community's contracts."""
        return self.deploy_block if self.first_block is None else min(self.first_block, self.deploy_block)

    def addresses(self) -> dict[str, str]:
        """Contract name -> address of the community's contracts."""
        return {
            "PeerwattToken": self.token,
            "CdaMarket": self.market,
            "MeterOracle": self.oracle,
            "CommunitySettlement": self.settlement,
        }

    def member_address(self, name: str) -> str:
        """Address of the member called ``name``."""
        try:
            return self.members[name]
        except KeyError:
            known = ", ".join(self.members) or "none"
            raise NotFoundError(f"unknown member {name!r} (members: {known})") from None

    def member_names(self) -> dict[str, str]:
        """address (lower case) -> name."""
        return {address.lower(): name for name, address in self.members.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "chain_id": self.chain_id,
            "contracts": self.addresses(),
            "deployer": self.deployer,
            "first_block": self.first_block,
            "deploy_block": self.deploy_block,
            "deploy_block_hash": self.deploy_block_hash,
            "slot_clock": {
                "epoch": self.slot_clock.epoch,
                "slot_seconds": self.slot_clock.slot_seconds,
                "gate_seconds": self.slot_clock.gate_seconds,
            },
            "members": self.members,
            "meters": self.meters,
            "parties": self.parties,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        clock = data["slot_clock"]
        return cls(
            chain_id=int(data["chain_id"]),
            token=data["contracts"]["PeerwattToken"],
            market=data["contracts"]["CdaMarket"],
            oracle=data["contracts"]["MeterOracle"],
            settlement=data["contracts"]["CommunitySettlement"],
            deployer=data["deployer"],
            deploy_block=int(data["deploy_block"]),
            deploy_block_hash=data["deploy_block_hash"],
            slot_clock=SlotClock(int(clock["epoch"]), int(clock["slot_seconds"]), int(clock["gate_seconds"])),
            members=dict(data.get("members", {})),
            meters=dict(data.get("meters", {})),
            parties=dict(data.get("parties", {})),
            first_block=None if data.get("first_block") is None else int(data["first_block"]),
        )

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Deployment:
        if not path.exists():
            raise NotFoundError(f"no deployment file {path}; run `peerwatt deploy` first (or pass --deployment)")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"deployment file {path} is not valid: {type(exc).__name__}: {exc}") from None

    def check_on_chain(self, w3: Web3, path: Path, actual_chain_id: int | None = None) -> None:
        """Raises NotFoundError unless this deployment exists on the chain ``w3`` talks to
        (whose chain id the caller may already know)."""
        if actual_chain_id is None:
            actual_chain_id = chain_id(w3)
        if actual_chain_id != self.chain_id:
            raise NotFoundError(
                f"deployment file {path} is for chain id {self.chain_id}, but the RPC serves chain id {actual_chain_id}"
            )
        block = request(w3, "eth_getBlockByNumber", [hex(self.deploy_block), False])
        code = request(w3, "eth_getCode", [self.market, "latest"])
        if block is None or block["hash"] != self.deploy_block_hash or code in (None, "0x", "0x0"):
            raise NotFoundError(
                f"the contracts of deployment file {path} are not on this chain (was it restarted?); "
                "run `peerwatt deploy` again"
            )


def deployment_path(explicit: str | os.PathLike[str] | None, chain: int) -> Path:
    """The file to use: ``explicit`` (from --deployment or PEERWATT_DEPLOYMENT), else
    ``deployments/<chain-id>.json`` under the current directory."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(DEPLOYMENT_ENV)
    if env:
        return Path(env)
    return Path.cwd() / "deployments" / f"{chain}.json"


def load_checked(w3: Web3, explicit: str | os.PathLike[str] | None) -> tuple[Deployment, Path]:
    """The deployment for the chain ``w3`` talks to, verified to be on it."""
    current_chain_id = chain_id(w3)
    path = deployment_path(explicit, current_chain_id)
    deployment = Deployment.load(path)
    deployment.check_on_chain(w3, path, current_chain_id)
    return deployment, path

"""The audit's inputs read from a node: every event of the deployment's contracts, the posted
clearing schedules (the ``postSchedule`` calldata of their transactions) and the market's state
at the audited block (:class:`NodeState`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from web3 import Web3

from peerwatt import artifacts
from peerwatt.chain import request
from peerwatt.transactions import eth_call
from settlement.audit import AuditReport, ChainEvent, Parties, audit_history
from settlement.chunks import posted_entries

SETTLEMENT = "CommunitySettlement"
MARKET = "CdaMarket"


class Contracts(Protocol):
    """Where the audited contracts are (a :class:`peerwatt.deployment.Deployment` is one)."""

    token: str
    market: str
    oracle: str
    settlement: str
    deploy_block: int


def chain_events(w3: Web3, deployment: Contracts, to_block: int) -> list[ChainEvent]:
    """Every event the deployment's contracts emitted from its deployment block to ``to_block``,
    decoded, in chain order."""
    names = {
        deployment.token.lower(): "PeerwattToken",
        deployment.market.lower(): MARKET,
        deployment.oracle.lower(): "MeterOracle",
        deployment.settlement.lower(): SETTLEMENT,
    }
    logs = request(
        w3,
        "eth_getLogs",
        [{"address": list(names), "fromBlock": hex(deployment.deploy_block), "toBlock": hex(to_block)}],
    )
    found = []
    for log in logs:
        decoded = artifacts.decode_event(log["topics"], log["data"])
        if decoded is not None:
            found.append(
                ChainEvent(
                    int(log["blockNumber"], 16),
                    int(log["logIndex"], 16),
                    log["transactionHash"],
                    names[log["address"].lower()],
                    decoded[0],
                    decoded[1],
                )
            )
    found.sort(key=lambda event: (event.block, event.log_index))
    return found


def posted_schedules(w3: Web3, events: Iterable[ChainEvent]) -> dict[int, dict[int, int]]:
    """The internal trades posted per optimisation slot and member id, decoded from the calldata
    of the transactions that emitted ``SchedulePosted``."""
    schedules: dict[int, dict[int, int]] = defaultdict(dict)
    for tx_hash in dict.fromkeys(event.tx_hash for event in events if event.name == "SchedulePosted"):
        slot, entries = posted_entries(request(w3, "eth_getTransactionByHash", [tx_hash])["input"])
        schedules[slot].update({member_id: internal_wh for member_id, _, internal_wh in entries})
    return dict(schedules)


class NodeState:
    """The market's balances, debts and token balance at one block, read from the node."""

    def __init__(self, w3: Web3, token: str, market: str, settlement: str, block: int) -> None:
        self.w3, self.token, self.market, self.settlement, self.block = w3, token, market, settlement, hex(block)

    def _view(self, to: str, contract: str, function: str, *args: object) -> Any:
        fn = artifacts.function(contract, function)
        return fn.decode(eth_call(self.w3, {"to": to, "data": fn.encode(*args)}, self.block))[0]

    def market_balance(self, account: str) -> int:
        return int(self._view(self.market, MARKET, "balanceOf", Web3.to_checksum_address(account)))

    def market_debt(self, account: str) -> int:
        return int(self._view(self.market, MARKET, "debtOf", Web3.to_checksum_address(account)))

    def market_token_balance(self) -> int:
        return int(self._view(self.token, "PeerwattToken", "balanceOf", self.market))

    def parties(self) -> Parties:
        """The market, the settlement contract (the pot) and the fee accounts."""
        return Parties(
            self.market.lower(),
            self.settlement.lower(),
            str(self._view(self.settlement, SETTLEMENT, "dsoAccount")).lower(),
            str(self._view(self.settlement, SETTLEMENT, "managerAccount")).lower(),
        )


def audit_chain(w3: Web3, deployment: Contracts, slots: range | None = None) -> AuditReport:
    """Audits the deployment's history up to the latest block (balances and solvency only when
    every slot is audited)."""
    block = int(request(w3, "eth_blockNumber", []), 16)
    events = chain_events(w3, deployment, block)
    state = NodeState(w3, deployment.token, deployment.market, deployment.settlement, block)
    return audit_history(events, posted_schedules(w3, events), state, state.parties(), slots)

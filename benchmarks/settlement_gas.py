"""Gas of slot settlement and of posting clearing results, per member, on a local anvil through
Brownie.

Every figure is receipt gas (after refunds, as the sender pays it) of the transactions that do
the work for one slot, divided by the community's members. Each scenario starts from the same
chain snapshot of a community whose members are plain addresses (fixed keys) registered by the
manager, each with one meter key and a market deposit; the slot's readings are signed by the
meter keys, submitted to the oracle once the slot ended, and settled (every member's reading is
in, so settlement starts at once) in backward chunks (``settlement.chunks.backward_chunks``) of
25 to 200 readings, or the whole slot in one call:

- ``cda``: members 2k and 2k+1 traded once (2k sold to 2k+1) and every reading differs from
  the contract (imbalances both ways); ``cda_fees``: the same with grid and manager fees
  (``setConfig`` from the slot on, as for every scenario's rules);
- ``sharing_mmr`` (tally and pay passes also reported separately), ``sharing_sdr``,
  ``sharing_bs``: the same flows, no orders;
- ``optimisation``: the manager posted a complete schedule before the slot (internal trades
  summing to zero, each with the sign of the member's net export and no larger, at a price
  between the tariffs), settled against the readings;
- ``*_savings`` / ``*_proportional``: savings retention (``savingsShareBps`` > 0) and the
  proportional share rule (contributions counted) on; ``*_later_slot``: the slot after the
  first one of the period (settled first), where each member's contribution word exists;
- empty slot: the settle call of a slot without readings; ``settle_unmetered``: Cda positions
  settled without readings (``settleUnmetered``), per member.

``post_schedule``: ``postSchedule`` of a complete schedule (12-byte entries) per member, in
calls of 250 members and in one call.

``chunking`` (100 members): a settle call's fixed gas, from chunks of 25 against one call.
``breakdown`` (100 members, one call for all of them): where the gas goes per member, from an
opcode trace (``debug_traceTransaction`` on a second anvil, port + 1, run with
``--steps-tracing``; the main one runs without: it would keep every step of the 1,000-member
runs in memory), by code (the settlement contract, the market's ledger calls) and cost kind.

``--large`` adds a 1,000-member community (about 6 minutes more, mostly its setup and trades).
Results go to benchmarks/results/settlement_gas.json and Markdown tables to stdout.

    python benchmarks/settlement_gas.py [--port 8721] [--large] [--no-trace]
        [--out benchmarks/results/settlement_gas.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from community import launch_community
from eth_account import Account
from eth_utils import function_abi_to_4byte_selector, keccak

from oracle.readings import OracleDomain, Reading, SignedReading, pack
from peerwatt.config import CommunityConfig
from peerwatt.toolchain import PROJECT_ROOT, apply_toolchain_env
from settlement.chunks import SlotReading, backward_chunks, pack_schedule

MEMBERS = 100
LARGE_MEMBERS = 1_000
TARGET_SETTLE_PER_MEMBER = 15_000  # issue target
TARGET_POST_PER_MEMBER = 3_000
SCHEDULE_CALL_MEMBERS = 250
READING_BATCH = 100  # readings per submitReadings call (setup only)
BLOCK_GAS_LIMIT = 30_000_000
EIP7825_TX_GAS_CAP = 2**24  # Osaka's per-transaction gas cap (anvil does not enforce it by default)
READING_WINDOW_SECONDS = 900
PERIOD_SLOTS = 96
TRADE_PRICE = 150_000  # base units per kWh, between the export (60,000) and import (250,000) tariffs
SCHEDULE_PRICE = 150_000
GRID_FEE, MANAGER_FEE = 10_000, 5_000
SAVINGS_BPS = 2_000
CDA, SHARING, OPTIMISATION = range(3)
MMR, SDR, BS = range(3)
EQUAL, PROPORTIONAL = 0, 1
SETTLED = 3
TX_GAS = BLOCK_GAS_LIMIT  # one transaction per block (anvil automines)
FEES = {"maxFeePerGas": 10**12, "maxPriorityFeePerGas": 0}


def fixed_account(label: str) -> Any:
    return Account.from_key(keccak(text=f"Peerwatt settlement bench {label}"))


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: int
    rule: int = MMR
    share_rule: int = EQUAL
    grid_fee: int = 0
    manager_fee: int = 0
    savings_bps: int = 0
    # a later slot of the profit-share period: the slot before it (same flows) is settled
    # first, so per-period storage (contributions) already exists
    later_slot: bool = False

    @property
    def config(self) -> tuple[int, int, int, int, int, int]:
        return (self.mode, self.rule, self.share_rule, self.grid_fee, self.manager_fee, self.savings_bps)

    @property
    def traded(self) -> bool:  # members hold Cda positions in the slot
        return self.mode == CDA

    @property
    def scheduled(self) -> bool:  # a complete schedule is posted for the slot
        return self.mode == OPTIMISATION

    @property
    def passes(self) -> int:
        return 2 if self.mode == SHARING else 1


def later(scenario: Scenario) -> Scenario:
    return replace(scenario, name=f"{scenario.name}_later_slot", later_slot=True)


_CDA = Scenario("cda", CDA)
_CDA_PROPORTIONAL = Scenario("cda_savings_proportional", CDA, share_rule=PROPORTIONAL, savings_bps=SAVINGS_BPS)
_SHARING_PROPORTIONAL = Scenario(
    "sharing_mmr_savings_proportional", SHARING, MMR, PROPORTIONAL, savings_bps=SAVINGS_BPS
)
_OPTIMISATION_PROPORTIONAL = Scenario(
    "optimisation_savings_proportional", OPTIMISATION, share_rule=PROPORTIONAL, savings_bps=SAVINGS_BPS
)
SCENARIOS = [  # grouped: the Cda ones share a snapshot with the trades made
    _CDA,
    Scenario("cda_fees", CDA, grid_fee=GRID_FEE, manager_fee=MANAGER_FEE),
    Scenario("cda_savings", CDA, savings_bps=SAVINGS_BPS),
    Scenario("cda_proportional", CDA, share_rule=PROPORTIONAL),
    _CDA_PROPORTIONAL,
    later(_CDA),
    later(_CDA_PROPORTIONAL),
    Scenario("sharing_mmr", SHARING, MMR),
    Scenario("sharing_sdr", SHARING, SDR),
    Scenario("sharing_bs", SHARING, BS),
    _SHARING_PROPORTIONAL,
    later(_SHARING_PROPORTIONAL),
    Scenario("optimisation", OPTIMISATION),
    _OPTIMISATION_PROPORTIONAL,
    later(_OPTIMISATION_PROPORTIONAL),
]
TRACED = (
    "cda",
    "cda_fees",
    "sharing_mmr",
    "optimisation",
    "cda_savings_proportional",
    "cda_savings_proportional_later_slot",
)


class OutOfBlockGas(Exception):
    """A transaction needs more gas than a block holds."""


class Chain:
    """Raw anvil access: snapshots, time and transactions without Brownie's per-transaction
    bookkeeping (thousands of setup transactions)."""

    def __init__(self, web3: Any) -> None:
        self.web3 = web3

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        response = self.web3.provider.make_request(method, params or [])
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response["result"]

    def snapshot(self) -> str:
        return self.rpc("evm_snapshot")

    def revert(self, snapshot_id: str) -> None:
        """Back to the snapshot (anvil consumes it: take a new one to come back again)."""
        assert self.rpc("evm_revert", [snapshot_id]), f"no snapshot {snapshot_id}"

    def now(self) -> int:
        return int(self.web3.eth.get_block("latest").timestamp)

    def mine_at(self, timestamp: int) -> None:
        if self.now() < timestamp:
            self.rpc("evm_mine", [timestamp])

    def contract(self, deployed: Any) -> Any:
        return self.web3.eth.contract(address=deployed.address, abi=deployed.abi)

    def send(self, call: Any, sender: str) -> Any:
        """Sends a contract call and returns its receipt; a failure re-runs it as a call to
        raise the revert reason."""
        tx_hash = call.transact({"from": sender, "gas": TX_GAS, **FEES})
        receipt = self.web3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.005)
        if receipt.status != 1:
            if receipt.gasUsed >= TX_GAS * 63 // 64:
                raise OutOfBlockGas(f"{tx_hash.hex()} ran out of gas at {receipt.gasUsed:,}")
            call.call({"from": sender})  # raises with the revert data
            raise RuntimeError(f"transaction {tx_hash.hex()} failed")
        return receipt

    def deploy(self, container: Any, sender: str, args: list[Any]) -> Any:
        factory = self.web3.eth.contract(abi=container.abi, bytecode=container.bytecode)
        tx_hash = factory.constructor(*args).transact({"from": sender, "gas": TX_GAS, **FEES})
        receipt = self.web3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.005)
        assert receipt.status == 1, f"deploying {container._name} failed"
        return self.web3.eth.contract(address=receipt.contractAddress, abi=container.abi)

    def impersonate(self, address: str) -> None:
        self.rpc("anvil_impersonateAccount", [address])
        self.rpc("anvil_setBalance", [address, hex(10**21)])


@dataclass
class Flows:
    """One slot's flows per member index: readings (import, export), Cda trades and the
    posted schedule. Pairs (2k, 2k+1): 2k exports about q_k, 2k+1 imports about q_k; 2k sold
    q_k to 2k+1 (Cda) or is scheduled to sell 0.9 q_k to it (optimisation); the metered
    flows differ from the contract by 15% up (even k) or down (odd k)."""

    members: int
    readings: list[tuple[int, int]] = field(default_factory=list)
    trades: list[int] = field(default_factory=list)  # q_k per pair
    schedule: list[tuple[int, int]] = field(default_factory=list)  # (netExportWh, internalWh)

    def __post_init__(self) -> None:
        for k in range(self.members // 2):
            q = 1_000 + 10 * (k % 50)
            imbalance = (q * 15 // 100) * (1 if k % 2 == 0 else -1)
            self.trades.append(q)
            self.readings += [(40, q + imbalance + 40), (q - imbalance + 30, 30)]
            internal = q * 9 // 10
            self.schedule += [(q, internal), (-q, -internal)]


@dataclass(frozen=True)
class SettledMarket:
    market: Any
    oracle: Any
    settlement: Any
    epoch: int
    market_block: int


def deploy_settled_market(
    chain: Chain, project: Any, token: Any, admin: str, supplier: str, dso: str, manager: str
) -> SettledMarket:
    """A market (default parameters, the admin as manager), its meter oracle and a settlement
    contract (Cda, no fees, periods of PERIOD_SLOTS slots) wired together, the supplier's deposit
    made; through ``chain``'s web3 helpers (Brownie's transaction tracking no longer matches the
    chain after a snapshot)."""
    config = CommunityConfig()
    send, deploy = chain.send, chain.deploy
    epoch = config.epoch_for(chain.now())
    market = deploy(
        project.CdaMarket,
        admin,
        [
            admin,
            token.address,
            epoch,
            config.slot_seconds,
            config.price_tick,
            config.market.as_tuple(),
            config.tariffs.as_tuple(),
        ],
    )
    market_block = int(chain.web3.eth.block_number)
    send(market.functions.grantRole(market.functions.MANAGER_ROLE().call(), admin), admin)
    oracle = deploy(project.MeterOracle, admin, [market.address])
    rules = (CDA, MMR, EQUAL, 0, 0, 0)
    settlement = deploy(
        project.CommunitySettlement,
        admin,
        [market.address, oracle.address, dso, manager, rules, PERIOD_SLOTS, READING_WINDOW_SECONDS],
    )
    send(market.functions.grantRole(market.functions.SETTLEMENT_ROLE().call(), settlement.address), admin)
    send(oracle.functions.setSealer(settlement.address), admin)
    send(market.functions.setSupplierAccount(supplier), admin)
    send(token.functions.mint(supplier, 10**15), admin)
    send(token.functions.approve(market.address, 2**256 - 1), supplier)
    send(market.functions.deposit(10**15), supplier)
    return SettledMarket(market, oracle, settlement, epoch, market_block)


class SettlementBench:
    """A community of ``members`` plain-address members with an oracle and a settlement
    contract (Cda, no fees, periods of PERIOD_SLOTS slots) on the shared anvil; ``slot`` is far
    enough ahead that scenarios can still set rules, trade and post schedules for it."""

    def __init__(self, base: Base, members: int) -> None:
        started = time.monotonic()
        self.chain: Chain = base.chain
        project, admin, supplier, token = base.project, base.admin, base.supplier, base.token
        self.members_count = members
        send = self.chain.send
        self.dso, self.fee_manager = fixed_account("dso").address, fixed_account("manager fees").address
        wired = deploy_settled_market(self.chain, project, token, admin, supplier, self.dso, self.fee_manager)
        market, oracle, settlement = wired.market, wired.oracle, wired.settlement
        self.admin = admin
        self.market, self.oracle, self.settlement, self.token = market, oracle, settlement, token
        self.domain = OracleDomain(self.chain.web3.eth.chain_id, oracle.address)

        self.members = [fixed_account(f"{members} member {i}") for i in range(members)]
        self.meters = [fixed_account(f"{members} meter {i}") for i in range(members)]
        self.member_ids: list[int] = []
        for member, meter in zip(self.members, self.meters, strict=True):
            send(self.market.functions.addMember(member.address), self.admin)
            self.member_ids.append(int(self.market.functions.memberOf(member.address).call()[0]))
            send(self.oracle.functions.registerMeter(meter.address, member.address, 0), self.admin)
            # a market deposit, as members have: imports are paid from it (no debts)
            self.chain.impersonate(member.address)
            send(self.token.functions.mint(member.address, 10**10), self.admin)
            send(self.token.functions.approve(market.address, 2**256 - 1), member.address)
            send(self.market.functions.deposit(10**10), member.address)
        assert self.member_ids == sorted(self.member_ids), "members are registered in id order"

        self.flows = Flows(members)
        epoch, self.slot_seconds, _ = self.market.functions.slotClock().call()
        self.epoch = int(epoch)
        # two slots ahead: time for the trades (and slot + 1, a later slot of the same period)
        self.slot = int(self.market.functions.nextOpenSlot().call()) + 2
        assert self.slot // PERIOD_SLOTS == (self.slot + 1) // PERIOD_SLOTS, "both slots in one period"
        self.signed = {slot: [self.sign(i, slot) for i in range(members)] for slot in (self.slot, self.slot + 1)}
        self.accepted = [
            SlotReading(member_id, *flow) for member_id, flow in zip(self.member_ids, self.flows.readings, strict=True)
        ]
        self.base = self.chain.snapshot()
        self.traded: str | None = None
        self.last_receipt: Any = None  # of the last call measured, for tracing
        self.setup_seconds = round(time.monotonic() - started, 1)

    # --------------------------------------------------------------- helpers

    def sign(self, index: int, slot: int) -> SignedReading:
        """The meter's reading for ``slot`` (its registers as if it had read the same flows in
        every slot since ``self.slot``)."""
        import_wh, export_wh = self.flows.readings[index]
        count = slot - self.slot + 1
        reading = Reading(self.meters[index].address, slot, import_wh, export_wh, count * import_wh, count * export_wh)
        return self.domain.sign(reading, self.meters[index].key)

    def slot_end(self, slot: int) -> int:
        return self.epoch + (slot + 1) * self.slot_seconds

    def fresh(self, traded: bool) -> None:
        """Back to the community before any scenario: after setup, or (``traded``) with the
        Cda trades of both slots made. Snapshots nest and anvil consumes one when reverting to
        it, so going back to the base drops the trades' snapshot (the trades are then made
        again)."""
        if traded and self.traded is not None:
            self.chain.revert(self.traded)
            self.traded = self.chain.snapshot()
            return
        self.chain.revert(self.base)
        self.base = self.chain.snapshot()
        self.traded = None
        if traded:
            for slot in (self.slot, self.slot + 1):
                for k, q in enumerate(self.flows.trades):
                    seller, buyer = self.members[2 * k].address, self.members[2 * k + 1].address
                    self.chain.send(self.market.functions.placeOrder(slot, False, TRADE_PRICE, q), seller)
                    self.chain.send(self.market.functions.placeOrder(slot, True, TRADE_PRICE, q), buyer)
                last = self.members[-1].address  # the last pair traded with each other
                assert self.market.functions.positionOf(slot, last).call()[0] == self.flows.trades[-1]
            self.traded = self.chain.snapshot()

    def set_rules(self, scenario: Scenario) -> None:
        self.chain.send(self.settlement.functions.setConfig(scenario.config, self.slot), self.admin)

    def schedule_entries(self) -> list[bytes]:
        return [
            pack_schedule([(member_id, net, internal)])
            for member_id, (net, internal) in zip(self.member_ids, self.flows.schedule, strict=True)
        ]

    def post_schedule(self, slot: int, per_call: int) -> list[Any]:
        entries = self.schedule_entries()
        receipts = []
        for start in range(0, len(entries), per_call):
            chunk = b"".join(entries[start : start + per_call])
            complete = start + per_call >= len(entries)
            call = self.settlement.functions.postSchedule(slot, SCHEDULE_PRICE, chunk, complete, keccak(text="result"))
            receipts.append(self.chain.send(call, self.admin))
        return receipts

    def deliver(self, slot: int) -> None:
        self.chain.mine_at(self.slot_end(slot) + 1)
        signed = self.signed[slot]
        for start in range(0, len(signed), READING_BATCH):
            batch = signed[start : start + READING_BATCH]
            call = self.oracle.functions.submitReadings(pack(batch))
            accepted = call.call({"from": self.admin})
            assert accepted == len(batch), f"{len(batch) - accepted} readings rejected"
            self.chain.send(call, self.admin)

    def settle(self, slot: int, size: int, passes: int) -> list[list[Any]]:
        """Settles ``slot`` in chunks of ``size`` readings; receipts per pass."""
        chunks = backward_chunks(slot, self.accepted, size)
        receipts = []
        for _ in range(passes):
            receipts.append(
                [
                    self.chain.send(
                        self.settlement.functions.settle(slot, chunk.from_chain_bytes, chunk.data), self.admin
                    )
                    for chunk in chunks
                ]
            )
        assert self.settlement.functions.slotState(slot).call()[0] == SETTLED
        return receipts

    # ------------------------------------------------------------- scenarios

    def prepare(self, scenario: Scenario) -> int:
        """Rules, trades or schedule, and readings (every member's) for the measured slot,
        which it returns; for a later slot, the slot before it is settled first."""
        self.fresh(scenario.traded)
        self.set_rules(scenario)
        slots = [self.slot, self.slot + 1] if scenario.later_slot else [self.slot]
        if scenario.scheduled:
            for slot in slots:
                self.post_schedule(slot, SCHEDULE_CALL_MEMBERS)
                posted = self.settlement.functions.scheduledInternalWh(slot, self.member_ids[-1]).call()
                assert posted == self.flows.schedule[-1][1], "the schedule is posted"
        self.deliver(self.slot)
        if scenario.later_slot:
            self.settle(self.slot, MEMBERS, scenario.passes)
            self.deliver(self.slot + 1)
        return slots[-1]

    def settle_scenario(self, scenario: Scenario, sizes: Sequence[int | None]) -> dict[str, Any]:
        """Settles the slot once per chunk size (None: the whole slot in one call)."""
        slot = self.prepare(scenario)
        ready = self.chain.snapshot()
        rows: dict[str, Any] = {}
        for size in sizes:
            self.chain.revert(ready)
            ready = self.chain.snapshot()
            name = "whole_slot" if size is None else f"chunks_of_{size}"
            try:
                receipts = self.settle(slot, size or self.members_count, scenario.passes)
            except OutOfBlockGas:
                rows[name] = {"calls": None, "per_member": None, "fits_block_30m": False, "meets_target": None}
                continue
            rows[name] = self.row(receipts)
        return rows

    def row(self, passes: list[list[Any]]) -> dict[str, Any]:
        gas = [[int(r.gasUsed) for r in receipts] for receipts in passes]
        total = sum(sum(p) for p in gas)
        row: dict[str, Any] = {
            "calls": sum(len(p) for p in gas),
            "total_gas": total,
            "max_call_gas": max(max(p) for p in gas),
            "per_member": round(total / self.members_count),
        }
        row["fits_block_30m"] = True
        row["fits_eip7825_tx_cap"] = row["max_call_gas"] <= EIP7825_TX_GAS_CAP
        if len(gas) == 2:
            row["tally_per_member"] = round(sum(gas[0]) / self.members_count)
            row["pay_per_member"] = round(sum(gas[1]) / self.members_count)
        row["meets_target"] = row["per_member"] <= TARGET_SETTLE_PER_MEMBER
        return row

    def empty_slot(self) -> int:
        self.fresh(False)
        self.set_rules(_CDA)
        self.chain.mine_at(self.slot_end(self.slot) + READING_WINDOW_SECONDS)
        return int(self.chain.send(self.settlement.functions.settle(self.slot, bytes(32), b""), self.admin).gasUsed)

    def settle_unmetered(self, sizes: Sequence[int | None]) -> dict[str, Any]:
        """Cda positions, no readings: the (empty) settle after the deadline, then
        settleUnmetered of every member."""
        self.fresh(True)
        self.set_rules(_CDA)
        self.chain.mine_at(self.slot_end(self.slot) + READING_WINDOW_SECONDS)
        start = int(self.chain.send(self.settlement.functions.settle(self.slot, bytes(32), b""), self.admin).gasUsed)
        ready = self.chain.snapshot()
        rows: dict[str, Any] = {}
        for size in sizes:
            self.chain.revert(ready)
            ready = self.chain.snapshot()
            step = size or self.members_count
            try:
                receipts = [
                    self.chain.send(
                        self.settlement.functions.settleUnmetered(self.slot, self.member_ids[i : i + step]), self.admin
                    )
                    for i in range(0, self.members_count, step)
                ]
            except OutOfBlockGas:
                rows["whole_slot" if size is None else f"calls_of_{size}"] = {"fits_block_30m": False}
                continue
            gas = [int(r.gasUsed) for r in receipts]
            rows["whole_slot" if size is None else f"calls_of_{size}"] = {
                "calls": len(gas),
                "total_gas": sum(gas),
                "max_call_gas": max(gas),
                "per_member": round(sum(gas) / self.members_count),
                "per_member_with_empty_settle": round((sum(gas) + start) / self.members_count),
                "fits_block_30m": True,
            }
            self.last_receipt = receipts[0]
        return {"empty_settle_call": start, **rows}

    def post_schedule_gas(self, sizes: Sequence[int | None]) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for size in sizes:
            self.fresh(False)
            self.set_rules(Scenario("optimisation", OPTIMISATION))
            per_call = size or self.members_count
            try:
                receipts = self.post_schedule(self.slot, per_call)
            except OutOfBlockGas:
                rows["one_call" if size is None else f"calls_of_{size}"] = {"fits_block_30m": False}
                continue
            gas = [int(r.gasUsed) for r in receipts]
            per_member = round(sum(gas) / self.members_count)
            rows["one_call" if size is None else f"calls_of_{size}"] = {
                "calls": len(gas),
                "total_gas": sum(gas),
                "max_call_gas": max(gas),
                "per_member": per_member,
                "fits_block_30m": max(gas) <= BLOCK_GAS_LIMIT,
                "fits_eip7825_tx_cap": max(gas) <= EIP7825_TX_GAS_CAP,
                "meets_target": per_member <= TARGET_POST_PER_MEMBER,
            }
            self.last_receipt = receipts[0]
        return rows

    def traced_settle(self, scenario: Scenario) -> Any:
        """The receipt of the whole slot's (paying) settle call."""
        slot = self.prepare(scenario)
        return self.settle(slot, self.members_count, scenario.passes)[-1][0]


# ------------------------------------------------------------------ tracing


def hex_hash(tx_hash: Any) -> str:
    text = tx_hash.hex()
    return text if text.startswith("0x") else f"0x{text}"


def opcode_costs(logs: list[dict[str, Any]]) -> list[int]:
    """Each step's own gas (a call's cost without what the callee used)."""
    costs = [0] * len(logs)
    returns: dict[int, int] = {}  # step index of a call -> the next step at its depth
    open_calls: list[int] = []
    for i, step in enumerate(logs):
        while open_calls and logs[open_calls[-1]]["depth"] >= step["depth"]:
            returns[open_calls.pop()] = i
        if i + 1 < len(logs) and logs[i + 1]["depth"] > step["depth"]:
            open_calls.append(i)
    for i, step in enumerate(logs):
        nxt = logs[i + 1] if i + 1 < len(logs) else None
        if nxt is not None and nxt["depth"] == step["depth"]:
            costs[i] = step["gas"] - nxt["gas"]
        elif nxt is not None and nxt["depth"] > step["depth"] and i in returns:
            back = returns[i]
            last = logs[back - 1]
            child_used = nxt["gas"] - (last["gas"] - last["gasCost"])
            costs[i] = step["gas"] - logs[back]["gas"] - child_used
        else:
            costs[i] = step["gasCost"]
    return costs


def kind_of(op: str, cost: int) -> str:
    if op == "SLOAD":
        return "SLOAD cold" if cost >= 2100 else "SLOAD warm"
    if op == "SSTORE":
        return "SSTORE"
    if op.startswith("LOG"):
        return "events (LOG)"
    return "execution (ABI coding, memory, arithmetic, calls)"


def call_frames(chain: Chain, tx_hash: Any, contracts: dict[str, Any]) -> list[dict[str, Any]]:
    """The external calls of the transaction (callTracer): callee, function and gas used."""
    top = chain.rpc("debug_traceTransaction", [hex_hash(tx_hash), {"tracer": "callTracer"}])
    selectors: dict[str, str] = {}
    for name, contract in contracts.items():
        for item in contract.abi:
            if item.get("type") == "function":
                selectors[function_abi_to_4byte_selector(item).hex()] = f"{name}.{item['name']}"
    return [
        {
            "to": call["to"].lower(),
            "call": selectors.get(call["input"][2:10], call["input"][2:10]),
            "gas_used": int(call["gasUsed"], 16),
        }
        for call in top.get("calls", [])
    ]


MAIN_FRAMES = ("market.settlementPositions", "market.applySettlement")


def breakdown(bench: SettlementBench, receipt: Any, members: int) -> dict[str, Any]:
    """Where a transaction's gas goes, per member: by code (the settlement contract, the
    market's two ledger calls, other calls) and cost kind; storage and log operations;
    external calls. (Per opcode, from the struct-log trace; a call's own cost excludes what
    the callee used.)"""
    chain = bench.chain
    tx_hash = receipt.transactionHash
    trace = chain.rpc(
        "debug_traceTransaction",
        [hex_hash(tx_hash), {"disableStack": True, "disableMemory": True, "disableStorage": True}],
    )
    logs = trace["structLogs"]
    for log in logs:
        log["gas"], log["gasCost"] = int(log["gas"]), int(log["gasCost"])
    costs = opcode_costs(logs)
    frames = call_frames(
        chain, tx_hash, {"market": bench.market, "oracle": bench.oracle, "settlement": bench.settlement}
    )
    by_kind: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    counts: dict[str, int] = defaultdict(int)
    steps: dict[str, int] = defaultdict(int)
    frame = -1
    for i, (step, cost) in enumerate(zip(logs, costs, strict=True)):
        if step["depth"] == 2 and logs[i - 1]["depth"] == 1:
            frame += 1
        if step["depth"] == 1:
            where = "settlement"
        else:
            where = frames[frame]["call"] if frames[frame]["call"] in MAIN_FRAMES else "other calls"
        op = step["op"]
        by_kind[where][kind_of(op, cost)] += cost
        steps[where] += 1
        if op in ("SLOAD", "SSTORE") or op.startswith("LOG"):
            cold = " cold" if op == "SLOAD" and cost >= 2100 else ""
            counts[f"{where} {op}{cold}"] += 1
    execution = sum(costs)
    data = bytes(chain.web3.eth.get_transaction(tx_hash)["input"])
    calldata = sum(16 if b else 4 for b in data)
    refund = 21_000 + calldata + execution - int(receipt.gasUsed)
    return {
        "call_members": members,
        "receipt_gas": int(receipt.gasUsed),
        "calldata_bytes": len(data),
        "calldata_gas": calldata,
        "execution_gas": execution,
        "refund": refund,
        "per_member_by_kind": {
            where: {kind: round(gas / members) for kind, gas in sorted(kinds.items(), key=lambda kv: -kv[1])}
            for where, kinds in by_kind.items()
        },
        "per_member_transaction": {
            "base 21,000": round(21_000 / members),
            "calldata": round(calldata / members),
            "refund": -round(refund / members),
        },
        "evm_steps_per_member": {where: round(count / members) for where, count in steps.items()},
        "storage_and_log_ops_per_member": {name: round(count / members, 2) for name, count in sorted(counts.items())},
        "external_calls": [{"call": f["call"], "gas_used": f["gas_used"]} for f in frames],
    }


# -------------------------------------------------------------------- runs


@dataclass
class Base:
    """A chain with the settlement token deployed: the admin (minter, and each community's
    admin and manager) and the supplier account (deposits in each community's market)."""

    project: Any  # Brownie's contract containers (ABI and bytecode)
    chain: Chain
    admin: str
    supplier: str
    token: Any


def launch(port: int) -> Base:
    """The benchmark's anvil, launched by Brownie (the common community start; its market is
    not used, each community deploys its own)."""
    community = launch_community(port, 0, "PeerwattSettlementBench")
    from brownie import accounts
    from brownie.network.web3 import web3

    chain = Chain(web3)
    return Base(community.project, chain, community.admin.address, accounts[1].address,
                chain.contract(community.token))


@contextmanager
def tracing_chain(project: Any, port: int) -> Iterator[Base]:
    """A second anvil with ``--steps-tracing`` for the opcode breakdown only (it keeps every
    step of every transaction in memory: too much for the 1,000-member runs)."""
    from web3 import HTTPProvider, Web3

    process = subprocess.Popen(
        ["anvil", "--port", str(port), "--accounts", "2", "--chain-id", "31337", "--steps-tracing", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        web3 = Web3(HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 600}))
        for _ in range(100):
            if process.poll() is not None:
                raise RuntimeError(f"anvil on port {port} exited (port in use?)")
            if web3.is_connected():
                break
            time.sleep(0.1)
        chain = Chain(web3)
        admin, supplier, *_ = list(web3.eth.accounts)
        token = chain.deploy(project.PeerwattToken, admin, [admin, "Peerwatt Euro", "PWEUR"])
        yield Base(project, chain, admin, supplier, token)
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_size(base: Base, members: int, log: Callable[[str], None]) -> dict[str, Any]:
    bench = SettlementBench(base, members)
    log(f"{members} members: setup {bench.setup_seconds}s")
    large = members > MEMBERS
    sizes: list[int | None] = [100, 200, None] if large else [25, 50, 100, 200, None]
    settle: dict[str, Any] = {}
    for scenario in SCENARIOS:
        started = time.monotonic()
        settle[scenario.name] = bench.settle_scenario(scenario, sizes)
        log(f"{members} members: {scenario.name} {time.monotonic() - started:.1f}s")
    result: dict[str, Any] = {
        "members": members,
        "setup_seconds": bench.setup_seconds,
        "settle_per_member": settle,
        "empty_slot_settle_call": bench.empty_slot(),
        "settle_unmetered": bench.settle_unmetered([100, None]),
        "post_schedule": bench.post_schedule_gas([SCHEDULE_CALL_MEMBERS, None]),
    }
    if not large:
        # a settle call's fixed cost: (total in chunks of 25 - total in one call) / extra calls
        chunking = {}
        for name, rows in settle.items():
            extra_calls = rows["chunks_of_25"]["calls"] - rows["whole_slot"]["calls"]
            fixed = (rows["chunks_of_25"]["total_gas"] - rows["whole_slot"]["total_gas"]) / extra_calls
            chunking[name] = {
                "per_call_overhead": round(fixed),
                "per_member_without_call_overheads": round(
                    (rows["whole_slot"]["total_gas"] - rows["whole_slot"]["calls"] * fixed) / members
                ),
            }
        result["chunking"] = chunking
    return result


def run_breakdown(base: Base, members: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The traced transactions: one call for all members of each traced scenario, of
    settleUnmetered and of postSchedule."""
    bench = SettlementBench(base, members)
    traced: dict[str, Any] = {}
    bench.settle_unmetered([None])
    traced["settle_unmetered"] = breakdown(bench, bench.last_receipt, members)
    bench.post_schedule_gas([None])
    traced["post_schedule"] = breakdown(bench, bench.last_receipt, members)
    for scenario in SCENARIOS:
        if scenario.name in TRACED:
            traced[scenario.name] = breakdown(bench, bench.traced_settle(scenario), members)
    log(f"{members} members: opcode breakdown done")
    return traced


def print_tables(results: dict[str, Any]) -> None:
    for size in results["communities"]:
        members = size["members"]
        print(f"\n### {members} members: settle gas per member and slot (target <= {TARGET_SETTLE_PER_MEMBER:,})\n")
        columns = list(next(iter(size["settle_per_member"].values())).keys())
        print("| scenario | " + " | ".join(c.replace("_", " ") for c in columns) + " |")
        print("|---|" + "---:|" * len(columns))
        for name, rows in size["settle_per_member"].items():
            cells = []
            for column in columns:
                row = rows[column]
                if not row["fits_block_30m"]:
                    cells.append("over 30M gas")
                    continue
                cell = f"{row['per_member']:,}"
                if "tally_per_member" in row:
                    cell += f" ({row['tally_per_member']:,} + {row['pay_per_member']:,})"
                if not row["meets_target"]:
                    cell += " (missed)"
                if not row["fits_eip7825_tx_cap"]:
                    cell += " [call > 2^24 gas]"
                cells.append(cell)
            print(f"| {name} | " + " | ".join(cells) + " |")
        print("\nsharing: total (tally pass + pay pass)")
        print(f"empty slot: one settle call, {size['empty_slot_settle_call']:,} gas")
        unmetered = size["settle_unmetered"]
        print(
            "settleUnmetered (Cda positions, no readings): "
            + ", ".join(
                f"{name.replace('_', ' ')} "
                + (f"{row['per_member']:,}/member" if row.get("fits_block_30m", True) else "over 30M gas")
                for name, row in unmetered.items()
                if isinstance(row, dict)
            )
            + f", after the slot's empty settle call ({unmetered['empty_settle_call']:,} gas)"
        )
        print(f"\n| postSchedule, {members} members | calls | total gas | max call | gas per member | target |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, row in size["post_schedule"].items():
            if not row["fits_block_30m"]:
                print(f"| {name.replace('_', ' ')} | 1 | over 30M gas | | | <= {TARGET_POST_PER_MEMBER:,} |")
                continue
            mark = "" if row["meets_target"] else " (missed)"
            print(
                f"| {name.replace('_', ' ')} | {row['calls']} | {row['total_gas']:,} | {row['max_call_gas']:,} "
                f"| {row['per_member']:,}{mark} | <= {TARGET_POST_PER_MEMBER:,} |"
            )
        if "chunking" in size:
            print("\n| scenario | fixed gas per settle call | gas per member without call overheads |")
            print("|---|---:|---:|")
            for name, row in size["chunking"].items():
                print(f"| {name} | {row['per_call_overhead']:,} | {row['per_member_without_call_overheads']:,} |")
        breakdowns = size.get("breakdown", {})
        if breakdowns:
            names = list(breakdowns)
            print(f"\n#### One call for all {members} members, gas per member (opcode trace)\n")
            print("| contract: kind | " + " | ".join(names) + " |")
            print("|---|" + "---:|" * len(names))
            keys: list[tuple[str, str]] = []
            for row in breakdowns.values():
                for where, kinds in row["per_member_by_kind"].items():
                    keys += [(where, kind) for kind in kinds if (where, kind) not in keys]
                keys += [("transaction", kind) for kind in row["per_member_transaction"]
                         if ("transaction", kind) not in keys]
            order = ["settlement", *MAIN_FRAMES, "other calls", "transaction"]
            for where, kind in sorted(keys, key=lambda key: (order.index(key[0]), key[1])):
                cells = []
                for row in breakdowns.values():
                    if where == "transaction":
                        table = row["per_member_transaction"]
                    else:
                        table = row["per_member_by_kind"].get(where, {})
                    cells.append(f"{table.get(kind, 0):,}")
                print(f"| {where}: {kind} | " + " | ".join(cells) + " |")
            totals = [f"**{round(row['receipt_gas'] / row['call_members']):,}**" for row in breakdowns.values()]
            print("| **receipt gas / member** | " + " | ".join(totals) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8721, help="the benchmark's anvil (tracing: port + 1)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "settlement_gas.json")
    parser.add_argument("--large", action="store_true", help=f"also a {LARGE_MEMBERS:,}-member community")
    parser.add_argument("--no-trace", action="store_true", help="skip the opcode breakdown (anvil --steps-tracing)")
    args = parser.parse_args()
    apply_toolchain_env()
    base = launch(args.port)
    node = base.chain.rpc("anvil_nodeInfo")

    def log(message: str) -> None:
        print(f"[settlement_gas] {message}", flush=True)

    communities = [run_size(base, MEMBERS, log)]
    if args.large:
        communities.append(run_size(base, LARGE_MEMBERS, log))
    if not args.no_trace:
        with tracing_chain(base.project, args.port + 1) as traced:
            communities[0]["breakdown"] = run_breakdown(traced, MEMBERS, log)
    results = {
        "chain": f"anvil (Brownie-launched), hardfork {node.get('hardFork')}, contracts for EVM shanghai, "
        "solc 0.8.37 via-IR, optimizer runs 10000",
        "gas": "receipt gas (after refunds) of the slot's transactions / members",
        "targets": {"settle_per_member": TARGET_SETTLE_PER_MEMBER, "post_schedule_per_member": TARGET_POST_PER_MEMBER},
        "communities": communities,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_tables(results)


if __name__ == "__main__":
    main()

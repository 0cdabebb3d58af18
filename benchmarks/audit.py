"""Audit of one day of a 100-member community (96 slots), on a local anvil (issue 5: <= 10 s).

Makes a real history on an anvil Brownie launches (port 8752 by default): the token, market,
oracle and settlement contracts, MEMBERS plain-address members each with a meter key and a
deposit, and one day (96 slots, one profit-share period) whose rules change through the day
(``setConfig``): sharing MMR, then SDR at night, Cda with grid and manager fees, optimisation with
a complete posted schedule (fees), Cda with savings retention, sharing BS, sharing MMR with
savings. In the Cda slots members 2k sell to 2k+1 (one ``placeOrders`` transaction per member
for the whole day; every other buyer bids 50 Wh more than it gets, and those remainders are
expired after the day); every meter signs its reading of every slot (EIP-712, the oracle's
domain), submitted in one batch of 100 once the slot ended, and the slot is settled in backward
chunks of 50 readings (two passes in sharing mode). Two slots miss readings: a Cda slot (four
traders' meters) and an optimisation slot (two scheduled members), settled after the reading
deadline and then with ``settleUnmetered``. After the day the retained savings are shared
equally (``distributeShares``).

Timed on that history (the whole chain is the day: the community was deployed just before):

- ``peerwatt audit`` as a command (a new process, ``--format json``): first on an empty ledger
  (sync + audit), then again on the synced ledger (nothing new to index: the audit as run daily);
- in this process: ``Indexer.sync`` into an empty ledger, then ``Ledger.audit`` with the node's
  state (``NodeState``) as ``peerwatt audit`` runs it, split into loading the events from the
  ledger, recomputing every settled slot, replaying every market balance, and the chain state
  reads (balances, debts, token balance and parties through ``eth_call``);
- the audit straight from the node without a ledger (``settlement.chain_audit.audit_chain``).

Every audit must report ok (no discrepancy). Results: benchmarks/results/audit.json.

    python benchmarks/audit.py [--port 8752] [--members 100]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from eth_abi import encode as abi_encode
from eth_utils import keccak
from settlement_gas import Base, Chain, deploy_settled_market, fixed_account, launch
from web3.logs import DISCARD

from oracle.readings import DOMAIN_NAME, DOMAIN_VERSION, OracleDomain, Reading, SignedReading, pack
from peerwatt.chain import connect
from peerwatt.config import CommunityConfig
from peerwatt.deployment import Deployment
from peerwatt.slots import SlotClock
from peerwatt.toolchain import PROJECT_ROOT, apply_toolchain_env
from settlement.audit import AuditReport, audit_history
from settlement.chain_audit import NodeState, audit_chain
from settlement.chunks import SlotReading, backward_chunks, pack_schedule
from settlement.ledger.indexer import Indexer
from settlement.ledger.queries import Ledger
from settlement.ledger.store import Store

TARGET_SECONDS = 10.0  # issue 5
MEMBERS = 100
SLOTS = 96
PERIOD_SLOTS = 96
READING_WINDOW_SECONDS = 900
CHUNK = 50
CDA, SHARING, OPTIMISATION = range(3)
MMR, SDR, BS = range(3)
EQUAL = 0
GRID_FEE, MANAGER_FEE = 10_000, 5_000
SAVINGS_BPS = 2_000
SCHEDULE_PRICE = 150_000
# (first slot of the day, mode, sharing rule, grid fee, manager fee, savings bps): the day's rules
DAY_RULES = [
    (0, SHARING, MMR, 0, 0, 0),
    (24, SHARING, SDR, 0, 0, 0),
    (32, CDA, MMR, GRID_FEE, MANAGER_FEE, 0),
    (56, OPTIMISATION, MMR, GRID_FEE, MANAGER_FEE, 0),
    (72, CDA, MMR, 0, 0, SAVINGS_BPS),
    (80, SHARING, BS, 0, 0, 0),
    (88, SHARING, MMR, 0, 0, SAVINGS_BPS),
]
MISSING = {40: (0, 1, 2, 3), 60: (4, 5)}  # slot of the day -> members whose reading never comes
READING_TYPE = (
    "Reading(address meter,uint32 slot,uint32 importWh,uint32 exportWh,uint48 importRegisterWh,uint48 exportRegisterWh)"
)
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"


def rules_of(slot_of_day: int) -> tuple[int, int, int, int, int, int]:
    return [rules for rules in DAY_RULES if rules[0] <= slot_of_day][-1]


class FastSigner:
    """EIP-712 reading signatures with coincurve (the digest written out as
    ``MeterOracle.readingDigest`` computes it; checked against ``OracleDomain.sign`` once)."""

    def __init__(self, domain: OracleDomain) -> None:
        self.domain = domain
        self.separator = keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    keccak(text=DOMAIN_TYPE),
                    keccak(text=DOMAIN_NAME),
                    keccak(text=DOMAIN_VERSION),
                    domain.chain_id,
                    domain.verifying_contract,
                ],
            )
        )
        self.typehash = keccak(text=READING_TYPE)
        self.checked = False

    def sign(self, reading: Reading, key: bytes) -> SignedReading:
        struct = keccak(
            abi_encode(
                ["bytes32", "address", "uint32", "uint32", "uint32", "uint48", "uint48"],
                [self.typehash, *reading.as_tuple()],
            )
        )
        signature = PrivateKey(key).sign_recoverable(keccak(b"\x19\x01" + self.separator + struct), hasher=None)
        signed = SignedReading(
            reading, signature[64] + 27, int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
        )
        if not self.checked:
            assert signed == self.domain.sign(reading, key), "fast signature differs from OracleDomain.sign"
            self.checked = True
        return signed


@dataclass
class Day:
    """What the history holds, for the report."""

    first_slot: int
    trades: int = 0
    orders: int = 0
    expired: int = 0
    readings: int = 0
    settle_calls: int = 0
    unmetered: int = 0
    schedules: int = 0
    shares: int = 0
    transactions: int = 0
    seconds: float = 0.0


class History:
    """A community on the benchmark's anvil and one day of its history."""

    def __init__(self, base: Base, members: int) -> None:
        self.chain: Chain = base.chain
        chain, admin, supplier = base.chain, base.admin, base.supplier
        project = base.project
        config = CommunityConfig()
        self.admin, self.config = admin, config
        self.token = token = chain.deploy(project.PeerwattToken, admin, [admin, "Peerwatt Euro", "PWEUR"])
        self.token_block = int(chain.web3.eth.block_number)  # a fresh token: the ledger reads from it on
        send = chain.send
        self.dso, self.manager = fixed_account("audit dso").address, admin
        wired = deploy_settled_market(chain, project, token, admin, supplier, self.dso, self.manager)
        market, oracle, settlement = wired.market, wired.oracle, wired.settlement
        self.epoch, self.market_block = wired.epoch, wired.market_block
        self.market, self.oracle, self.settlement, self.supplier = market, oracle, settlement, supplier
        self.signer = FastSigner(OracleDomain(chain.web3.eth.chain_id, oracle.address))
        self.members = [fixed_account(f"audit member {i}") for i in range(members)]
        self.meters = [fixed_account(f"audit meter {i}") for i in range(members)]
        self.member_ids: list[int] = []
        for member, meter in zip(self.members, self.meters, strict=True):
            send(market.functions.addMember(member.address), admin)
            self.member_ids.append(int(market.functions.memberOf(member.address).call()[0]))
            send(oracle.functions.registerMeter(meter.address, member.address, 0), admin)
            chain.impersonate(member.address)
            send(token.functions.mint(member.address, 10**10), admin)
            send(token.functions.approve(market.address, 2**256 - 1), member.address)
            send(market.functions.deposit(10**10), member.address)
        self.registers = [[0, 0] for _ in range(members)]
        next_open = int(market.functions.nextOpenSlot().call())
        self.day = Day(math.ceil((next_open + 2) / PERIOD_SLOTS) * PERIOD_SLOTS)

    # -------------------------------------------------------------- flows

    def quantity(self, k: int, slot: int) -> int:
        """Pair k's traded (or scheduled) energy in ``slot`` (Wh): a daily curve."""
        hour = (slot % SLOTS) / 4
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))
        return 200 + 10 * (k % 50) + int(900 * sun)

    def trades_in(self, k: int, slot: int) -> bool:
        return (k + slot) % 5 != 0  # one pair in five sits a slot out

    def flows(self, slot: int) -> list[tuple[int, int]]:
        """(import, export) per member: pair k, 2k exports about q, 2k+1 imports about q, off the
        contract by 15% up or down."""
        out = []
        for k in range(len(self.members) // 2):
            q = self.quantity(k, slot)
            imbalance = (q * 15 // 100) * (1 if (k + slot) % 2 == 0 else -1)
            out += [(40, q + imbalance + 40), (q - imbalance + 30, 30)]
        return out

    # ---------------------------------------------------------- the day

    def slot_end(self, slot: int) -> int:
        return self.epoch + (slot + 1) * self.config.slot_seconds

    def make(self, log: Any) -> Day:
        started = time.monotonic()
        first_tx = self.chain.web3.eth.block_number
        first = self.day.first_slot
        send = self.chain.send
        for offset, mode, rule, grid, manager, savings in DAY_RULES:
            send(
                self.settlement.functions.setConfig((mode, rule, EQUAL, grid, manager, savings), first + offset),
                self.admin,
            )
        self.place_orders()
        log(f"{self.day.orders} orders placed, {self.day.trades} trades")
        self.post_schedules()
        for slot in range(first, first + SLOTS):
            self.deliver_and_settle(slot)
            if (slot - first) % 24 == 23:
                log(f"slots settled up to {slot - first + 1} of {SLOTS}")
        self.expire_remainders()
        self.share()
        self.day.transactions = int(self.chain.web3.eth.block_number) - first_tx
        self.day.seconds = round(time.monotonic() - started, 1)
        return self.day

    def place_orders(self) -> None:
        """Sellers first (their asks rest), then buyers (their bids cross): one transaction per
        member for the whole day's Cda slots."""
        first = self.day.first_slot
        cda = [first + s for s in range(SLOTS) if rules_of(s)[1] == CDA]
        self.remainders = 0
        for is_buy in (False, True):
            for k in range(len(self.members) // 2):
                member = self.members[2 * k + int(is_buy)]
                # ascending by pair: a seller's ask never crosses an earlier buyer's resting
                # remainder, and a buyer's bid finds only its own seller's ask (earlier ones are filled)
                price = 150_000 + 1_000 * k
                orders = []
                for slot in cda:
                    if not self.trades_in(k, slot):
                        continue
                    q = self.quantity(k, slot)
                    extra = 50 if is_buy and k % 2 else 0
                    orders.append((slot, is_buy, price, q + extra))
                    self.day.trades += int(is_buy)
                    self.remainders += int(extra > 0)
                receipt = self.chain.send(self.market.functions.placeOrders(orders), member.address)
                self.day.orders += len(orders)
                if is_buy and k % 2:
                    placed = self.market.events.OrderPlaced().process_receipt(receipt, errors=DISCARD)
                    self.resting = getattr(self, "resting", []) + [int(event.args.orderId) for event in placed]

    def post_schedules(self) -> None:
        first = self.day.first_slot
        for s in range(SLOTS):
            if rules_of(s)[1] != OPTIMISATION:
                continue
            entries = []
            for k in range(len(self.members) // 2):
                q = self.quantity(k, first + s)
                internal = q * 9 // 10
                entries += [(self.member_ids[2 * k], q, internal), (self.member_ids[2 * k + 1], -q, -internal)]
            call = self.settlement.functions.postSchedule(
                first + s, SCHEDULE_PRICE, pack_schedule(entries), True, keccak(text=f"schedule {first + s}")
            )
            self.chain.send(call, self.admin)
            self.day.schedules += 1

    def deliver_and_settle(self, slot: int) -> None:
        missing = MISSING.get(slot - self.day.first_slot, ())
        self.chain.mine_at(self.slot_end(slot) + 1)
        signed, accepted = [], []
        for i, (import_wh, export_wh) in enumerate(self.flows(slot)):
            registers = self.registers[i]
            registers[0] += import_wh
            registers[1] += export_wh
            if i in missing:
                continue
            reading = Reading(self.meters[i].address, slot, import_wh, export_wh, *registers)
            signed.append(self.signer.sign(reading, self.meters[i].key))
            accepted.append(SlotReading(self.member_ids[i], import_wh, export_wh))
        call = self.oracle.functions.submitReadings(pack(signed))
        assert call.call({"from": self.admin}) == len(signed), "readings rejected"
        self.chain.send(call, self.admin)
        self.day.readings += len(signed)
        if missing:
            self.chain.mine_at(self.slot_end(slot) + READING_WINDOW_SECONDS)
        mode = rules_of(slot - self.day.first_slot)[1]
        chunks = backward_chunks(slot, accepted, CHUNK)
        for _ in range(2 if mode == SHARING else 1):
            for chunk in chunks:
                self.chain.send(self.settlement.functions.settle(slot, chunk.from_chain_bytes, chunk.data), self.admin)
                self.day.settle_calls += 1
        if missing:
            ids = sorted(self.member_ids[i] for i in missing)
            self.chain.send(self.settlement.functions.settleUnmetered(slot, ids), self.admin)
            self.day.unmetered += len(ids)
        assert self.settlement.functions.slotState(slot).call()[0] == 3, f"slot {slot} not settled"

    def expire_remainders(self) -> None:
        ids = getattr(self, "resting", [])
        for start in range(0, len(ids), 100):
            self.chain.send(self.market.functions.expireOrders(ids[start : start + 100]), self.admin)
        self.day.expired = len(ids)

    def share(self) -> None:
        """The period's pot (retained savings) shared equally among the members."""
        period = self.day.first_slot // PERIOD_SLOTS
        pot = int(self.settlement.functions.period(period).call()[0])
        n = len(self.members)
        shares = [pot // n + (1 if i < pot % n else 0) for i in range(n)]
        self.chain.send(self.settlement.functions.distributeShares(period, self.member_ids, shares), self.admin)
        self.day.shares = pot

    def deployment(self, path: Path) -> Deployment:
        web3 = self.chain.web3
        deployment = Deployment(
            chain_id=int(web3.eth.chain_id),
            token=self.token.address,
            market=self.market.address,
            oracle=self.oracle.address,
            settlement=self.settlement.address,
            deployer=self.admin,
            deploy_block=self.market_block,
            deploy_block_hash="0x" + bytes(web3.eth.get_block(self.market_block)["hash"]).hex().removeprefix("0x"),
            slot_clock=SlotClock(self.epoch, self.config.slot_seconds, self.config.market.gate_seconds),
            members={f"member{i}": m.address for i, m in enumerate(self.members)},
            meters={f"member{i}": m.address for i, m in enumerate(self.meters)},
            parties={"supplier": self.supplier, "dso": self.dso, "manager": self.manager},
            first_block=self.token_block,
        )
        deployment.save(path)
        return deployment


class TimedState:
    """A chain state that counts and times its reads."""

    def __init__(self, state: NodeState) -> None:
        self.state, self.reads, self.seconds = state, 0, 0.0

    def _timed(self, function: Any, *args: Any) -> int:
        started = time.perf_counter()
        try:
            return int(function(*args))
        finally:
            self.seconds += time.perf_counter() - started
            self.reads += 1

    def market_balance(self, account: str) -> int:
        return self._timed(self.state.market_balance, account)

    def market_debt(self, account: str) -> int:
        return self._timed(self.state.market_debt, account)

    def market_token_balance(self) -> int:
        return self._timed(self.state.market_token_balance)


def summary(report: AuditReport) -> dict[str, Any]:
    data = report.to_dict()
    return {
        "ok": data["ok"],
        "slots_audited": data["slots_audited"],
        "member_results": data["member_results"],
        "ledger_applications": data["ledger_applications"],
        "accounts": data["accounts"],
        "discrepancies": len(data["discrepancies"]),
        "notes": len(data["notes"]),
    }


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[float, dict[str, Any]]:
    exe = Path(sys.executable).with_name("peerwatt")
    started = time.perf_counter()
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout[-5000:], result.stderr[-5000:], sep="\n")
        raise SystemExit(f"peerwatt {' '.join(args)} exited {result.returncode}")
    return seconds, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8752)
    parser.add_argument("--members", type=int, default=MEMBERS)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "audit.json")
    args = parser.parse_args()
    if not 8751 <= args.port <= 8760:
        raise SystemExit("use a port in 8751-8760 (the others belong to tests and other benchmarks)")
    apply_toolchain_env()

    def log(message: str) -> None:
        print(f"[audit] {message}", flush=True)

    base = launch(args.port)
    started = time.monotonic()
    history = History(base, args.members)
    log(f"{args.members} members set up in {time.monotonic() - started:.1f} s; day from slot {history.day.first_slot}")
    day = history.make(log)
    log(f"day made in {day.seconds} s ({day.transactions} transactions)")
    rpc = f"http://127.0.0.1:{args.port}"

    with tempfile.TemporaryDirectory(prefix="peerwatt-audit-bench-") as tmp:
        workdir = Path(tmp)
        deployment = history.deployment(workdir / "deployment.json")
        env = dict(os.environ, PEERWATT_RPC=rpc)
        env.pop("PEERWATT_LEDGER_DB", None)
        cli_args = [
            "--rpc",
            rpc,
            "--deployment",
            str(workdir / "deployment.json"),
            "audit",
            "--format",
            "json",
            "--db",
            str(workdir / "cli.sqlite"),
        ]
        load = os.getloadavg()[0]
        cli_first, cli_report = run_cli(env, workdir, *cli_args)
        cli_again, cli_report_again = run_cli(env, workdir, *cli_args)
        log(f"peerwatt audit: {cli_first:.2f} s on an empty ledger, {cli_again:.2f} s synced")

        w3 = connect(rpc)
        with Store(workdir / "direct.sqlite") as store:
            sync = Indexer(w3, deployment, store).sync()
        ledger = Ledger.open(workdir / "direct.sqlite")
        try:
            block = ledger.last_block() or 0
            # as `peerwatt audit` runs it
            t0 = time.perf_counter()
            state = NodeState(w3, deployment.token, deployment.market, deployment.settlement, block)
            report = ledger.audit(state, state.parties(), None)
            ledger_audit = time.perf_counter() - t0
            # the same, split
            t0 = time.perf_counter()
            events = ledger.chain_events()
            schedules = ledger.posted_schedules()
            t1 = time.perf_counter()
            slots_only = audit_history(events, schedules)
            t2 = time.perf_counter()
            timed = TimedState(NodeState(w3, deployment.token, deployment.market, deployment.settlement, block))
            parties = timed.state.parties()
            t3 = time.perf_counter()
            full = audit_history(events, schedules, timed, parties)
            t4 = time.perf_counter()
        finally:
            ledger.store.close()
        t5 = time.perf_counter()
        node_report = audit_chain(w3, deployment)
        node_seconds = time.perf_counter() - t5
        events_count = len(events)

    reports = {
        "cli_first": cli_report["ok"],
        "cli_synced": cli_report_again["ok"],
        "ledger": report.ok,
        "split": full.ok and slots_only.ok,
        "node": node_report.ok,
    }
    if not all(reports.values()):
        for finding in [*report.discrepancies, *node_report.discrepancies][:40]:
            print(finding)
    recompute = t2 - t1
    whole = t4 - t3
    result: dict[str, Any] = {
        "chain": "anvil (Brownie-launched), one community deployed for the benchmark",
        "history": {
            "members": args.members,
            "slots": SLOTS,
            "first_slot": day.first_slot,
            "rules_by_slot_of_day": [
                {
                    "from": r[0],
                    "mode": ("cda", "sharing", "optimisation")[r[1]],
                    "rule": ("mmr", "sdr", "bs")[r[2]],
                    "grid_fee": r[3],
                    "manager_fee": r[4],
                    "savings_bps": r[5],
                }
                for r in DAY_RULES
            ],
            "missing_readings": {str(day.first_slot + s): len(m) for s, m in MISSING.items()},
            "orders": day.orders,
            "trades": day.trades,
            "orders_expired": day.expired,
            "readings": day.readings,
            "settle_calls": day.settle_calls,
            "settled_unmetered": day.unmetered,
            "schedules_posted": day.schedules,
            "profit_share_pot": day.shares,
            "transactions": day.transactions,
            "events": events_count,
            "seconds_to_make": day.seconds,
        },
        "report": summary(report),
        "all_audits_ok": all(reports.values()),
        "audit_ok_by_run": reports,
        "peerwatt_audit_command": {
            "empty_ledger_sync_and_audit_seconds": round(cli_first, 3),
            "synced_ledger_seconds": round(cli_again, 3),
            "note": "whole command: process start, imports, deployment check, sync, audit, JSON output",
        },
        "in_process": {
            "sync_seconds": round(sync.seconds, 3),
            "sync_events": sync.events,
            "audit_seconds": round(ledger_audit, 3),
            "sync_plus_audit_seconds": round(sync.seconds + ledger_audit, 3),
            "split": {
                "note": "the same audit again, step by step (caches of checksummed addresses and ABI coders warm)",
                "load_events_from_ledger": round(t1 - t0, 3),
                "recompute_settled_slots": round(recompute, 3),
                "parties_read": round(t3 - t2, 3),
                "recompute_and_balance_replay_with_chain_reads": round(whole, 3),
                "balance_replay": round(whole - recompute - timed.seconds, 3),
                "chain_state_reads": round(timed.seconds, 3),
                "chain_state_read_calls": timed.reads,
            },
        },
        "audit_from_node_without_ledger_seconds": round(node_seconds, 3),
        "machine": {"cpus": os.cpu_count(), "load_average_1m_before_timing": round(load, 2)},
        "target_seconds": TARGET_SECONDS,
        "meets_target": all(reports.values()) and max(cli_first, sync.seconds + ledger_audit) <= TARGET_SECONDS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not all(reports.values()):
        raise SystemExit("the audit of a clean history found discrepancies")


if __name__ == "__main__":
    main()

"""Member statement query over one day through HTTP, with 1,000,000 events indexed (issue 5:
p95 <= 50 ms).

The store is not filled from a chain: a million real events would take hours to make on anvil.
Instead this benchmark writes a synthetic but consistent community history through the ledger's
own write path: raw JSON-RPC logs encoded with eth_abi from the compiled contract ABIs (as a node
returns them), turned into rows by ``settlement.ledger.records.add_log`` (exactly what the
indexer does with the logs it reads) and written with ``Store.write_range`` one day at a time.
The history: MEMBERS members (two in three with solar panels) over as many days as it takes to
pass EVENTS events; each day's slots are settled in sharing mode (MMR) at night and in Cda mode
with fees by day (two ``ConfigScheduled`` a day); every member's meter reading every slot
(``ReadingsAccepted`` batches of 100), Cda orders, trades and expired remainders between
exporters and importers, every slot sealed, started, settled in chunks of 50 members
(``MembersSettled`` and ``SettlementApplied`` each) and closed; a few deposits a day; and each
day's profit-share pot funded and shared equally (``PotFunded``, ``ShareDistributed`` per member,
``SharesCompleted``). Members' results are the audit's own recomputation
(``settlement.audit.expected_result``), so the history also audits clean.

Then ``peerwatt ledger serve`` runs as a subprocess with an auditor key, and REQUESTS
``GET /statements/{member}?slot_from=D*96&slot_to=D*96+95`` for random members and days are
timed one after another with httpx (after WARMUP untimed ones). Results:
benchmarks/results/ledger_queries.json.

    python benchmarks/ledger_queries.py [--events 1000000] [--members 120] [--requests 500]
        [--port 8753] [--db PATH (kept and reused if it already holds the history)]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from peerwatt import artifacts
from peerwatt.config import CommunityConfig
from peerwatt.order_ids import first_seq, order_id_at
from peerwatt.slots import SlotClock
from peerwatt.toolchain import PROJECT_ROOT
from settlement import pricing
from settlement.audit import Expected, Position, Rules, expected_result
from settlement.ledger.records import Batch, add_log
from settlement.ledger.store import Binding, Store

TARGET_P95_MS = 50.0  # issue 5
CHAIN_ID = 31337
ADDRESSES = {
    "PeerwattToken": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "CdaMarket": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "MeterOracle": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
    "CommunitySettlement": "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9",
}
CONTRACTS = {address.lower(): name for name, address in ADDRESSES.items()}
SLOTS_PER_DAY = 96
FIRST_DAY = 20_000  # slot numbers of late 2024 for an epoch at 0 (any day works)
READING_BATCH = 100
SETTLE_CHUNK = 50
CDA_FROM, CDA_TO = 32, 80  # Cda mode from 08:00 to 20:00, sharing (MMR) at night
GRID_FEE, MANAGER_FEE = 10_000, 5_000
CDA, SHARING = 0, 1
MMR = 0
CANCEL_EXPIRED = 3  # ICdaMarket.CancelReason.Expired
DAILY_POT = 1_000_000_000
AUDITOR_KEY = "ledger-queries-bench-key"
WARMUP = 20


def _address(label: str) -> str:
    return to_checksum_address(keccak(text=f"Peerwatt ledger bench {label}")[12:])


@dataclass(frozen=True)
class _EventCoder:
    address: str
    topic: str
    indexed: list[tuple[str, str]]  # (name, type)
    data: list[tuple[str, str]]


class LogWriter:
    """Raw logs as ``eth_getLogs`` returns them, one transaction per block (as anvil mines)."""

    def __init__(self) -> None:
        self.coders: dict[str, _EventCoder] = {}
        for contract, address in ADDRESSES.items():
            for entry in artifacts.abi(contract):
                if entry.get("type") == "event":
                    self.coders[entry["name"]] = _EventCoder(
                        address.lower(),
                        artifacts.event_topic(contract, entry["name"]),
                        [(i["name"], i["type"]) for i in entry["inputs"] if i["indexed"]],
                        [(i["name"], i["type"]) for i in entry["inputs"] if not i["indexed"]],
                    )
        self.block = 0
        self.log_index = 0
        self.logs: list[dict[str, Any]] = []

    def tx(self) -> None:
        """The next transaction, in a block of its own."""
        self.block += 1
        self.log_index = 0

    @property
    def block_hash(self) -> str:
        return f"0x{self.block:064x}"

    def emit(self, event: str, **args: Any) -> None:
        coder = self.coders[event]
        topics = [coder.topic] + ["0x" + abi_encode([kind], [args[name]]).hex() for name, kind in coder.indexed]
        data = abi_encode([kind for _, kind in coder.data], [args[name] for name, _ in coder.data])
        self.logs.append(
            {
                "address": coder.address,
                "topics": topics,
                "data": "0x" + data.hex(),
                "blockNumber": hex(self.block),
                "blockHash": self.block_hash,
                "transactionHash": f"0x{self.block:064x}",
                "transactionIndex": "0x0",
                "logIndex": hex(self.log_index),
                "removed": False,
            }
        )
        self.log_index += 1

    def take(self) -> list[dict[str, Any]]:
        logs, self.logs = self.logs, []
        return logs


def pack_reading(meter: str, slot: int, import_wh: int, export_wh: int, import_reg: int, export_reg: int) -> bytes:
    """One 44-byte record of ``ReadingsAccepted``."""
    return (
        bytes.fromhex(meter[2:])
        + slot.to_bytes(4, "big")
        + import_wh.to_bytes(4, "big")
        + export_wh.to_bytes(4, "big")
        + import_reg.to_bytes(6, "big")
        + export_reg.to_bytes(6, "big")
    )


def pack_result(member: str, expected: Expected) -> bytes:
    """One 96-byte record of ``MembersSettled``."""
    return (
        bytes.fromhex(member[2:])
        + expected.contracted_wh.to_bytes(12, "big", signed=True)
        + expected.energy_amount.to_bytes(16, "big", signed=True)
        + expected.imbalance_amount.to_bytes(16, "big", signed=True)
        + expected.fees.to_bytes(16, "big")
        + expected.retained.to_bytes(16, "big")
    )


@dataclass
class Member:
    address: str
    meter: str
    member_id: int
    pv_peak_wh: int  # 0: no panels
    base_load_wh: int
    import_register: int = 0
    export_register: int = 0


@dataclass
class Community:
    """The synthetic community's state while its history is written."""

    members: list[Member]
    rng: random.Random
    config: CommunityConfig = field(default_factory=CommunityConfig)
    supplier: str = _address("supplier")
    manager: str = _address("manager")

    @property
    def tariffs(self) -> tuple[int, int]:
        return self.config.tariffs.import_price_per_kwh, self.config.tariffs.export_price_per_kwh

    def flows(self, slot: int) -> list[tuple[int, int]]:
        """Each member's (import, export) Wh in ``slot``: a solar curve against a noisy load."""
        hour = (slot % SLOTS_PER_DAY) / 4
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))
        cloud = 0.6 + 0.4 * self.rng.random()
        out = []
        for member in self.members:
            load = int(member.base_load_wh * (0.7 + 0.6 * self.rng.random()) * (1.4 if 17 <= hour < 21 else 1.0))
            pv = int(member.pv_peak_wh * sun * cloud)
            # within 15 minutes a meter sees both directions a little
            out.append((max(load - pv, 0) + self.rng.randrange(0, 15), max(pv - load, 0) + self.rng.randrange(0, 5)))
        return out


def write_day(writer: LogWriter, community: Community, day: int) -> None:
    """One day's events (logs appended to ``writer``)."""
    first = day * SLOTS_PER_DAY
    rng = community.rng
    import_price, export_price = community.tariffs
    cda_rules = Rules("cda", "mmr", GRID_FEE, MANAGER_FEE, 0)
    sharing_rules = Rules("sharing", "mmr", 0, 0, 0)
    writer.tx()  # the manager schedules the day's rules
    writer.emit(
        "ConfigScheduled",
        fromSlot=first + CDA_FROM,
        mode=CDA,
        rule=MMR,
        shareRule=0,
        gridFeePerKwh=GRID_FEE,
        managerFeePerKwh=MANAGER_FEE,
        savingsShareBps=0,
    )
    writer.emit(
        "ConfigScheduled",
        fromSlot=first + CDA_TO,
        mode=SHARING,
        rule=MMR,
        shareRule=0,
        gridFeePerKwh=0,
        managerFeePerKwh=0,
        savingsShareBps=0,
    )
    for member in rng.sample(community.members, 3):  # a few top-ups a day
        amount = rng.randrange(10, 200) * 1_000_000
        writer.tx()
        writer.emit("Transfer", **{"from": member.address, "to": ADDRESSES["CdaMarket"], "value": amount})
        writer.emit("Deposited", member=member.address, amount=amount, balance=amount + 500_000_000)
    for slot in range(first, first + SLOTS_PER_DAY):
        flows = community.flows(slot)
        cda = CDA_FROM <= slot - first < CDA_TO
        positions = trade_slot(writer, community, slot, flows) if cda else {}
        # readings, once the slot ended
        records = []
        for member, (import_wh, export_wh) in zip(community.members, flows, strict=True):
            member.import_register += import_wh
            member.export_register += export_wh
            records.append(
                pack_reading(member.meter, slot, import_wh, export_wh, member.import_register, member.export_register)
            )
        for start in range(0, len(records), READING_BATCH):
            writer.tx()
            writer.emit("ReadingsAccepted", readings=b"".join(records[start : start + READING_BATCH]))
        # settlement: sealed and started by the first chunk, tally pass in sharing mode, paid in chunks
        count = len(records)
        writer.tx()
        writer.emit("SlotSealed", slot=slot, chain=keccak(text=f"chain {slot}"), readings=count)
        writer.emit("SettlementStarted", slot=slot, mode=CDA if cda else SHARING, rule=MMR, readings=count)
        prices = None
        if not cda:
            supply, demand = pricing.supply_demand(flows)
            prices = pricing.rule_prices("mmr", supply, demand, import_price, export_price)
            writer.tx()
            writer.emit(
                "SharingRates",
                slot=slot,
                supplyWh=supply,
                demandWh=demand,
                buyNum=prices[0].numerator,
                buyDen=prices[0].denominator,
                sellNum=prices[1].numerator,
                sellDen=prices[1].denominator,
            )
        rules = cda_rules if cda else sharing_rules
        for start in range(0, count, SETTLE_CHUNK):
            if start:
                writer.tx()
            chunk = range(start, min(start + SETTLE_CHUNK, count))
            results, released, net = [], 0, 0
            for i in chunk:
                member = community.members[i]
                position = positions.get(member.address, Position()) if cda else None
                expected = expected_result(rules, (import_price, export_price), flows[i], position, None, prices)
                results.append(pack_result(member.address, expected))
                released += position.paid if position is not None else 0
                net += expected.energy_amount + expected.imbalance_amount - expected.fees
            writer.emit("MembersSettled", slot=slot, results=b"".join(results))
            writer.emit("SettlementApplied", slot=slot, released=released, supplierAmount=released - net)
            if chunk.stop == count:
                writer.emit("SlotSettled", slot=slot, readings=count)
    # the day is the profit-share period: the manager funds the pot, shared equally
    period = day
    writer.tx()
    writer.emit("Transfer", **{"from": community.manager, "to": ADDRESSES["CdaMarket"], "value": DAILY_POT})
    writer.emit("PotFunded", period=period, **{"from": community.manager}, amount=DAILY_POT)
    share, extra = divmod(DAILY_POT, len(community.members))
    for start in range(0, len(community.members), SETTLE_CHUNK):
        writer.tx()
        for i, member in enumerate(community.members[start : start + SETTLE_CHUNK], start):
            writer.emit("ShareDistributed", period=period, member=member.address, amount=share + (i < extra))
        writer.emit("SettlementApplied", slot=period * SLOTS_PER_DAY, released=0, supplierAmount=0)
    writer.emit("SharesCompleted", period=period, rule=0, pot=DAILY_POT, distributed=DAILY_POT)


def trade_slot(writer: LogWriter, community: Community, slot: int, flows: list[tuple[int, int]]) -> dict[str, Position]:
    """Cda orders for ``slot`` before its gate closure: exporters offer, importers bid; a resting
    order is hit by an opposite one (a trade at the maker's price), partly filled remainders and
    unmatched orders expire after the gate closure. Returns the members' positions."""
    rng = community.rng
    sellers = [m for m, (imp, exp) in zip(community.members, flows, strict=True) if exp > imp + 50]
    buyers = [m for m, (imp, exp) in zip(community.members, flows, strict=True) if imp > exp + 50]
    positions: dict[str, Position] = {}
    nonce = 0
    expiring: list[tuple[int, Member, bool, int, int]] = []  # order id, member, is_buy, price, remaining
    rng.shuffle(sellers)
    rng.shuffle(buyers)
    for seller, buyer in list(zip(sellers, buyers))[:20]:
        maker_is_buy = rng.random() < 0.5
        price = rng.randrange(90, 200) * 1_000
        maker_qty = rng.randrange(100, 800)
        taker_qty = rng.randrange(100, 800)
        qty = min(maker_qty, taker_qty)
        maker, taker = (buyer, seller) if maker_is_buy else (seller, buyer)
        nonce += 1
        maker_id = order_id_at(slot, maker_is_buy, price, first_seq(nonce))
        nonce += 1
        taker_price = price - 5_000 if maker_is_buy else price + 5_000
        taker_id = order_id_at(slot, not maker_is_buy, taker_price, first_seq(nonce))
        writer.tx()
        writer.emit(
            "OrderPlaced",
            slot=slot,
            orderId=maker_id,
            member=maker.address,
            isBuy=maker_is_buy,
            pricePerKwh=price,
            qtyWh=maker_qty,
        )
        writer.tx()
        writer.emit(
            "OrderPlaced",
            slot=slot,
            orderId=taker_id,
            member=taker.address,
            isBuy=not maker_is_buy,
            pricePerKwh=taker_price,
            qtyWh=taker_qty,
        )
        buy_id, sell_id = (maker_id, taker_id) if maker_is_buy else (taker_id, maker_id)
        writer.emit(
            "TradeExecuted",
            slot=slot,
            buyer=buyer.address,
            seller=seller.address,
            buyOrderId=buy_id,
            sellOrderId=sell_id,
            pricePerKwh=price,
            qtyWh=qty,
            makerIsBuy=maker_is_buy,
        )
        amount = qty * price // 1000
        positions.setdefault(buyer.address, Position()).add_fill(True, qty, amount)
        positions.setdefault(seller.address, Position()).add_fill(False, qty, amount)
        if maker_qty > qty:
            expiring.append((maker_id, maker, maker_is_buy, price, maker_qty - qty))
        elif taker_qty > qty:
            expiring.append((taker_id, taker, not maker_is_buy, taker_price, taker_qty - qty))
    for member in rng.sample(buyers, min(5, len(buyers))):  # bids below every offer
        nonce += 1
        order_id = order_id_at(slot, True, 70_000, first_seq(nonce))
        qty = rng.randrange(100, 500)
        writer.tx()
        writer.emit(
            "OrderPlaced", slot=slot, orderId=order_id, member=member.address, isBuy=True, pricePerKwh=70_000, qtyWh=qty
        )
        expiring.append((order_id, member, True, 70_000, qty))
    if expiring:  # a keeper expires what is left after the gate closure
        writer.tx()
        for order_id, member, is_buy, price, remaining in expiring:
            released = remaining * price // 1000 if is_buy else 0
            writer.emit(
                "OrderCancelled",
                slot=slot,
                orderId=order_id,
                member=member.address,
                remainingWh=remaining,
                escrowReleased=released,
                reason=CANCEL_EXPIRED,
            )
    return positions


def setup_events(writer: LogWriter, community: Community) -> None:
    """Deployment: rules, tariffs, members with meters and deposits."""
    config = community.config
    writer.tx()
    writer.emit(
        "TariffsUpdated",
        importPricePerKwh=config.tariffs.import_price_per_kwh,
        exportPricePerKwh=config.tariffs.export_price_per_kwh,
    )
    writer.emit("SupplierAccountSet", supplier=community.supplier)
    writer.tx()
    writer.emit(
        "ConfigScheduled",
        fromSlot=0,
        mode=SHARING,
        rule=MMR,
        shareRule=0,
        gridFeePerKwh=0,
        managerFeePerKwh=0,
        savingsShareBps=0,
    )
    for member in community.members:
        writer.tx()
        writer.emit("MemberAdded", member=member.address, memberId=member.member_id)
        writer.tx()
        writer.emit("MeterRegistered", meter=member.meter, member=member.address, fromSlot=0)
        writer.tx()
        writer.emit("Transfer", **{"from": member.address, "to": ADDRESSES["CdaMarket"], "value": 500_000_000})
        writer.emit("Deposited", member=member.address, amount=500_000_000, balance=500_000_000)


def build_store(path: Path, events: int, members: int, seed: int) -> dict[str, Any]:
    """Writes the history into a new store at ``path`` until it holds ``events`` events."""
    rng = random.Random(seed)
    community = Community(
        [
            Member(
                _address(f"member {i}"),
                _address(f"meter {i}"),
                i + 1,
                rng.randrange(600, 1_600) if i % 3 else 0,
                rng.randrange(80, 300),
            )
            for i in range(members)
        ],
        rng,
    )
    writer = LogWriter()
    started = time.perf_counter()
    days = 0
    with Store(path) as store:
        clock = SlotClock(epoch=0, slot_seconds=900, gate_seconds=300)
        store.bind(Binding(CHAIN_ID, ADDRESSES, 1, clock, SLOTS_PER_DAY))
        setup_events(writer, community)
        total = 0
        first_block = 1
        while total < events:
            write_day(writer, community, FIRST_DAY + days)
            days += 1
            batch = Batch()
            logs = writer.take()
            for log in logs:
                add_log(batch, log, CONTRACTS)
            assert store.write_range(first_block, writer.block, writer.block_hash, batch)
            first_block = writer.block + 1
            total += len(logs)
            if days % 10 == 0:
                print(f"  {days} days, {total:,} events, {time.perf_counter() - started:.0f} s", flush=True)
        store.db.execute("ANALYZE")
        counts = {
            table: store.count(table)
            for table in (
                "events",
                "readings",
                "settlements",
                "slots",
                "shares",
                "orders",
                "trades",
                "meters",
                "blocks",
            )
        }
    return {
        "members": members,
        "days": days,
        "first_day": FIRST_DAY,
        "rows": counts,
        "seconds_to_build": round(time.perf_counter() - started, 1),
    }


def existing(path: Path) -> dict[str, Any] | None:
    """The description of a history already at ``path`` (None: build it)."""
    if not path.exists():
        return None
    with Store(path) as store:
        binding = store.binding()
        if binding is None or store.count("events") == 0:
            return None
        first, last = store.query("SELECT MIN(slot), MAX(slot) FROM settlements")[0]
        members = store.query("SELECT COUNT(*) FROM members")[0][0]
        counts = {
            table: store.count(table)
            for table in (
                "events",
                "readings",
                "settlements",
                "slots",
                "shares",
                "orders",
                "trades",
                "meters",
                "blocks",
            )
        }
    return {
        "members": members,
        "days": (last - first + 1) // SLOTS_PER_DAY,
        "first_day": first // SLOTS_PER_DAY,
        "rows": counts,
        "reused": True,
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)) - 1, 0)
    return ordered[rank]


def serve(db: Path, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("peerwatt")
    env = dict(os.environ, PEERWATT_AUDITOR_KEY=AUDITOR_KEY)
    env.pop("PEERWATT_LEDGER_DB", None)
    process = subprocess.Popen(
        [str(exe), "--deployment", str(workdir / "none.json"), "ledger", "serve", "--db", str(db), "--port", str(port)],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(
                f"peerwatt ledger serve exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            httpx.get(f"http://127.0.0.1:{port}/status", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("peerwatt ledger serve did not answer")


def measure(port: int, history: dict[str, Any], members: list[str], requests: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    days = range(history["first_day"], history["first_day"] + history["days"])
    headers = {"X-API-Key": AUDITOR_KEY}
    timings: list[float] = []
    rows: list[int] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
        assert client.get(f"/statements/{members[0]}").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/statements/{members[0]}").status_code == 401  # key enforced
        for i in range(WARMUP + requests):
            member, day = rng.choice(members), rng.choice(days)
            url = f"/statements/{member}?slot_from={day * SLOTS_PER_DAY}&slot_to={day * SLOTS_PER_DAY + 95}"
            started = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            items = response.json()["items"]
            if i >= WARMUP:
                timings.append(elapsed)
                rows.append(len(items))
    return {
        "requests": requests,
        "warmup_requests": WARMUP,
        "rows_per_response": {"min": min(rows), "max": max(rows)},
        "p50_ms": round(percentile(timings, 50), 2),
        "p95_ms": round(percentile(timings, 95), 2),
        "p99_ms": round(percentile(timings, 99), 2),
        "max_ms": round(max(timings), 2),
        "mean_ms": round(statistics.fmean(timings), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=120)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--port", type=int, default=8753)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--db", type=Path, help="keep the store here (reused when it already holds a history)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "ledger_queries.json")
    args = parser.parse_args()
    if not 8751 <= args.port <= 8760:
        raise SystemExit("use a port in 8751-8760 (the others belong to tests and other benchmarks)")

    with tempfile.TemporaryDirectory(prefix="peerwatt-ledger-queries-") as tmp:
        workdir = Path(tmp)
        db = args.db or workdir / "ledger.sqlite"
        history = existing(db)
        if history is None:
            print(f"writing a history of {args.events:,}+ events to {db}", flush=True)
            history = build_store(db, args.events, args.members, args.seed)
        print(json.dumps(history), flush=True)
        with Store(db) as store:
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            members = [row[0] for row in store.query("SELECT member FROM members ORDER BY member_id")]
        size = db.stat().st_size
        server = serve(db, args.port, workdir)
        load = os.getloadavg()[0]
        try:
            timing = measure(args.port, history, members, args.requests, args.seed)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    result: dict[str, Any] = {
        "store": "synthetic history written through the ledger's write path (raw logs encoded from the contract "
        "ABIs -> records.add_log -> Store.write_range), not indexed from a chain",
        "query": "GET /statements/{member}?slot_from=D*96&slot_to=D*96+95 (one day, random member and day), "
        "peerwatt ledger serve (uvicorn) in a subprocess, auditor key set, httpx client, one request at a time",
        "events_indexed": history["rows"]["events"],
        "history": history,
        "store_bytes": size,
        "store_mb": round(size / 2**20, 1),
        "http": timing,
        "machine": {"cpus": os.cpu_count(), "load_average_1m_before_requests": round(load, 2)},
        "target_p95_ms": TARGET_P95_MS,
        "meets_target": timing["p95_ms"] <= TARGET_P95_MS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""One community day on a local chain, settled under each mode side by side.

Every mode gets its own deployment of the contracts on the same chain, with the same members
(the chain's dev accounts) and the same day: the Cda community's trading agents place their
orders day-ahead (:mod:`peerwatt.demo.agents`), the optimisation community's manager clears the
day with the engine and posts the schedule, and then, slot by slot as chain time moves on, every
meter's signed reading goes to each oracle and each community settles the slot. At the end of
the day each community pays its profit shares, and its ledger is synced and audited.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from eth_utils import keccak
from web3 import Web3

from oracle.outbox import Outbox
from oracle.pusher import Pusher
from oracle.readings import OracleDomain, Reading
from peerwatt import artifacts
from peerwatt.chain import advance_time, dev_engine, latest_timestamp
from peerwatt.config import CommunityConfig, SettlementRules
from peerwatt.demo.agents import day_ahead_orders
from peerwatt.demo.corby import DayProfiles, DemoMember, community_forecast, day_profiles, metered_net_export
from peerwatt.deploy import DeployedCommunity, deploy_community, fund_accounts
from peerwatt.deployment import Deployment
from peerwatt.errors import PeerwattError
from peerwatt.localchain import DevEngine
from peerwatt.transactions import TxSender, call
from settlement.audit import AuditReport, audit_clearing
from settlement.chain_audit import NodeState
from settlement.chunks import SlotReading
from settlement.client import Settlement
from settlement.community import Community
from settlement.ledger.indexer import Indexer
from settlement.ledger.queries import Ledger
from settlement.ledger.store import Store
from settlement.optimisation import check_posted, to_posted, write_certificate, write_schedule
from settlement.optimisation import clear as clear_community
from settlement.shares import compute_shares

MODES = ("cda", "mmr", "sdr", "bs", "optimisation")
GRID_FEE = 5_000  # base units per kWh traded inside the community, each side (0.005 token)
MANAGER_FEE = 2_000
SAVINGS_SHARE_BPS = 1_000  # a tenth of each member's savings goes to the day's pot, paid back equally
BUSINESS_FUNDING = 50_000_000_000  # 50,000 tokens: a business's escrow for a day of buying
SLOTS_PER_STEP = 4  # chain time moves on an hour at a time: readings go in per hour, slots settle one by one
Progress = Callable[[str], None]


def mode_rules(mode: str) -> SettlementRules:
    """The community's rules under ``mode`` (the sharing rules are modes of the demo)."""
    base = SettlementRules(
        grid_fee_per_kwh=GRID_FEE, manager_fee_per_kwh=MANAGER_FEE, savings_share_bps=SAVINGS_SHARE_BPS
    )
    if mode in ("mmr", "sdr", "bs"):
        return dataclasses.replace(base, mode="sharing", rule=mode)
    return dataclasses.replace(base, mode=mode)


@dataclass
class ModeRun:
    """One mode's community during the day."""

    mode: str
    community: DeployedCommunity
    settlement: Settlement
    domain: OracleDomain
    net_export_wh: dict[str, np.ndarray] = field(default_factory=dict)  # what its meters record
    gas: dict[str, int] = field(default_factory=lambda: {"orders": 0, "schedule": 0, "readings": 0, "settlement": 0})
    chain_seconds: float = 0.0
    audit: AuditReport | None = None
    ledger_path: Path | None = None
    clearing: tuple[Path, Community] | None = None  # the optimisation's files and the community it cleared
    work_dir: Path | None = None
    _member_ids: dict[str, int] = field(default_factory=dict)
    _outbox: Outbox | None = None
    _pusher: Pusher | None = None

    @property
    def deployment(self) -> Deployment:
        return self.community.deployment

    def slot_readings(self, offset: int) -> list[SlotReading]:
        """The readings of the day's slot ``offset`` in the order the oracle accepted them: its
        pusher sends a slot's readings by meter address (``Outbox.entries``)."""
        ids = self.member_ids()
        meters = {key.member: key.address.lower() for key in self.community.meter_keys}
        return [
            SlotReading(ids[name], max(-int(flows[offset]), 0), max(int(flows[offset]), 0))
            for name, flows in sorted(self.net_export_wh.items(), key=lambda item: meters[item[0]])
        ]

    def outbox(self) -> Outbox:
        if self._outbox is None:
            assert self.work_dir is not None
            path = self.work_dir / "outboxes" / f"{self.mode}.sqlite"
            self._outbox = Outbox(path, self.deployment.chain_id, self.deployment.oracle)
        return self._outbox

    def pusher(self) -> Pusher:
        if self._pusher is None:
            self._pusher = Pusher(self.settlement.w3, self.deployment, self.outbox(), self.deployment.deployer)
        return self._pusher

    def member_ids(self) -> dict[str, int]:
        if not self._member_ids:
            self._member_ids = {
                name: self.settlement.member_id(address) for name, address in self.deployment.members.items()
            }
        return self._member_ids


@dataclass
class DayResult:
    """What the day produced: the runs, the day's slots and forecasts, and where time went."""

    members: list[DemoMember]
    first_slot: int
    n_slots: int
    day: DayProfiles
    runs: list[ModeRun]
    chain_seconds: float
    python_seconds: float


def run_day(
    w3: Web3,
    members: list[DemoMember],
    modes: tuple[str, ...],
    n_slots: int,
    day_start: int,
    work_dir: Path,
    seed: int = 1,
    say: Progress = lambda message: None,
    on_slot: Callable[[int], None] = lambda done: None,
) -> DayResult:
    """Deploys one community per mode, runs the day and audits it. ``day_start`` is the UTC time
    the profiles are taken from (the chain's slots are mapped onto that day)."""
    timer = _Timer()
    day = day_profiles(members, day_start, n_slots)
    baseline = metered_net_export(members, day, seed)
    # ganache spends most of its time estimating gas: there every transaction goes with the block
    # gas limit (it mines each in a block of its own); anvil estimates fast, and several
    # block-sized transactions sent at once would wait for a block that never comes
    sender = TxSender(w3, estimates=dev_engine(w3) is not DevEngine.GANACHE)
    runs = []
    config = CommunityConfig(period_slots=n_slots)
    for mode in modes:
        say(f"deploying the {mode} community")
        with timer.chain():
            rules = dataclasses.replace(config, settlement=mode_rules(mode))
            community = deploy_community(w3, rules, len(members), sender=sender)
            deployment = community.deployment
            businesses = [
                deployment.members[name]
                for name, member in zip(deployment.members, members)
                if member.kind == "business"
            ]
            fund_accounts(
                sender, deployment.deployer, deployment.token, deployment.market, businesses, BUSINESS_FUNDING
            )
        settlement = Settlement(w3, deployment, sender)
        domain = OracleDomain(deployment.chain_id, deployment.oracle)
        runs.append(ModeRun(mode, community, settlement, domain, work_dir=work_dir))

    clock = runs[0].deployment.slot_clock
    first = _first_slot(w3, runs, n_slots)
    for run in runs:
        names = list(run.deployment.members)
        if run.mode == "optimisation":
            say("clearing the day with the optimisation engine and posting the schedule")
            scheduled = _post_schedule(w3, run, members, day, first, work_dir / "clearing", timer)
            run.net_export_wh = {
                name: scheduled[member.label] + _deviation(baseline, day, member)
                for name, member in zip(names, members)
            }
        else:
            run.net_export_wh = {name: baseline[member.label] for name, member in zip(names, members)}
        if run.mode == "cda":
            say("trading agents place their day-ahead orders")
            _place_orders(w3, run, members, day, first, seed, timer)

    say(f"running {n_slots} slots, an hour at a time")
    for hour in range(0, n_slots, SLOTS_PER_STEP):
        offsets = range(hour, min(hour + SLOTS_PER_STEP, n_slots))
        with timer.chain():
            now = latest_timestamp(w3)
            step_end = clock.slot_start(first + offsets[-1] + 1)
            if now <= step_end:
                advance_time(w3, step_end - now + 1)
        for run in runs:
            _push_readings(run, first, offsets, timer)
        for offset in offsets:
            for run in runs:
                with timer.chain():
                    outcome = run.settlement.settle(first + offset, readings=run.slot_readings(offset))
                run.gas["settlement"] += outcome.gas_used
            on_slot(offset + 1)

    for run in runs:
        say(f"paying the {run.mode} community's profit shares, syncing its ledger and auditing it")
        _pay_shares(run, first // n_slots, timer)
        run.ledger_path = work_dir / "ledgers" / f"{run.mode}.ledger.sqlite"
        run.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        run.audit = _audit(w3, run, timer)
    return DayResult(members, first, n_slots, day, runs, timer.chain_seconds, timer.total() - timer.chain_seconds)


def _first_slot(w3: Web3, runs: list[ModeRun], n_slots: int) -> int:
    """The day's first slot: the first whole profit-share period whose gate is still open in
    every community (the day is one period), so orders and the schedule go in day-ahead."""
    open_slot = max(int(call(w3, run.deployment.market, "CdaMarket", "nextOpenSlot")[0]) for run in runs)
    return -(-(open_slot + 1) // n_slots) * n_slots


def _deviation(baseline: dict[str, np.ndarray], day: DayProfiles, member: DemoMember) -> np.ndarray:
    """What the member's meter records beyond its forecast (forecast error; batteries aside)."""
    forecast = day.pv_wh[member.label] - day.load_wh[member.label] - day.flexible_wh[member.label]
    if member.battery_kwh:
        return np.zeros(forecast.size, dtype=np.int64)  # a scheduled battery absorbs the error
    return baseline[member.label] - np.round(forecast).astype(np.int64)


def _post_schedule(
    w3: Web3, run: ModeRun, members: list[DemoMember], day: DayProfiles, first: int, clearing: Path, timer: _Timer
) -> dict[str, np.ndarray]:
    """Clears the day at the chain's tariffs and fees, writes the schedule and the optimality
    certificate to ``clearing`` and posts it; returns each member's scheduled net export (Wh per
    slot)."""
    import_price, export_price = call(w3, run.deployment.market, "CdaMarket", "tariffs")[0]
    forecast = community_forecast(members, day, int(import_price), int(export_price), GRID_FEE + MANAGER_FEE)
    with timer.python():
        result = clear_community(forecast)
        posted = to_posted(result)
        problems = check_posted(posted, forecast)
        if problems:
            raise PeerwattError(f"the demo's clearing breaks {len(problems)} rules, first: {problems[0]}")
        # the files `peerwatt clear` writes: the audit verifies the certificate and the posted hash
        clearing.mkdir(parents=True, exist_ok=True)
        schedule = write_schedule(clearing / "schedule.csv", posted)
        write_certificate(result, clearing / "certificate.json")
        run.clearing = (clearing, forecast)
    ids = [run.settlement.member_id(address) for address in run.deployment.members.values()]
    result_hash = keccak(schedule.read_bytes())
    with timer.chain():
        for offset in range(forecast.n_slots):
            entries = [
                (member_id, int(posted.net_export_wh[row, offset]), int(posted.internal_wh[row, offset]))
                for row, member_id in enumerate(ids)
            ]
            receipts = run.settlement.post_schedule(
                first + offset, int(posted.price_per_kwh[offset]), entries, result_hash
            )
            run.gas["schedule"] += sum(receipt.gas_used for receipt in receipts)
    return {member.label: posted.net_export_wh[row].astype(np.int64) for row, member in enumerate(members)}


def _place_orders(
    w3: Web3, run: ModeRun, members: list[DemoMember], day: DayProfiles, first: int, seed: int, timer: _Timer
) -> None:
    """Each agent sends its day-ahead orders in one ``placeOrders`` transaction, the agents in a
    seeded random order: every order meets the book as it stands when it arrives."""
    import_price, export_price = call(w3, run.deployment.market, "CdaMarket", "tariffs")[0]
    tick = int(call(w3, run.deployment.market, "CdaMarket", "priceTick")[0])
    accounts = dict(zip((member.label for member in members), run.deployment.members.values()))
    place = artifacts.function("CdaMarket", "placeOrders")
    orders = day_ahead_orders(members, day, int(import_price), int(export_price), tick, seed)
    by_member: dict[str, list[tuple[int, bool, int, int]]] = {}
    for order in orders:
        by_member.setdefault(order.member, []).append((first + order.offset, order.is_buy, order.price, order.qty_wh))
    sender = run.settlement.sender
    order_of_arrival = np.random.default_rng(seed + 2).permutation(sorted(by_member))
    with timer.chain():
        for label in order_of_arrival:  # one after the other: each agent sees the book the last one left
            receipt = sender.mined(sender.send(accounts[label], run.deployment.market, place.encode(by_member[label])))
            run.gas["orders"] += receipt.gas_used


def _push_readings(run: ModeRun, first: int, offsets: range, timer: _Timer) -> None:
    """Each meter signs its readings of the slots ``offsets`` (registers carried over the day);
    the community's meter oracle (:mod:`oracle`) stores them in its outbox and pushes them in
    batches."""
    keys = {key.member: key for key in run.community.meter_keys}
    signed = []
    with timer.python():
        for offset in offsets:
            for name, flows in run.net_export_wh.items():
                upto = flows[: offset + 1]
                net = int(flows[offset])
                reading = Reading(
                    keys[name].address,
                    first + offset,
                    max(-net, 0),
                    max(net, 0),
                    int(np.maximum(-upto, 0).sum()),
                    int(np.maximum(upto, 0).sum()),
                )
                signed.append(run.domain.sign(reading, keys[name].private_key))
        run.outbox().add(signed)
    with timer.chain():
        pushed = run.pusher().push()
    if pushed.accepted != len(signed) or pushed.rejected:
        raise PeerwattError(f"the oracle accepted {pushed.accepted} of {len(signed)} readings: {pushed.rejected}")
    run.gas["readings"] += pushed.gas_used


def _pay_shares(run: ModeRun, period: int, timer: _Timer) -> None:
    """Pays the day's pot in equal shares to every member."""
    settlement = run.settlement
    pot, settled, distributed = settlement.period(period)
    if distributed or settled < settlement.period_slots():
        return
    ids = sorted(settlement.member_id(address) for address in run.deployment.members.values())
    shares = compute_shares("equal", pot, members=ids).shares
    with timer.chain():
        receipts = settlement.distribute_shares(period, shares)
    run.gas["settlement"] += sum(receipt.gas_used for receipt in receipts)


def _audit(w3: Web3, run: ModeRun, timer: _Timer) -> AuditReport:
    assert run.ledger_path is not None
    with timer.chain(), Store(run.ledger_path) as store:
        Indexer(w3, run.deployment, store).sync()
    ledger = Ledger.open(run.ledger_path)
    try:
        block = ledger.last_block() or 0
        deployment = run.deployment
        state = NodeState(w3, deployment.token, deployment.market, deployment.settlement, block)
        with timer.python():
            report = ledger.audit(state, state.parties())
            if run.clearing is not None:
                directory, community = run.clearing
                first = min(int(slot) for slot in ledger.posted_schedules())
                _, findings = audit_clearing(ledger.chain_events(), directory, community, first)
                report.discrepancies += findings
            return report
    finally:
        ledger.store.close()


class _Timer:
    """Wall time split between waiting for the chain and Python's own work."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.chain_seconds = 0.0

    def total(self) -> float:
        return time.perf_counter() - self.started

    def chain(self) -> _Span:
        return _Span(self, True)

    def python(self) -> _Span:
        return _Span(self, False)


class _Span:
    def __init__(self, timer: _Timer, chain: bool) -> None:
        self.timer, self.is_chain = timer, chain

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.is_chain:
            self.timer.chain_seconds += time.perf_counter() - self.started

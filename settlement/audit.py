"""The independent audit: every settled slot recomputed from raw chain events and compared with
what the contracts recorded, the invariants of DESIGN.md section 6 checked, and every market
balance rebuilt from events and compared with the chain.

Nothing here trusts the operator or the contracts' arithmetic. The inputs are the events of the
deployment's contracts in chain order (:class:`ChainEvent`, from the node or the ledger's
store), the posted clearing schedules (decoded from the ``postSchedule`` calldata, also on
chain) and, for the final comparison, the chain's state at the audited block
(:class:`ChainState`). What the audit checks:

- **settlement** (per settled slot and member): the member's contracted energy, energy amount,
  imbalance amount, fees and retained savings, recomputed from its accepted reading, its trades
  (Cda), the slot's sharing rule (DESIGN.md section 5) or the posted schedule (optimisation),
  the tariffs in force when the slot's settlement started and the rules in force for the slot;
  members settled twice, not at all (a reading or position never settled) or without cause;
- **readings**: the sealed and settled reading counts against the accepted readings;
- **energy**: contracted positions net to zero per slot; the sharing totals (S, D) and rates
  the contract announced against the readings;
- **money**: every ledger application is budget-balanced (the supplier's residual plus debts
  taken on equals minus the members' energy and imbalance amounts); in sharing mode the
  supplier's rounding remainder is in [0, n) base units; no member of an MMR or SDR slot pays
  more than alone (BS may, for exporters: noted, not a discrepancy);
- **balances and solvency**: each account's market balance and debt rebuilt from deposits,
  withdrawals, order escrows, fills, cancellations, settlement payments, pot funding and shares,
  against the chain; the market's token balance against balances + escrows + trade payments
  held in open positions.

The optimality certificate of a clearing (its duality gap) is checked by
:func:`settlement.optimisation.verify_certificate`; :func:`check_certificate` ties it to the
result hash the manager posted.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from eth_utils import keccak

from peerwatt.meter_readings import unpack_accepted
from settlement import pricing
from settlement.chunks import MemberResult, unpack_member_results

if TYPE_CHECKING:
    from settlement.community import Community

MODES = ("cda", "sharing", "optimisation")
SHARING_RULES = ("mmr", "sdr", "bs")
CANCEL_FILL_CAP = 2  # ICdaMarket.CancelReason.FillCap: the incoming remainder never rested
WH_PER_KWH = 1000
BPS = 10_000


@dataclass(frozen=True)
class ChainEvent:
    """One decoded event and where it is on chain."""

    block: int
    log_index: int
    tx_hash: str
    contract: str  # the emitting contract's name: PeerwattToken, CdaMarket, MeterOracle, CommunitySettlement
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class Finding:
    """A difference (or, in :attr:`AuditReport.notes`, a documented property of a rule):
    ``recorded`` is what the chain holds, ``expected`` what the audit computed."""

    check: str
    slot: int | None
    member: str | None
    field: str
    recorded: int | None
    expected: int | None
    message: str


@dataclass
class AuditReport:
    """What the audit covered and every difference it found."""

    slots: list[int] = field(default_factory=list)
    member_results: int = 0
    applications: int = 0
    accounts: int = 0
    discrepancies: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "slots_audited": len(self.slots),
            "first_slot": min(self.slots, default=None),
            "last_slot": max(self.slots, default=None),
            "member_results": self.member_results,
            "ledger_applications": self.applications,
            "accounts": self.accounts,
            "discrepancies": [asdict(finding) for finding in self.discrepancies],
            "notes": [asdict(finding) for finding in self.notes],
        }


@dataclass(frozen=True)
class Parties:
    """Contract and account addresses the events do not carry (lower case)."""

    market: str
    settlement: str
    dso: str
    manager: str


class ChainState(Protocol):
    """The chain's state at the block the audited events end at."""

    def market_balance(self, account: str) -> int: ...

    def market_debt(self, account: str) -> int: ...

    def market_token_balance(self) -> int: ...


@dataclass(frozen=True)
class Rules:
    """A slot's settlement rules (CommunitySettlement.Config)."""

    mode: str
    rule: str
    grid_fee: int
    manager_fee: int
    savings_bps: int


@dataclass
class Position:
    """A member's traded energy and money in a slot (ICdaMarket.Position)."""

    bought_wh: int = 0
    sold_wh: int = 0
    paid: int = 0
    received: int = 0

    @property
    def traded(self) -> bool:
        return bool(self.bought_wh or self.sold_wh)

    def add_fill(self, is_buyer: bool, qty_wh: int, amount: int) -> None:
        if is_buyer:
            self.bought_wh += qty_wh
            self.paid += amount
        else:
            self.sold_wh += qty_wh
            self.received += amount


def value(qty_wh: int, price_per_kwh: int) -> int:
    """``floor(qty * price / 1000)``: the value of energy at a price (DESIGN.md section 2)."""
    return qty_wh * price_per_kwh // WH_PER_KWH


def _key(address: str) -> str:
    return address.lower()


@dataclass(frozen=True)
class _Recorded:
    result: MemberResult
    tx_hash: str
    after_settled: bool  # a settleUnmetered result: emitted after the slot's SlotSettled


class _History:
    """The events folded into what the recomputation needs, in chain order."""

    def __init__(self, events: Iterable[ChainEvent]) -> None:
        self.events = sorted(events, key=lambda event: (event.block, event.log_index))
        self.member_ids: dict[str, int] = {}
        self.meter_members: dict[str, str] = {}
        self.readings: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
        self.tariffs: list[tuple[tuple[int, int], tuple[int, int]]] = []
        self.configs: list[tuple[int, Rules]] = []
        self.positions: dict[int, dict[str, Position]] = defaultdict(lambda: defaultdict(Position))
        self.started: dict[int, ChainEvent] = {}
        self.sealed: dict[int, int] = {}
        self.settled: dict[int, int] = {}
        self.rates: dict[int, ChainEvent] = {}
        self.schedule_price: dict[int, int] = {}
        self.results: dict[int, list[_Recorded]] = defaultdict(list)
        for event in self.events:
            self._fold(event)

    def _fold(self, event: ChainEvent) -> None:
        args, name = event.args, event.name
        if name == "MemberAdded":
            self.member_ids[_key(args["member"])] = int(args["memberId"])
        elif name == "MeterRegistered":
            self.meter_members[_key(args["meter"])] = _key(args["member"])
        elif name == "ReadingsAccepted":
            for reading in unpack_accepted(bytes(args["readings"])):
                member = self.meter_members.get(_key(reading.meter))
                if member is not None:  # one reading per member and slot: the first stands
                    self.readings[reading.slot].setdefault(member, (reading.import_wh, reading.export_wh))
        elif name == "TariffsUpdated":
            tariffs = (int(args["importPricePerKwh"]), int(args["exportPricePerKwh"]))
            self.tariffs.append(((event.block, event.log_index), tariffs))
        elif name == "ConfigScheduled":
            rules = Rules(
                MODES[args["mode"]],
                SHARING_RULES[args["rule"]],
                int(args["gridFeePerKwh"]),
                int(args["managerFeePerKwh"]),
                int(args["savingsShareBps"]),
            )
            # a change from the same slot replaces the one not yet in force (setConfig)
            self.configs = [(start, kept) for start, kept in self.configs if start < args["fromSlot"]]
            self.configs.append((int(args["fromSlot"]), rules))
        elif name == "TradeExecuted":
            slot, qty = int(args["slot"]), int(args["qtyWh"])
            amount = value(qty, int(args["pricePerKwh"]))
            self.positions[slot][_key(args["buyer"])].add_fill(True, qty, amount)
            self.positions[slot][_key(args["seller"])].add_fill(False, qty, amount)
        elif name == "SettlementStarted":
            self.started[int(args["slot"])] = event
        elif name == "SlotSealed":
            self.sealed[int(args["slot"])] = int(args["readings"])
        elif name == "SlotSettled":
            self.settled[int(args["slot"])] = int(args["readings"])
        elif name == "SharingRates":
            self.rates[int(args["slot"])] = event
        elif name == "ScheduleCompleted":
            self.schedule_price[int(args["slot"])] = int(args["pricePerKwh"])
        elif name == "MembersSettled":
            slot = int(args["slot"])
            for result in unpack_member_results(bytes(args["results"])):
                self.results[slot].append(_Recorded(result, event.tx_hash, slot in self.settled))

    def rules_at(self, slot: int) -> Rules | None:
        """The rules in force for ``slot``: the last change from a slot at or before it."""
        found = None
        for start, rules in self.configs:
            if start <= slot:
                found = rules
        return found

    def tariffs_at(self, event: ChainEvent) -> tuple[int, int] | None:
        """(import, export) tariffs in force when ``event`` was emitted."""
        return tariffs_in_force(self.tariffs, (event.block, event.log_index))


def tariffs_in_force(
    changes: Sequence[tuple[tuple[int, int], tuple[int, int]]], position: tuple[int, int]
) -> tuple[int, int] | None:
    """The (import, export) tariffs of the last ``TariffsUpdated`` before ``position`` (block,
    log index); ``changes`` are (position, tariffs) in chain order."""
    index = bisect_left(changes, position, key=lambda change: change[0])
    return changes[index - 1][1] if index else None


@dataclass(frozen=True)
class Expected:
    """A member's result as the contract must compute it."""

    contracted_wh: int
    energy_amount: int
    imbalance_amount: int
    grid_fee: int
    manager_fee: int
    retained: int

    @property
    def fees(self) -> int:
        return self.grid_fee + self.manager_fee


def expected_result(
    rules: Rules,
    tariffs: tuple[int, int],
    metered: tuple[int, int] | None,
    position: Position | None,
    internal: tuple[int, int] | None,
    sharing_prices: tuple[Fraction, Fraction] | None,
) -> Expected:
    """One member's result (CommunitySettlement ``_pay`` and ``settleUnmetered``).

    ``metered`` is its (import, export) reading, or None when it is settled without one;
    ``position`` its trades when they are settled here (Cda pass, or unmetered); ``internal``
    its posted (internal trade Wh, price) when that is settled here; ``sharing_prices`` the
    slot's (Pb, Ps) in sharing mode. With a reading: the slot's mode, the imbalance at the
    tariffs and the retained savings; without: as contracted, nothing at the tariffs."""
    import_price, export_price = tariffs
    grid = manager = imbalance = retained = 0
    if metered is not None and sharing_prices is not None:
        contracted = 0
        energy = pricing.member_amount(*metered, *sharing_prices)
    else:
        if position is not None:
            contracted = position.sold_wh - position.bought_wh
            energy = position.received - position.paid
            volume = position.bought_wh + position.sold_wh
        else:
            contracted, price = internal or (0, 0)
            volume = abs(contracted)
            energy = value(volume, price) if contracted >= 0 else -value(volume, price)
        grid, manager = value(volume, rules.grid_fee), value(volume, rules.manager_fee)
        if metered is not None:
            imbalance = pricing.imbalance_amount(metered[1] - metered[0], contracted, import_price, export_price)
    if metered is not None and rules.savings_bps:
        saving = energy + imbalance - grid - manager - pricing.standalone_bill(*metered, import_price, export_price)
        if saving > 0:
            retained = saving * rules.savings_bps // BPS
    return Expected(contracted, energy, imbalance, grid, manager, retained)


def audit_history(
    events: Iterable[ChainEvent],
    posted_schedules: Mapping[int, Mapping[int, int]] | None = None,
    state: ChainState | None = None,
    parties: Parties | None = None,
    slots: range | None = None,
) -> AuditReport:
    """Audits every settled slot in ``slots`` (all if None).

    ``posted_schedules`` maps an optimisation slot to its posted internal trades by member id
    (without it, a slot's recorded trades are checked for balance only). With ``state`` and
    ``parties``, and over the whole history, market balances, debts and solvency are checked
    against the chain at the block the events end at."""
    history = _History(events)
    report = AuditReport()
    for slot in sorted(history.settled):
        if slots is None or slot in slots:
            report.slots.append(slot)
            _SlotAudit(history, slot, (posted_schedules or {}).get(slot), report).run()
    if state is not None and parties is not None and slots is None:
        _audit_balances(history, state, parties, report)
    return report


class _SlotAudit:
    """One settled slot: its recorded member results against the recomputation."""

    def __init__(self, history: _History, slot: int, schedule: Mapping[int, int] | None, report: AuditReport) -> None:
        self.history, self.slot, self.schedule, self.report = history, slot, schedule, report

    def flag(
        self, check: str, member: str | None, name: str, recorded: int | None, expected: int | None, why: str
    ) -> None:
        self.report.discrepancies.append(Finding(check, self.slot, member, name, recorded, expected, why))

    def run(self) -> None:
        history, slot = self.history, self.slot
        started, rules = history.started.get(slot), history.rules_at(slot)
        tariffs = history.tariffs_at(started) if started is not None else None
        if started is None or rules is None or tariffs is None:
            self.flag("settlement", None, "started", None, None, "settled without a start, rules or tariffs")
            return
        if MODES[started.args["mode"]] != rules.mode:
            self.flag("settlement", None, "mode", started.args["mode"], MODES.index(rules.mode), "mode differs")
        readings = history.readings.get(slot, {})
        for name, count in (("sealed readings", history.sealed.get(slot)), ("settled readings", history.settled[slot])):
            if count != len(readings):
                self.flag("readings", None, name, count, len(readings), "differs from the accepted readings")
        prices = self._sharing_prices(rules, tariffs, readings)
        positions = history.positions.get(slot, {})
        traded = {member for member, position in positions.items() if position.traded}
        lanes = self._lanes(rules)
        # the settle pass: every member with a reading; settleUnmetered after it: trades the pass
        # did not close (all of them unless Cda), then posted trades of members without a reading
        unmetered_trades = traded - set(readings) if rules.mode == "cda" else traded
        unmetered_lanes = {member for member, wh in lanes.items() if wh and member not in readings}
        if rules.mode == "optimisation" and self.schedule is None:  # entries not supplied: trust who
            unmetered_lanes = {
                _key(entry.result.member) for entry in history.results.get(slot, []) if entry.after_settled
            }
        passes = (
            (False, set(readings)),
            (True, unmetered_trades | (unmetered_lanes - unmetered_trades)),
        )
        contracted = 0
        for after_settled, due in passes:
            recorded: dict[str, MemberResult] = {}
            for entry in history.results.get(slot, []):
                if entry.after_settled == after_settled:
                    member = _key(entry.result.member)
                    if member in recorded:
                        self.flag("settlement", entry.result.member, "settled", 2, 1, "member settled twice")
                    recorded[member] = entry.result
                    self.report.member_results += 1
            for member in sorted(due | set(recorded)):
                result = recorded.get(member)
                if member not in due:
                    self.flag("settlement", result.member, "settled", 1, 0, "settled without a reading, trades or lane")
                    continue
                if result is None:
                    self.flag("settlement", member, "settled", 0, 1, "due in a settled slot but never settled")
                    continue
                metered = None if after_settled else readings[member]
                use_position = (after_settled and member in traded) or (not after_settled and rules.mode == "cda")
                position = positions.get(member, Position()) if use_position else None
                internal = None
                if position is None and rules.mode == "optimisation" and slot in history.schedule_price:
                    internal = (lanes.get(member, result.contracted_wh), history.schedule_price[slot])
                expected = expected_result(rules, tariffs, metered, position, internal, prices if metered else None)
                self._compare(result, expected)
                contracted += result.contracted_wh if (rules.mode == "cda") == (position is not None) else 0
        if contracted != 0:
            self.flag("energy", None, "contractedWh", contracted, 0, "contracted positions do not net to zero")

    def _sharing_prices(
        self, rules: Rules, tariffs: tuple[int, int], readings: Mapping[str, tuple[int, int]]
    ) -> tuple[Fraction, Fraction] | None:
        if rules.mode != "sharing":
            return None
        supply, demand = pricing.supply_demand(readings.values())
        prices = pricing.rule_prices(rules.rule, supply, demand, *tariffs)
        rates = self.history.rates.get(self.slot)
        recorded = None if rates is None else (int(rates.args["supplyWh"]), int(rates.args["demandWh"]))
        if recorded != (supply, demand):
            self.flag("energy", None, "supplyWh", recorded and recorded[0], supply, "sharing totals differ")
        for member, (import_wh, export_wh) in sorted(readings.items()):
            shared = pricing.member_amount(import_wh, export_wh, *prices)
            alone = pricing.standalone_bill(import_wh, export_wh, *tariffs)
            if shared < alone:  # DESIGN.md section 6; BS prices internal energy at 0 by design
                finding = Finding(
                    "rule", self.slot, member, "energyAmount", shared, alone, f"{rules.rule}: worse than alone"
                )
                (self.report.notes if rules.rule == "bs" else self.report.discrepancies).append(finding)
        return prices

    def _lanes(self, rules: Rules) -> dict[str, int]:
        """Posted internal trades by member address (optimisation slots with a complete schedule)."""
        if rules.mode != "optimisation" or self.slot not in self.history.schedule_price or self.schedule is None:
            return {}
        if sum(self.schedule.values()) != 0:
            self.flag(
                "energy", None, "internal trades", sum(self.schedule.values()), 0, "posted trades do not net to 0"
            )
        addresses = {member_id: member for member, member_id in self.history.member_ids.items()}
        return {addresses[member_id]: wh for member_id, wh in self.schedule.items() if member_id in addresses}

    def _compare(self, result: MemberResult, expected: Expected) -> None:
        for name, recorded, computed in (
            ("contractedWh", result.contracted_wh, expected.contracted_wh),
            ("energyAmount", result.energy_amount, expected.energy_amount),
            ("imbalanceAmount", result.imbalance_amount, expected.imbalance_amount),
            ("fees", result.fees, expected.fees),
            ("retained", result.retained, expected.retained),
        ):
            if recorded != computed:
                self.flag(
                    "settlement", result.member, name, recorded, computed, f"{name} differs from the recomputation"
                )


# --------------------------------------------------------------------- balances


@dataclass
class _Order:
    member: str
    is_buy: bool
    price: int
    remaining_wh: int
    dust: int = 0  # escrow rounding left by partial fills (CdaMarket.Order.escrowDust)
    resting: bool = False


class _Ledger:
    """Market balances, debts, escrows and held trade payments replayed from events, with the
    settlement payments built from the recorded member results (IMarketLedger's rules: a
    charge beyond the balance becomes debt, a credit repays debt first, to the supplier, and the
    supplier takes each application's residual)."""

    def __init__(self, history: _History, parties: Parties, report: AuditReport) -> None:
        self.history, self.parties, self.report = history, parties, report
        self.balances: dict[str, int] = defaultdict(int)
        self.debts: dict[str, int] = defaultdict(int)
        self.orders: dict[int, _Order] = {}
        self.positions: dict[int, dict[str, Position]] = defaultdict(lambda: defaultdict(Position))
        self.tokens = 0
        self.applications = 0
        self.supplier = ""
        self.settled: set[int] = set()
        self._tx: str | None = None
        self._tx_events: list[ChainEvent] = []
        self._incoming: list[int] = []  # orders placed in the current transaction

    def replay(self) -> None:
        for event in self.history.events:
            if event.tx_hash != self._tx:
                self._rest_incoming()
                self._tx, self._tx_events = event.tx_hash, []
            self._apply(event)
            self._tx_events.append(event)
        self._rest_incoming()

    def escrow(self) -> int:
        """Escrow of resting buy orders: ``value(remaining, price) + dust`` each."""
        return sum(value(o.remaining_wh, o.price) + o.dust for o in self.orders.values() if o.is_buy and o.resting)

    def held(self) -> int:
        """Trade payments held in positions not yet settled."""
        return sum(position.paid for slot in self.positions.values() for position in slot.values())

    def _apply(self, event: ChainEvent) -> None:
        args, name = event.args, event.name
        if name == "Transfer":
            amount = int(args["value"])
            self.tokens += amount if _key(args["to"]) == self.parties.market else 0
            self.tokens -= amount if _key(args["from"]) == self.parties.market else 0
        elif name == "SupplierAccountSet":
            self.supplier = _key(args["supplier"])
        elif name == "Deposited":
            self._credit(_key(args["member"]), int(args["amount"]))
        elif name == "Withdrawn":
            self.balances[_key(args["member"])] -= int(args["amount"])
        elif name == "AccountFunded":
            self._credit(_key(args["account"]), int(args["amount"]))
        elif name == "OrderPlaced":
            order = _Order(_key(args["member"]), bool(args["isBuy"]), int(args["pricePerKwh"]), int(args["qtyWh"]))
            self.orders[int(args["orderId"])] = order
            self._incoming.append(int(args["orderId"]))
        elif name == "TradeExecuted":
            self._fill(args)
        elif name == "OrderCancelled":
            order = self.orders.pop(int(args["orderId"]), None)
            # an incoming remainder cut at the fill cap never rested: nothing was escrowed for it
            if order is not None and (order.resting or int(args["reason"]) != CANCEL_FILL_CAP):
                self.balances[order.member] += int(args["escrowReleased"])
        elif name == "SlotSettled":
            self.settled.add(int(args["slot"]))
        elif name == "SettlementApplied":
            self._settlement(int(args["slot"]), int(args["released"]), int(args["supplierAmount"]))

    def _rest_incoming(self) -> None:
        """An incoming order neither filled nor cut by the end of its transaction rests; a
        buy's escrow for the remainder leaves the balance then."""
        for order_id in self._incoming:
            order = self.orders.get(order_id)  # None: filled or cut in its transaction
            if order is not None and order.remaining_wh:
                order.resting = True
                if order.is_buy:
                    self.balances[order.member] -= value(order.remaining_wh, order.price)
        self._incoming = []

    def _fill(self, args: Mapping[str, Any]) -> None:
        slot, qty, price = int(args["slot"]), int(args["qtyWh"]), int(args["pricePerKwh"])
        amount = value(qty, price)
        self.positions[slot][_key(args["buyer"])].add_fill(True, qty, amount)
        self.positions[slot][_key(args["seller"])].add_fill(False, qty, amount)
        buy_id, sell_id = int(args["buyOrderId"]), int(args["sellOrderId"])
        maker_id, taker_id = (buy_id, sell_id) if args["makerIsBuy"] else (sell_id, buy_id)
        maker, taker = self.orders[maker_id], self.orders[taker_id]
        if maker.is_buy:  # paid from its escrow; partial fills' rounding becomes dust
            maker.dust += value(maker.remaining_wh, price) - value(maker.remaining_wh - qty, price) - amount
        else:  # the incoming buyer pays from its balance
            self.balances[taker.member] -= amount
        maker.remaining_wh -= qty
        taker.remaining_wh -= qty
        if maker.remaining_wh == 0:
            self.balances[maker.member] += maker.dust  # the dust goes back when the order leaves
            del self.orders[maker_id]
        if taker.remaining_wh == 0:
            del self.orders[taker_id]

    def _credit(self, account: str, amount: int) -> None:
        repaid = min(self.debts[account], amount)
        self.debts[account] -= repaid
        self.balances[self.supplier] += repaid
        self.balances[account] += amount - repaid

    def _apply_payment(self, account: str, amount: int) -> int:
        """Credits or charges; returns what the supplier's residual gives up for it."""
        if amount >= 0:
            self._credit(account, amount)
            return amount
        balance = self.balances[account]
        if balance >= -amount:
            self.balances[account] = balance + amount
            return amount
        self.balances[account] = 0
        self.debts[account] += -amount - balance
        return -balance

    def _settlement(self, slot: int, released: int, supplier_amount: int) -> None:
        """One ledger application: the payments its transaction's settlement events imply."""
        self.applications += 1
        rules = self.history.rules_at(slot)
        payments: list[tuple[str, int]] = []
        closing = 0
        grid = manager = retained = 0
        for event in self._tx_events:
            if event.name == "ShareDistributed":
                payments.append((_key(event.args["member"]), int(event.args["amount"])))
                payments.append((self.parties.settlement, -int(event.args["amount"])))
            if event.name != "MembersSettled" or rules is None:
                continue
            unmetered = slot in self.settled
            for result in unpack_member_results(bytes(event.args["results"])):
                member = _key(result.member)
                position = self.positions[slot].get(member, Position())
                close = position.traded and (unmetered or rules.mode == "cda")
                paid = position.paid if close else 0
                if close:
                    closing += paid
                    del self.positions[slot][member]
                    volume = position.bought_wh + position.sold_wh
                else:
                    volume = abs(result.contracted_wh)
                payments.append((member, result.net_amount + paid))
                # the contract credits the fee totals: grid fees per member, the manager the rest
                member_grid = min(value(volume, rules.grid_fee), result.fees)
                grid += member_grid
                manager += result.fees - member_grid
                retained += result.retained
        payments += [(self.parties.dso, grid), (self.parties.manager, manager), (self.parties.settlement, retained)]
        residual = closing - sum(self._apply_payment(account, amount) for account, amount in payments if amount)
        for name, recorded, expected in (
            ("released", released, closing),
            ("supplierAmount", supplier_amount, residual),
        ):
            if recorded != expected:
                self.report.discrepancies.append(
                    Finding(
                        "money", slot, None, name, recorded, expected, "ledger application differs from the results"
                    )
                )
        self._apply_payment(self.supplier, residual)


def _audit_balances(history: _History, state: ChainState, parties: Parties, report: AuditReport) -> None:
    """Every account's balance and debt rebuilt from events against the chain, and solvency."""
    ledger = _Ledger(history, parties, report)
    ledger.replay()
    report.applications = ledger.applications
    accounts = sorted(account for account in ledger.balances.keys() | ledger.debts.keys() if account)
    report.accounts = len(accounts)
    for account in accounts:
        for name, rebuilt, on_chain in (
            ("balance", ledger.balances.get(account, 0), state.market_balance(account)),
            ("debt", ledger.debts.get(account, 0), state.market_debt(account)),
        ):
            if rebuilt != on_chain:
                report.discrepancies.append(
                    Finding(
                        "balances", None, account, name, on_chain, rebuilt, f"market {name} differs from the events"
                    )
                )
    owed = sum(ledger.balances.values()) + ledger.escrow() + ledger.held()
    for name, held in (("tokens received (events)", ledger.tokens), ("token balance", state.market_token_balance())):
        if held != owed:
            report.discrepancies.append(
                Finding("solvency", None, None, name, held, owed, "the market's tokens differ from what it owes")
            )


# -------------------------------------------------------------------- clearing


def audit_clearing(
    events: Iterable[ChainEvent], clearing_dir: Path, community: Community, first_slot: int
) -> tuple[float | None, list[Finding]]:
    """Checks a clearing the manager posted from ``first_slot`` on against the files the engine
    wrote (``peerwatt clear --out DIR``): the optimality certificate (primal and dual feasibility,
    objectives, duality gap; :func:`settlement.optimisation.verify_certificate`) for the community
    at the tariffs and fees in force when the schedule was posted, and the result hash each
    completed slot carries against the schedule file. Returns the duality gap (base units; None
    if the certificate fails) and the differences."""
    from settlement.optimisation import CertificateError, verify_certificate

    history = _History(events)
    slots = range(first_slot, first_slot + community.n_slots)
    posted = [event for event in history.events if event.name == "SchedulePosted" and event.args["slot"] in slots]
    if not posted:
        return None, [Finding("certificate", first_slot, None, "posted", 0, 1, "no schedule posted in the horizon")]
    findings = []
    tariffs, rules = history.tariffs_at(posted[0]), history.rules_at(first_slot)
    gap = None
    if tariffs is None or rules is None:
        findings.append(Finding("certificate", first_slot, None, "rules", None, None, "no tariffs or rules in force"))
    else:
        on_chain = replace(
            community,
            import_price=np.full(community.n_slots, tariffs[0]),
            export_price=np.full(community.n_slots, tariffs[1]),
            fee_per_kwh=rules.grid_fee + rules.manager_fee,
        )
        try:
            gap = verify_certificate(clearing_dir / "certificate.json", on_chain)
        except CertificateError as error:
            findings.append(Finding("certificate", first_slot, None, "certificate", None, None, str(error)))
    digest = keccak((clearing_dir / "schedule.csv").read_bytes())
    completed = {
        int(event.args["slot"]): bytes(event.args["resultHash"])
        for event in history.events
        if event.name == "ScheduleCompleted"
    }
    for slot in slots:
        recorded = completed.get(slot)
        if recorded != digest:
            why = "not completed" if recorded is None else f"result hash {recorded.hex()} is not the schedule file's"
            findings.append(Finding("certificate", slot, None, "resultHash", None, None, f"{why} ({digest.hex()})"))
    return gap, findings

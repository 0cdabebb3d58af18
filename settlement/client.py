"""The settlement contract from Python: settle slots (cutting the oracle's committed readings
into verified chunks), post clearing results and profit shares, read statements.

Readings come from the oracle's ``ReadingsAccepted`` events, in acceptance order, and are
checked against the slot's on-chain commitment before anything is sent, so a node that lost
logs (an anvil restored from a state file) is reported instead of failing on chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from peerwatt import artifacts
from peerwatt.chain import latest_timestamp
from peerwatt.config import SettlementRules
from peerwatt.deployment import Deployment
from peerwatt.errors import ConflictError, InputError
from peerwatt.events import events
from peerwatt.meter_readings import ORACLE, accepted_readings
from peerwatt.transactions import Receipt, TxSender, call
from settlement.chunks import (
    DEFAULT_CHUNK_READINGS,
    SlotReading,
    backward_chunks,
    chain_values,
    pack_schedule,
    unpack_member_results,
)
from settlement.statements import statement_row

SETTLEMENT = "CommunitySettlement"

MARKET = "CdaMarket"
PHASES = ("open", "tallying", "paying", "settled")  # ICommunitySettlement.Phase


@dataclass(frozen=True)
class SlotState:
    """Mirrors ICommunitySettlement.SlotView."""

    phase: str
    mode: str
    rule: str
    readings: int
    remaining: int
    supply_wh: int
    demand_wh: int


@dataclass
class SettleOutcome:
    slot: int
    receipts: list[Receipt] = field(default_factory=list)
    members_settled: int = 0
    unmetered: int = 0

    @property
    def gas_used(self) -> int:
        return sum(receipt.gas_used for receipt in self.receipts)


class Settlement:
    """A deployed community's settlement contract, reached through ``w3``."""

    def __init__(self, w3: Web3, deployment: Deployment, sender: TxSender | None = None) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.address = deployment.settlement
        self.sender = sender or TxSender(w3)
        self._member_ids: dict[str, int] = {}
        self._meter_ids: dict[str, int] = {}

    # ------------------------------------------------------------------ views

    def _view(self, function: str, *args: Any) -> tuple[Any, ...]:
        return call(self.w3, self.address, SETTLEMENT, function, *args)

    def rules_at(self, slot: int) -> SettlementRules:
        return SettlementRules.from_tuple(tuple(self._view("configAt", slot)[0]))

    def slot_state(self, slot: int) -> SlotState:
        phase, mode, rule, readings, remaining, supply, demand = self._view("slotState", slot)[0]
        rules = SettlementRules.from_tuple((mode, rule, 0, 0, 0, 0))
        return SlotState(PHASES[phase], rules.mode, rules.rule, readings, remaining, supply, demand)

    def reading_deadline(self, slot: int) -> int:
        return int(self._view("readingDeadline", slot)[0])

    def period_slots(self) -> int:
        return int(self._view("periodSlots")[0])

    def member_id(self, address: str) -> int:
        """The registry's id of a member address (0 if never registered)."""
        key = address.lower()
        if key not in self._member_ids:
            self._member_ids[key] = int(call(self.w3, self.deployment.market, MARKET, "memberOf", address)[0])
        return self._member_ids[key]

    def slot_readings(self, slot: int) -> list[SlotReading]:
        """The slot's committed readings in acceptance order, checked against the commitment."""
        return self.slots_readings([slot])[slot]

    def slots_readings(self, slots: Iterable[int]) -> dict[int, list[SlotReading]]:
        """:meth:`slot_readings` of several slots from one read of the oracle's events."""
        wanted = {slot: [] for slot in slots}
        for reading, _ in accepted_readings(self.w3, self.deployment):
            if reading.slot in wanted:
                wanted[reading.slot].append(
                    SlotReading(self._meter_member_id(reading.meter), reading.import_wh, reading.export_wh)
                )
        for slot, readings in wanted.items():
            chain, count = call(self.w3, self.deployment.oracle, ORACLE, "slotCommitment", slot)
            if count != len(readings) or chain_values(slot, readings)[-1] != int.from_bytes(chain, "big"):
                raise ConflictError(
                    f"the node's logs hold {len(readings)} readings for slot {slot} that do not match its on-chain "
                    f"commitment ({count} readings); was the chain restored from a state file without its logs?"
                )
        return wanted

    def _meter_member_id(self, meter: str) -> int:
        if meter not in self._meter_ids:
            self._meter_ids[meter] = int(call(self.w3, self.deployment.oracle, ORACLE, "meter", meter)[0][1])
        return self._meter_ids[meter]

    # ------------------------------------------------------------ settlement

    def check_due(self, slot: int, readings: int) -> None:
        """InputError unless ``slot`` may be settled now: its reading deadline passed, or it has
        ended and every active member's reading is in."""
        now = latest_timestamp(self.w3)
        deadline = self.reading_deadline(slot)
        if now >= deadline:
            return
        slot_end = self.deployment.slot_clock.slot_start(slot + 1)
        members = int(call(self.w3, self.deployment.market, MARKET, "memberCount")[0])
        if now >= slot_end and readings >= members:
            return
        raise InputError(
            f"slot {slot} cannot be settled before its reading deadline {deadline} (chain time {now}, "
            f"{readings} of {members} readings in)"
        )

    def settle(
        self,
        slot: int,
        chunk_readings: int = DEFAULT_CHUNK_READINGS,
        readings: Sequence[SlotReading] | None = None,
    ) -> SettleOutcome:
        """Settles ``slot`` completely from wherever it stands (a settlement interrupted after
        some chunks resumes), then settles what members without a reading left. ``readings``:
        the slot's accepted readings in acceptance order when the caller knows them (saves
        reading the oracle's events; the contract checks them against the commitment anyway)."""
        state = self.slot_state(slot)
        if state.phase == "settled":
            raise InputError(f"slot {slot} is already settled")
        readings = list(readings) if readings is not None else self.slot_readings(slot)
        if state.phase == "open":
            self.check_due(slot, len(readings))
        outcome = SettleOutcome(slot)
        settle = artifacts.function(SETTLEMENT, "settle")
        while state.phase != "settled":
            remaining = len(readings) if state.phase == "open" else state.remaining
            chunks = backward_chunks(slot, readings[:remaining], chunk_readings) or [None]
            for chunk in chunks:
                from_chain = chunk.from_chain_bytes if chunk else bytes(32)
                data = settle.encode(slot, from_chain, chunk.data if chunk else b"")
                outcome.receipts.append(
                    self.sender.mined(self.sender.send(self.deployment.deployer, self.address, data))
                )
            state = self.slot_state(slot)
        outcome.members_settled = len(readings)
        metered = {reading.member_id for reading in readings}
        unmetered = [
            member_id
            for member_id in (self.member_id(address) for address in self.deployment.members.values())
            if member_id not in metered
        ]
        if unmetered:
            data = artifacts.function(SETTLEMENT, "settleUnmetered").encode(slot, unmetered)
            receipt = self.sender.mined(self.sender.send(self.deployment.deployer, self.address, data))
            outcome.receipts.append(receipt)
            outcome.unmetered = sum(1 for name, _ in receipt.events(self.address) if name == "ReadingMissing")
        return outcome

    # ------------------------------------------------------------ statements

    def _events(self, name: str, indexed: int) -> list[dict[str, Any]]:
        return [
            event.args
            for event in events(self.w3, self.address, self.deployment.deploy_block, SETTLEMENT, name, indexed)
        ]

    def statements(self, slot: int) -> list[dict[str, Any]]:
        """One row per member settled in ``slot`` (STATEMENT_COLUMNS; amounts in base units,
        positive = the member receives). ``share`` is the savings kept for the profit-share pot
        (negative) plus, in a period's last slot, the member's profit share of that period."""
        state = self.slot_state(slot)
        if state.phase != "settled":
            raise InputError(f"slot {slot} is not settled yet ({state.phase}); run `peerwatt settle --slot {slot}`")
        flows = {reading.member_id: reading for reading in self.slot_readings(slot)}
        names = self.deployment.member_names()
        period_slots = self.period_slots()
        shares: dict[str, int] = {}
        if (slot + 1) % period_slots == 0:
            for args in self._events("ShareDistributed", slot // period_slots):
                shares[args["member"].lower()] = shares.get(args["member"].lower(), 0) + int(args["amount"])
        rows = []
        for result in (
            result for args in self._events("MembersSettled", slot) for result in unpack_member_results(args["results"])
        ):
            address = result.member
            reading = flows.get(self.member_id(address))
            rows.append(
                statement_row(
                    names.get(address.lower(), address),
                    slot,
                    None if reading is None else (reading.import_wh, reading.export_wh),
                    state.mode == "sharing",
                    result.contracted_wh,
                    result.energy_amount,
                    result.imbalance_amount,
                    result.fees,
                    result.retained,
                    shares.pop(address.lower(), 0),
                )
            )
        for address, share in shares.items():  # shares of members not settled in this slot
            rows.append(statement_row(names.get(address, address), slot, None, False, shares=share))
        return rows

    # -------------------------------------------------------------- posting

    def post_schedule(
        self,
        slot: int,
        price: int,
        entries: Sequence[tuple[int, int, int]],
        result_hash: bytes,
        chunk_members: int = 250,
    ) -> list[Receipt]:
        """Posts a slot's clearing result: ``entries`` are (member id, net export Wh, internal
        trade Wh), in ascending member id order; the last chunk completes the schedule."""
        post = artifacts.function(SETTLEMENT, "postSchedule")
        receipts = []
        ordered = sorted(entries)
        starts = range(0, max(len(ordered), 1), chunk_members)
        for index, start in enumerate(starts):
            data = pack_schedule(ordered[start : start + chunk_members])
            complete = index == len(starts) - 1
            encoded = post.encode(slot, price, data, complete, result_hash)
            receipts.append(self.sender.mined(self.sender.send(self.deployment.deployer, self.address, encoded)))
        return receipts

    def distribute_shares(self, period: int, shares: dict[int, int], chunk_members: int = 200) -> list[Receipt]:
        """Pays a period's shares (member id -> base units), in ascending member id order."""
        distribute = artifacts.function(SETTLEMENT, "distributeShares")
        ordered = sorted(shares.items())
        receipts = []
        for start in range(0, max(len(ordered), 1), chunk_members):
            part = ordered[start : start + chunk_members]
            data = distribute.encode(period, [member for member, _ in part], [share for _, share in part])
            receipts.append(self.sender.mined(self.sender.send(self.deployment.deployer, self.address, data)))
        return receipts

    def period(self, period: int) -> tuple[int, int, bool]:
        """(pot, settled slots, distributed) of a profit-share period."""
        pot, settled, distributed = self._view("period", period)[0]
        return int(pot), int(settled), bool(distributed)

    def contributions(self, period: int, member_ids: Iterable[int]) -> dict[int, int]:
        return {member_id: int(self._view("contributionOf", period, member_id)[0]) for member_id in member_ids}

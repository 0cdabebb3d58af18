"""pandas DataFrames over the ledger: orders, trades, a slot's order book at any block, meter
readings and a per-day community summary, all rebuilt from the indexed events alone.

Integers stay exact: energy in Wh and prices in base units per kWh as int64 columns (Python ints
in an object column in the unlikely case one exceeds 64 bits); order ids, which do exceed 64 bits
(``slot << 97 | ...``), as decimal strings. Every query takes an optional slot range, a member
(an address, any case) and ``limit``/``offset`` for paging, applied in SQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from eth_utils import is_address

from peerwatt.errors import InputError
from peerwatt.market import CancelReason, Side
from peerwatt.units import WH_PER_KWH
from settlement.audit import AuditReport, ChainEvent, ChainState, Parties, audit_history, tariffs_in_force
from settlement.ledger.records import checksum, parse_args
from settlement.ledger.store import Binding, Store
from settlement.pricing import tariff_amount
from settlement.statements import STATEMENT_COLUMNS, statement_row

ORDER_COLUMNS = (
    "order_id", "slot", "member", "side", "price", "qty_wh", "filled_wh", "remaining_wh", "status",
    "cancel_reason", "block_number", "log_index", "tx_hash",
)  # fmt: skip
TRADE_COLUMNS = (
    "slot", "buy_order", "sell_order", "buyer", "seller", "price", "qty_wh", "value", "maker_side",
    "block_number", "log_index", "tx_hash",
)  # fmt: skip
BOOK_COLUMNS = ("side", "price", "order_id", "member", "remaining_wh", "qty_wh", "block_number", "log_index")
READING_COLUMNS = (
    "slot", "member", "meter", "import_wh", "export_wh", "import_register_wh", "export_register_wh",
    "block_number", "log_index", "position", "tx_hash",
)  # fmt: skip
EVENT_COLUMNS = ("block_number", "log_index", "block_hash", "tx_hash", "tx_index", "contract", "event", "args")
DAILY_COLUMNS = (
    "day", "first_slot", "last_slot", "trades", "traded_wh", "traded_value", "average_price_per_kwh",
    "readings", "import_wh", "export_wh", "net_import_wh", "net_export_wh", "shared_wh", "grid_import_wh",
    "grid_export_wh", "self_sufficiency", "settled_slots", "internal_wh", "internal_value",
    "average_internal_price_per_kwh", "members_amount", "standalone_amount", "savings",
)  # fmt: skip
SETTLEMENT_COLUMNS = (
    "slot", "member", "contracted_wh", "energy_amount", "imbalance_amount", "fees", "retained", "block_number",
    "log_index", "position", "tx_hash", "net_amount",
)  # fmt: skip
SHARE_COLUMNS = ("period", "member", "amount", "block_number", "log_index")
SHARING_MODE = 1  # ICommunitySettlement.Mode.Sharing
UINT32_MAX = 2**32 - 1


def member_address(value: str) -> str:
    """A member filter as stored (EIP-55); InputError if it is no address."""
    if not is_address(value):
        raise InputError(f"member must be a 0x-prefixed 20-byte address, got {value!r}")
    return checksum(value.lower())


@dataclass
class _Where:
    """SQL conditions and their parameters, built from the common filters."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> None:
        self.clauses.append(clause)
        self.params.extend(params)

    def sql(self) -> str:
        return ("WHERE " + " AND ".join(self.clauses)) if self.clauses else ""


def _check_range(slot_from: int | None, slot_to: int | None) -> None:
    for name, value in (("slot_from", slot_from), ("slot_to", slot_to)):
        if value is not None and not 0 <= value <= UINT32_MAX:
            raise InputError(f"{name} must be a slot number between 0 and {UINT32_MAX}, got {value}")
    if slot_from is not None and slot_to is not None and slot_from > slot_to:
        raise InputError(f"slot_from ({slot_from}) is after slot_to ({slot_to})")


def _page(limit: int | None, offset: int) -> tuple[str, list[int]]:
    if limit is not None and limit < 0 or offset < 0:
        raise InputError(f"limit and offset must not be negative, got {limit} and {offset}")
    return " LIMIT ? OFFSET ?", [-1 if limit is None else limit, offset]


def _exact(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Integer columns that SQLite returned as decimal text (beyond 64 bits) back to Python ints."""
    for column in columns:
        if column in frame and frame[column].dtype == object:
            frame[column] = frame[column].map(lambda value: None if value is None else int(value))
    return frame


class Ledger:
    """Queries over one ledger store."""

    def __init__(self, store: Store) -> None:
        binding = store.binding()
        if binding is None:
            raise InputError(f"the ledger {store.path} is empty; run `peerwatt ledger sync` first")
        self.store = store
        self.binding: Binding = binding

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """A read-only ledger (queries never write)."""
        return cls(Store(path, readonly=True))

    def last_block(self) -> int | None:
        top = self.store.last_block()
        return None if top is None else top[0]

    def _frame(self, sql: str, params: list[Any], columns: tuple[str, ...]) -> pd.DataFrame:
        rows = self.store.query(sql, params)
        return pd.DataFrame.from_records(rows, columns=list(columns))

    # ------------------------------------------------------------------ orders

    def orders(
        self,
        slot_from: int | None = None,
        slot_to: int | None = None,
        member: str | None = None,
        at_block: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> pd.DataFrame:
        """Every order placed (up to ``at_block``), in placement order, with what was filled and
        its status at that block: ``open`` (resting, or expired but not yet released),
        ``filled``, or ``cancelled`` with ``cancel_reason`` (by_member, self_trade, fill_cap,
        expired)."""
        _check_range(slot_from, slot_to)
        block = self._block(at_block)
        where = self._slots(slot_from, slot_to, "o.slot")
        where.add("o.block_number <= ?", block)
        if member is not None:
            where.add("o.member = ?", member_address(member))
        page, page_params = _page(limit, offset)
        sql = f"""
            WITH selected AS (
                SELECT * FROM orders o {where.sql()} ORDER BY o.block_number, o.log_index {page}
            )
            SELECT s.order_id, s.slot, s.member, s.is_buy, s.price, s.qty_wh,
                COALESCE((SELECT SUM(t.qty_wh) FROM trades t WHERE t.buy_order = s.order_id AND t.block_number <= ?), 0)
                + COALESCE((SELECT SUM(t.qty_wh) FROM trades t WHERE t.sell_order = s.order_id AND t.block_number <= ?), 0),
                (SELECT c.reason FROM cancellations c WHERE c.order_id = s.order_id AND c.block_number <= ?
                    ORDER BY c.block_number, c.log_index LIMIT 1),
                s.block_number, s.log_index, s.tx_hash
            FROM selected s ORDER BY s.block_number, s.log_index
        """
        columns = ("order_id", "slot", "member", "is_buy", "price", "qty_wh", "filled_wh", "reason",
                   "block_number", "log_index", "tx_hash")  # fmt: skip
        frame = _exact(
            self._frame(sql, [*where.params, *page_params, block, block, block], columns), ("qty_wh", "filled_wh")
        )
        frame.insert(3, "side", frame.pop("is_buy").map(lambda is_buy: Side.of(bool(is_buy)).value))
        cancelled = frame["reason"].notna()
        frame["remaining_wh"] = (frame["qty_wh"] - frame["filled_wh"]).where(~cancelled, 0)
        frame["status"] = "open"
        frame.loc[frame["filled_wh"] == frame["qty_wh"], "status"] = "filled"
        frame.loc[cancelled, "status"] = "cancelled"
        frame["cancel_reason"] = frame.pop("reason").map(
            lambda reason: None if pd.isna(reason) else CancelReason(int(reason)).name.lower()
        )
        return frame[list(ORDER_COLUMNS)]

    def book(self, slot: int, at_block: int | None = None) -> pd.DataFrame:
        """The resting orders of ``slot``'s book at ``at_block`` (default: the last indexed
        block), replayed from placements, fills and cancellations: asks from the lowest price,
        then bids from the highest, FIFO within a price (what ``bookSide`` returns). Orders past
        their gate closure stay until ``expireOrders`` cancels them, as on chain."""
        _check_range(slot, slot)
        block = self._block(at_block)
        sql = """
            SELECT o.is_buy, o.price, o.order_id, o.member,
                o.qty_wh
                - COALESCE((SELECT SUM(t.qty_wh) FROM trades t WHERE t.buy_order = o.order_id AND t.block_number <= ?), 0)
                - COALESCE((SELECT SUM(t.qty_wh) FROM trades t WHERE t.sell_order = o.order_id AND t.block_number <= ?), 0),
                o.qty_wh, o.block_number, o.log_index
            FROM orders o
            WHERE o.slot = ? AND o.block_number <= ? AND NOT EXISTS (
                SELECT 1 FROM cancellations c WHERE c.order_id = o.order_id AND c.block_number <= ?)
        """
        columns = ("is_buy", "price", "order_id", "member", "remaining_wh", "qty_wh", "block_number", "log_index")
        frame = _exact(self._frame(sql, [block, block, slot, block, block], columns), ("remaining_wh", "qty_wh"))
        frame = frame[frame["remaining_wh"] > 0].copy()
        frame["order_key"] = frame["price"].where(frame["is_buy"] == 0, -frame["price"])  # best price first
        frame = frame.sort_values(["is_buy", "order_key", "block_number", "log_index"], kind="stable")
        frame.insert(0, "side", frame.pop("is_buy").map(lambda is_buy: Side.of(bool(is_buy)).value))
        return frame[list(BOOK_COLUMNS)].reset_index(drop=True)

    # ------------------------------------------------------------------ trades

    def trades(
        self,
        slot_from: int | None = None,
        slot_to: int | None = None,
        member: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> pd.DataFrame:
        """Every trade in execution order; ``value`` = ``qty_wh * price // 1000`` (what the buyer
        pays the seller); ``member`` keeps trades where it bought or sold."""
        _check_range(slot_from, slot_to)
        where = self._slots(slot_from, slot_to, "slot")
        if member is not None:
            address = member_address(member)
            where.add("(buyer = ? OR seller = ?)", address, address)
        page, page_params = _page(limit, offset)
        sql = f"""
            SELECT slot, buy_order, sell_order, buyer, seller, price, qty_wh, maker_is_buy, block_number, log_index, tx_hash
            FROM trades {where.sql()} ORDER BY block_number, log_index {page}
        """
        columns = ("slot", "buy_order", "sell_order", "buyer", "seller", "price", "qty_wh", "maker_is_buy",
                   "block_number", "log_index", "tx_hash")  # fmt: skip
        frame = _exact(self._frame(sql, [*where.params, *page_params], columns), ("qty_wh",))
        frame["value"] = frame["qty_wh"] * frame["price"] // WH_PER_KWH
        frame["maker_side"] = frame.pop("maker_is_buy").map(lambda is_buy: Side.of(bool(is_buy)).value)
        return frame[list(TRADE_COLUMNS)]

    # ---------------------------------------------------------------- readings

    def readings(
        self,
        slot_from: int | None = None,
        slot_to: int | None = None,
        member: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> pd.DataFrame:
        """Every reading the oracle accepted, in acceptance order, with the member its meter key
        was registered for."""
        _check_range(slot_from, slot_to)
        where = self._slots(slot_from, slot_to, "r.slot")
        if member is not None:
            where.add("m.member = ?", member_address(member))
        page, page_params = _page(limit, offset)
        sql = f"""
            SELECT r.slot, m.member, r.meter, r.import_wh, r.export_wh, r.import_register_wh, r.export_register_wh,
                r.block_number, r.log_index, r.position, r.tx_hash
            FROM readings r LEFT JOIN meters m ON m.meter = r.meter
            {where.sql()} ORDER BY r.block_number, r.log_index, r.position {page}
        """
        return self._frame(sql, [*where.params, *page_params], READING_COLUMNS)

    # -------------------------------------------------------------- settlement

    def settlements(
        self,
        slot_from: int | None = None,
        slot_to: int | None = None,
        member: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> pd.DataFrame:
        """Members' settlement results as the contract recorded them (``MembersSettled``), in
        chain order; ``net_amount`` = energy + imbalance - fees - retained (base units, positive
        = the member receives)."""
        _check_range(slot_from, slot_to)
        where = self._slots(slot_from, slot_to, "slot")
        if member is not None:
            where.add("member = ?", member_address(member))
        page, page_params = _page(limit, offset)
        sql = f"""
            SELECT slot, member, contracted_wh, energy_amount, imbalance_amount, fees, retained, block_number,
                log_index, position, tx_hash
            FROM settlements {where.sql()} ORDER BY block_number, log_index, position {page}
        """
        amounts = ("contracted_wh", "energy_amount", "imbalance_amount", "fees", "retained")
        frame = _exact(self._frame(sql, [*where.params, *page_params], SETTLEMENT_COLUMNS[:-1]), amounts)
        frame["net_amount"] = frame["energy_amount"] + frame["imbalance_amount"] - frame["fees"] - frame["retained"]
        return frame[list(SETTLEMENT_COLUMNS)]

    def statements(self, member: str, slot_from: int | None = None, slot_to: int | None = None) -> pd.DataFrame:
        """A member's statement rows (``peerwatt statements`` columns) for its settled slots in
        the range: its reading, its recorded result and, in a period's last slot, the profit
        shares paid for the period."""
        _check_range(slot_from, slot_to)
        address = member_address(member)
        where = self._slots(slot_from, slot_to, "s.slot")
        where.add("s.member = ?", address)
        sql = f"""
            SELECT s.slot, r.import_wh, r.export_wh, st.mode, s.contracted_wh, s.energy_amount, s.imbalance_amount,
                s.fees, s.retained
            FROM settlements s
            LEFT JOIN slots st ON st.slot = s.slot
            LEFT JOIN meters m ON m.member = s.member
                AND EXISTS (SELECT 1 FROM readings x WHERE x.meter = m.meter AND x.slot = s.slot)
            LEFT JOIN readings r ON r.meter = m.meter AND r.slot = s.slot
            {where.sql()} ORDER BY s.slot, s.block_number, s.log_index, s.position
        """
        # (the member's meters that read the slot, then their readings: the pairs of
        # ``LEFT JOIN (readings JOIN meters)``, looked up per row through readings_by_meter instead
        # of joining every reading of the ledger first)
        period_slots = self.binding.period_slots
        shares: dict[int, int] = {}
        for period, amount in self.store.query("SELECT period, amount FROM shares WHERE member = ?", [address]):
            last_slot = (int(period) + 1) * period_slots - 1 if period_slots else None
            if last_slot is not None:
                shares[last_slot] = shares.get(last_slot, 0) + int(amount)
        rows = []
        for slot, import_wh, export_wh, mode, contracted, energy, imbalance, fees, retained in self.store.query(
            sql, where.params
        ):
            reading = None if import_wh is None else (int(import_wh), int(export_wh))
            figures = (int(contracted), int(energy), int(imbalance), int(fees), int(retained), shares.pop(slot, 0))
            rows.append(statement_row(address, slot, reading, mode == SHARING_MODE, *figures))
        for slot, share in sorted(shares.items()):
            if (slot_from is None or slot >= slot_from) and (slot_to is None or slot <= slot_to):
                rows.append(statement_row(address, slot, None, False, shares=share))
        return pd.DataFrame(rows, columns=list(STATEMENT_COLUMNS))

    def shares(self, member: str | None = None) -> pd.DataFrame:
        """Profit shares paid (``ShareDistributed``), in chain order."""
        where = _Where()
        if member is not None:
            where.add("member = ?", member_address(member))
        sql = f"SELECT period, member, amount, block_number, log_index FROM shares {where.sql()} ORDER BY block_number, log_index"
        return _exact(self._frame(sql, where.params, SHARE_COLUMNS), ("amount",))

    def chain_events(self) -> list[ChainEvent]:
        """Every decoded event, in chain order, as the audit takes them."""
        rows = self.store.query(
            "SELECT block_number, log_index, tx_hash, contract, event, args FROM events WHERE event IS NOT NULL "
            "ORDER BY block_number, log_index"
        )
        return [
            ChainEvent(block, index, tx_hash, contract, name, parse_args(name, text))
            for block, index, tx_hash, contract, name, text in rows
        ]

    def posted_schedules(self) -> dict[int, dict[int, int]]:
        """Posted internal trades per optimisation slot and member id (from the calldata)."""
        schedules: dict[int, dict[int, int]] = {}
        for slot, member_id, internal_wh in self.store.query(
            "SELECT slot, member_id, internal_wh FROM schedules ORDER BY block_number, log_index, position"
        ):
            schedules.setdefault(int(slot), {})[int(member_id)] = int(internal_wh)
        return schedules

    def audit(
        self, state: ChainState | None = None, parties: Parties | None = None, slots: range | None = None
    ) -> AuditReport:
        """The independent audit (:mod:`settlement.audit`) of the indexed history; balances and
        solvency against ``state`` (the chain at the last indexed block) when given."""
        return audit_history(self.chain_events(), self.posted_schedules(), state, parties, slots)

    # ------------------------------------------------------------------ events

    def events(
        self,
        contract: str | None = None,
        event: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> pd.DataFrame:
        """The raw events (arguments as JSON, integers as decimal strings), in chain order."""
        where = _Where()
        if contract is not None:
            where.add("contract = ?", contract)
        if event is not None:
            where.add("event = ?", event)
        if from_block is not None:
            where.add("block_number >= ?", from_block)
        if to_block is not None:
            where.add("block_number <= ?", to_block)
        page, page_params = _page(limit, offset)
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events {where.sql()} ORDER BY block_number, log_index {page}"
        return self._frame(sql, [*where.params, *page_params], EVENT_COLUMNS)

    # ----------------------------------------------------------------- summary

    def daily_summary(self) -> pd.DataFrame:
        """Per UTC day of delivery (from the slot clock): the local market's trades (count, Wh,
        value, volume-weighted average price, rounded down) and the metered flows: members' net
        imports and exports, the energy shared inside the community (per slot
        ``min(net exports, net imports)``), what remained for the grid, and self-sufficiency
        (shared / net imports, a ratio)."""
        trades = self._frame(
            "SELECT slot, SUM(qty_wh), SUM(qty_wh * price), SUM(qty_wh * price / 1000), COUNT(*) FROM trades GROUP BY slot",
            [],
            ("slot", "traded_wh", "price_wh", "traded_value", "trades"),
        )
        flows = self._frame(
            """SELECT slot, COUNT(*), SUM(import_wh), SUM(export_wh),
                   SUM(MAX(import_wh - export_wh, 0)), SUM(MAX(export_wh - import_wh, 0))
               FROM readings GROUP BY slot""",
            [],
            ("slot", "readings", "import_wh", "export_wh", "net_import_wh", "net_export_wh"),
        )
        slots = trades.merge(flows, on="slot", how="outer").merge(self._settled_slots(), on="slot", how="outer")
        slots = slots.infer_objects().fillna(0)
        if slots.empty:
            return pd.DataFrame(columns=list(DAILY_COLUMNS))
        numbers = [c for c in slots.columns if c != "slot"]
        slots[numbers] = slots[numbers].astype("int64")
        slots["shared_wh"] = slots[["net_import_wh", "net_export_wh"]].min(axis=1)
        clock = self.binding.slot_clock
        slots["day"] = slots["slot"].map(
            lambda slot: dt.datetime.fromtimestamp(clock.slot_start(int(slot)), dt.UTC).date().isoformat()
        )
        days = slots.groupby("day", sort=True).agg(
            first_slot=("slot", "min"),
            last_slot=("slot", "max"),
            **{name: (name, "sum") for name in numbers + ["shared_wh"]},
        )
        days["average_price_per_kwh"] = (days["price_wh"] // days["traded_wh"].where(days["traded_wh"] > 0)).astype(
            "Int64"
        )
        days["grid_import_wh"] = days["net_import_wh"] - days["shared_wh"]
        days["grid_export_wh"] = days["net_export_wh"] - days["shared_wh"]
        days["self_sufficiency"] = days["shared_wh"] / days["net_import_wh"].where(days["net_import_wh"] > 0)
        days["savings"] = days["members_amount"] - days["standalone_amount"]
        internal = days["internal_wh"].where(days["internal_wh"] > 0)
        days["average_internal_price_per_kwh"] = (days["internal_value"] * WH_PER_KWH // internal).astype("Int64")
        return days.reset_index()[list(DAILY_COLUMNS)]

    def _settled_slots(self) -> pd.DataFrame:
        """Per settled slot: what members got in all (energy + imbalance - fees; retained savings
        come back as shares), the same flows alone at the slot's tariffs (frozen when its
        settlement started), and the energy sold inside the community with its value (Cda and
        optimisation: contracted sales; sharing: exporters at the rule's sell price)."""
        tariffs = [
            ((int(block), int(index)), (int(args["importPricePerKwh"]), int(args["exportPricePerKwh"])))
            for block, index, text in self.store.query(
                "SELECT block_number, log_index, args FROM events WHERE event = 'TariffsUpdated' "
                "ORDER BY block_number, log_index"
            )
            for args in [parse_args("TariffsUpdated", text)]
        ]
        started = {
            int(slot): (int(mode), tariffs_in_force(tariffs, (int(block), int(index))) or (0, 0))
            for block, index, slot, mode in self.store.query("SELECT block_number, log_index, slot, mode FROM slots")
        }
        rows: dict[int, list[int]] = {slot: [0, 0, 0, 0] for slot in started}
        readings: dict[tuple[int, str], tuple[int, int]] = {}
        for slot, member, import_wh, export_wh in self.store.query(
            "SELECT r.slot, m.member, r.import_wh, r.export_wh FROM readings r JOIN meters m ON m.meter = r.meter"
        ):
            if slot in started:
                readings[(int(slot), member)] = (int(import_wh), int(export_wh))
                import_price, export_price = started[slot][1]
                rows[slot][1] += tariff_amount(int(export_wh) - int(import_wh), import_price, export_price)
        for slot, member, contracted, energy, imbalance, fees in self.store.query(
            "SELECT slot, member, contracted_wh, energy_amount, imbalance_amount, fees FROM settlements"
        ):
            figures = rows.setdefault(int(slot), [0, 0, 0, 0])
            figures[0] += int(energy) + int(imbalance) - int(fees)
            mode = started.get(int(slot), (0, (0, 0)))[0]
            if mode == SHARING_MODE and int(energy) > 0:
                import_wh, export_wh = readings.get((int(slot), member), (0, 0))
                figures[2] += max(export_wh - import_wh, 0)
                figures[3] += int(energy)
            elif mode != SHARING_MODE and int(contracted) > 0:
                figures[2] += int(contracted)
                figures[3] += int(energy)
        columns = ("members_amount", "standalone_amount", "internal_wh", "internal_value")
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(columns))
        frame["settled_slots"] = 1
        return frame.rename_axis("slot").reset_index()

    # ----------------------------------------------------------------- helpers

    def _block(self, at_block: int | None) -> int:
        last = self.last_block()
        if at_block is None:
            return last if last is not None else -1
        if at_block < 0:
            raise InputError(f"at_block must not be negative, got {at_block}")
        return at_block

    @staticmethod
    def _slots(slot_from: int | None, slot_to: int | None, column: str) -> _Where:
        where = _Where()
        if slot_from is not None:
            where.add(f"{column} >= ?", slot_from)
        if slot_to is not None:
            where.add(f"{column} <= ?", slot_to)
        return where

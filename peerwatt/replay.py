"""``peerwatt orders replay``: apply a CSV of order placements and cancellations in file order.

The whole file is parsed and checked before anything is sent; bad rows are reported with their
line numbers. Consecutive rows of one member travel in one ``placeOrders`` / ``cancelOrders``
transaction (the contract applies a batch exactly as one-by-one orders). Transactions are sent
back to back without waiting for each receipt -- an automining dev chain mines them in the order
they arrive -- except where a cancel needs the id of an order placed earlier in the file, or a
member's balance might not cover a batch's escrows. Then the replay waits for the chain to catch
up and checks the batch first; a batch the market would refuse is sent row by row, so exactly the
refused rows fail, as they would one by one (a reverted batch would take its good rows along).

CSV columns: ``action,ref,member,slot,side,price,qty_wh``. ``action`` is ``place`` or ``cancel``;
a place row's ``ref`` names its order, a cancel row's ``ref`` names the place row (of the same
member, earlier in the file) whose order it cancels; cancel rows may leave the other columns
empty.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from peerwatt.config import MarketParams
from peerwatt.errors import ConflictError, ContractRevertError, InputError, NotFoundError
from peerwatt.market import Market, OrderRequest, Side, TxEvents
from peerwatt.slots import SlotClock
from peerwatt.transactions import Receipt
from peerwatt.units import MAX_QTY_WH, value_of

COLUMNS = ("action", "ref", "member", "slot", "side", "price", "qty_wh")
MAX_REPORTED_PROBLEMS = 8  # keep the one-line error readable
RECEIPT_CHECK_EVERY = 100  # transactions sent between looks at what is mined already


class Action(str, Enum):
    PLACE = "place"
    CANCEL = "cancel"


@dataclass(frozen=True)
class ReplayRow:
    """One checked CSV row; ``order`` is set for place rows."""

    line: int
    action: Action
    ref: str
    member: str
    order: OrderRequest | None = None


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str


class ReplayFileError(InputError):
    """The file has bad rows; nothing was sent."""

    def __init__(self, source: str, problems: list[RowProblem]) -> None:
        self.problems = problems
        shown = "; ".join(f"line {p.line}: {p.message}" for p in problems[:MAX_REPORTED_PROBLEMS])
        more = f"; and {len(problems) - MAX_REPORTED_PROBLEMS} more" if len(problems) > MAX_REPORTED_PROBLEMS else ""
        rows = "row" if len(problems) == 1 else "rows"
        super().__init__(f"{source}: {len(problems)} bad {rows}, nothing sent: {shown}{more}")


class ReplayFailedError(ConflictError):
    """Some rows were refused on chain (the others were applied)."""


# ----------------------------------------------------------------- parsing


@dataclass(frozen=True)
class CommunityRules:
    """What a row must satisfy on chain: a known member, the market's price band and tick, its
    minimum quantity, a slot still open at chain time ``now``."""

    members: Collection[str]
    params: MarketParams
    clock: SlotClock
    now: int
    price_tick: int = 1

    def problem(self, row: ReplayRow) -> str | None:
        if row.member not in self.members:
            return f"unknown member {row.member!r}"
        order = row.order
        if order is None:
            return None
        params = self.params
        if not params.min_price_per_kwh <= order.price_per_kwh <= params.max_price_per_kwh:
            return (
                f"price {order.price_per_kwh} outside the band [{params.min_price_per_kwh}, {params.max_price_per_kwh}]"
            )
        if order.price_per_kwh % self.price_tick:
            return f"price {order.price_per_kwh} not a multiple of the price tick {self.price_tick}"
        if order.qty_wh < params.min_qty_wh:
            return f"qty_wh {order.qty_wh} below the minimum {params.min_qty_wh}"
        if order.qty_wh > MAX_QTY_WH:
            return f"qty_wh {order.qty_wh} above the maximum {MAX_QTY_WH}"
        if not self.clock.is_open(order.slot, self.now):
            return (
                f"slot {order.slot} closed for trading at {self.clock.gate_closure(order.slot)} (chain time {self.now})"
            )
        return None


def parse_rows(lines: Iterable[str], source: str = "CSV", rules: CommunityRules | None = None) -> list[ReplayRow]:
    """Parses and checks a replay CSV (syntax, values, refs and, given ``rules``, the
    community's limits); raises ReplayFileError listing every bad row."""
    reader = csv.reader(lines)
    problems: list[RowProblem] = []
    header = next(reader, None)
    if header is None:
        raise ReplayFileError(source, [RowProblem(1, "empty file; expected a header " + ",".join(COLUMNS))])
    header = [name.strip().lower() for name in header]
    missing = [name for name in COLUMNS if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        detail = ", ".join(
            part
            for part in (
                f"missing {','.join(missing)}" if missing else "",
                f"unknown {','.join(unknown)}" if unknown else "",
                "duplicate columns" if len(set(header)) != len(header) else "",
            )
            if part
        )
        raise ReplayFileError(source, [RowProblem(1, f"header must name the columns {','.join(COLUMNS)} ({detail})")])

    rows: list[ReplayRow] = []
    placed: dict[str, ReplayRow] = {}  # ref -> its place row
    cancelled: dict[str, int] = {}  # ref -> line of the cancel row
    for fields in reader:
        line = reader.line_num
        if not fields or all(not value.strip() for value in fields):
            continue  # blank line
        if len(fields) != len(header):
            problems.append(RowProblem(line, f"expected {len(header)} fields, got {len(fields)}"))
            continue
        values = {name: value.strip() for name, value in zip(header, fields, strict=True)}
        try:
            row = _parse_row(line, values)
        except InputError as exc:
            problems.append(RowProblem(line, str(exc)))
            continue
        problem = _check_ref(row, placed, cancelled) or (rules.problem(row) if rules is not None else None)
        if problem:
            problems.append(RowProblem(line, problem))
            continue
        rows.append(row)
    if problems:
        raise ReplayFileError(source, problems)
    return rows


def _parse_row(line: int, values: dict[str, str]) -> ReplayRow:
    action_text = values["action"].lower()
    try:
        action = Action(action_text)
    except ValueError:
        raise InputError(f"action must be place or cancel, got {values['action']!r}") from None
    if not values["ref"]:
        raise InputError("ref is empty")
    if not values["member"]:
        raise InputError("member is empty")
    if action is Action.CANCEL:
        return ReplayRow(line, action, values["ref"], values["member"])
    side_text = values["side"].lower()
    if side_text not in (Side.BUY.value, Side.SELL.value):
        raise InputError(f"side must be buy or sell, got {values['side']!r}")
    order = OrderRequest(
        slot=_integer(values, "slot"),
        side=Side(side_text),
        price_per_kwh=_integer(values, "price"),
        qty_wh=_integer(values, "qty_wh"),
    )
    return ReplayRow(line, action, values["ref"], values["member"], order)


def _integer(values: dict[str, str], column: str) -> int:
    text = values[column]
    if not text.isdigit():  # no sign, no decimals, no exponent: integers only (DESIGN.md section 2)
        raise InputError(f"{column} must be a non-negative integer, got {text!r}")
    return int(text)


def _check_ref(row: ReplayRow, placed: dict[str, ReplayRow], cancelled: dict[str, int]) -> str | None:
    """Why ``row``'s ref is inconsistent with the rows before it (None if it is fine); records it."""
    if row.action is Action.PLACE:
        if row.ref in placed:
            return f"ref {row.ref!r} already used on line {placed[row.ref].line}"
        placed[row.ref] = row
        return None
    target = placed.get(row.ref)
    if target is None:
        return f"cancel names ref {row.ref!r}, which no earlier place row has"
    if target.member != row.member:
        return f"ref {row.ref!r} (line {target.line}) is an order of {target.member}, not of {row.member}"
    if row.ref in cancelled:
        return f"ref {row.ref!r} is already cancelled on line {cancelled[row.ref]}"
    cancelled[row.ref] = row.line
    return None


def read_rows(path: Path, rules: CommunityRules | None = None) -> list[ReplayRow]:
    """Parses and checks the replay file at ``path``."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return parse_rows(handle, str(path), rules)
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {path}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from None


# ---------------------------------------------------------------- batching


@dataclass(frozen=True)
class Batch:
    """Consecutive rows of one member and one action: one transaction."""

    member: str
    action: Action
    rows: tuple[ReplayRow, ...]


def plan_batches(rows: Iterable[ReplayRow], max_places: int, max_cancels: int) -> list[Batch]:
    """Groups consecutive rows of the same member and action, at most ``max_places`` orders
    or ``max_cancels`` cancellations per transaction."""
    batches: list[Batch] = []
    current: list[ReplayRow] = []
    for row in rows:
        limit = max_places if row.action is Action.PLACE else max_cancels
        if current and (
            current[0].member != row.member or current[0].action is not row.action or len(current) >= limit
        ):
            batches.append(Batch(current[0].member, current[0].action, tuple(current)))
            current = []
        current.append(row)
    if current:
        batches.append(Batch(current[0].member, current[0].action, tuple(current)))
    return batches


# --------------------------------------------------------------- execution


@dataclass(frozen=True)
class RowFailure:
    lines: tuple[int, ...]
    reason: str

    def describe(self) -> str:
        if len(self.lines) == 1:
            return f"line {self.lines[0]}: {self.reason}"
        return f"lines {self.lines[0]}-{self.lines[-1]} (one transaction): {self.reason}"


@dataclass
class ReplayResult:
    rows: int
    transactions: int = 0
    placed: int = 0
    cancelled: int = 0
    trades: int = 0
    seconds: float = 0.0
    order_ids: dict[str, int] = field(default_factory=dict)  # ref -> order id, file order
    failures: list[RowFailure] = field(default_factory=list)

    @property
    def orders_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _escrows(rows: Iterable[ReplayRow]) -> int:
    """What the rows' buy orders escrow in full."""
    return sum(
        value_of(row.order.qty_wh, row.order.price_per_kwh)
        for row in rows
        if row.order is not None and row.order.side is Side.BUY
    )


class _Replayer:
    """Sends the batches of a checked file and collects what they did."""

    def __init__(self, market: Market, rows: list[ReplayRow]) -> None:
        self.market = market
        self.sender = market.sender
        self.rows = rows
        self.sent: list[tuple[Batch, str]] = []
        self.tx_of_ref: dict[str, tuple[str, int]] = {}  # ref -> (tx hash, index in its batch)
        self.receipts: dict[str, Receipt] = {}
        self.balance_floor: dict[str, int] = {}  # member address -> lower bound of its balance
        self.failure_reasons: dict[str, str] = {}  # tx hash -> why it reverted
        self.checked = 0  # self.sent[:checked] have their receipts
        self.result = ReplayResult(rows=len(rows))

    def run(self) -> ReplayResult:
        batches = plan_batches(
            self.rows, self.market.max_orders_per_transaction(), self.market.max_cancels_per_transaction()
        )
        started = time.perf_counter()
        for batch in batches:
            if batch.action is Action.PLACE:
                self._send_places(batch)
            else:
                self._send_cancels(batch)
            if len(self.sent) - self.checked >= RECEIPT_CHECK_EVERY:
                self._check_mined()
        self._collect()
        self.result.seconds = time.perf_counter() - started
        self.result.order_ids = {
            row.ref: self.result.order_ids[row.ref] for row in self.rows if row.ref in self.result.order_ids
        }
        return self.result

    def _member(self, batch: Batch) -> str:
        return self.market.deployment.member_address(batch.member)

    def _send_places(self, batch: Batch) -> None:
        """Sends a place batch without waiting, unless the member's balance might not cover
        its escrows: then the batch is checked on the state after everything sent before, and
        if it would revert, its rows go one by one so that exactly the refused rows fail."""
        member = self._member(batch)
        if self._covered(member, batch.rows):
            self._send(batch, member)
            return
        self._sync()
        self.balance_floor[member] = self.market.balance_of(member)
        if self._covered(member, batch.rows):
            self._send(batch, member)
            return
        try:
            self.market.simulate(member, self._place_data(batch.rows))
        except ContractRevertError:
            self._send_one_by_one(batch, member)
            return
        self._send(batch, member)
        # it fits although the lower bound said it might not: keep the bound a lower bound
        self.balance_floor[member] -= _escrows(batch.rows)

    def _send_one_by_one(self, batch: Batch, member: str) -> None:
        """Each row is checked on the state after the previous one and sent only if the market
        accepts it; refused rows are recorded as failures."""
        for row in batch.rows:
            try:
                self.market.simulate(member, self._place_data((row,)))
            except ContractRevertError as exc:
                self.result.failures.append(RowFailure((row.line,), str(exc)))
                continue
            self._send(Batch(batch.member, batch.action, (row,)), member)
            self._sync()
        self.balance_floor[member] = self.market.balance_of(member)

    def _covered(self, member: str, rows: tuple[ReplayRow, ...]) -> bool:
        """Whether the member's balance surely covers the rows' buy escrows; if so, books them.

        A buy takes at most its full escrow from the balance (less if it trades below its
        limit) and other members' orders never lower it, so a running lower bound that assumes
        full escrows is safe without waiting for receipts."""
        if member not in self.balance_floor:
            self.balance_floor[member] = self.market.balance_of(member)  # pending rows only add
        floor = self.balance_floor[member]
        for row in rows:
            if row.order is not None and row.order.side is Side.BUY:
                floor -= value_of(row.order.qty_wh, row.order.price_per_kwh)
                if floor < 0:
                    return False
        self.balance_floor[member] = floor
        return True

    def _place_data(self, rows: tuple[ReplayRow, ...]) -> str:
        return self.market.place_orders_data(row.order for row in rows if row.order is not None)

    def _send(self, batch: Batch, member: str) -> None:
        tx_hash = self.sender.send(
            member, self.market.address, self._place_data(batch.rows), gas=self.market.place_gas(len(batch.rows))
        )
        self.sent.append((batch, tx_hash))
        for index, row in enumerate(batch.rows):
            self.tx_of_ref[row.ref] = (tx_hash, index)

    def _sync(self) -> None:
        """Waits until everything sent so far is mined: on an automining chain the last
        transaction's receipt says so."""
        if self.sent:
            self._receipt(self.sent[-1][1])

    def _send_cancels(self, batch: Batch) -> None:
        """Cancels need the ids of their orders, and whether those still rest: wait until
        everything sent so far is mined (on an automining chain, the last transaction's
        receipt says so) and drop cancels of orders that are gone -- one by one, they would
        revert with MarketOrderNotFound; in a batch they would take the others down too."""
        self._sync()
        order_ids: list[int] = []
        kept: list[ReplayRow] = []
        for row in batch.rows:
            order_id = self._order_id(row.ref)
            if order_id is None:
                place_line = self._place_line(row.ref)
                self.result.failures.append(RowFailure((row.line,), f"its order (line {place_line}) was not placed"))
                continue
            try:
                self.market.order(order_id)
            except ContractRevertError as exc:
                self.result.failures.append(
                    RowFailure((row.line,), f"order {order_id} is no longer in the book: {exc}")
                )
                continue
            order_ids.append(order_id)
            kept.append(row)
        if not order_ids:
            return
        data = self.market.cancel_orders_data(order_ids)
        tx_hash = self.sender.send(
            self._member(batch), self.market.address, data, gas=self.market.cancel_gas(len(order_ids))
        )
        self.sent.append((Batch(batch.member, batch.action, tuple(kept)), tx_hash))

    def _place_line(self, ref: str) -> int:
        return next(row.line for row in self.rows if row.ref == ref and row.action is Action.PLACE)

    def _receipt(self, tx_hash: str) -> Receipt:
        if tx_hash not in self.receipts:
            self.receipts[tx_hash] = self.sender.receipt(tx_hash)
        return self.receipts[tx_hash]

    def _order_id(self, ref: str) -> int | None:
        """Id of the order placed by row ``ref`` (waits for its transaction); None if it failed."""
        if ref not in self.tx_of_ref:
            return None  # refused before it was sent
        tx_hash, index = self.tx_of_ref[ref]
        receipt = self._receipt(tx_hash)
        if not receipt.status:
            return None
        return TxEvents.of(receipt, self.market.address).placed[index]

    def _check_mined(self) -> None:
        """Collects the receipts mined so far without waiting, and explains failed
        transactions while the node still holds the state they ran on (anvil keeps a bounded
        history, see peerwatt.localchain)."""
        unchecked = [tx_hash for _, tx_hash in self.sent[self.checked :] if tx_hash not in self.receipts]
        self.receipts.update(self.sender.mined_so_far(unchecked))
        while self.checked < len(self.sent) and self.sent[self.checked][1] in self.receipts:
            receipt = self.receipts[self.sent[self.checked][1]]
            if not receipt.status:
                self.failure_reasons[receipt.tx_hash] = str(self.sender.failure_reason(receipt))
            self.checked += 1

    def _collect(self) -> None:
        pending = [tx_hash for _, tx_hash in self.sent if tx_hash not in self.receipts]
        for receipt in self.sender.receipts(pending):
            self.receipts[receipt.tx_hash] = receipt
        result = self.result
        result.transactions = len(self.sent)
        for batch, tx_hash in self.sent:
            receipt = self.receipts[tx_hash]
            lines = tuple(row.line for row in batch.rows)
            if not receipt.status:
                reason = self.failure_reasons.get(tx_hash) or str(self.sender.failure_reason(receipt))
                result.failures.append(RowFailure(lines, reason))
                continue
            events = TxEvents.of(receipt, self.market.address)
            result.trades += len(events.trades)
            if batch.action is Action.PLACE:
                result.placed += len(events.placed)
                result.order_ids.update(zip((row.ref for row in batch.rows), events.placed, strict=True))
            else:
                result.cancelled += len(batch.rows)
        result.failures.sort(key=lambda failure: failure.lines[0])


def replay(market: Market, rows: list[ReplayRow]) -> ReplayResult:
    """Applies checked rows to the market in file order (see the module docstring)."""
    return _Replayer(market, rows).run()


def write_order_ids(path: Path, order_ids: dict[str, int]) -> None:
    """Writes ``ref,order_id`` for every placed row."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ref", "order_id"])
        writer.writerows(order_ids.items())

"""Reference model of the CDA market (DESIGN.md section 4) in plain Python.

The model reproduces ``contracts/CdaMarket.sol`` (with the registry parts the market reads)
with exactly the contract's integer semantics, so that tests and auditors can compute what the
chain must show: books, balances, positions, events and which custom error a bad call reverts
with. It needs no chain and no Brownie.

Rules (pinned in DESIGN.md section 4, mirrored here step by step):

* One book per slot, two sides. Resting orders are kept per price level in a FIFO queue;
  an incoming order matches the best price of the other side first, FIFO within a price,
  and trades at the *resting* order's price, ``value_of(qty, price)`` (rounded down).
* A buy order's escrow is ``value_of(qty, limit)``; the balance is checked against it up
  front. The taker's balance then decreases by the value of its fills plus the escrow of
  the rested remainder ``value_of(remaining, limit)``; a buyer that trades below its limit
  thus keeps the difference.
* A resting buy order that is partially filled releases ``value_of(rem, L) - value_of(rem - q,
  L) - value_of(q, L)`` (0 or 1 base unit) per fill; the contract accumulates it as
  ``escrow_dust`` in the order and pays it back to the owner's balance when the order leaves
  the book (or at once, if the 24-bit field would overflow).
* Self-trade prevention: a resting order of the incoming order's member that matching
  reaches is cancelled (reason SELF_TRADE, escrow released) and matching goes on.
* Price levels are FIFO queues of places (``peerwatt.order_ids``): an order's id is its place,
  a cancellation leaves a gap in its level unless it cancels the head (the level's places
  are dropped when its last order leaves), and matching steps over gaps one by one.
* Fill cap: matching stops after ``fill_cap`` fills or after ``fill_cap`` other steps
  (self-trade cancellations and gaps). If it stops that way while the book still crosses
  (best opposite price crosses the limit, whatever its owner), the rest of the incoming order
  is cancelled (reason FILL_CAP, nothing is taken from the balance for it); otherwise it rests.
* Order ids: an order that does not cross the book rests at once and takes its place in its
  level; one that crosses takes the first place of a fresh level at its limit price (a new
  slot nonce) before matching -- the book never crosses, so that level is empty -- and rests
  there if anything is left. Its events: ``OrderPlaced``, then each fill (``TradeExecuted``)
  and self-trade cancellation in matching order, then the FILL_CAP cancellation if any.
* Orders are placed and cancelled only before their slot's gate closure; from gate closure
  on anyone may expire them (reason EXPIRED, escrow back to the owner).
* Fills are booked in positions per (slot, member): bought/sold Wh, paid/received base
  units. A buyer's payment stays in the market (it is neither balance nor escrow any more),
  a seller's proceeds are not credited to its balance: both settle after delivery.

Every mutating call is a transaction: it either completes and records its events (in
:attr:`OrderBookModel.last_events` and the cumulative :attr:`OrderBookModel.log`), or raises
:class:`ModelRevert` -- carrying the same custom error name and arguments as the contract --
and changes nothing. Order ids are those of ``peerwatt.order_ids``, as on chain; member ids are
sequential from 1.

Time is passed explicitly (``now``: the block timestamp of the transaction) to the calls that
depend on it. Addresses are plain strings compared as given; use checksummed ones (as web3
returns them). The token side of deposits and withdrawals (allowance, wallet balance) is out of
scope: the model assumes the ERC-20 transfer succeeds and tracks what the market holds.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field, fields
from enum import IntEnum
from typing import TypeAlias

from peerwatt.config import MarketParams
from peerwatt.errors import ContractRevertError
from peerwatt.order_ids import first_seq, order_id_at
from peerwatt.slots import SlotClock
from peerwatt.units import MAX_QTY_WH, value_of

__all__ = [
    "MAX_QTY_WH",
    "ZERO_ADDRESS",
    "CancelReason",
    "Deposited",
    "Event",
    "MarketParamsUpdated",
    "MemberAdded",
    "MemberRemoved",
    "ModelRevert",
    "OrderBookModel",
    "OrderCancelled",
    "OrderPlaced",
    "OrderRequest",
    "OrderView",
    "Position",
    "TradeExecuted",
    "Withdrawn",
]

ZERO_ADDRESS = "0x" + "0" * 40

UINT24_MAX = 2**24 - 1  # Order.escrowDust
MAX_FILL_CAP = 256  # CommunityRegistry.MAX_FILL_CAP
MAX_PRICE_TICKS = 2**24 - 1  # CommunityRegistry.MAX_PRICE_TICKS
UINT64_MAX = 2**64 - 1  # Position fields
UINT128_MAX = 2**128 - 1  # Account.balance
PANIC_ARITHMETIC_OVERFLOW = 0x11  # Solidity Panic(uint256) code of checked arithmetic


class CancelReason(IntEnum):
    """Mirrors ICdaMarket.CancelReason (same numeric values as the ABI's uint8)."""

    BY_MEMBER = 0
    SELF_TRADE = 1
    FILL_CAP = 2
    EXPIRED = 3


class ModelRevert(ContractRevertError):
    """The call reverts on chain: ``error`` is the custom error's name and ``error_args`` its
    arguments by name, in ABI order (``Panic`` with ``code`` for checked-arithmetic overflow)."""

    def __init__(self, error: str, **args: object) -> None:
        super().__init__(error, dict(args))

    @property
    def values(self) -> tuple[object, ...]:
        """The error's arguments in ABI order."""
        return tuple(self.error_args.values())


# ------------------------------------------------------------------------------- records


class _Record:
    """A frozen record whose fields are in the ABI order of its Solidity counterpart."""

    def as_tuple(self) -> tuple[object, ...]:
        """Field values in ABI order (compare with an event's or a struct's values)."""
        return astuple(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]


@dataclass(frozen=True)
class OrderRequest(_Record):
    """One order of a batch (ICdaMarket.OrderRequest)."""

    slot: int
    is_buy: bool
    price_per_kwh: int
    qty_wh: int


@dataclass(frozen=True)
class OrderView(_Record):
    """A resting order as ICdaMarket.getOrder/bookSide return it."""

    order_id: int
    member: str
    slot: int
    is_buy: bool
    price_per_kwh: int
    remaining_wh: int
    escrow: int  # tokens held for the order: value_of(remaining, price) + escrow dust (buys)


@dataclass(frozen=True)
class Position(_Record):
    """ICdaMarket.Position: a member's trades in one slot."""

    bought_wh: int = 0
    sold_wh: int = 0
    paid: int = 0
    received: int = 0


# ------------------------------------------------------------------------------- events


class _Event(_Record):
    @property
    def name(self) -> str:
        """The Solidity event's name (each event class is named after it)."""
        return type(self).__name__


@dataclass(frozen=True)
class Deposited(_Event):
    member: str
    amount: int
    balance: int


@dataclass(frozen=True)
class Withdrawn(_Event):
    member: str
    amount: int
    balance: int


@dataclass(frozen=True)
class OrderPlaced(_Event):
    slot: int
    order_id: int
    member: str
    is_buy: bool
    price_per_kwh: int
    qty_wh: int


@dataclass(frozen=True)
class OrderCancelled(_Event):
    slot: int
    order_id: int
    member: str
    remaining_wh: int
    escrow_released: int
    reason: CancelReason


@dataclass(frozen=True)
class TradeExecuted(_Event):
    """A fill at the resting (maker) order's price. This is also the model's trade record."""

    slot: int
    buyer: str
    seller: str
    buy_order_id: int
    sell_order_id: int
    price_per_kwh: int
    qty_wh: int
    maker_is_buy: bool

    @property
    def value(self) -> int:
        """Base units the buyer pays and the seller receives for this fill."""
        return value_of(self.qty_wh, self.price_per_kwh)


@dataclass(frozen=True)
class MemberAdded(_Event):
    member: str
    member_id: int


@dataclass(frozen=True)
class MemberRemoved(_Event):
    member: str
    member_id: int


@dataclass(frozen=True)
class MarketParamsUpdated(_Event):
    min_price_per_kwh: int
    max_price_per_kwh: int
    min_qty_wh: int
    gate_seconds: int
    fill_cap: int


Event: TypeAlias = (
    Deposited
    | Withdrawn
    | OrderPlaced
    | OrderCancelled
    | TradeExecuted
    | MemberAdded
    | MemberRemoved
    | MarketParamsUpdated
)


# -------------------------------------------------------------------------------- state


@dataclass
class _Account:
    member_id: int
    active: bool
    balance: int = 0


@dataclass
class _Order:
    order_id: int
    owner: str
    slot: int
    is_buy: bool
    price_per_kwh: int
    remaining_wh: int
    escrow_dust: int = 0

    @property
    def escrow(self) -> int:
        """What the market holds for this order (CdaMarket._escrowOf)."""
        return value_of(self.remaining_wh, self.price_per_kwh) + self.escrow_dust if self.is_buy else 0


@dataclass
class _Level:
    """CdaMarket.Level: places head..tail, ``live`` of them holding orders (the rest are gaps)."""

    head: int
    tail: int
    live: int = 0


@dataclass
class _Position:
    bought_wh: int = 0
    sold_wh: int = 0
    paid: int = 0
    received: int = 0


@dataclass
class _State:
    """Everything a transaction may change; copied to roll a failed one back."""

    params: MarketParams
    accounts: dict[str, _Account] = field(default_factory=dict)
    member_addresses: dict[int, str] = field(default_factory=dict)
    last_member_id: int = 0
    member_count: int = 0
    orders: dict[int, _Order] = field(default_factory=dict)
    # (slot, is_buy) -> price -> level; empty levels are dropped
    levels: dict[tuple[int, bool], dict[int, _Level]] = field(default_factory=dict)
    nonces: dict[int, int] = field(default_factory=dict)  # slot -> BookTop.nonce
    positions: dict[tuple[int, str], _Position] = field(default_factory=dict)
    token_held: int = 0  # deposits minus withdrawals: the market's token balance


def _checked_add(a: int, b: int, bits: int) -> int:
    """Solidity checked ``a + b`` on uintN: Panic(0x11) on overflow."""
    if a + b > 2**bits - 1:
        raise ModelRevert("Panic", code=PANIC_ARITHMETIC_OVERFLOW)
    return a + b


def _to_uint(value: int, bits: int) -> int:
    """OpenZeppelin SafeCast.toUintN."""
    if value > 2**bits - 1:
        raise ModelRevert("SafeCastOverflowedUintDowncast", bits=bits, value=value)
    return value


def _check_params(params: MarketParams, price_tick: int) -> None:
    """CommunityRegistry._setMarketParams checks, in its order."""
    low, high = params.min_price_per_kwh, params.max_price_per_kwh
    if low == 0 or low > high or low % price_tick or high % price_tick or high // price_tick > MAX_PRICE_TICKS:
        raise ModelRevert(
            "RegistryInvalidPriceBand",
            minPricePerKwh=params.min_price_per_kwh,
            maxPricePerKwh=params.max_price_per_kwh,
        )
    if params.min_qty_wh == 0:
        raise ModelRevert("RegistryInvalidMinQty", minQtyWh=params.min_qty_wh)
    if params.fill_cap == 0 or params.fill_cap > MAX_FILL_CAP:
        raise ModelRevert("RegistryInvalidFillCap", fillCap=params.fill_cap)


# -------------------------------------------------------------------------------- model


class OrderBookModel:
    """The market of one community: members, balances, one order book per slot, positions.

    Usage: ``model = OrderBookModel(epoch, slot_seconds, MarketParams(...))``, then the same
    calls as the contract with the caller first (``model.place_order(member, slot, True,
    250_000, 1_000, now=timestamp)``); views return the contract's structs as records.
    """

    def __init__(
        self, epoch: int, slot_seconds: int, params: MarketParams | None = None, *, price_tick: int = 1
    ) -> None:
        """Mirrors the CdaMarket constructor (clock, price tick and market parameters; the admin
        and the tariffs do not affect the order book). A tick of 1 allows every price."""
        params = MarketParams() if params is None else params
        if slot_seconds == 0:
            raise ModelRevert("RegistryInvalidClock", epoch=epoch, slotSeconds=slot_seconds)
        if price_tick == 0:
            raise ModelRevert("RegistryInvalidPriceTick", priceTick=price_tick)
        self.price_tick = price_tick
        _check_params(params, price_tick)
        self.epoch = epoch
        self.slot_seconds = slot_seconds
        self._state = _State(params=params)
        self.log: list[Event] = []  # every event of every successful call, in order
        self.last_events: tuple[Event, ...] = ()  # the events of the last successful call
        self._pending: list[Event] = []

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _transaction(self) -> Iterator[_State]:
        """Runs one call atomically: on ModelRevert the state is restored and nothing logged."""
        saved = copy.deepcopy(self._state)
        self._pending = []
        try:
            yield self._state
        except BaseException:
            self._state = saved
            self._pending = []
            raise
        self.last_events = tuple(self._pending)
        self.log.extend(self._pending)
        self._pending = []

    def _emit(self, event: Event) -> None:
        self._pending.append(event)

    # ---------------------------------------------------------------------- registry

    @property
    def params(self) -> MarketParams:
        """Current market parameters (ICommunityRegistry.marketParams)."""
        return self._state.params

    @property
    def clock(self) -> SlotClock:
        """The slot clock with the current gate lead time (ICommunityRegistry.slotClock)."""
        return SlotClock(self.epoch, self.slot_seconds, self._state.params.gate_seconds)

    def set_market_params(self, params: MarketParams) -> None:
        """ICommunityRegistry.setMarketParams (role checks are not modelled)."""
        with self._transaction() as state:
            _check_params(params, self.price_tick)
            state.params = params
            self._emit(MarketParamsUpdated(*params.as_tuple()))

    def add_member(self, account: str) -> int:
        """ICommunityRegistry.addMember: registers or re-activates ``account``; returns its id."""
        with self._transaction() as state:
            if int(account, 16) == 0:
                raise ModelRevert("RegistryZeroAddress")
            acc = state.accounts.get(account)
            if acc is not None and acc.active:
                raise ModelRevert("RegistryAlreadyMember", account=account)
            if acc is None:
                state.last_member_id += 1
                acc = state.accounts[account] = _Account(member_id=state.last_member_id, active=False)
                state.member_addresses[acc.member_id] = account
            acc.active = True
            state.member_count += 1
            self._emit(MemberAdded(account, acc.member_id))
            return acc.member_id

    def remove_member(self, account: str) -> None:
        """ICommunityRegistry.removeMember: the member keeps its balance and resting orders."""
        with self._transaction() as state:
            acc = state.accounts.get(account)
            if acc is None or not acc.active:
                raise ModelRevert("RegistryNotMember", account=account)
            acc.active = False
            state.member_count -= 1
            self._emit(MemberRemoved(account, acc.member_id))

    def member_of(self, account: str) -> tuple[int, bool]:
        """(member id or 0, active)."""
        acc = self._state.accounts.get(account)
        return (0, False) if acc is None else (acc.member_id, acc.active)

    def member_address(self, member_id: int) -> str:
        return self._state.member_addresses.get(member_id, ZERO_ADDRESS)

    @property
    def member_count(self) -> int:
        """Number of active members."""
        return self._state.member_count

    @property
    def members(self) -> tuple[str, ...]:
        """Every account ever registered, by member id."""
        return tuple(self._state.member_addresses[i] for i in sorted(self._state.member_addresses))

    # ---------------------------------------------------------------------- balances

    def deposit(self, member: str, amount: int) -> None:
        """ICdaMarket.deposit (the token transfer is assumed to succeed)."""
        with self._transaction() as state:
            if amount == 0:
                raise ModelRevert("MarketZeroAmount")
            acc = state.accounts.get(member)
            if acc is None or not acc.active:
                raise ModelRevert("MarketNotMember", account=member)
            acc.balance = _to_uint(acc.balance + amount, 128)
            state.token_held += amount
            self._emit(Deposited(member, amount, acc.balance))

    def withdraw(self, member: str, amount: int) -> None:
        """ICdaMarket.withdraw: anyone with a balance, member or not."""
        with self._transaction() as state:
            if amount == 0:
                raise ModelRevert("MarketZeroAmount")
            balance = self.balance_of(member)
            if balance < amount:
                raise ModelRevert("MarketInsufficientBalance", member=member, balance=balance, needed=amount)
            state.accounts[member].balance = balance - amount
            state.token_held -= amount
            self._emit(Withdrawn(member, amount, balance - amount))

    def balance_of(self, member: str) -> int:
        acc = self._state.accounts.get(member)
        return 0 if acc is None else acc.balance

    # ------------------------------------------------------------------------ orders

    def place_order(self, member: str, slot: int, is_buy: bool, price_per_kwh: int, qty_wh: int, *, now: int) -> int:
        """ICdaMarket.placeOrder at block time ``now``; returns the new order id."""
        return self.place_orders(member, [OrderRequest(slot, is_buy, price_per_kwh, qty_wh)], now=now)[0]

    def place_orders(self, member: str, orders: Sequence[OrderRequest], *, now: int) -> list[int]:
        """ICdaMarket.placeOrders: the orders in sequence, all or nothing."""
        with self._transaction() as state:
            acc = state.accounts.get(member)
            if acc is None or not acc.active:
                raise ModelRevert("MarketNotMember", account=member)
            # The contract keeps the taker's balance in memory (uint256) for the whole call and
            # writes it back once, with SafeCast.
            balance = acc.balance
            order_ids = []
            for request in orders:
                order_id, balance = self._place(state, member, balance, request, now)
                order_ids.append(order_id)
            acc.balance = _to_uint(balance, 128)
            return order_ids

    def _validate(self, state: _State, member: str, balance: int, request: OrderRequest, now: int) -> None:
        """CdaMarket._validate, checks in the contract's order."""
        params = state.params
        price = request.price_per_kwh
        if price < params.min_price_per_kwh or price > params.max_price_per_kwh:
            raise ModelRevert(
                "MarketPriceOutOfBand",
                pricePerKwh=price,
                minPricePerKwh=params.min_price_per_kwh,
                maxPricePerKwh=params.max_price_per_kwh,
            )
        if price % self.price_tick:
            raise ModelRevert("MarketPriceOffTick", pricePerKwh=price, priceTick=self.price_tick)
        if request.qty_wh < params.min_qty_wh:
            raise ModelRevert("MarketQuantityTooSmall", qtyWh=request.qty_wh, minQtyWh=params.min_qty_wh)
        if request.qty_wh > MAX_QTY_WH:
            raise ModelRevert("MarketQuantityTooLarge", qtyWh=request.qty_wh, maxQtyWh=MAX_QTY_WH)
        closure = self.clock.gate_closure(request.slot)
        if now >= closure:
            raise ModelRevert("MarketGateClosed", slot=request.slot, gateClosure=closure, timestamp=now)
        if request.is_buy:
            escrow = value_of(request.qty_wh, price)
            if balance < escrow:
                raise ModelRevert("MarketInsufficientBalance", member=member, balance=balance, needed=escrow)

    def _place(self, state: _State, member: str, balance: int, request: OrderRequest, now: int) -> tuple[int, int]:
        """CdaMarket._place: validate, match, then rest or cancel the remainder.

        An order that crosses the best opposite price takes its id (the first place of a fresh
        level at its limit price, a new slot nonce) before matching; one that does not cross
        rests at once. Returns the order id and the taker's balance after the order."""
        self._validate(state, member, balance, request, now)
        slot, is_buy, limit, qty = request.slot, request.is_buy, request.price_per_kwh, request.qty_wh
        opposite = state.levels.setdefault((slot, not is_buy), {})
        if self._crossing_best(opposite, is_buy, limit) is None:
            order_id = self._rest(state, member, slot, is_buy, limit, qty, nonce=None)
            self._emit(OrderPlaced(slot, order_id, member, is_buy, limit, qty))
            return order_id, balance - (value_of(qty, limit) if is_buy else 0)

        nonce = self._next_nonce(state, slot)
        order_id = order_id_at(slot, is_buy, limit, first_seq(nonce))
        self._emit(OrderPlaced(slot, order_id, member, is_buy, limit, qty))
        remaining = qty
        traded_wh = traded_value = 0
        fills = skips = 0
        capped = False
        fill_cap = state.params.fill_cap
        while remaining and (best := self._crossing_best(opposite, is_buy, limit)) is not None:
            level = opposite[best]
            while remaining and level.live:
                if fills == fill_cap or skips == fill_cap:
                    capped = True
                    break
                maker = state.orders.get(order_id_at(slot, not is_buy, best, level.head))
                if maker is None:
                    level.head += 1  # a gap left by a cancellation
                    skips += 1
                elif maker.owner == member:
                    # self-trade prevention: the resting order goes, its escrow returns to the taker
                    del state.orders[maker.order_id]
                    level.head += 1
                    level.live -= 1
                    balance += maker.escrow
                    self._emit(
                        OrderCancelled(
                            slot, maker.order_id, member, maker.remaining_wh, maker.escrow, CancelReason.SELF_TRADE
                        )
                    )
                    skips += 1
                else:
                    fill_wh = min(maker.remaining_wh, remaining)
                    traded_value += self._fill_maker(state, maker, fill_wh, member, order_id)
                    if maker.remaining_wh == 0:
                        level.head += 1
                        level.live -= 1
                    remaining -= fill_wh
                    traded_wh += fill_wh
                    fills += 1
            if level.live:
                break  # filled (or capped) inside this level
            del opposite[best]

        if remaining:
            if capped:
                refunded = value_of(remaining, limit) if is_buy else 0
                self._emit(OrderCancelled(slot, order_id, member, remaining, refunded, CancelReason.FILL_CAP))
            else:
                self._rest(state, member, slot, is_buy, limit, remaining, nonce=nonce)
                if is_buy:
                    balance -= value_of(remaining, limit)
        if traded_wh:
            position = state.positions.setdefault((slot, member), _Position())
            if is_buy:
                balance -= traded_value
                position.bought_wh = _checked_add(position.bought_wh, traded_wh, 64)
                position.paid = _checked_add(position.paid, traded_value, 64)
            else:
                position.sold_wh = _checked_add(position.sold_wh, traded_wh, 64)
                position.received = _checked_add(position.received, traded_value, 64)
        return order_id, balance

    def _crossing_best(self, opposite: dict[int, _Level], is_buy: bool, limit: int) -> int | None:
        """CdaMarket._crossingBest: the other side's best price if it crosses ``limit``, else None."""
        best = self._best(opposite, not is_buy)
        return best if best is not None and (best <= limit if is_buy else best >= limit) else None

    @staticmethod
    def _next_nonce(state: _State, slot: int) -> int:
        """Takes the slot's next id nonce (CdaMarket's BookTop.nonce)."""
        state.nonces[slot] = state.nonces.get(slot, 0) + 1
        return state.nonces[slot]

    def _rest(
        self, state: _State, member: str, slot: int, is_buy: bool, price: int, remaining: int, nonce: int | None
    ) -> int:
        """CdaMarket._rest: appends the order at the tail of its level; returns its id. ``nonce``
        is the one an order that crossed the book took for its id (its level is empty), or None
        to take the level's next place."""
        levels = state.levels.setdefault((slot, is_buy), {})
        level = levels.get(price)
        if level is None:
            if nonce is None:
                nonce = self._next_nonce(state, slot)
            level = levels[price] = _Level(head=first_seq(nonce), tail=first_seq(nonce))
        else:
            assert nonce is None, "an order that crossed the book finds its own level empty"
            level.tail += 1
        level.live += 1
        order_id = order_id_at(slot, is_buy, price, level.tail)
        state.orders[order_id] = _Order(order_id, member, slot, is_buy, price, remaining)
        return order_id

    def _fill_maker(self, state: _State, maker: _Order, fill_wh: int, taker: str, taker_order_id: int) -> int:
        """CdaMarket._fillMaker: the one path that fills a resting order. Returns the value;
        ``maker.remaining_wh`` is what the maker has left."""
        price = maker.price_per_kwh
        value = value_of(fill_wh, price)
        maker_left = maker.remaining_wh - fill_wh
        position = state.positions.setdefault((maker.slot, maker.owner), _Position())
        dust = maker.escrow_dust
        if maker.is_buy:
            position.bought_wh = _checked_add(position.bought_wh, fill_wh, 64)
            position.paid = _checked_add(position.paid, value, 64)
            dust += value_of(maker.remaining_wh, price) - value_of(maker_left, price) - value
        else:
            position.sold_wh = _checked_add(position.sold_wh, fill_wh, 64)
            position.received = _checked_add(position.received, value, 64)

        maker.remaining_wh = maker_left
        if maker_left == 0:
            del state.orders[maker.order_id]
        elif dust <= UINT24_MAX:
            maker.escrow_dust = dust
            dust = 0
        else:
            maker.escrow_dust = 0  # paid out now rather than overflow the field
        if dust:
            acc = state.accounts[maker.owner]
            acc.balance = _checked_add(acc.balance, dust, 128)

        if maker.is_buy:
            trade = TradeExecuted(maker.slot, maker.owner, taker, maker.order_id, taker_order_id, price, fill_wh, True)
        else:
            trade = TradeExecuted(maker.slot, taker, maker.owner, taker_order_id, maker.order_id, price, fill_wh, False)
        self._emit(trade)
        return value

    def cancel_order(self, member: str, order_id: int, *, now: int) -> None:
        """ICdaMarket.cancelOrder by ``member`` at block time ``now``."""
        self.cancel_orders(member, [order_id], now=now)

    def cancel_orders(self, member: str, order_ids: Sequence[int], *, now: int) -> None:
        """ICdaMarket.cancelOrders: in sequence, all or nothing."""
        with self._transaction() as state:
            for order_id in order_ids:
                order = state.orders.get(order_id)
                if order is None:
                    raise ModelRevert("MarketOrderNotFound", orderId=order_id)
                if member != order.owner:
                    raise ModelRevert("MarketNotOrderOwner", orderId=order_id, caller=member, owner=order.owner)
                closure = self.clock.gate_closure(order.slot)
                if now >= closure:
                    raise ModelRevert("MarketGateClosed", slot=order.slot, gateClosure=closure, timestamp=now)
                self._remove(state, order, CancelReason.BY_MEMBER)

    def expire_orders(self, order_ids: Sequence[int], *, now: int) -> None:
        """ICdaMarket.expireOrders (anyone may call): orders already gone are skipped; one whose
        gate has not closed reverts the call."""
        with self._transaction() as state:
            for order_id in order_ids:
                order = state.orders.get(order_id)
                if order is None:
                    continue
                closure = self.clock.gate_closure(order.slot)
                if now < closure:
                    raise ModelRevert("MarketOrderNotExpired", orderId=order_id, gateClosure=closure, timestamp=now)
                self._remove(state, order, CancelReason.EXPIRED)

    def _remove(self, state: _State, order: _Order, reason: CancelReason) -> None:
        """CdaMarket._removeOrder plus the caller's credit: takes a resting order from anywhere
        in its level (a gap, unless it is the head) and returns its escrow to the owner."""
        levels = state.levels[(order.slot, order.is_buy)]
        level = levels[order.price_per_kwh]
        if level.live == 1:
            del levels[order.price_per_kwh]
        else:
            level.live -= 1
            if order_id_at(order.slot, order.is_buy, order.price_per_kwh, level.head) == order.order_id:
                level.head += 1
        del state.orders[order.order_id]
        owner = order.owner
        released = order.escrow
        self._emit(OrderCancelled(order.slot, order.order_id, owner, order.remaining_wh, released, reason))
        if released:
            acc = state.accounts[owner]
            acc.balance = _checked_add(acc.balance, released, 128)

    # ------------------------------------------------------------------------- views

    @staticmethod
    def _best(levels: dict[int, _Level], is_buy: bool) -> int | None:
        if not levels:
            return None
        return max(levels) if is_buy else min(levels)

    def get_order(self, order_id: int) -> OrderView:
        """ICdaMarket.getOrder: a resting order, or MarketOrderNotFound."""
        order = self._state.orders.get(order_id)
        if order is None:
            raise ModelRevert("MarketOrderNotFound", orderId=order_id)
        return self._view(order)

    def best_prices(self, slot: int) -> tuple[int, int]:
        """(best bid, best ask) of ``slot``, 0 for an empty side."""
        bids = self._state.levels.get((slot, True), {})
        asks = self._state.levels.get((slot, False), {})
        return (self._best(bids, True) or 0, self._best(asks, False) or 0)

    def book_side(self, slot: int, is_buy: bool, max_orders: int | None = None) -> list[OrderView]:
        """Resting orders of one side, best price first, FIFO within a price (ICdaMarket.bookSide;
        ``None`` means all)."""
        levels = self._state.levels.get((slot, is_buy), {})
        orders = self._state.orders
        views = [
            self._view(orders[order_id])
            for price in sorted(levels, reverse=is_buy)
            for seq in range(levels[price].head, levels[price].tail + 1)
            if (order_id := order_id_at(slot, is_buy, price, seq)) in orders
        ]
        return views if max_orders is None else views[:max_orders]

    def resting_orders(self) -> list[OrderView]:
        """Every resting order (any slot, side or owner), by id."""
        return [self._view(self._state.orders[i]) for i in sorted(self._state.orders)]

    def slots(self) -> list[int]:
        """Slots with resting orders."""
        return sorted({order.slot for order in self._state.orders.values()})

    def position_of(self, slot: int, member: str) -> Position:
        """ICdaMarket.positionOf (zeros for an unknown member or slot)."""
        position = self._state.positions.get((slot, member), _Position())
        return Position(position.bought_wh, position.sold_wh, position.paid, position.received)

    @property
    def trades(self) -> list[TradeExecuted]:
        """Every fill so far, in order."""
        return [event for event in self.log if isinstance(event, TradeExecuted)]

    # -------------------------------------------------------------------- accounting

    @property
    def token_held(self) -> int:
        """Settlement tokens the market holds: deposits minus withdrawals."""
        return self._state.token_held

    def total_balances(self) -> int:
        return sum(acc.balance for acc in self._state.accounts.values())

    def total_escrow(self) -> int:
        return sum(order.escrow for order in self._state.orders.values())

    def total_paid(self) -> int:
        """Trade payments held in positions until settlement."""
        return sum(position.paid for position in self._state.positions.values())

    def solvency_gap(self) -> int:
        """``token_held - (balances + escrow + paid)``: zero if the model is consistent (the
        contract's solvency invariant, DESIGN.md section 6)."""
        return self.token_held - (self.total_balances() + self.total_escrow() + self.total_paid())

    def _view(self, order: _Order) -> OrderView:
        return OrderView(
            order.order_id,
            order.owner,
            order.slot,
            order.is_buy,
            order.price_per_kwh,
            order.remaining_wh,
            order.escrow,
        )

"""Client of a deployed CdaMarket: orders, the book, balances and trades.

Every state-changing method first runs the transaction as a call, so a request the market
would refuse raises :class:`ContractRevertError` with the contract's custom error and sends
nothing. Trades are read back from ``TradeExecuted`` logs, in execution order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from web3 import Web3

from peerwatt import artifacts
from peerwatt.chain import latest_timestamp
from peerwatt.config import MarketParams
from peerwatt.deployment import Deployment
from peerwatt.errors import ContractRevertError, InputError
from peerwatt.events import events
from peerwatt.order_ids import ORDER_ID_BITS
from peerwatt.slots import SlotClock
from peerwatt.transactions import Receipt, TxSender, call, eth_call
from peerwatt.units import value_of

MARKET = "CdaMarket"

# Gas bounds for transactions sent without an estimate (an estimate runs on the state before
# earlier, still unmined transactions, so it can be too low). An order costs at most its own
# bookkeeping plus `fill_cap` fills and `fill_cap` other steps: self-trade cancellations and gaps
# (benchmarks/gas.py: a fill costs 12k-27k, resting a new price level up to 115k); the bounds
# leave ample room.
ORDER_BASE_GAS = 250_000
FILL_GAS = 60_000
SELF_CANCEL_GAS = 40_000
CANCEL_GAS = 70_000
TX_BASE_GAS = 50_000
BLOCK_GAS_SHARE = 0.9  # keep batch transactions below the block gas limit


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def is_buy(self) -> bool:
        return self is Side.BUY

    @classmethod
    def of(cls, is_buy: bool) -> Side:
        return cls.BUY if is_buy else cls.SELL


class CancelReason(int, Enum):
    """Mirrors ICdaMarket.CancelReason."""

    BY_MEMBER = 0
    SELF_TRADE = 1
    FILL_CAP = 2
    EXPIRED = 3


def check_uint(name: str, value: int, bits: int) -> int:
    """``value`` if it fits the Solidity type ``uint<bits>``; an InputError otherwise."""
    if not 0 <= value < 2**bits:
        raise InputError(f"{name} must be between 0 and {2**bits - 1}, got {value}")
    return value


@dataclass(frozen=True)
class OrderRequest:
    """A limit order as ``placeOrder`` takes it (values checked against the ABI types)."""

    slot: int
    side: Side
    price_per_kwh: int
    qty_wh: int

    def __post_init__(self) -> None:
        check_uint("slot", self.slot, 32)
        check_uint("price", self.price_per_kwh, 32)
        check_uint("qty_wh", self.qty_wh, 64)

    def as_tuple(self) -> tuple[int, bool, int, int]:
        """ABI order of ICdaMarket.OrderRequest."""
        return (self.slot, self.side.is_buy, self.price_per_kwh, self.qty_wh)


@dataclass(frozen=True)
class RestingOrder:
    """An order in the book (ICdaMarket.OrderView)."""

    order_id: int
    member: str
    slot: int
    side: Side
    price_per_kwh: int
    remaining_wh: int
    escrow: int

    @classmethod
    def from_view(cls, view: tuple[Any, ...]) -> RestingOrder:
        order_id, member, slot, is_buy, price, remaining, escrow = view
        return cls(order_id, Web3.to_checksum_address(member), slot, Side.of(is_buy), price, remaining, escrow)


TRADE_COLUMNS = ("slot", "buy_order", "sell_order", "buyer", "seller", "price", "qty_wh", "maker_side", "tx_hash")


@dataclass(frozen=True)
class Trade:
    """One fill (a TradeExecuted event) at the resting (maker) order's price."""

    slot: int
    buy_order: int
    sell_order: int
    buyer: str
    seller: str
    price_per_kwh: int
    qty_wh: int
    maker_side: Side
    tx_hash: str

    @property
    def value(self) -> int:
        """What the buyer pays, in token base units."""
        return value_of(self.qty_wh, self.price_per_kwh)

    def row(self) -> dict[str, Any]:
        """The trade in the columns of ``peerwatt trades`` (TRADE_COLUMNS)."""
        return {
            "slot": self.slot,
            "buy_order": self.buy_order,
            "sell_order": self.sell_order,
            "buyer": self.buyer,
            "seller": self.seller,
            "price": self.price_per_kwh,
            "qty_wh": self.qty_wh,
            "maker_side": self.maker_side.value,
            "tx_hash": self.tx_hash,
        }


@dataclass(frozen=True)
class Cancellation:
    """An order that left the book, or an incoming remainder that was dropped."""

    order_id: int
    member: str
    remaining_wh: int
    escrow_released: int
    reason: CancelReason


@dataclass(frozen=True)
class TxEvents:
    """The market events of one transaction, in log order."""

    tx_hash: str
    placed: tuple[int, ...]  # new order ids
    trades: tuple[Trade, ...]
    cancellations: tuple[Cancellation, ...]

    @classmethod
    def of(cls, receipt: Receipt, market: str) -> TxEvents:
        return cls._of(receipt.tx_hash, receipt.events(market))

    @classmethod
    def per_order(cls, receipt: Receipt, market: str) -> list[TxEvents]:
        """The events of a batch transaction split by incoming order: each order's
        OrderPlaced comes first, then its fills and cancellations."""
        groups: list[list[tuple[str, dict[str, Any]]]] = []
        for event in receipt.events(market):
            if event[0] == "OrderPlaced" or not groups:
                groups.append([])
            groups[-1].append(event)
        return [cls._of(receipt.tx_hash, group) for group in groups]

    @classmethod
    def _of(cls, tx_hash: str, events: list[tuple[str, dict[str, Any]]]) -> TxEvents:
        placed: list[int] = []
        trades: list[Trade] = []
        cancellations: list[Cancellation] = []
        for name, args in events:
            if name == "OrderPlaced":
                placed.append(args["orderId"])
            elif name == "TradeExecuted":
                trades.append(_trade(args, tx_hash))
            elif name == "OrderCancelled":
                cancellations.append(
                    Cancellation(
                        args["orderId"],
                        Web3.to_checksum_address(args["member"]),
                        args["remainingWh"],
                        args["escrowReleased"],
                        CancelReason(args["reason"]),
                    )
                )
        return cls(tx_hash, tuple(placed), tuple(trades), tuple(cancellations))


@dataclass(frozen=True)
class PlaceOutcome:
    """What placing one order did."""

    order_id: int
    request: OrderRequest
    events: TxEvents

    @property
    def traded_wh(self) -> int:
        return sum(trade.qty_wh for trade in self.events.trades)

    @property
    def dropped_wh(self) -> int:
        """Remainder cancelled because matching hit the fill cap."""
        return sum(c.remaining_wh for c in self.events.cancellations if c.order_id == self.order_id)

    @property
    def resting_wh(self) -> int:
        return self.request.qty_wh - self.traded_wh - self.dropped_wh


@dataclass(frozen=True)
class MemberBalance:
    name: str
    address: str
    balance: int  # deposited market balance, token base units


def _trade(args: dict[str, Any], tx_hash: str) -> Trade:
    return Trade(
        slot=args["slot"],
        buy_order=args["buyOrderId"],
        sell_order=args["sellOrderId"],
        buyer=Web3.to_checksum_address(args["buyer"]),
        seller=Web3.to_checksum_address(args["seller"]),
        price_per_kwh=args["pricePerKwh"],
        qty_wh=args["qtyWh"],
        maker_side=Side.of(args["makerIsBuy"]),
        tx_hash=tx_hash,
    )


class Market:
    """A deployed community market, reached through ``w3``."""

    def __init__(self, w3: Web3, deployment: Deployment, sender: TxSender | None = None) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.address = deployment.market
        self.sender = sender or TxSender(w3)
        self._params: MarketParams | None = None
        self._price_tick: int | None = None

    # ------------------------------------------------------------------ views

    def _view(self, function: str, *args: Any) -> tuple[Any, ...]:
        return call(self.w3, self.address, MARKET, function, *args)

    def market_params(self) -> MarketParams:
        """The market parameters (read once per client)."""
        if self._params is None:
            self._params = MarketParams(*self._view("marketParams")[0])
        return self._params

    def price_tick(self) -> int:
        """Limit prices are multiples of it (fixed at deployment)."""
        if self._price_tick is None:
            self._price_tick = int(self._view("priceTick")[0])
        return self._price_tick

    def slot_clock(self) -> SlotClock:
        epoch, slot_seconds, gate_seconds = self._view("slotClock")
        return SlotClock(epoch, slot_seconds, gate_seconds)

    def now(self) -> int:
        """Timestamp of the latest block: the chain's notion of now."""
        return latest_timestamp(self.w3)

    def balance_of(self, address: str) -> int:
        return int(self._view("balanceOf", address)[0])

    def members(self) -> list[MemberBalance]:
        """The deployment's members with their deposited balances."""
        return [
            MemberBalance(name, address, self.balance_of(address)) for name, address in self.deployment.members.items()
        ]

    def best_prices(self, slot: int) -> tuple[int, int]:
        """(best bid, best ask) of ``slot``; 0 for an empty side."""
        bid, ask = self._view("bestPrices", check_uint("slot", slot, 32))
        return int(bid), int(ask)

    def book_side(self, slot: int, side: Side) -> list[RestingOrder]:
        """Every resting order of one side of a slot's book, best first, FIFO within a price.

        ``bookSide`` returns at most the number asked for and allocates that many entries, so
        the request grows until the side fits.
        """
        check_uint("slot", slot, 32)
        limit = 256
        while True:
            views = self._view("bookSide", slot, side.is_buy, limit)[0]
            if len(views) < limit:
                return [RestingOrder.from_view(view) for view in views]
            limit *= 4

    def order(self, order_id: int) -> RestingOrder:
        """A resting order; ContractRevertError MarketOrderNotFound if it is not in a book."""
        return RestingOrder.from_view(self._view("getOrder", check_uint("order id", order_id, ORDER_ID_BITS))[0])

    def trades(self, slot: int) -> list[Trade]:
        """Every trade of ``slot`` in execution order (block, then log position)."""
        check_uint("slot", slot, 32)
        found = events(self.w3, self.address, self.deployment.deploy_block, MARKET, "TradeExecuted", slot)
        return [_trade(event.args, event.tx_hash) for event in found]

    # ------------------------------------------------------- transaction data

    def place_orders_data(self, requests: Iterable[OrderRequest]) -> str:
        return artifacts.function(MARKET, "placeOrders").encode([r.as_tuple() for r in requests])

    def cancel_orders_data(self, order_ids: Iterable[int]) -> str:
        ids = [check_uint("order id", order_id, ORDER_ID_BITS) for order_id in order_ids]
        return artifacts.function(MARKET, "cancelOrders").encode(ids)

    def _worst_case_order_gas(self) -> int:
        """Gas one order may take whatever the book holds: every fill and self-trade cancellation
        the fill cap allows."""
        return ORDER_BASE_GAS + self.market_params().fill_cap * (FILL_GAS + SELF_CANCEL_GAS)

    def place_gas(self, orders: int) -> int:
        """Gas limit that covers ``orders`` orders in one transaction whatever the book holds."""
        return min(TX_BASE_GAS + orders * self._worst_case_order_gas(), self.sender.block_gas_limit())

    def max_orders_per_transaction(self) -> int:
        """Most orders one batch may carry with a gas limit that covers the worst case."""
        usable = self.sender.block_gas_limit() * BLOCK_GAS_SHARE - TX_BASE_GAS
        return max(1, int(usable // self._worst_case_order_gas()))

    def cancel_gas(self, orders: int) -> int:
        return min(TX_BASE_GAS + orders * CANCEL_GAS, self.sender.block_gas_limit())

    def max_cancels_per_transaction(self) -> int:
        return max(1, int((self.sender.block_gas_limit() * BLOCK_GAS_SHARE - TX_BASE_GAS) // CANCEL_GAS))

    def simulate(self, sender: str, data: str) -> None:
        """Runs a transaction as a call; raises ContractRevertError (members named) if the
        market refuses it."""
        try:
            eth_call(self.w3, {"from": sender, "to": self.address, "data": data})
        except ContractRevertError as exc:
            raise describe_revert(exc, self.deployment) from None

    # ------------------------------------------------------------ transactions

    def place(self, member: str, order: OrderRequest) -> PlaceOutcome:
        """Places one order for the member called ``member`` and waits for it to be mined."""
        sender = self.deployment.member_address(member)
        data = artifacts.function(MARKET, "placeOrder").encode(*order.as_tuple())
        self.simulate(sender, data)
        receipt = self.sender.mined(self.sender.send(sender, self.address, data, gas=self.place_gas(1)))
        events = TxEvents.of(receipt, self.address)
        return PlaceOutcome(events.placed[0], order, events)

    def place_batch(self, member: str, orders: list[OrderRequest]) -> list[PlaceOutcome]:
        """Places several orders of one member in one transaction, in list order (the same
        result as one by one); returns what each did."""
        if not orders:
            return []
        sender = self.deployment.member_address(member)
        data = self.place_orders_data(orders)
        self.simulate(sender, data)
        receipt = self.sender.mined(self.sender.send(sender, self.address, data, gas=self.place_gas(len(orders))))
        per_order = TxEvents.per_order(receipt, self.address)
        return [PlaceOutcome(events.placed[0], order, events) for order, events in zip(orders, per_order, strict=True)]

    def cancel(self, member: str, order_id: int) -> Cancellation:
        """Cancels a resting order of ``member``; returns what left the book."""
        sender = self.deployment.member_address(member)
        data = artifacts.function(MARKET, "cancelOrder").encode(check_uint("order id", order_id, ORDER_ID_BITS))
        self.simulate(sender, data)
        receipt = self.sender.mined(self.sender.send(sender, self.address, data, gas=self.cancel_gas(1)))
        return TxEvents.of(receipt, self.address).cancellations[0]

    def deposit(self, member: str, amount: int) -> int:
        """Moves ``amount`` base units of the member's tokens into its market balance (approving
        the market first if needed); returns the new balance."""
        account = self.deployment.member_address(member)
        if amount <= 0:
            raise InputError(f"amount must be positive, got {amount}")
        token = self.deployment.token
        held = int(call(self.w3, token, "PeerwattToken", "balanceOf", account)[0])
        if held < amount:
            raise InputError(f"{member} holds {held} token base units, fewer than {amount}")
        allowance = int(call(self.w3, token, "PeerwattToken", "allowance", account, self.address)[0])
        if allowance < amount:
            approve = artifacts.function("PeerwattToken", "approve").encode(self.address, amount)
            self.sender.mined(self.sender.send(account, token, approve))
        data = artifacts.function(MARKET, "deposit").encode(check_uint("amount", amount, 256))
        self.simulate(account, data)
        self.sender.mined(self.sender.send(account, self.address, data))
        return self.balance_of(account)

    def withdraw(self, member: str, amount: int) -> int:
        """Sends ``amount`` base units of the member's market balance back to its wallet;
        returns the new balance."""
        account = self.deployment.member_address(member)
        data = artifacts.function(MARKET, "withdraw").encode(check_uint("amount", amount, 256))
        self.simulate(account, data)
        self.sender.mined(self.sender.send(account, self.address, data))
        return self.balance_of(account)

    def expire(self, slot: int, sender: str | None = None) -> list[Cancellation]:
        """Expires every resting order of ``slot`` (its gate must have closed); anyone may do
        it, by default the deployer. Returns the expired orders."""
        clock = self.slot_clock()
        now = self.now()
        if clock.is_open(slot, now):
            raise InputError(
                f"slot {slot} is open for trading until its gate closure at {clock.gate_closure(slot)} "
                f"(chain time {now}); its orders expire only then"
            )
        order_ids = [o.order_id for side in Side for o in self.book_side(slot, side)]
        sender = sender or self.deployment.deployer
        expire_orders = artifacts.function(MARKET, "expireOrders")
        per_tx = self.max_cancels_per_transaction()
        batches = [order_ids[i : i + per_tx] for i in range(0, len(order_ids), per_tx)]
        for batch in batches[:1]:
            self.simulate(sender, expire_orders.encode(batch))
        hashes = [
            self.sender.send(sender, self.address, expire_orders.encode(batch), gas=self.cancel_gas(len(batch)))
            for batch in batches
        ]
        expired: list[Cancellation] = []
        for receipt in self.sender.all_mined(hashes):
            expired.extend(TxEvents.of(receipt, self.address).cancellations)
        return expired


def describe_revert(exc: ContractRevertError, deployment: Deployment) -> ContractRevertError:
    """The same error with member addresses replaced by member names, for messages."""
    names = deployment.member_names()
    args = {
        key: names.get(value.lower(), value) if isinstance(value, str) else value
        for key, value in exc.error_args.items()
    }
    return ContractRevertError(exc.error, args)

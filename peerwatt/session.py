"""A short scripted CDA session (the project's main job for now): a few members post crossing
limit orders for the next open slot, and the slot's trades are printed.

Used by ``peerwatt session`` and ``scripts/cda_session.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peerwatt.errors import InputError
from peerwatt.market import Market, OrderRequest, PlaceOutcome, Side, Trade
from peerwatt.slots import SlotClock
from peerwatt.tables import text_table
from peerwatt.units import format_tokens

# (member role, side, limit price per kWh, Wh): two sellers, two buyers, then a seller hitting
# a resting bid and an ask left in the book. Roles map onto the deployment's members in order.
SCRIPT: tuple[tuple[int, Side, int, int], ...] = (
    (0, Side.SELL, 240_000, 2_000),
    (1, Side.SELL, 255_000, 1_500),
    (2, Side.BUY, 250_000, 1_000),  # fills 1000 Wh of member0's ask at 240000
    (3, Side.BUY, 260_000, 2_500),  # takes member0's last 1000 Wh, then 1500 Wh of member1
    (0, Side.BUY, 230_000, 800),  # rests as the best bid
    (1, Side.SELL, 225_000, 500),  # hits member0's bid at 230000 (the resting price)
    (2, Side.SELL, 270_000, 1_000),  # rests as the best ask
)
MIN_MEMBERS = 2
GATE_MARGIN_SECONDS = 60  # leave time to trade before the chosen slot's gate closes


@dataclass(frozen=True)
class SessionResult:
    slot: int
    orders: list[tuple[str, PlaceOutcome]]
    trades: list[Trade]


def session_slot(clock: SlotClock, now: int, margin: int = GATE_MARGIN_SECONDS) -> int:
    """The first slot whose gate closes at least ``margin`` seconds after ``now``."""
    slot = clock.next_open_slot(now)
    while clock.gate_closure(slot) < now + margin:
        slot += 1
    return slot


def run_session(market: Market, say: Callable[[str], None] = print) -> SessionResult:
    """Runs the script on ``market`` and returns the trades of the slot it used."""
    names = list(market.deployment.members)
    if len(names) < MIN_MEMBERS:
        raise InputError(f"the session needs at least {MIN_MEMBERS} members; deploy with --members 4")
    slot = session_slot(market.slot_clock(), market.now())
    say(f"CDA session on slot {slot} with {min(len(names), 4)} members")
    orders = []
    for role, side, price, qty in SCRIPT:
        member = names[role % len(names)]
        outcome = market.place(member, OrderRequest(slot, side, price, qty))
        orders.append((member, outcome))
        say(
            f"  {member} {side.value} {qty} Wh at {price}/kWh -> order {outcome.order_id}: "
            f"{outcome.traded_wh} Wh traded, {outcome.resting_wh} Wh resting"
        )
    return SessionResult(slot, orders, market.trades(slot))


def trades_table(trades: list[Trade], names: dict[str, str]) -> str:
    """The trades with member names, prices in token/kWh and values in tokens."""
    rows = [
        (
            index,
            names.get(trade.buyer.lower(), trade.buyer),
            names.get(trade.seller.lower(), trade.seller),
            trade.buy_order,
            trade.sell_order,
            format_tokens(trade.price_per_kwh),
            trade.qty_wh,
            format_tokens(trade.value),
            trade.maker_side.value,
            trade.tx_hash[:10] + "...",
        )
        for index, trade in enumerate(trades, 1)
    ]
    headers = ("#", "buyer", "seller", "buy_order", "sell_order", "price/kWh", "qty_wh", "value", "maker", "tx")
    return text_table(headers, rows, right=(True, False, False, True, True, True, True, True, False, False))

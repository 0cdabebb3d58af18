"""Order ids of the CDA market, as ``contracts/libraries/OrderIds.sol`` builds them.

``id = slot << 97 | is_buy << 96 | price << 64 | seq``:

* an order that rests has its limit price and its place ``seq`` in its price level's FIFO
  queue; a level's places start at ``nonce << 32 | 1`` for a fresh per-slot nonce each time the
  level is created (so ids never repeat);
* an order that never rests (filled on arrival, or stopped by the fill cap) has price 0 and a
  fresh per-slot nonce as ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_BITS = 64
ORDER_ID_BITS = 129  # every id the market hands out is below 2**ORDER_ID_BITS
_MASK32 = 2**32 - 1


def level_key(slot: int, is_buy: bool, price_per_kwh: int) -> int:
    """Key of one price level of one side of a slot's book (``id >> 64``)."""
    return slot << 33 | int(is_buy) << 32 | price_per_kwh


def order_id_at(slot: int, is_buy: bool, price_per_kwh: int, seq: int) -> int:
    """Id of the order at place ``seq`` of a price level."""
    return level_key(slot, is_buy, price_per_kwh) << SEQ_BITS | seq


def first_seq(nonce: int) -> int:
    """First place of a level created with the slot's ``nonce``."""
    return (nonce << 32) + 1


def transient_order_id(slot: int, is_buy: bool, nonce: int) -> int:
    """Id of an order that never rested, numbered with the slot's ``nonce``."""
    return order_id_at(slot, is_buy, 0, nonce)


@dataclass(frozen=True)
class OrderIdParts:
    slot: int
    is_buy: bool
    price_per_kwh: int  # 0 for an order that never rested
    seq: int

    @property
    def rested(self) -> bool:
        return self.price_per_kwh != 0


def decode_order_id(order_id: int) -> OrderIdParts:
    """Splits an id into slot, side, price and place."""
    return OrderIdParts(
        slot=(order_id >> (SEQ_BITS + 33)) & _MASK32,
        is_buy=bool((order_id >> (SEQ_BITS + 32)) & 1),
        price_per_kwh=(order_id >> SEQ_BITS) & _MASK32,
        seq=order_id & (2**SEQ_BITS - 1),
    )

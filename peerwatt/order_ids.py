"""Order ids of the CDA market, as ``contracts/libraries/OrderIds.sol`` builds them.

``id = slot << 97 | is_buy << 96 | price << 64 | seq``: the order's limit price and its place
``seq`` in that price level's FIFO queue. A level's places start at ``nonce << 32 | 1`` for a
fresh per-slot nonce each time the level is created, so ids never repeat. An order that crosses
the book takes the first place of a fresh level (a new nonce) before matching, whether or not
anything of it is left to rest there; one that does not cross takes the next place of its level.
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


@dataclass(frozen=True)
class OrderIdParts:
    slot: int
    is_buy: bool
    price_per_kwh: int
    seq: int


def decode_order_id(order_id: int) -> OrderIdParts:
    """Splits an id into slot, side, price and place."""
    return OrderIdParts(
        slot=(order_id >> (SEQ_BITS + 33)) & _MASK32,
        is_buy=bool((order_id >> (SEQ_BITS + 32)) & 1),
        price_per_kwh=(order_id >> SEQ_BITS) & _MASK32,
        seq=order_id & (2**SEQ_BITS - 1),
    )

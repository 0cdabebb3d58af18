"""The Cda community's trading agents: forecast-based, zero-intelligence-constrained limit prices.

Each member forecasts its net position per slot day-ahead (PV less load and its flexible load
at the usual time; a battery's self-consumption applied to the forecast) and offers 90% of it,
keeping a margin for forecast error (what it misses is settled at the tariffs as imbalance):
a net exporter sells, a net importer buys. Limit prices are drawn at random inside the band
where trading beats the supplier (Gode and Sunder's zero-intelligence-constrained traders):
sellers ask 20-60% of the way from the export to the import tariff, buyers bid 20-60% of the
way down from the import tariff, so asks and bids overlap and trades clear in between. Orders
reach the book in a seeded random order per slot, so each slot's continuous auction plays out
between makers and takers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peerwatt.demo.corby import DayProfiles, DemoMember, self_consumption

OFFERED_SHARE = 0.9
MIN_ORDER_WH = 100
PRICE_BAND = (0.2, 0.6)  # of the spread between the tariffs


@dataclass(frozen=True)
class DemoOrder:
    member: str  # the member's label
    offset: int  # slot of the day
    is_buy: bool
    price: int  # base units per kWh, a multiple of the tick
    qty_wh: int


def forecast_net_export(member: DemoMember, day: DayProfiles) -> np.ndarray:
    """The member's day-ahead net export forecast (Wh per slot)."""
    net = day.pv_wh[member.label] - day.load_wh[member.label] - day.flexible_wh[member.label]
    if member.battery_kwh:
        net = self_consumption(net, member.battery_kwh * 1000, member.battery_kw * 1000 / 4)
    return net


def day_ahead_orders(
    members: list[DemoMember], day: DayProfiles, import_price: int, export_price: int, tick: int, seed: int
) -> list[DemoOrder]:
    """Every member's orders for the day, slot by slot in a seeded random order."""
    rng = np.random.default_rng(seed + 1)
    spread = import_price - export_price
    orders = []
    forecasts = {member.label: forecast_net_export(member, day) for member in members}
    n_slots = next(iter(forecasts.values())).size
    for offset in range(n_slots):
        slot_orders = []
        for member in members:
            qty = int(abs(forecasts[member.label][offset]) * OFFERED_SHARE)
            if qty < MIN_ORDER_WH:
                continue
            is_buy = bool(forecasts[member.label][offset] < 0)
            markup = rng.uniform(*PRICE_BAND) * spread
            price = import_price - markup if is_buy else export_price + markup
            slot_orders.append(DemoOrder(member.label, offset, is_buy, int(price // tick) * tick, qty))
        orders += [slot_orders[i] for i in rng.permutation(len(slot_orders))]
    return orders

"""The demo community, modelled on the FleXunity pilot in Corby (UK): about 20 homes with
rooftop PV, 10 homes without generation, four businesses with PV and flexible loads (a food
plant with a 600 kW chiller, a manufacturer, a business centre and a council depot) and a few
home batteries. Annual consumptions are the pilot's orders of magnitude; profiles come from
:mod:`peerwatt.profiles` (BDEW standard load profiles, pvlib clear-sky PV at Corby), offline.

A member's day is its forecast (load, PV) per 15-minute slot; what its meter records is that
forecast with a seeded forecast error, after its battery (self-consumption: charge from surplus,
discharge into load) and its flexible load at its usual time. The optimisation mode instead
schedules batteries and the flexible load (:func:`community_forecast`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peerwatt.profiles import MemberProfile, slot_energy_wh
from settlement.community import Battery, Community, MemberForecast, ShiftableLoad

SLOT_SECONDS = 900
FORECAST_ERROR = 0.08  # relative standard deviation of a slot's metered load and PV against the forecast


@dataclass(frozen=True)
class Flexible:
    """A load the site runs ``hours`` a day at ``power_kw`` (usually from ``usual_start_hour``),
    anywhere between ``earliest_hour`` and ``latest_hour`` if a schedule moves it."""

    power_kw: float
    hours: float
    usual_start_hour: float
    earliest_hour: float
    latest_hour: float


@dataclass(frozen=True)
class DemoMember:
    label: str  # what the report calls it
    kind: str  # home_pv, home, business
    profile: MemberProfile
    battery_kwh: float = 0.0
    battery_kw: float = 0.0
    flexible: Flexible | None = None


def corby_members() -> list[DemoMember]:
    """The 34 members: 20 PV homes (5 with a 5 kWh battery), 10 homes, 4 businesses."""
    members = []
    for n in range(20):
        battery = (5.0, 2.5) if n % 4 == 0 else (0.0, 0.0)
        profile = MemberProfile("h0", 3_000 + 150 * (n % 8), pv_kwp=3.0 + 0.5 * (n % 4))
        members.append(DemoMember(f"pv home {n + 1}", "home_pv", profile, *battery))
    for n in range(10):
        members.append(DemoMember(f"home {n + 1}", "home", MemberProfile("h0", 2_700 + 200 * (n % 5))))
    members += [
        DemoMember(
            "food plant",
            "business",
            MemberProfile("g3", 1_400_000, pv_kwp=250.0),
            flexible=Flexible(600.0, 3.0, 1.0, 0.0, 23.0),  # the chiller pre-cools for 3 hours a day
        ),
        DemoMember(
            "manufacturer",
            "business",
            MemberProfile("g1", 600_000, pv_kwp=150.0),
            flexible=Flexible(120.0, 2.0, 6.0, 5.0, 20.0),  # compressed-air store refilled daily
        ),
        DemoMember("business centre", "business", MemberProfile("g0", 250_000, pv_kwp=100.0)),
        DemoMember("council depot", "business", MemberProfile("g0", 120_000, pv_kwp=60.0)),
    ]
    return members


def demo_members(count: int) -> list[DemoMember]:
    """``count`` members drawn across the kinds (every business first), for shorter runs."""
    members = corby_members()
    if count >= len(members):
        return members
    businesses = [member for member in members if member.kind == "business"]
    homes = [member for member in members if member.kind != "business"]
    chosen = businesses[: min(len(businesses), max(1, count // 4))]
    chosen += homes[:: max(1, len(homes) // max(1, count - len(chosen)))][: count - len(chosen)]
    return chosen


@dataclass(frozen=True)
class DayProfiles:
    """Forecasts (Wh per slot, floats) and each member's flexible energy (Wh per slot at its
    usual time; not in ``load_wh``)."""

    load_wh: dict[str, np.ndarray]
    pv_wh: dict[str, np.ndarray]
    flexible_wh: dict[str, np.ndarray]


def day_profiles(members: list[DemoMember], day_start: int, n_slots: int) -> DayProfiles:
    """The members' forecasts for ``n_slots`` slots from ``day_start`` (UTC seconds)."""
    energy = slot_energy_wh({m.label: m.profile for m in members}, day_start, SLOT_SECONDS, n_slots)
    flexible = {}
    for member in members:
        block = np.zeros(n_slots)
        if member.flexible is not None:
            start = int(member.flexible.usual_start_hour * 4)
            block[start : start + int(member.flexible.hours * 4)] = member.flexible.power_kw * 1000 / 4
        flexible[member.label] = block[:n_slots]
    return DayProfiles(
        {label: load for label, (load, _) in energy.items()}, {label: pv for label, (_, pv) in energy.items()}, flexible
    )


def metered_net_export(members: list[DemoMember], day: DayProfiles, seed: int) -> dict[str, np.ndarray]:
    """Integer Wh each meter exports (positive) or imports per slot without a schedule: the
    forecast with a seeded error, the flexible load at its usual time, and the battery run for
    self-consumption."""
    rng = np.random.default_rng(seed)
    flows = {}
    for member in members:
        load = day.load_wh[member.label] * rng.normal(1.0, FORECAST_ERROR, day.load_wh[member.label].size).clip(0.5)
        pv = day.pv_wh[member.label] * rng.normal(1.0, FORECAST_ERROR, day.pv_wh[member.label].size).clip(0.5)
        net = pv - load - day.flexible_wh[member.label]
        if member.battery_kwh:
            net = self_consumption(net, member.battery_kwh * 1000, member.battery_kw * 1000 / 4)
        flows[member.label] = np.round(net).astype(np.int64)
    return flows


def self_consumption(net_wh: np.ndarray, capacity_wh: float, step_wh: float, efficiency: float = 0.95) -> np.ndarray:
    """A battery that stores surplus and covers deficits, slot by slot, from half full."""
    stored = capacity_wh / 2
    out = net_wh.copy()
    for t, net in enumerate(net_wh):
        if net > 0:
            charge = min(net, step_wh, (capacity_wh - stored) / efficiency)
            stored += charge * efficiency
            out[t] = net - charge
        else:
            discharge = min(-net, step_wh, stored * efficiency)
            stored -= discharge / efficiency
            out[t] = net + discharge
    return out


def community_forecast(
    members: list[DemoMember], day: DayProfiles, import_price: int, export_price: int, fee_per_kwh: int
) -> Community:
    """The clearing engine's view of the day: forecasts, batteries and flexible loads."""
    forecasts = []
    n_slots = next(iter(day.load_wh.values())).size
    for member in members:
        battery = None
        if member.battery_kwh:
            power = member.battery_kw * 1000
            battery = Battery(member.battery_kwh * 1000, power, power)
        shiftable: tuple[ShiftableLoad, ...] = ()
        if member.flexible is not None:
            flexible = member.flexible
            latest = min(n_slots - 1, int(flexible.latest_hour * 4))
            earliest = min(int(flexible.earliest_hour * 4), latest)
            energy = float(day.flexible_wh[member.label].sum())
            if energy > 0:
                shiftable = (ShiftableLoad(energy, earliest, latest, flexible.power_kw * 1000),)
        forecasts.append(
            MemberForecast(member.label, day.load_wh[member.label], day.pv_wh[member.label], battery, shiftable)
        )
    return Community(
        tuple(forecasts),
        np.full(n_slots, import_price),
        np.full(n_slots, export_price),
        fee_per_kwh,
        SLOT_SECONDS,
    )

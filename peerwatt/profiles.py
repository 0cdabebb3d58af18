"""Load and PV profiles: realistic 15-minute consumption and rooftop PV, offline.

Consumption follows the BDEW standard load profiles (demandlib: ``h0`` households, ``g0``
businesses) scaled to each member's annual consumption. Rooftop PV follows pvlib's clear-sky
irradiance (Ineichen model: no weather download) on a south-facing 35-degree plane at the
community's site, times the member's kWp and a performance ratio. The simulated meters
(``oracle.simulated``) and the clearing engine's forecasts (``settlement.community``) both use
them.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
import pandas as pd

SECONDS_PER_HOUR = 3600
Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class MemberProfile:
    """What a simulated member consumes and generates."""

    load_profile: str  # BDEW profile: "h0" household, "g0" business
    annual_kwh: float
    pv_kwp: float = 0.0


@dataclass(frozen=True)
class Site:
    """Where the community is: Corby (UK), the FleXunity pilot, by default."""

    latitude: float = 52.49
    longitude: float = -0.69
    altitude_m: float = 80.0
    timezone: str = "Europe/London"
    tilt_degrees: float = 35.0
    azimuth_degrees: float = 180.0  # south
    performance_ratio: float = 0.8  # inverter, wiring, temperature and soiling losses


def default_profiles(member_names: Iterable[str]) -> dict[str, MemberProfile]:
    """A mixed community, the same for the same names: every third member a small business
    with PV, the others households (2,700-4,200 kWh a year), half of them with rooftop PV."""
    profiles = {}
    for index, name in enumerate(member_names):
        if index % 3 == 2:
            profiles[name] = MemberProfile("g0", 30_000 + 5_000 * (index % 4), pv_kwp=20.0)
        else:
            profiles[name] = MemberProfile("h0", 2_700 + 300 * (index % 6), pv_kwp=4.0 if index % 2 == 0 else 0.0)
    return profiles


def slot_energy_wh(
    profiles: Mapping[Key, MemberProfile], epoch: int, slot_seconds: int, n_slots: int, site: Site | None = None
) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
    """Forecast-style energy of each member over ``n_slots`` slots from ``epoch`` (UTC seconds):
    member -> (load_wh, pv_wh), float arrays, before netting. A member with ``annual_kwh`` 0 has
    no load (and needs no BDEW profile), one with ``pv_kwp`` 0 no PV."""
    site = site or Site()
    starts = pd.to_datetime(epoch + slot_seconds * np.arange(n_slots), unit="s", utc=True)
    hours = slot_seconds / SECONDS_PER_HOUR
    needs_pv = any(profile.pv_kwp for profile in profiles.values())
    pv_per_kwp = pv_kw_per_kwp(site, starts, hours) if needs_pv else np.zeros(n_slots)
    energy = {}
    for member, profile in profiles.items():
        member_kw = load_kw(profile, site, starts) if profile.annual_kwh else np.zeros(n_slots)
        energy[member] = (member_kw * 1000 * hours, profile.pv_kwp * pv_per_kwp * 1000 * hours)
    return energy


def load_kw(profile: MemberProfile, site: Site, starts: pd.DatetimeIndex) -> np.ndarray:
    """Mean load (kW) over each slot, from the member's BDEW profile at local time."""
    local = starts.tz_convert(site.timezone).tz_localize(None)
    kw = pd.concat([_bdew_kw(year, profile.load_profile) for year in sorted(set(local.year))])
    kw = kw[~kw.index.duplicated()].sort_index()
    # a 15-minute profile: take the quarter hour each slot starts in
    return kw.reindex(local.floor("15min"), method="nearest").to_numpy() * profile.annual_kwh / 1000


@lru_cache(maxsize=16)
def _bdew_kw(year: int, load_profile: str) -> pd.Series:
    """The BDEW profile of ``year`` in kW for 1,000 kWh a year (15-minute, local time)."""
    from demandlib import bdew  # imported here: it is slow to import and only the simulation needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # demandlib's own deprecation notices
        return bdew.ElecSlp(year).get_scaled_power_profiles({load_profile: 1000})[load_profile]


def pv_kw_per_kwp(site: Site, starts: pd.DatetimeIndex, hours: float) -> np.ndarray:
    """Mean PV output (kW per kWp) over each slot, from clear-sky irradiance at the slot's middle."""
    import pvlib  # only the simulation needs it

    middles = starts + pd.Timedelta(hours=hours / 2)
    location = pvlib.location.Location(site.latitude, site.longitude, site.timezone, site.altitude_m)
    sky = location.get_clearsky(middles)
    sun = location.get_solarposition(middles)
    plane = pvlib.irradiance.get_total_irradiance(
        site.tilt_degrees,
        site.azimuth_degrees,
        sun["apparent_zenith"],
        sun["azimuth"],
        sky["dni"],
        sky["ghi"],
        sky["dhi"],
    )
    return np.nan_to_num(plane["poa_global"].to_numpy()) / 1000 * site.performance_ratio

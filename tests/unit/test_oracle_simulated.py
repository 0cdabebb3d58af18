"""Simulated meters (pvlib clear-sky PV, demandlib BDEW load): plausible energy, consistent
registers, deterministic output."""

from __future__ import annotations

import calendar

from oracle.simulated import MemberProfile, SimulatedMeters, default_profiles
from peerwatt.slots import SlotClock

MIDSUMMER = calendar.timegm((2026, 6, 21, 0, 0, 0))  # UTC midnight; slots of 15 minutes
CLOCK = SlotClock(MIDSUMMER, 900, 300)
METERS = {"home_pv": "0x" + "11" * 20, "home": "0x" + "22" * 20, "business": "0x" + "33" * 20}
PROFILES = {
    "home_pv": MemberProfile("h0", 3_500, pv_kwp=4.0),
    "home": MemberProfile("h0", 3_500),
    "business": MemberProfile("g0", 40_000, pv_kwp=20.0),
}


def day() -> dict[str, list]:
    readings = SimulatedMeters(CLOCK, METERS, PROFILES).readings(0, 96)
    by_member: dict[str, list] = {name: [] for name in METERS}
    for member, reading in readings:
        by_member[member].append(reading)
    return by_member


def test_a_day_of_readings_is_slot_major_and_consistent() -> None:
    readings = SimulatedMeters(CLOCK, METERS, PROFILES).readings(0, 96)
    assert [(r.slot, r.meter) for _, r in readings[:3]] == [(0, address) for address in METERS.values()]
    for member, series in day().items():
        assert [r.slot for r in series] == list(range(96))
        assert all(r.meter == METERS[member] for r in series)
        imported = exported = 0
        for reading in series:
            assert reading.import_wh >= 0 and reading.export_wh >= 0
            assert reading.import_wh == 0 or reading.export_wh == 0  # net metering per slot
            imported, exported = imported + reading.import_wh, exported + reading.export_wh
            assert (reading.import_register_wh, reading.export_register_wh) == (imported, exported)


def test_pv_exports_around_noon_and_nothing_at_night() -> None:
    series = day()
    night, noon = range(0, 12), range(44, 52)  # 00:00-03:00 and 11:00-13:00 UTC
    assert all(series["home_pv"][slot].export_wh == 0 for slot in night)
    assert all(series["home_pv"][slot].export_wh > 0 for slot in noon)  # 4 kWp beats a household's load
    assert all(r.export_wh == 0 for r in series["home"])  # no PV, never exports
    peak = max(r.export_wh for r in series["home_pv"])
    assert 400 < peak < 1_000  # at most 4 kWp * 0.25 h = 1 kWh in a slot


def test_annual_scale_and_determinism() -> None:
    series = day()
    home_day_wh = series["home"][-1].import_register_wh
    assert 5_000 < home_day_wh < 15_000  # 3,500 kWh a year is about 9.6 kWh a day
    business = series["business"][-1]  # 21 June 2026 is a Sunday: its 20 kWp mostly export
    assert business.import_register_wh + business.export_register_wh > 5 * home_day_wh
    assert SimulatedMeters(CLOCK, METERS, PROFILES).readings(40, 42) == SimulatedMeters(
        CLOCK, METERS, PROFILES
    ).readings(40, 42)
    assert SimulatedMeters(CLOCK, METERS, PROFILES).readings(5, 5) == []


def test_default_profiles_mix_households_and_businesses() -> None:
    profiles = default_profiles(f"member{i}" for i in range(6))
    assert [p.load_profile for p in profiles.values()] == ["h0", "h0", "g0", "h0", "h0", "g0"]
    assert sum(p.pv_kwp > 0 for p in profiles.values()) == 4
    assert default_profiles(["a", "b"]) == default_profiles(["a", "b"])

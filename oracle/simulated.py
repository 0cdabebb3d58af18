"""Simulated meters: realistic 15-minute household and business readings, offline.

Each member's consumption and rooftop PV come from :mod:`peerwatt.profiles` (BDEW load
profiles, pvlib clear-sky PV). In each slot a meter imports what consumption exceeds PV and
exports the rest; its registers add up from slot 0, so every reading is consistent with the
ones before it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from oracle.readings import Reading
from peerwatt.profiles import (
    SECONDS_PER_HOUR,
    MemberProfile,
    Site,
    default_profiles,
    load_kw,
    pv_kw_per_kwp,
)
from peerwatt.slots import SlotClock


class SimulatedMeters:
    """Readings of ``meters`` (member name -> meter address) for the slots of ``clock``."""

    def __init__(
        self,
        clock: SlotClock,
        meters: Mapping[str, str],
        profiles: Mapping[str, MemberProfile] | None = None,
        site: Site | None = None,
    ) -> None:
        self.clock = clock
        self.meters = dict(meters)
        self.profiles = dict(profiles) if profiles is not None else default_profiles(self.meters)
        self.site = site or Site()

    def readings(self, first_slot: int, end_slot: int) -> list[tuple[str, Reading]]:
        """(member, reading) for slots ``first_slot`` to ``end_slot - 1``, slot-major."""
        if first_slot >= end_slot:
            return []
        starts = pd.to_datetime([self.clock.slot_start(slot) for slot in range(end_slot)], unit="s", utc=True)
        hours = self.clock.slot_seconds / SECONDS_PER_HOUR
        pv_per_kwp = pv_kw_per_kwp(self.site, starts, hours)
        series = {}
        for member in self.meters:
            profile = self.profiles[member]
            net_wh = np.round((load_kw(profile, self.site, starts) - profile.pv_kwp * pv_per_kwp) * 1000 * hours)
            imported = np.maximum(net_wh, 0).astype(np.int64)
            exported = np.maximum(-net_wh, 0).astype(np.int64)
            series[member] = (imported, exported, np.cumsum(imported), np.cumsum(exported))
        readings = []
        for slot in range(first_slot, end_slot):
            for member, meter in self.meters.items():
                imported, exported, import_register, export_register = series[member]
                readings.append(
                    (
                        member,
                        Reading(
                            meter,
                            slot,
                            int(imported[slot]),
                            int(exported[slot]),
                            int(import_register[slot]),
                            int(export_register[slot]),
                        ),
                    )
                )
        return readings

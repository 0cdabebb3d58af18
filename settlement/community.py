"""The community the optimisation engine clears (DESIGN.md sections 1, 2 and 6): members'
forecasts, their batteries and shiftable loads, and the supplier's tariffs; ``community.yaml``,
the file that describes one; and a fast synthetic community for tests and benchmarks.

Units follow the project's conventions: energy in Wh (floats here: these are forecasts, the
posted figures are integers), power in W, prices in integer token base units per kWh.
Everything is immutable once built and validated; arrays are read-only.

``community.yaml`` (prices in base units per kWh, like every price in Peerwatt)::

    slot_seconds: 900                # default 900
    start: 2026-06-21                # slot 0 starts at local midnight of this date at the site;
                                     # needed by simulated profiles and time-of-use tariffs
    site: {latitude: 52.49, longitude: -0.69, timezone: Europe/London}   # optional
    fee_per_kwh: 5_000               # paid by each side of an internal trade
    tariffs:
      import_per_kwh:                # flat (250_000), per slot ([...], at least horizon long)
        default: 250_000             # or time of use: later periods override earlier ones,
        periods:                     # [from, to) local time, wrapping past midnight
          - {from: "00:00", to: "07:00", price: 180_000}
          - {from: "16:00", to: "20:00", price: 350_000}
      export_per_kwh: 60_000
    members:
      - name: alice
        profile: h0                  # simulated BDEW load (h0 household, g0 business) ...
        annual_kwh: 3_500
        pv_kwp: 4.0                  # ... and clear-sky PV (optional)
        battery: {capacity_wh: 10_000, max_charge_w: 5_000, max_discharge_w: 5_000}
      - name: bakery
        load_wh: [420, 410, ...]     # or explicit forecasts, at least horizon long
        pv_wh: [0, 0, ...]           # optional
        shiftable:
          - {energy_wh: 6_000, earliest_slot: 32, latest_slot: 64, max_power_w: 3_000}

Battery keys are the fields of :class:`Battery`, shiftable keys those of
:class:`ShiftableLoad`, site keys those of ``oracle.simulated.Site``. A member gives its load
either explicitly or as a profile, and its PV either explicitly or as ``pv_kwp`` (simulated
series come from ``oracle.simulated``, the meters' simulation, for the same days). The
horizon (number of slots) is the caller's choice.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import yaml

from peerwatt.errors import InputError
from peerwatt.units import WH_PER_KWH

if TYPE_CHECKING:
    from peerwatt.profiles import Site

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86_400
DEFAULT_SLOT_SECONDS = 900


# ------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Battery:
    """A member's battery. The engine ends the horizon with at least ``soc_initial_wh`` stored,
    so that a schedule cannot empty the battery for free at the horizon's end.

    ``soc_max_wh`` defaults to ``capacity_wh`` and ``soc_initial_wh`` to half of it; both are
    filled in on construction, so they are never None afterwards.
    """

    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min_wh: float = 0.0
    soc_max_wh: float | None = None
    soc_initial_wh: float | None = None

    def __post_init__(self) -> None:
        if self.soc_max_wh is None:
            object.__setattr__(self, "soc_max_wh", float(self.capacity_wh))
        if self.soc_initial_wh is None:
            object.__setattr__(self, "soc_initial_wh", 0.5 * self.capacity_wh)
        _require(self.capacity_wh > 0, f"battery capacity_wh must be > 0, got {self.capacity_wh}")
        _require(
            self.max_charge_w >= 0 and self.max_discharge_w >= 0,
            f"battery max_charge_w and max_discharge_w must be >= 0, got {self.max_charge_w}, {self.max_discharge_w}",
        )
        for name in ("charge_efficiency", "discharge_efficiency"):
            value = getattr(self, name)
            _require(0 < value <= 1, f"battery {name} must be in (0, 1], got {value}")
        levels = (self.soc_min_wh, self.soc_initial_wh, self.soc_max_wh, self.capacity_wh)
        _require(
            0 <= levels[0] <= levels[1] <= levels[2] <= levels[3],  # type: ignore[operator]
            "battery needs 0 <= soc_min_wh <= soc_initial_wh <= soc_max_wh <= capacity_wh, got "
            + ", ".join(str(level) for level in levels),
        )


@dataclass(frozen=True)
class ShiftableLoad:
    """``energy_wh`` to consume within slots ``earliest_slot`` to ``latest_slot`` (inclusive)
    of the horizon, at most ``max_power_w`` in any slot (e.g. an EV or a dishwasher), on top of
    the member's fixed load."""

    energy_wh: float
    earliest_slot: int
    latest_slot: int
    max_power_w: float

    def __post_init__(self) -> None:
        _require(self.energy_wh > 0, f"shiftable energy_wh must be > 0, got {self.energy_wh}")
        _require(self.max_power_w > 0, f"shiftable max_power_w must be > 0, got {self.max_power_w}")
        _require(
            0 <= self.earliest_slot <= self.latest_slot,
            f"shiftable window needs 0 <= earliest_slot <= latest_slot, got {self.earliest_slot}, {self.latest_slot}",
        )

    @property
    def n_window_slots(self) -> int:
        return self.latest_slot - self.earliest_slot + 1


@dataclass(frozen=True, eq=False)
class MemberForecast:
    """One member's forecast over the horizon: fixed load and PV output (Wh per slot)."""

    name: str
    load_wh: np.ndarray
    pv_wh: np.ndarray
    battery: Battery | None = None
    shiftable: tuple[ShiftableLoad, ...] = ()

    def __post_init__(self) -> None:
        _require(bool(self.name), "a member needs a non-empty name")
        load = _energy_series(f"member {self.name}: load_wh", self.load_wh)
        pv = _energy_series(f"member {self.name}: pv_wh", self.pv_wh)
        _require(load.shape == pv.shape, f"member {self.name}: load_wh has {load.size} slots, pv_wh {pv.size}")
        object.__setattr__(self, "load_wh", load)
        object.__setattr__(self, "pv_wh", pv)
        object.__setattr__(self, "shiftable", tuple(self.shiftable))

    @property
    def n_slots(self) -> int:
        return int(self.load_wh.size)


@dataclass(frozen=True, eq=False)
class Community:
    """Members and the supplier's tariffs over a horizon of ``n_slots`` slots.

    ``import_price`` and ``export_price`` are integer base units per kWh, one per slot;
    ``fee_per_kwh`` is paid by each side of an internal trade.
    """

    members: tuple[MemberForecast, ...]
    import_price: np.ndarray
    export_price: np.ndarray
    fee_per_kwh: int
    slot_seconds: int = DEFAULT_SLOT_SECONDS

    def __post_init__(self) -> None:
        members = tuple(self.members)
        _require(len(members) > 0, "a community needs at least one member")
        names = [member.name for member in members]
        if len(set(names)) < len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise InputError(f"member names must be unique, repeated: {', '.join(repeated)}")
        n_slots = members[0].n_slots
        for member in members:
            _require(member.n_slots == n_slots, f"member {member.name} has {member.n_slots} slots, expected {n_slots}")
        _require(self.slot_seconds > 0, f"slot_seconds must be > 0, got {self.slot_seconds}")
        _require(
            _is_int(self.fee_per_kwh) and self.fee_per_kwh >= 0,
            f"fee_per_kwh must be an integer >= 0, got {self.fee_per_kwh}",
        )
        import_price = _price_series("import_price", self.import_price, n_slots)
        export_price = _price_series("export_price", self.export_price, n_slots)
        crossed = np.flatnonzero(export_price >= import_price)
        if crossed.size:
            slot = crossed[0]
            raise InputError(
                f"export price must be below import price in every slot; slot {slot}: "
                f"export {export_price[slot]} >= import {import_price[slot]}"
            )
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "import_price", import_price)
        object.__setattr__(self, "export_price", export_price)
        object.__setattr__(self, "fee_per_kwh", int(self.fee_per_kwh))
        for member in members:
            for index, load in enumerate(member.shiftable):
                self._check_window(member.name, index, load)

    def _check_window(self, member: str, index: int, load: ShiftableLoad) -> None:
        where = f"member {member}: shiftable[{index}]"
        _require(
            load.latest_slot < self.n_slots,
            f"{where}: window ends at slot {load.latest_slot}, beyond the horizon of {self.n_slots} slots",
        )
        deliverable_wh = load.max_power_w * self.slot_hours * load.n_window_slots
        _require(
            load.energy_wh <= deliverable_wh,
            f"{where}: {load.energy_wh} Wh cannot be delivered at {load.max_power_w} W "
            f"in {load.n_window_slots} slots (at most {deliverable_wh:g} Wh)",
        )

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def n_slots(self) -> int:
        return self.members[0].n_slots

    @property
    def slot_hours(self) -> float:
        return self.slot_seconds / SECONDS_PER_HOUR

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(member.name for member in self.members)

    @cached_property
    def load_wh(self) -> np.ndarray:
        """Fixed load, [members x slots]."""
        return _read_only(np.stack([member.load_wh for member in self.members]))

    @cached_property
    def pv_wh(self) -> np.ndarray:
        """PV output, [members x slots]."""
        return _read_only(np.stack([member.pv_wh for member in self.members]))

    @property
    def trade_band(self) -> tuple[np.ndarray, np.ndarray]:
        """Per slot [export + fee, import - fee]: the internal prices at which both sides of a
        trade gain against the tariffs (empty where the fee eats the spread)."""
        return self.export_price + self.fee_per_kwh, self.import_price - self.fee_per_kwh


# --------------------------------------------------------------------- community.yaml


def load_community(path: str | Path, horizon: int = 96) -> Community:
    """The community described by the YAML file at ``path`` over its first ``horizon`` slots
    (format: this module's docstring). Any problem raises one-line :class:`InputError`."""
    path = Path(path)
    _require(horizon > 0, f"horizon must be > 0, got {horizon}")
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid syntax"
        raise InputError(f"{path}: not valid YAML{where}: {problem}") from error
    try:
        return _community_from_document(document, horizon)
    except InputError as error:
        raise InputError(f"{path}: {error}") from error


_TOP_KEYS = ("slot_seconds", "start", "site", "fee_per_kwh", "tariffs", "members")
_MEMBER_KEYS = ("name", "profile", "annual_kwh", "pv_kwp", "load_wh", "pv_wh", "battery", "shiftable")
_PROFILES = ("h0", "g0")


@dataclass(frozen=True)
class _Calendar:
    """When slot 0 starts (UTC seconds) and in which time zone, as far as the file says."""

    slot_seconds: int
    horizon: int
    epoch: int | None
    timezone: str

    def local_seconds_of_day(self, where: str) -> np.ndarray:
        """Seconds since local midnight at the start of each slot (time-of-use tariffs)."""
        import pandas as pd  # only time-of-use tariffs need it

        epoch = self.epoch_for(where)
        starts = pd.to_datetime(epoch + self.slot_seconds * np.arange(self.horizon), unit="s", utc=True)
        local = starts.tz_convert(self.timezone)
        return np.asarray(local.hour * SECONDS_PER_HOUR + local.minute * 60 + local.second)

    def epoch_for(self, where: str) -> int:
        """The epoch, which ``where`` needs: an error naming it if the file has no start date."""
        _require(self.epoch is not None, f"{where} needs 'start' (the date of slot 0)")
        assert self.epoch is not None
        return self.epoch


def _community_from_document(document: Any, horizon: int) -> Community:
    top = _mapping("the file", document, _TOP_KEYS, required=("tariffs", "members", "fee_per_kwh"))
    slot_seconds = _integer("slot_seconds", top.get("slot_seconds", DEFAULT_SLOT_SECONDS), minimum=1)
    site = _site(top.get("site"))
    calendar = _Calendar(slot_seconds, horizon, _epoch(top.get("start"), site.timezone), site.timezone)
    tariffs = _mapping(
        "tariffs", top["tariffs"], ("import_per_kwh", "export_per_kwh"), required=("import_per_kwh", "export_per_kwh")
    )
    members_raw = top["members"]
    _require(isinstance(members_raw, list) and len(members_raw) > 0, "members: expected a non-empty list")
    members = _members(members_raw, calendar, site)
    return Community(
        members,
        _tariff("tariffs.import_per_kwh", tariffs["import_per_kwh"], calendar),
        _tariff("tariffs.export_per_kwh", tariffs["export_per_kwh"], calendar),
        _integer("fee_per_kwh", top["fee_per_kwh"], minimum=0),
        slot_seconds,
    )


def _site(raw: Any) -> Site:
    from peerwatt.profiles import Site  # the profiles' site model (pvlib and time zone)

    if raw is None:
        return Site()
    values = _mapping("site", raw, tuple(f.name for f in fields(Site)))
    for name, value in values.items():
        if name == "timezone":
            try:
                zoneinfo.ZoneInfo(str(value))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
                raise InputError(f"site.timezone: unknown time zone {value!r}") from error
        else:
            values[name] = _number(f"site.{name}", value)
    return Site(**values)


def _epoch(raw: Any, timezone: str) -> int | None:
    """UTC seconds of local midnight at the start of date ``raw``."""
    if raw is None:
        return None
    import pandas as pd

    try:
        day = raw if isinstance(raw, dt.date) else dt.date.fromisoformat(str(raw))
        return int(pd.Timestamp(day.isoformat(), tz=timezone).timestamp())
    except (ValueError, TypeError) as error:
        raise InputError(f"start: expected an ISO date such as 2026-06-21, got {raw!r}") from error


def _tariff(where: str, raw: Any, calendar: _Calendar) -> np.ndarray:
    """A flat price, a per-slot list, or {default, periods} of time-of-use prices."""
    if isinstance(raw, list):
        _require(
            len(raw) >= calendar.horizon,
            f"{where}: {len(raw)} prices for a horizon of {calendar.horizon} slots",
        )
        return np.array(
            [_integer(f"{where}[{i}]", value, minimum=0) for i, value in enumerate(raw[: calendar.horizon])]
        )
    if isinstance(raw, Mapping):
        return _time_of_use(where, raw, calendar)
    return np.full(calendar.horizon, _integer(where, raw, minimum=0), dtype=np.int64)


def _time_of_use(where: str, raw: Mapping[str, Any], calendar: _Calendar) -> np.ndarray:
    spec = _mapping(where, raw, ("default", "periods"), required=("default",))
    prices = np.full(calendar.horizon, _integer(f"{where}.default", spec["default"], minimum=0), dtype=np.int64)
    periods = spec.get("periods") or []
    _require(isinstance(periods, list), f"{where}.periods: expected a list")
    seconds = calendar.local_seconds_of_day(where)
    for index, period_raw in enumerate(periods):
        at = f"{where}.periods[{index}]"
        period = _mapping(at, period_raw, ("from", "to", "price"), required=("from", "to", "price"))
        begin, end = _clock_time(f"{at}.from", period["from"]), _clock_time(f"{at}.to", period["to"])
        # [from, to) in local time; a period whose end is not after its start wraps past midnight
        inside = (seconds >= begin) & (seconds < end) if begin < end else (seconds >= begin) | (seconds < end)
        prices[inside] = _integer(f"{at}.price", period["price"], minimum=0)
    return prices


def _clock_time(where: str, raw: Any) -> int:
    """Seconds after midnight of "HH:MM" ("24:00" allowed). YAML 1.1 reads an unquoted 07:00 as
    the sexagesimal integer 420 (minutes): accept that too."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        minutes = raw
    else:
        try:
            hours, mins = (int(part) for part in str(raw).split(":"))
        except ValueError as error:
            raise InputError(f'{where}: expected a time such as "07:30", got {raw!r}') from error
        _require(0 <= mins < 60, f'{where}: expected a time such as "07:30", got {raw!r}')
        minutes = hours * 60 + mins
    _require(0 <= minutes <= 24 * 60, f"{where}: time {raw!r} outside 00:00-24:00")
    return minutes * 60


def _members(raw: list[Any], calendar: _Calendar, site: Site) -> tuple[MemberForecast, ...]:
    specs = [_mapping(f"members[{i}]", entry, _MEMBER_KEYS, required=("name",)) for i, entry in enumerate(raw)]
    simulated = _simulated_energy(specs, calendar, site)
    members = []
    for index, spec in enumerate(specs):
        where = f"members[{index}] ({spec['name']})"
        load, pv = simulated.get(index, (None, None))
        if "load_wh" in spec:
            load = _explicit_series(f"{where}.load_wh", spec["load_wh"], calendar.horizon)
        if "pv_wh" in spec:
            pv = _explicit_series(f"{where}.pv_wh", spec["pv_wh"], calendar.horizon)
        assert load is not None  # _simulated_energy checked that the file gives one or the other
        try:
            members.append(
                MemberForecast(
                    str(spec["name"]),
                    load,
                    pv if pv is not None else np.zeros(calendar.horizon),
                    _battery(f"{where}.battery", spec.get("battery")),
                    _shiftable(f"{where}.shiftable", spec.get("shiftable")),
                )
            )
        except InputError as error:
            raise InputError(f"{where}: {error}") from error
    return tuple(members)


def _simulated_energy(
    specs: Sequence[Mapping[str, Any]], calendar: _Calendar, site: Site
) -> dict[int, tuple[np.ndarray | None, np.ndarray | None]]:
    """(load_wh, pv_wh) of the members whose file asks for simulated profiles, by position;
    None where the member gives that series explicitly."""
    from peerwatt.profiles import MemberProfile, slot_energy_wh  # pvlib and demandlib are slow to import

    profiles: dict[int, MemberProfile] = {}
    for index, spec in enumerate(specs):
        where = f"members[{index}] ({spec['name']})"
        has_profile, has_load = "profile" in spec or "annual_kwh" in spec, "load_wh" in spec
        _require(has_profile != has_load, f"{where}: give either load_wh or profile and annual_kwh")
        _require(not ("pv_kwp" in spec and "pv_wh" in spec), f"{where}: give either pv_wh or pv_kwp, not both")
        if has_profile:
            _require(
                "profile" in spec and "annual_kwh" in spec, f"{where}: a simulated load needs profile and annual_kwh"
            )
            _require(
                spec["profile"] in _PROFILES,
                f"{where}.profile: expected one of {', '.join(_PROFILES)}, got {spec['profile']!r}",
            )
        if has_profile or "pv_kwp" in spec:  # (no load profile is read for 0 kWh a year)
            annual_kwh = _number(f"{where}.annual_kwh", spec["annual_kwh"]) if has_profile else 0.0
            pv_kwp = _number(f"{where}.pv_kwp", spec.get("pv_kwp", 0.0))
            _require(annual_kwh >= 0 and pv_kwp >= 0, f"{where}: annual_kwh and pv_kwp must be >= 0")
            profiles[index] = MemberProfile(spec.get("profile", "h0"), annual_kwh, pv_kwp)
    if not profiles:
        return {}
    epoch = calendar.epoch_for("simulated profiles (profile, annual_kwh, pv_kwp)")
    energy = slot_energy_wh(profiles, epoch, calendar.slot_seconds, calendar.horizon, site)
    return {
        index: (load if "profile" in specs[index] else None, pv if "pv_wh" not in specs[index] else None)
        for index, (load, pv) in energy.items()
    }


def _battery(where: str, raw: Any) -> Battery | None:
    if raw is None:
        return None
    names = tuple(f.name for f in fields(Battery))
    values = _mapping(where, raw, names, required=("capacity_wh", "max_charge_w", "max_discharge_w"))
    return Battery(**{name: _number(f"{where}.{name}", value) for name, value in values.items()})


def _shiftable(where: str, raw: Any) -> tuple[ShiftableLoad, ...]:
    if raw is None:
        return ()
    _require(isinstance(raw, list), f"{where}: expected a list")
    loads = []
    for index, entry in enumerate(raw):
        at = f"{where}[{index}]"
        values = _mapping(
            at,
            entry,
            ("energy_wh", "earliest_slot", "latest_slot", "max_power_w"),
            required=("energy_wh", "earliest_slot", "latest_slot", "max_power_w"),
        )
        loads.append(
            ShiftableLoad(
                _number(f"{at}.energy_wh", values["energy_wh"]),
                _integer(f"{at}.earliest_slot", values["earliest_slot"], minimum=0),
                _integer(f"{at}.latest_slot", values["latest_slot"], minimum=0),
                _number(f"{at}.max_power_w", values["max_power_w"]),
            )
        )
    return tuple(loads)


def _explicit_series(where: str, raw: Any, horizon: int) -> np.ndarray:
    _require(isinstance(raw, list), f"{where}: expected a list of Wh per slot")
    _require(len(raw) >= horizon, f"{where}: {len(raw)} values for a horizon of {horizon} slots")
    return np.array([_number(f"{where}[{i}]", value) for i, value in enumerate(raw[:horizon])], dtype=float)


def _mapping(where: str, raw: Any, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    _require(isinstance(raw, Mapping), f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = [str(key) for key in raw if key not in allowed]
    _require(not unknown, f"{where}: unknown key {', '.join(map(repr, unknown))} (expected: {', '.join(allowed)})")
    missing = [key for key in required if key not in raw]
    _require(not missing, f"{where}: missing {', '.join(map(repr, missing))}")
    return dict(raw)


def _integer(where: str, raw: Any, minimum: int | None = None) -> int:
    _require(_is_int(raw), f"{where}: expected an integer, got {raw!r}")
    _require(minimum is None or raw >= minimum, f"{where}: must be >= {minimum}, got {raw}")
    return int(raw)


def _number(where: str, raw: Any) -> float:
    _require(
        isinstance(raw, (int, float)) and not isinstance(raw, bool) and np.isfinite(raw),
        f"{where}: expected a number, got {raw!r}",
    )
    return float(raw)


# ------------------------------------------------------------------ synthetic community


def synthetic_community(
    n_members: int,
    n_slots: int = 96,
    battery_share: float = 0.3,
    seed: int = 0,
    *,
    slot_seconds: int = DEFAULT_SLOT_SECONDS,
    shiftable_share: float = 0.05,
) -> Community:
    """A random but plausible community, fast and without pvlib or demandlib: 80% households
    (morning and evening peaks), 20% businesses (office hours); PV on half the households and 70%
    of businesses (a daylight bell with per-member cloudiness); batteries on ``battery_share``
    of the members (PV owners first); EV-style shiftable loads on ``shiftable_share``.
    Time-of-use import tariff, flat export tariff. Slot 0 starts at midnight."""
    rng = np.random.default_rng(seed)
    slot_hours = slot_seconds / SECONDS_PER_HOUR
    hour = ((np.arange(n_slots) + 0.5) * slot_hours) % 24  # local time at each slot's middle
    business = rng.random(n_members) < 0.2

    household_shape = 0.3 + 0.7 * np.exp(-(((hour - 7.5) / 1.2) ** 2)) + 1.2 * np.exp(-(((hour - 19.5) / 2.0) ** 2))
    business_shape = 0.25 + 1.0 / (1 + np.exp(-2 * (hour - 8))) - 1.0 / (1 + np.exp(-2 * (hour - 18)))
    shape = np.where(
        business[:, None], business_shape / business_shape.mean(), household_shape / household_shape.mean()
    )
    mean_kw = np.where(business, rng.uniform(2.0, 8.0, n_members), rng.uniform(0.3, 0.55, n_members))
    load_wh = shape * mean_kw[:, None] * rng.lognormal(0.0, 0.2, (n_members, n_slots)) * slot_hours * WH_PER_KWH

    has_pv = rng.random(n_members) < np.where(business, 0.7, 0.5)
    pv_kwp = np.where(business, rng.uniform(15, 60, n_members), rng.uniform(3, 8, n_members)) * has_pv
    daylight = np.clip(np.sin(np.pi * (hour - 6) / 14), 0, None) ** 1.5  # sunrise 6:00, sunset 20:00
    clouds = rng.uniform(0.5, 1.0, (n_members, 1)) * rng.uniform(0.7, 1.0, (n_members, n_slots))
    pv_wh = 0.8 * pv_kwp[:, None] * daylight * clouds * slot_hours * WH_PER_KWH

    # batteries go to PV owners first (a random order within each group)
    order = np.lexsort((rng.random(n_members), ~has_pv))
    with_battery = np.zeros(n_members, dtype=bool)
    with_battery[order[: round(battery_share * n_members)]] = True
    capacity_wh = np.where(business, rng.uniform(30e3, 100e3, n_members), rng.uniform(5e3, 13.5e3, n_members))
    with_shiftable = rng.random(n_members) < shiftable_share
    window_start = rng.integers(0, max(n_slots // 2, 1), n_members)
    window_slots = np.minimum(
        rng.integers(max(n_slots // 6, 1), max(n_slots // 2, 2), n_members), n_slots - window_start
    )
    ev_power_w = rng.choice([3_700.0, 7_400.0], n_members)
    ev_energy_wh = np.minimum(rng.uniform(5e3, 20e3, n_members), 0.6 * ev_power_w * slot_hours * window_slots)

    members = tuple(
        MemberForecast(
            f"{'business' if business[n] else 'home'}{n:05d}",
            load_wh[n],
            pv_wh[n],
            Battery(capacity_wh[n], capacity_wh[n] / 2, capacity_wh[n] / 2) if with_battery[n] else None,
            (
                ShiftableLoad(
                    ev_energy_wh[n], int(window_start[n]), int(window_start[n] + window_slots[n] - 1), ev_power_w[n]
                ),
            )
            if with_shiftable[n]
            else (),
        )
        for n in range(n_members)
    )
    import_price = np.select([hour < 7, (hour >= 16) & (hour < 20)], [180_000, 350_000], 250_000)
    return Community(members, import_price, np.full(n_slots, 60_000), fee_per_kwh=5_000, slot_seconds=slot_seconds)


# ---------------------------------------------------------------------------- helpers


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _energy_series(where: str, values: npt.ArrayLike) -> np.ndarray:
    series = np.array(values, dtype=float)  # a copy: the caller's array stays theirs
    _require(
        series.ndim == 1 and series.size > 0, f"{where}: expected a non-empty 1-D series, got shape {series.shape}"
    )
    _require(bool(np.isfinite(series).all()), f"{where}: values must be finite")
    negative = np.flatnonzero(series < 0)
    if negative.size:
        raise InputError(f"{where}: must be >= 0, slot {negative[0]} is {series[negative[0]]}")
    return _read_only(series)


def _price_series(where: str, values: npt.ArrayLike, n_slots: int) -> np.ndarray:
    raw = np.asarray(values)
    _require(
        raw.ndim == 0 or raw.shape == (n_slots,),
        f"{where}: expected a scalar or {n_slots} prices, got shape {raw.shape}",
    )
    _require(
        raw.dtype.kind in "iu" or (raw.dtype.kind == "f" and bool(np.all(raw == np.round(raw)))),
        f"{where}: prices must be integers (base units per kWh)",
    )
    prices = np.broadcast_to(raw, (n_slots,)).astype(np.int64)
    _require(bool((prices >= 0).all()), f"{where}: prices must be >= 0")
    return _read_only(prices)

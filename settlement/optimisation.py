"""The community optimisation ("energy collective") clearing engine (DESIGN.md sections 1, 2, 6).

The manager's engine schedules every battery and shiftable load of the community to minimise
the community's total cost against the supplier. The textbook LP (``Formulation.PER_MEMBER``)
has, per member n and slot t, all >= 0 (batteries and shiftable loads only where they exist):

    g_imp, g_exp   grid import / export           b, s   internal buy / sell
    c, d, soc      battery charge / discharge / state of charge
    e              consumption of each shiftable load, in its window

    member balance     pv - load - c + d - sum(e) + g_imp - g_exp + b - s = 0
    community balance  sum_n (s - b) = 0                 (its dual: the internal price)
    battery            soc[t] = soc[t-1] + eta_c c[t] - d[t] / eta_d   (soc[-1] = soc_initial)
                       soc_min <= soc <= soc_max,  soc[T-1] >= soc_initial,  c, d <= power limits
    shiftable load     sum of e over its window = its energy,  e <= its power limit
    minimise           sum import_price g_imp - export_price g_exp + fee (b + s)

The fee is paid by both sides of an internal trade. The engine solves an exact reduction of
this LP (``Formulation.AGGREGATE``, the default: a fraction of its size and solve time, see
benchmarks/clearing.py):

1. For fixed schedules, write x_n = pv - load - c + d - sum(e) (member n's net export),
   S = sum_n max(x_n, 0), D = sum_n max(-x_n, 0), X = S - D, and k+ = max(import - export -
   2 fee, 0), what an internal kWh saves. The textbook LP's cheapest grid flows and trades
   then trade V = min(S, D) inside when k+ > 0 (buying and exporting, or importing and
   selling, at once only adds cost), so each slot costs

       import D - export S - k+ min(S, D) = -import X + k+ max(X, 0) + rho S,

   with rho = import - export - k+ (twice the fee while trading pays). The reduced LP keeps
   the physical variables (c, d, soc, e) and adds one ``surplus >= X, >= 0`` per slot;
   members without a battery or shiftable load only add constants.
2. rho S needs each member's positive part max(x_n, 0). For a member with a shiftable load it
   is a variable ``exports >= x_n, >= 0`` (one row per slot). For a member with only a
   battery, the battery's flows are split by what the member's fixed position a = pv - load
   allows: charge = ``charge_own`` (up to max(a, 0): its own surplus) + ``charge_extra``,
   discharge = ``discharge_own`` (up to max(-a, 0): its own residual load) +
   ``discharge_extra``. Then max(a, 0) - charge_own + discharge_extra is at least
   max(x_n, 0) everywhere and equal to it whenever the own parts are used first and the
   battery does not charge and discharge at once -- which some optimum always does (cost
   does not increase with a member's net export), and which the LP prefers. So the battery
   needs no extra row: at 1,000 members this halves the LP's rows and its solve time.

Both give the same optimal objective and schedules (the tests check it against each other and
against exhaustive search). The internal price is the community balance's dual in the
textbook LP and ``import - fee - dual(surplus row)`` in the reduced one.

Either way the LP fixes the schedules (hence x); internal trades are then split pro rata: in
each slot every net exporter sells the same share V / S of its export inside the community and
every net importer buys the same share V / D of its import. (The textbook LP leaves that split
degenerate -- any split is optimal -- and the simplex would return an arbitrary one.)

The LP works in kWh and tokens (values of order 0.01-100 and 0.01-1), so that HiGHS's
tolerances mean the same everywhere; results come back in Wh and base units.

The engine proposes, the contracts decide: :func:`to_posted` turns the optimum into the integer
figures posted on-chain, :func:`check_posted` makes exactly the contracts' checks, and
:func:`certificate` lets an auditor check optimality from the primal and dual vectors alone.
"""

from __future__ import annotations

import csv
import enum
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from peerwatt.errors import PeerwattError
from peerwatt.units import BASE_UNITS_PER_TOKEN, WH_PER_KWH
from settlement.chunks import INTERNAL_TRADE_MAX_WH
from settlement.community import Community
from settlement.lp import (
    INF,
    Algorithm,
    LinearProgram,
    LpSolution,
    dual_bound,
    primal_infeasibility,
    primal_objective,
    solve,
)

TOKENS_PER_BASE_UNIT = 1 / BASE_UNITS_PER_TOKEN
# Solver noise is far below these; they only decide what counts as zero.
ENERGY_EPSILON_WH = 1e-6  # schedule values this close to zero are reported as zero
TRADE_EPSILON_WH = 1e-3  # a slot trades internally if more than this changes hands
CERTIFICATE_TOLERANCE = 1e-6  # kWh for rows and bounds, tokens per kWh for multipliers
# Measured on the 2-core reference machine: dual simplex wins on small LPs, HiGHS's interior
# point method (with crossover to a vertex) from about 40,000 columns (benchmarks/clearing.py).
SIMPLEX_MAX_COLUMNS = 40_000


class Formulation(enum.Enum):
    AGGREGATE = "aggregate"  # the exact reduction the engine solves by default
    PER_MEMBER = "per_member"  # the textbook LP: every member's grid flows and trades


class Flow(enum.IntEnum):
    """The battery column blocks, in layout order."""

    CHARGE_OWN = 0  # charge from the member's own surplus (at most max(pv - load, 0))
    CHARGE_EXTRA = 1  # the rest of the charge
    DISCHARGE_OWN = 2  # discharge into the member's own residual load (at most max(load - pv, 0))
    DISCHARGE_EXTRA = 3  # the rest of the discharge
    SOC = 4  # state of charge at the end of the slot


CHARGE = (Flow.CHARGE_OWN, Flow.CHARGE_EXTRA)
DISCHARGE = (Flow.DISCHARGE_OWN, Flow.DISCHARGE_EXTRA)


class Exchange(enum.IntEnum):
    """PER_MEMBER's [members x slots] column blocks, in layout order."""

    GRID_IMPORT = 0
    GRID_EXPORT = 1
    BUY = 2  # inside the community
    SELL = 3


class CertificateError(PeerwattError, ValueError):
    """An optimality certificate does not match its model, or does not hold."""

    exit_code = 65
    http_status = 422


# ------------------------------------------------------------------------------ layout


@dataclass(frozen=True, eq=False)
class ModelLayout:
    """Where each block of variables and constraints sits in the clearing LP.

    Columns: the physical blocks, [batteries x slots] for each :class:`Flow`, then one column
    per shiftable load and slot of its window; then the formulation's blocks -- PER_MEMBER:
    [members x slots] for each :class:`Exchange`; AGGREGATE: [exports members x slots] exports,
    then one surplus per slot (with internal trading only). Rows: battery dynamics, shiftable
    deliveries, then PER_MEMBER: member balances and community balances (with internal trading
    only); AGGREGATE: exports rows and surplus rows (with internal trading only).

    Every [items x slots] block is slot-major (all items of slot 0, then of slot 1, ...), the
    order cvxpy gives the same model: the columns a community row ties are then adjacent. (In
    A/B runs it was as fast at 1,000-5,000 members and ~7% faster at 10,000.)
    """

    formulation: Formulation
    internal_trading: bool
    n_members: int
    n_slots: int
    battery_members: np.ndarray  # member of each battery
    exports_members: np.ndarray  # members with a shiftable load (AGGREGATE: an exports variable)
    shift_load: np.ndarray  # shiftable load (numbered across members) of each shiftable column
    shift_member: np.ndarray  # member of each shiftable column
    shift_slot: np.ndarray  # slot of each shiftable column
    n_loads: int

    @classmethod
    def of(cls, community: Community, formulation: Formulation, internal_trading: bool) -> ModelLayout:
        members = community.members
        loads = [(n, load) for n, member in enumerate(members) for load in member.shiftable]
        sizes = [load.n_window_slots for _, load in loads]
        windows = [np.arange(load.earliest_slot, load.latest_slot + 1) for _, load in loads]
        return cls(
            formulation=formulation,
            internal_trading=internal_trading,
            n_members=community.n_members,
            n_slots=community.n_slots,
            battery_members=np.array([n for n, m in enumerate(members) if m.battery is not None], dtype=np.int64),
            exports_members=np.array([n for n, m in enumerate(members) if m.shiftable], dtype=np.int64),
            shift_load=np.repeat(np.arange(len(loads)), sizes),
            shift_member=np.repeat(np.array([n for n, _ in loads], dtype=np.int64), sizes),
            shift_slot=np.concatenate(windows) if windows else np.zeros(0, dtype=np.int64),
            n_loads=len(loads),
        )

    @property
    def battery_slots(self) -> int:
        return self.battery_members.size * self.n_slots

    @property
    def member_slots(self) -> int:
        return self.n_members * self.n_slots

    @property
    def exports_slots(self) -> int:
        return self.exports_members.size * self.n_slots

    def battery_block(self, flow: Flow) -> slice:
        return slice(flow * self.battery_slots, (flow + 1) * self.battery_slots)

    @property
    def shift_block(self) -> slice:
        start = len(Flow) * self.battery_slots
        return slice(start, start + self.shift_slot.size)

    @property
    def physical_columns(self) -> int:
        return self.shift_block.stop

    def member_block(self, exchange: Exchange) -> slice:
        start = self.physical_columns + exchange * self.member_slots
        return slice(start, start + self.member_slots)

    @property
    def exports_block(self) -> slice:
        """AGGREGATE columns: exports (>= net export, >= 0) of members with shiftable loads."""
        return slice(self.physical_columns, self.physical_columns + self.exports_slots)

    @property
    def surplus_block(self) -> slice:
        """AGGREGATE columns: the community's surplus per slot (>= its net export, >= 0)."""
        start = self.exports_block.stop
        return slice(start, start + (self.n_slots if self.internal_trading else 0))

    @property
    def n_cols(self) -> int:
        if self.formulation is Formulation.PER_MEMBER:
            return self.member_block(Exchange.SELL).stop
        return self.surplus_block.stop

    @property
    def price_rows(self) -> slice:
        """Rows whose duals give the internal prices (community balance, or surplus, rows)."""
        per_member_rows = self.member_slots if self.formulation is Formulation.PER_MEMBER else self.exports_slots
        start = self.battery_slots + self.n_loads + per_member_rows
        return slice(start, start + (self.n_slots if self.internal_trading else 0))


@dataclass(frozen=True, eq=False)
class ClearingModel:
    """A clearing LP and its layout."""

    lp: LinearProgram
    layout: ModelLayout


# ------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class _Rows:
    """A block of constraints as COO entries with block-local row numbers, and its bounds."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def build_model(
    community: Community, formulation: Formulation = Formulation.AGGREGATE, internal_trading: bool = True
) -> ClearingModel:
    """The clearing LP of ``community``. Without internal trading every member optimises
    alone (the LP decomposes by member; it is solved as one LP all the same)."""
    layout = ModelLayout.of(community, formulation, internal_trading)
    blocks = [_battery_dynamics(community, layout), _shift_delivery(community, layout)]
    if formulation is Formulation.PER_MEMBER:
        blocks.append(_member_balance(community, layout))
        if internal_trading:
            blocks.append(_community_balance(layout))
        cost, offset = _per_member_objective(community, layout)
    else:
        blocks.append(_exports_rows(community, layout))
        if internal_trading:
            blocks.append(_surplus_rows(community, layout))
        cost, offset = _aggregate_objective(community, layout)
    lower, upper = _physical_bounds(community, layout)
    # the formulation's columns are all >= 0 (trades fixed at 0 without internal trading)
    n_new = layout.n_cols - layout.physical_columns
    upper = np.concatenate([upper, np.full(n_new, INF)])
    if formulation is Formulation.PER_MEMBER and not internal_trading:
        upper[layout.member_block(Exchange.BUY).start : layout.member_block(Exchange.SELL).stop] = 0.0
    lp = LinearProgram(
        cost=cost,
        matrix=_stack(blocks, layout.n_cols),
        row_lower=np.concatenate([block.lower for block in blocks]),
        row_upper=np.concatenate([block.upper for block in blocks]),
        col_lower=np.concatenate([lower, np.zeros(n_new)]),
        col_upper=upper,
        offset=offset,
    )
    return ClearingModel(lp, layout)


def _battery_dynamics(community: Community, layout: ModelLayout) -> _Rows:
    """soc[t] - soc[t-1] - eta_c c[t] + d[t] / eta_d = (soc_initial if t == 0 else 0)."""
    n_slots, n_batteries = layout.n_slots, layout.battery_members.size
    eta_c = np.tile(_battery_values(community, layout, "charge_efficiency"), n_slots)
    eta_d = np.tile(_battery_values(community, layout, "discharge_efficiency"), n_slots)
    rows = np.arange(layout.battery_slots)  # row t * batteries + k: battery k in slot t
    later = rows[n_batteries:]  # rows with a soc[t-1] term: all but slot 0's
    soc = _columns(layout.battery_block(Flow.SOC))
    rhs = np.zeros(rows.size)
    rhs[:n_batteries] = _battery_values(community, layout, "soc_initial_wh") / WH_PER_KWH
    flows = [(flow, -eta_c) for flow in CHARGE] + [(flow, 1 / eta_d) for flow in DISCHARGE]
    return _Rows(
        rows=np.concatenate([rows, later] + [rows] * len(flows)),
        cols=np.concatenate(
            [soc, soc[later - n_batteries]] + [_columns(layout.battery_block(flow)) for flow, _ in flows]
        ),
        values=np.concatenate([np.ones(rows.size), -np.ones(later.size)] + [value for _, value in flows]),
        lower=rhs,
        upper=rhs,
    )


def _shift_delivery(community: Community, layout: ModelLayout) -> _Rows:
    """Each shiftable load gets its energy within its window: one row per load."""
    energy_kwh = np.array([load.energy_wh for m in community.members for load in m.shiftable], dtype=float)
    energy_kwh /= WH_PER_KWH
    cols = _columns(layout.shift_block)
    return _Rows(layout.shift_load, cols, np.ones(cols.size), energy_kwh, energy_kwh)


def _physical_bounds(community: Community, layout: ModelLayout) -> tuple[np.ndarray, np.ndarray]:
    n_slots, n_batteries = layout.n_slots, layout.battery_members.size
    kwh_per_w = community.slot_hours / WH_PER_KWH  # a power limit in W -> kWh in one slot

    def per_slot(name: str, scale: float) -> np.ndarray:
        return np.tile(_battery_values(community, layout, name) * scale, n_slots)

    max_charge, max_discharge = per_slot("max_charge_w", kwh_per_w), per_slot("max_discharge_w", kwh_per_w)
    fixed_net = _slot_major(community.pv_wh - community.load_wh, layout.battery_members) / WH_PER_KWH
    own_charge = np.clip(fixed_net, 0, max_charge)  # what the member's own surplus can charge
    own_discharge = np.clip(-fixed_net, 0, max_discharge)  # what its own residual load can take
    soc_lower = per_slot("soc_min_wh", 1 / WH_PER_KWH)
    # end the horizon with at least the initial charge: no emptying the battery for free
    soc_lower[(n_slots - 1) * n_batteries :] = _battery_values(community, layout, "soc_initial_wh") / WH_PER_KWH
    max_power_w = np.array([load.max_power_w for m in community.members for load in m.shiftable], dtype=float)
    zeros = np.zeros(layout.battery_slots)
    lower = np.concatenate([zeros, zeros, zeros, zeros, soc_lower, np.zeros(layout.shift_slot.size)])
    upper = np.concatenate(
        [
            own_charge,
            max_charge - own_charge,
            own_discharge,
            max_discharge - own_discharge,
            per_slot("soc_max_wh", 1 / WH_PER_KWH),
            max_power_w[layout.shift_load] * kwh_per_w,
        ]
    )
    return lower, upper


def _physical_draw(layout: ModelLayout, member_rows: np.ndarray, rows_per_slot: int, sign: float) -> _Rows:
    """``sign * (c - d + sum(e))`` of member n in slot t, in row ``t * rows_per_slot +
    member_rows[n]``: what the member's battery and shiftable loads draw beyond its fixed load.
    The entries only; the caller adds the rows' other terms and bounds."""
    slots = np.arange(layout.n_slots)
    battery_rows = (slots[:, None] * rows_per_slot + member_rows[layout.battery_members]).ravel()
    shift_rows = layout.shift_slot * rows_per_slot + member_rows[layout.shift_member]
    parts = [(battery_rows, layout.battery_block(flow), sign) for flow in CHARGE]
    parts += [(battery_rows, layout.battery_block(flow), -sign) for flow in DISCHARGE]
    parts.append((shift_rows, layout.shift_block, sign))
    empty = np.zeros(0)
    return _Rows(
        rows=np.concatenate([rows for rows, _, _ in parts]),
        cols=np.concatenate([_columns(block) for _, block, _ in parts]),
        values=np.concatenate([np.full(rows.size, value) for rows, _, value in parts]),
        lower=empty,
        upper=empty,
    )


# PER_MEMBER: the textbook LP


def _member_balance(community: Community, layout: ModelLayout) -> _Rows:
    """g_imp - g_exp + b - s - c + d - sum(e) = load - pv, one row per member and slot."""
    draw = _physical_draw(layout, np.arange(layout.n_members), layout.n_members, -1.0)
    member_rows = np.arange(layout.member_slots)
    signs = {Exchange.GRID_IMPORT: 1.0, Exchange.GRID_EXPORT: -1.0, Exchange.BUY: 1.0, Exchange.SELL: -1.0}
    need_kwh = _slot_major(community.load_wh - community.pv_wh) / WH_PER_KWH
    return _Rows(
        rows=np.concatenate([draw.rows] + [member_rows] * 4),
        cols=np.concatenate([draw.cols] + [_columns(layout.member_block(exchange)) for exchange in signs]),
        values=np.concatenate([draw.values] + [np.full(layout.member_slots, sign) for sign in signs.values()]),
        lower=need_kwh,
        upper=need_kwh,
    )


def _community_balance(layout: ModelLayout) -> _Rows:
    """sum_n (s - b) = 0, one row per slot."""
    slot_of = np.repeat(np.arange(layout.n_slots), layout.n_members)
    zeros = np.zeros(layout.n_slots)
    return _Rows(
        rows=np.concatenate([slot_of, slot_of]),
        cols=np.concatenate(
            [_columns(layout.member_block(Exchange.SELL)), _columns(layout.member_block(Exchange.BUY))]
        ),
        values=np.concatenate([np.ones(layout.member_slots), -np.ones(layout.member_slots)]),
        lower=zeros,
        upper=zeros,
    )


def _per_member_objective(community: Community, layout: ModelLayout) -> tuple[np.ndarray, float]:
    """Cost of every column (tokens per kWh): import price, minus export price, fee on trades."""
    return (
        np.concatenate(
            [
                np.zeros(layout.physical_columns),
                np.repeat(community.import_price * TOKENS_PER_BASE_UNIT, layout.n_members),
                np.repeat(-community.export_price * TOKENS_PER_BASE_UNIT, layout.n_members),
                np.full(2 * layout.member_slots, community.fee_per_kwh * TOKENS_PER_BASE_UNIT),
            ]
        ),
        0.0,
    )


# AGGREGATE: the exact reduction


def _exports_rows(community: Community, layout: ModelLayout) -> _Rows:
    """exports + c - d + sum(e) >= pv - load (exports >= net export), per exports member-slot."""
    n_exports = layout.exports_members.size
    exports_row = np.full(layout.n_members, -layout.exports_slots - 1)  # other members' rows: negative
    exports_row[layout.exports_members] = np.arange(n_exports)
    draw = _physical_draw(layout, exports_row, n_exports, 1.0)
    keep = draw.rows >= 0
    own = np.arange(layout.exports_slots)
    fixed_net_kwh = _slot_major(community.pv_wh - community.load_wh, layout.exports_members) / WH_PER_KWH
    return _Rows(
        rows=np.concatenate([draw.rows[keep], own]),
        cols=np.concatenate([draw.cols[keep], _columns(layout.exports_block)]),
        values=np.concatenate([draw.values[keep], np.ones(own.size)]),
        lower=fixed_net_kwh,
        upper=np.full(own.size, INF),
    )


def _surplus_rows(community: Community, layout: ModelLayout) -> _Rows:
    """surplus + sum_n (c - d + sum(e)) >= sum_n (pv - load) (surplus >= X), one row per slot."""
    draw = _physical_draw(layout, np.zeros(layout.n_members, dtype=np.int64), 1, 1.0)  # row t for every member
    slots = np.arange(layout.n_slots)
    return _Rows(
        rows=np.concatenate([draw.rows, slots]),
        cols=np.concatenate([draw.cols, _columns(layout.surplus_block)]),
        values=np.concatenate([draw.values, np.ones(slots.size)]),
        lower=(community.pv_wh - community.load_wh).sum(axis=0) / WH_PER_KWH,
        upper=np.full(slots.size, INF),
    )


def _aggregate_objective(community: Community, layout: ModelLayout) -> tuple[np.ndarray, float]:
    """Cost of every column (tokens per kWh) and the constant of
    -import X + k+ surplus + rho (sum of every member's exports)."""
    import_price = community.import_price * TOKENS_PER_BASE_UNIT
    export_price = community.export_price * TOKENS_PER_BASE_UNIT
    gain = _trading_gain(community) * TOKENS_PER_BASE_UNIT if layout.internal_trading else np.zeros(layout.n_slots)
    rho = import_price - export_price - gain  # twice the fee while trading pays, else the spread
    n_batteries = layout.battery_members.size
    # rho on exports: battery-only members' exports are max(a, 0) - charge_own + discharge_extra
    battery_only = ~np.isin(layout.battery_members, layout.exports_members)
    rho_battery = (rho[:, None] * battery_only).ravel()
    charge_cost, discharge_cost = np.repeat(import_price, n_batteries), np.repeat(-import_price, n_batteries)
    cost = np.concatenate(
        [
            # -import X with X = sum(pv - load) - sum(c - d + e): what the draws add costs the import price
            charge_cost - rho_battery,
            charge_cost,
            discharge_cost,
            discharge_cost + rho_battery,
            np.zeros(layout.battery_slots),
            import_price[layout.shift_slot],
            np.repeat(rho, layout.exports_members.size),
            gain if layout.internal_trading else np.zeros(0),
        ]
    )
    # the constant: -import X and rho max(a, 0) of the fixed loads and PV (but for exports members)
    fixed_net_kwh = (community.pv_wh - community.load_wh) / WH_PER_KWH
    fixed_net_kwh[layout.exports_members] = 0.0
    constant = -import_price @ ((community.pv_wh - community.load_wh).sum(axis=0) / WH_PER_KWH)
    return cost, float(constant + rho @ np.maximum(fixed_net_kwh, 0).sum(axis=0))


def _band_open(community: Community) -> np.ndarray:
    """Per slot: is there an internal price at which both sides of a trade gain (k >= 0)?"""
    lowest, highest = community.trade_band
    return lowest <= highest


def _trading_gain(community: Community) -> np.ndarray:
    """k+ per slot, base units per kWh: what one internal kWh saves (0 where the fee eats it)."""
    lowest, highest = community.trade_band
    return np.maximum(highest - lowest, 0).astype(float)


def _battery_values(community: Community, layout: ModelLayout, name: str) -> np.ndarray:
    """Field ``name`` of every battery, in battery order."""
    return np.array([getattr(community.members[n].battery, name) for n in layout.battery_members], dtype=float)


def _stack(blocks: list[_Rows], n_cols: int) -> sp.csc_matrix:
    offsets = np.cumsum([0] + [block.lower.size for block in blocks])
    rows = np.concatenate([block.rows + offset for block, offset in zip(blocks, offsets[:-1], strict=True)])
    cols = np.concatenate([block.cols for block in blocks])
    values = np.concatenate([block.values for block in blocks])
    matrix = sp.csc_matrix((values, (rows, cols)), shape=(int(offsets[-1]), n_cols))
    matrix.sort_indices()
    return matrix


def _columns(block: slice) -> np.ndarray:
    return np.arange(block.start, block.stop)


def _slot_major(values: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
    """[members x slots] ``values`` (of ``items`` only) flattened slot by slot."""
    selected = values if items is None else values[items]
    return np.ascontiguousarray(selected.T).ravel()


# ------------------------------------------------------------------------------ result


@dataclass(frozen=True, eq=False)
class ClearingResult:
    """The optimal schedule of a community, its internal prices and every member's bills.

    Energy arrays are [members x slots] in Wh (zeros where a member has no battery or
    shiftable load); prices are base units per kWh; bills are base units (positive: the
    member pays) over the horizon. ``net_export_wh`` is what the meter will see (pv - load -
    charge + discharge - shifted; positive exports) and ``internal_wh`` the part of it traded
    inside the community (positive sells). ``objective`` is the community's total cost.
    """

    community: Community
    net_export_wh: np.ndarray
    internal_wh: np.ndarray
    grid_import_wh: np.ndarray
    grid_export_wh: np.ndarray
    battery_charge_wh: np.ndarray
    battery_discharge_wh: np.ndarray
    soc_wh: np.ndarray
    shifted_wh: np.ndarray
    internal_price: np.ndarray
    bill: np.ndarray
    standalone_bill: np.ndarray
    own_optimum_bill: np.ndarray | None
    objective: float
    build_seconds: float
    solve_seconds: float
    model: ClearingModel
    solution: LpSolution

    @property
    def savings(self) -> np.ndarray:
        """What each member saves against its stand-alone bill for the same schedule (>= 0)."""
        return self.standalone_bill - self.bill


def clear(
    community: Community,
    *,
    own_optimum: bool = False,
    formulation: Formulation = Formulation.AGGREGATE,
    algorithm: Algorithm | None = None,
    threads: int | None = None,
) -> ClearingResult:
    """Schedule and price ``community`` at its optimum. ``own_optimum`` also solves each
    member's best schedule alone (no internal trading) for ``own_optimum_bill``.
    ``algorithm`` None chooses by size (see SIMPLEX_MAX_COLUMNS)."""
    started = time.perf_counter()
    model = build_model(community, formulation)
    build_seconds = time.perf_counter() - started
    solution = solve(model.lp, algorithm or _algorithm_for(model.lp), threads)
    schedule = _schedule(community, model.layout, solution.x)
    net_export = schedule.net_export(community)
    internal = pro_rata_trades(net_export, _band_open(community))
    price = _internal_price(community, model.layout, solution.row_dual, internal)
    own = _own_optimum_bill(community, formulation, algorithm, threads) if own_optimum else None
    return ClearingResult(
        community=community,
        net_export_wh=net_export,
        internal_wh=internal,
        grid_import_wh=np.maximum(-(net_export - internal), 0),
        grid_export_wh=np.maximum(net_export - internal, 0),
        battery_charge_wh=schedule.charge,
        battery_discharge_wh=schedule.discharge,
        soc_wh=schedule.soc,
        shifted_wh=schedule.shifted,
        internal_price=price,
        bill=_bills(community, net_export, internal, price),
        standalone_bill=_bills(community, net_export),
        own_optimum_bill=own,
        objective=solution.objective * BASE_UNITS_PER_TOKEN,
        build_seconds=build_seconds,
        solve_seconds=solution.seconds,
        model=model,
        solution=solution,
    )


def tariff_cost(net_export: Any, import_price: Any, export_price: Any) -> Any:
    """What a net export (Wh, negative: import) costs at the tariffs, in Wh x base units per
    kWh (1/1000 base unit). Exact on integers; works on arrays alike."""
    return import_price * np.maximum(-net_export, 0) - export_price * np.maximum(net_export, 0)


def community_cost(net_export: Any, internal: Any, price: Any, fee: Any, import_price: Any, export_price: Any) -> Any:
    """What a member pays in the community (same units as :func:`tariff_cost`): its internal
    trade at the internal price plus the fee, and the rest of its net export at the tariffs."""
    return tariff_cost(net_export - internal, import_price, export_price) - internal * price + fee * np.abs(internal)


def pro_rata_trades(net_export: np.ndarray, tradeable: np.ndarray) -> np.ndarray:
    """Internal trades [members x slots] of the schedule ``net_export``: in each slot where
    ``tradeable``, V = min(exports, imports) changes hands; every exporter sells the same share
    V / exports of its export and every importer buys the same share V / imports of its import."""
    exports, imports = np.maximum(net_export, 0), np.maximum(-net_export, 0)
    supply, demand = exports.sum(axis=0), imports.sum(axis=0)
    volume = np.where(tradeable, np.minimum(supply, demand), 0.0)
    sold = exports * _ratio(volume, supply)
    bought = imports * _ratio(volume, demand)
    return sold - bought


@dataclass(frozen=True)
class _Schedule:
    charge: np.ndarray
    discharge: np.ndarray
    soc: np.ndarray
    shifted: np.ndarray

    def net_export(self, community: Community) -> np.ndarray:
        """What the meters will see: pv - load - charge + discharge - shifted (Wh)."""
        return _snap(community.pv_wh - community.load_wh - self.charge + self.discharge - self.shifted)


def _schedule(community: Community, layout: ModelLayout, x: np.ndarray) -> _Schedule:
    """Battery and shiftable schedules [members x slots] in Wh from the LP's columns."""
    shape = (community.n_members, community.n_slots)

    def per_member(*flows: Flow) -> np.ndarray:
        values = np.zeros(shape)
        kwh = sum(x[layout.battery_block(flow)] for flow in flows)
        values[layout.battery_members] = np.reshape(kwh, (layout.n_slots, -1)).T * WH_PER_KWH
        return _snap(values)

    shifted = np.bincount(
        layout.shift_member * layout.n_slots + layout.shift_slot,
        weights=x[layout.shift_block] * WH_PER_KWH,
        minlength=layout.member_slots,
    ).reshape(shape)
    return _Schedule(per_member(*CHARGE), per_member(*DISCHARGE), per_member(Flow.SOC), _snap(shifted))


def _internal_price(
    community: Community, layout: ModelLayout, row_dual: np.ndarray, internal: np.ndarray
) -> np.ndarray:
    """The internal price per slot, base units per kWh, from the dual of the price rows.

    Where internal trade happens and the band [export + fee, import - fee] is non-empty the
    price is clamped to it: at the optimum a buyer never pays more than importing would cost it
    and a seller never gets less than exporting would pay it, so the dual already lies in the
    band and the clamp only removes solver noise (and so keeps every trade individually
    rational in exact arithmetic). Elsewhere it is clamped to [export, import].
    """
    dual = row_dual[layout.price_rows] * BASE_UNITS_PER_TOKEN
    if layout.formulation is Formulation.AGGREGATE:
        dual = community.import_price - community.fee_per_kwh - dual  # import - fee - dual(surplus)
    lowest, highest = community.trade_band
    trading = (np.maximum(internal, 0).sum(axis=0) > TRADE_EPSILON_WH) & _band_open(community)
    return np.clip(
        dual,
        np.where(trading, lowest, community.export_price),
        np.where(trading, highest, community.import_price),
    ).astype(float)


def _bills(
    community: Community, net_export: np.ndarray, internal: np.ndarray | None = None, price: np.ndarray | None = None
) -> np.ndarray:
    """Bills in base units: in the community (with ``internal`` and ``price``) or alone."""
    if internal is None or price is None:
        cost = tariff_cost(net_export, community.import_price, community.export_price)
    else:
        cost = community_cost(
            net_export, internal, price, community.fee_per_kwh, community.import_price, community.export_price
        )
    return cost.sum(axis=1) / WH_PER_KWH


def _own_optimum_bill(
    community: Community, formulation: Formulation, algorithm: Algorithm | None, threads: int | None
) -> np.ndarray:
    """Each member's bill at its own best schedule without the community."""
    model = build_model(community, formulation, internal_trading=False)
    solution = solve(model.lp, algorithm or _algorithm_for(model.lp), threads)
    return _bills(community, _schedule(community, model.layout, solution.x).net_export(community))


def _algorithm_for(lp: LinearProgram) -> Algorithm:
    return Algorithm.SIMPLEX if lp.n_cols <= SIMPLEX_MAX_COLUMNS else Algorithm.IPM


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=float), where=denominator > 0)


def _snap(values: np.ndarray) -> np.ndarray:
    """Solver noise around zero reported as zero."""
    return np.where(np.abs(values) < ENERGY_EPSILON_WH, 0.0, values)


# ------------------------------------------------------------------------------ posted


@dataclass(frozen=True, eq=False)
class PostedClearing:
    """The integer figures the manager posts on-chain for the contracts to check.

    Per slot a price (base units per kWh); per member and slot its net export and internal
    trade (Wh; positive exports / sells). Bills are per member over the horizon in Wh x base
    units per kWh (1/1000 base unit), so that comparisons are exact: ``bill`` in the
    community, ``standalone_bill`` at the tariffs alone for the same net exports.
    """

    member_names: tuple[str, ...]
    price_per_kwh: np.ndarray
    net_export_wh: np.ndarray
    internal_wh: np.ndarray
    bill_milli_base_units: np.ndarray
    standalone_bill_milli_base_units: np.ndarray


def to_posted(result: ClearingResult) -> PostedClearing:
    """The posted figures of ``result``: net exports rounded to Wh; in each slot whose trade
    band is non-empty, V = min(posted exports, posted imports) Wh traded, split pro rata by the
    largest-remainder method (so trades sum to exactly 0, and each |q| <= |x| with the sign of
    x); prices rounded into the band where trades happen. Every member-slot is then
    individually rational in exact integer arithmetic (:func:`check_posted`)."""
    community = result.community
    net_export = np.rint(result.net_export_wh).astype(np.int64)
    lowest, highest = community.trade_band
    exports, imports = np.maximum(net_export, 0), np.maximum(-net_export, 0)
    volume = np.where(_band_open(community), np.minimum(exports.sum(axis=0), imports.sum(axis=0)), 0)
    internal = largest_remainder(exports, volume) - largest_remainder(imports, volume)
    trading = volume > 0
    price = np.clip(
        np.rint(result.internal_price).astype(np.int64),
        np.where(trading, lowest, community.export_price),
        np.where(trading, highest, community.import_price),
    )
    bill, standalone = _exact_bills(community, net_export, internal, price)
    return PostedClearing(community.names, price, net_export, internal, bill, standalone)


def largest_remainder(weights: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Split each column's integer ``totals[t]`` (<= the column's sum) among the rows in
    proportion to the non-negative integer ``weights``, exactly: each row gets the floor of its
    share, then the rows with the largest remainders (ties: lower row first) one more, so that
    no row gets more than its weight and each column sums to its total."""
    weights, totals = _exact_ints(weights, totals)
    column_sum = weights.sum(axis=0)
    denominator = np.where(column_sum > 0, column_sum, 1)
    shares = weights * totals
    floors, remainders = shares // denominator, shares % denominator  # (no divmod on Python ints)
    short = totals - floors.sum(axis=0)  # < number of rows with a remainder
    order = np.argsort(-remainders, axis=0, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(weights.shape[0])[:, None], axis=0)
    return (floors + (rank < short)).astype(np.int64)


def check_posted(posted: PostedClearing, community: Community) -> list[str]:
    """Every way ``posted`` breaks the rules the contracts enforce (DESIGN.md section 6); empty
    if it is acceptable. Per slot: price within [export, import], internal trades sum to 0.
    Per member and slot: |q| <= min(|x|, INTERNAL_TRADE_MAX_WH) and q has the sign of x (or is 0), and the community cost
    tariff(x - q) - q p + f |q| is at most the stand-alone cost tariff(x). Per member: the
    posted bills are the sums of those costs."""
    shape = (community.n_members, community.n_slots)
    if posted.member_names != community.names:
        return ["posted members differ from the community's"]
    if (
        posted.net_export_wh.shape != shape
        or posted.internal_wh.shape != shape
        or posted.price_per_kwh.shape != shape[1:]
    ):
        return [f"posted figures do not cover {shape[0]} members x {shape[1]} slots"]
    x, q, price, import_price, export_price = _exact_ints(
        posted.net_export_wh, posted.internal_wh, posted.price_per_kwh, community.import_price, community.export_price
    )
    names = community.names
    problems = [
        f"slot {t}: price {price[t]} outside [{export_price[t]}, {import_price[t]}]"
        for t in np.flatnonzero((price < export_price) | (price > import_price))
    ]
    sums = q.sum(axis=0)
    problems += [f"slot {t}: internal trades sum to {sums[t]} Wh, not 0" for t in np.flatnonzero(sums != 0)]
    problems += [
        f"member {names[n]}, slot {t}: internal trade {q[n, t]} Wh beyond the contract's +-{INTERNAL_TRADE_MAX_WH} Wh"
        for n, t in np.argwhere(np.abs(q) > INTERNAL_TRADE_MAX_WH)
    ]
    too_large = np.abs(q) > np.abs(x)
    problems += [
        f"member {names[n]}, slot {t}: internal trade {q[n, t]} Wh exceeds net export {x[n, t]} Wh"
        for n, t in np.argwhere(too_large)
    ]
    problems += [
        f"member {names[n]}, slot {t}: internal trade {q[n, t]} Wh against net export {x[n, t]} Wh"
        for n, t in np.argwhere((q != 0) & (np.sign(q) != np.sign(x)) & ~too_large)
    ]
    cost = community_cost(x, q, price, community.fee_per_kwh, import_price, export_price)
    alone = tariff_cost(x, import_price, export_price)
    problems += [
        f"member {names[n]}, slot {t}: pays {cost[n, t]} in the community, {alone[n, t]} alone (Wh x base units/kWh)"
        for n, t in np.argwhere(cost > alone)
    ]
    for label, posted_bills, bills in (
        ("bill", posted.bill_milli_base_units, cost.sum(axis=1)),
        ("stand-alone bill", posted.standalone_bill_milli_base_units, alone.sum(axis=1)),
    ):
        problems += [
            f"member {names[n]}: posted {label} {posted_bills[n]}, recomputed {bills[n]}"
            for n in np.flatnonzero(np.asarray(posted_bills) != bills)
        ]
    return problems


def _exact_bills(
    community: Community, x: np.ndarray, q: np.ndarray, price: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    x, q, price, import_price, export_price = _exact_ints(x, q, price, community.import_price, community.export_price)
    cost = community_cost(x, q, price, community.fee_per_kwh, import_price, export_price)
    alone = tariff_cost(x, import_price, export_price)
    return cost.sum(axis=1), alone.sum(axis=1)


def _exact_ints(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays as int64, or as Python integers (object arrays) if sums of products of their
    values could overflow int64: posted figures are compared exactly, never rounded."""
    converted = [np.asarray(a).astype(np.int64) for a in arrays]
    largest = max(int(np.abs(a).max(initial=0)) for a in converted)
    terms = max(a.size for a in converted)
    if (largest + 1) ** 2 * 4 * terms >= 2**63:  # a bill sums a few products per member-slot
        return [a.astype(object) for a in converted]
    return converted


# ------------------------------------------------------------------------- certificate


def certificate(result: ClearingResult) -> dict[str, Any]:
    """An optimality certificate of ``result``'s LP: the primal objective, the dual objective
    recomputed from the row duals alone (reduced costs = cost - A.T y, each multiplier times
    the bound its sign selects), the duality gap, the infeasibilities, a digest of the model,
    and the vectors. Objectives in base units; vectors in the LP's units (x in kWh, duals in
    tokens per kWh)."""
    model, solution = result.model, result.solution
    summary = _certificate_summary(model, solution.x, solution.row_dual, solution.col_dual)
    return {**summary, "x": solution.x, "row_dual": solution.row_dual, "col_dual": solution.col_dual}


def write_schedule(path: Path, posted: PostedClearing) -> Path:
    """The posted figures as CSV (member,slot_offset,net_export_wh,internal_wh,price_per_kwh): the
    file whose hash a posted schedule carries (``resultHash``)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("member", "slot_offset", "net_export_wh", "internal_wh", "price_per_kwh"))
        for row, name in enumerate(posted.member_names):
            for offset in range(posted.price_per_kwh.size):
                writer.writerow(
                    (
                        name,
                        offset,
                        posted.net_export_wh[row, offset],
                        posted.internal_wh[row, offset],
                        posted.price_per_kwh[offset],
                    )
                )
    return path


def write_certificate(result: ClearingResult, path: str | Path) -> Path:
    """Write ``result``'s certificate: a JSON summary at ``path`` and its vectors beside it
    (same name, ``.npz``). Returns the vectors' path."""
    path = Path(path)
    content = certificate(result)
    vectors = path.with_suffix(".npz")
    np.savez_compressed(vectors, x=content.pop("x"), row_dual=content.pop("row_dual"), col_dual=content.pop("col_dual"))
    path.write_text(json.dumps(content, indent=2) + "\n")
    return vectors


def verify_certificate(path: str | Path, community: Community, max_relative_gap: float | None = 1e-6) -> float:
    """Check the certificate at ``path`` (and its ``.npz``) against ``community``'s LP, rebuilt
    here: the model digest, primal and dual feasibility, and that the recorded objectives are
    the ones the vectors give. Returns the duality gap in base units (primal - dual >= 0 up to
    rounding); raises CertificateError if anything fails or the relative gap exceeds
    ``max_relative_gap`` (None: report it only)."""
    path = Path(path)
    try:
        recorded = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as vectors:
            x, row_dual, col_dual = vectors["x"], vectors["row_dual"], vectors["col_dual"]
        formulation = Formulation(recorded["formulation"])
    except (OSError, ValueError, KeyError) as error:
        raise CertificateError(f"{path}: not a readable certificate: {error}") from error
    model = build_model(community, formulation)
    if recorded.get("model_digest") != model.lp.digest():
        raise CertificateError(f"{path}: certifies another model than this community's")
    if x.shape != (model.lp.n_cols,) or row_dual.shape != (model.lp.n_rows,):
        raise CertificateError(f"{path}: vectors do not fit the model")
    summary = _certificate_summary(model, x, row_dual, col_dual)
    for key in ("primal_infeasibility", "dual_infeasibility"):
        if summary[key] > CERTIFICATE_TOLERANCE:
            raise CertificateError(
                f"{path}: {key.replace('_', ' ')} {summary[key]:.3g} exceeds {CERTIFICATE_TOLERANCE}"
            )
    for key in ("primal_objective", "dual_objective"):
        if not np.isclose(recorded.get(key, np.nan), summary[key], rtol=1e-9, atol=1e-3):
            raise CertificateError(f"{path}: recorded {key} {recorded.get(key)}, the vectors give {summary[key]}")
    if max_relative_gap is not None and summary["relative_gap"] > max_relative_gap:
        raise CertificateError(f"{path}: relative duality gap {summary['relative_gap']:.3g} exceeds {max_relative_gap}")
    return float(summary["duality_gap"])


def _certificate_summary(
    model: ClearingModel, x: np.ndarray, row_dual: np.ndarray, col_dual: np.ndarray
) -> dict[str, Any]:
    lp = model.lp
    primal = primal_objective(lp, x) * BASE_UNITS_PER_TOKEN
    dual = dual_bound(lp, row_dual)
    dual_value = dual.value * BASE_UNITS_PER_TOKEN
    gap = primal - dual_value
    return {
        "formulation": model.layout.formulation.value,
        "model_digest": lp.digest(),
        "n_cols": lp.n_cols,
        "n_rows": lp.n_rows,
        "units": {"objectives": "base units", "x": "kWh", "duals": "tokens per kWh"},
        "primal_objective": primal,
        "dual_objective": dual_value,
        "duality_gap": gap,
        "relative_gap": abs(gap) / max(1.0, abs(primal)),
        "primal_infeasibility": primal_infeasibility(lp, x),
        "dual_infeasibility": dual.infeasibility,
        # how far the solver's reduced costs are from cost - A.T y (informative only)
        "reduced_cost_residual": float(np.max(np.abs(col_dual - (lp.cost - lp.matrix.T @ row_dual)), initial=0.0)),
    }

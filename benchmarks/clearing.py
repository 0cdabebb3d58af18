"""Time of the community optimisation engine (``settlement.optimisation.clear``) against the
same LP written the natural way in cvxpy and solved by the same HiGHS.

Communities from ``synthetic_community``: 100 and 1,000 members (10,000 with ``--large``) x 96
15-minute slots, 30% with batteries, 5% with a shiftable load. For each size:

- the engine: ``clear()`` end to end (build the sparse LP, solve it with HiGHS, extract the
  schedules, prices and bills), best of ``--repeat`` runs, build and solve also reported apart;
  once more with ``Formulation.PER_MEMBER`` (the textbook LP, built the engine's way) up to
  1,000 members;
- ``cvxpy``: the textbook LP of the design (every member's grid import, grid export, internal
  buy and sell; DESIGN.md section 1) as cvxpy expressions, timed from building the problem to
  the solution (cvxpy's compilation included), with the HiGHS algorithm the engine uses (one
  run: it is slow);
- ``cvxpy_aggregate``: the engine's own exact reduction of that LP in cvxpy, best of
  ``--repeat`` runs (isolates what the direct sparse build saves over cvxpy's compilation from
  what the reformulation saves).

The machine is shared: the JSON records the load average, and times vary by +-30% with it.

All three optima must agree to 1e-6 relative. Results: benchmarks/results/clearing.json.

    python benchmarks/clearing.py [--large] [--repeat 3] [--out benchmarks/results/clearing.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from peerwatt.toolchain import PROJECT_ROOT
from settlement.community import Community, synthetic_community
from settlement.lp import Algorithm
from settlement.optimisation import SIMPLEX_MAX_COLUMNS, ClearingResult, Formulation, clear

SLOTS = 96
TARGET_SECONDS_1000 = 5.0
TARGET_SPEEDUP = 3.0
TOKENS = 1e-6  # base units -> tokens, as in the engine's LP
KWH = 1e-3  # Wh -> kWh


class CvxpyModel:
    """The community's physical variables and constraints (batteries, shiftable loads) as cvxpy
    expressions; the two objectives below add the grid and trade side."""

    def __init__(self, community: Community) -> None:
        members, n_slots = community.members, community.n_slots
        self.community = community
        batteries = [(n, m.battery) for n, m in enumerate(members) if m.battery is not None]
        loads = [(n, load) for n, m in enumerate(members) for load in m.shiftable]
        n_members, n_batteries, n_loads = len(members), len(batteries), len(loads)
        # the engine's split of the battery flows by the member's own surplus / residual load
        # (harmless for the textbook LP, needed by the reduced one)
        self.charge_own = cp.Variable((n_batteries, n_slots), nonneg=True)
        self.charge_extra = cp.Variable((n_batteries, n_slots), nonneg=True)
        self.discharge_own = cp.Variable((n_batteries, n_slots), nonneg=True)
        self.discharge_extra = cp.Variable((n_batteries, n_slots), nonneg=True)
        self.charge = self.charge_own + self.charge_extra
        self.discharge = self.discharge_own + self.discharge_extra
        self.soc = cp.Variable((n_batteries, n_slots))
        self.shifted = cp.Variable((n_loads, n_slots), nonneg=True)

        def column(values: list[float]) -> np.ndarray:
            return np.array(values, dtype=float)[:, None]

        eta_c = column([b.charge_efficiency for _, b in batteries])
        eta_d = column([b.discharge_efficiency for _, b in batteries])
        soc0 = column([b.soc_initial_wh * KWH for _, b in batteries])  # type: ignore[operator]
        per_slot = community.slot_hours * KWH  # W -> kWh per slot
        window = np.zeros((n_loads, n_slots))
        for j, (_, load) in enumerate(loads):
            window[j, load.earliest_slot : load.latest_slot + 1] = load.max_power_w * per_slot
        stored = cp.multiply(eta_c, self.charge) - cp.multiply(1 / eta_d, self.discharge)
        max_charge = column([b.max_charge_w * per_slot for _, b in batteries])
        max_discharge = column([b.max_discharge_w * per_slot for _, b in batteries])
        self.battery_fixed_net = ((community.pv_wh - community.load_wh) * KWH)[[n for n, _ in batteries]]
        own_charge = np.clip(self.battery_fixed_net, 0, max_charge)
        own_discharge = np.clip(-self.battery_fixed_net, 0, max_discharge)
        self.constraints = [
            self.soc[:, :1] == soc0 + stored[:, :1],
            self.soc[:, 1:] == self.soc[:, :-1] + stored[:, 1:],
            self.charge_own <= own_charge,
            self.charge_extra <= max_charge - own_charge,
            self.discharge_own <= own_discharge,
            self.discharge_extra <= max_discharge - own_discharge,
            self.soc >= column([b.soc_min_wh * KWH for _, b in batteries]),
            self.soc <= column([b.soc_max_wh * KWH for _, b in batteries]),  # type: ignore[operator]
            self.soc[:, -1:] >= soc0,
            self.shifted <= window,
            cp.sum(self.shifted, axis=1) == np.array([load.energy_wh * KWH for _, load in loads]),
        ]
        # what batteries and shiftable loads draw at each member: [members x slots]
        to_member_b = sp.csr_matrix(
            (np.ones(n_batteries), ([n for n, _ in batteries], range(n_batteries))), (n_members, n_batteries)
        )
        to_member_l = sp.csr_matrix((np.ones(n_loads), ([n for n, _ in loads], range(n_loads))), (n_members, n_loads))
        self.draw = to_member_b @ (self.charge - self.discharge) + to_member_l @ self.shifted
        self.battery_only = np.array([not members[n].shiftable for n, _ in batteries], dtype=bool)
        self.with_loads = sorted({n for n, _ in loads})
        self.fixed_net = (community.pv_wh - community.load_wh) * KWH
        self.import_price = community.import_price * TOKENS
        self.export_price = community.export_price * TOKENS
        self.fee = community.fee_per_kwh * TOKENS

    def textbook(self) -> cp.Problem:
        """Every member's grid import and export and internal buy and sell."""
        shape = (self.community.n_members, self.community.n_slots)
        grid_import, grid_export = cp.Variable(shape, nonneg=True), cp.Variable(shape, nonneg=True)
        buy, sell = cp.Variable(shape, nonneg=True), cp.Variable(shape, nonneg=True)
        constraints = self.constraints + [
            self.fixed_net - self.draw + grid_import - grid_export + buy - sell == 0,
            cp.sum(sell - buy, axis=0) == 0,
        ]
        cost = (
            cp.sum(grid_import @ self.import_price)
            - cp.sum(grid_export @ self.export_price)
            + self.fee * cp.sum(buy + sell)
        )
        return cp.Problem(cp.Minimize(cost), constraints)

    def aggregate(self) -> cp.Problem:
        """The engine's reduction: -import X + k+ surplus + rho (sum of every member's exports),
        exports an explicit variable for members with shiftable loads and, for battery-only
        members, max(a, 0) - charge_own + discharge_extra."""
        gain = np.maximum(self.import_price - self.export_price - 2 * self.fee, 0)
        rho = self.import_price - self.export_price - gain
        with_loads = self.with_loads
        others = np.setdiff1d(np.arange(self.community.n_members), with_loads)
        exports = cp.Variable((len(with_loads), self.community.n_slots), nonneg=True)
        surplus = cp.Variable(self.community.n_slots, nonneg=True)
        community_net = np.sum(self.fixed_net, axis=0) - cp.sum(self.draw, axis=0)
        constraints = self.constraints + [
            exports >= self.fixed_net[with_loads] - self.draw[with_loads],
            surplus >= community_net,
        ]
        only = self.battery_only
        battery_exports = cp.sum(self.discharge_extra[only] - self.charge_own[only], axis=0)
        fixed_exports = np.maximum(self.fixed_net[others], 0).sum(axis=0)
        cost = (
            -self.import_price @ community_net
            + gain @ surplus
            + rho @ (cp.sum(exports, axis=0) + battery_exports + fixed_exports)
        )
        return cp.Problem(cp.Minimize(cost), constraints)


def time_cvxpy(community: Community, formulation: str, algorithm: str, repeat: int) -> dict[str, Any]:
    """Best of ``repeat`` runs, from building the cvxpy problem to its solution."""
    best: dict[str, Any] = {}
    for _ in range(repeat):
        started = time.perf_counter()
        problem = getattr(CvxpyModel(community), formulation)()
        problem.solve(solver=cp.HIGHS, highs_options={"solver": algorithm})
        total = time.perf_counter() - started
        if problem.status != cp.OPTIMAL:
            raise RuntimeError(f"cvxpy {formulation}: {problem.status}")
        if not best or total < best["total_s"]:
            best = {
                "total_s": round(total, 3),
                "solver_s": round(problem.solver_stats.solve_time or 0.0, 3),
                "variables": int(sum(v.size for v in problem.variables())),
                "objective": float(problem.value) / TOKENS,
            }
    return best


def time_engine(community: Community, repeat: int) -> tuple[ClearingResult, list[float]]:
    best: ClearingResult | None = None
    totals = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = clear(community)
        totals.append(time.perf_counter() - started)
        if best is None or totals[-1] <= min(totals):
            best = result
    assert best is not None
    return best, totals


def run(n_members: int, repeat: int, baselines: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    community = synthetic_community(n_members, SLOTS, battery_share=0.3, seed=0)
    result, totals = time_engine(community, repeat)
    lp = result.model.lp
    algorithm = "simplex" if lp.n_cols <= SIMPLEX_MAX_COLUMNS else "ipm"
    row: dict[str, Any] = {
        "members": n_members,
        "slots": SLOTS,
        "batteries": int(result.model.layout.battery_members.size),
        "variables": lp.n_cols,
        "constraints": lp.n_rows,
        "algorithm": algorithm,
        "build_s": round(result.build_seconds, 3),
        "solve_s": round(result.solve_seconds, 3),
        "total_s": round(min(totals), 3),
        "total_s_runs": [round(t, 3) for t in totals],
        "objective": round(result.objective, 3),  # base units
    }
    log(f"{n_members} members: engine {row['total_s']} s ({lp.n_cols} variables, {lp.n_rows} constraints)")
    if "textbook" in baselines:
        started = time.perf_counter()
        textbook = clear(community, formulation=Formulation.PER_MEMBER, algorithm=Algorithm(algorithm))
        row["per_member_total_s"] = round(time.perf_counter() - started, 3)
        row["per_member_variables"] = textbook.model.lp.n_cols
        assert abs(textbook.objective - result.objective) <= 1e-6 * max(1.0, abs(result.objective))
        log(f"  engine, textbook LP: {row['per_member_total_s']} s ({textbook.model.lp.n_cols} variables)")
    for formulation in baselines:
        # the textbook LP is slow: one run; the reduced one as often as the engine
        baseline = time_cvxpy(community, formulation, algorithm, 1 if formulation == "textbook" else repeat)
        relative = abs(baseline["objective"] - result.objective) / max(1.0, abs(result.objective))
        if relative > 1e-6:
            raise RuntimeError(f"cvxpy {formulation} optimum {baseline['objective']} != engine {result.objective}")
        key = "cvxpy" if formulation == "textbook" else "cvxpy_aggregate"
        row[f"{key}_total_s"] = baseline["total_s"]
        row[f"{key}_solver_s"] = baseline["solver_s"]
        row[f"{key}_variables"] = baseline["variables"]
        row[f"{key}_objective_rel_diff"] = float(f"{relative:.2e}")
        row[f"{key}_speedup"] = round(baseline["total_s"] / row["total_s"], 1)
        log(f"  cvxpy {formulation}: {baseline['total_s']} s ({baseline['variables']} variables)")
    if "cvxpy_speedup" in row:
        row["speedup"] = row["cvxpy_speedup"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 10,000 members (engine and cvxpy_aggregate only)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "clearing.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    runs = [run(n, args.repeat, ["textbook", "aggregate"], print) for n in (100, 1_000)]
    if args.large:  # the textbook LP in cvxpy would need ~5M variables: left out
        runs.append(run(10_000, 1, ["aggregate"], print))
    thousand = next(r for r in runs if r["members"] == 1_000)
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # other work on the machine inflates the times: the 1-minute load before and after
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "solver": "HiGHS via highspy (engine) and via cvxpy's HIGHS interface (baselines), same algorithm",
        "targets": {
            "total_s_1000_members": TARGET_SECONDS_1000,
            "speedup_vs_cvxpy": TARGET_SPEEDUP,
            "met": thousand["total_s"] <= TARGET_SECONDS_1000 and thousand.get("speedup", 0) >= TARGET_SPEEDUP,
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print("| members | variables | constraints | build s | solve s | total s | cvxpy s | speedup | cvxpy (same LP) s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        cells = [f"{r['members']:,}", f"{r['variables']:,}", f"{r['constraints']:,}", r["build_s"], r["solve_s"]]
        cells += [
            r["total_s"],
            r.get("cvxpy_total_s", "-"),
            r.get("speedup", "-"),
            r.get("cvxpy_aggregate_total_s", "-"),
        ]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()

"""The demo's comparison: per mode the figures the literature compares (local volume,
self-sufficiency, average internal price, community cost, savings against everyone alone at the
tariffs, members better and worse off, gas per slot), read back from each community's audited
ledger; and the report folder (CSV tables, PNG plots, the audit reports)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from peerwatt.demo.runner import DayResult, ModeRun
from peerwatt.profiles import Site
from peerwatt.transactions import call
from settlement.ledger.queries import Ledger
from settlement.pricing import tariff_amount

SUMMARY_COLUMNS = (
    "mode", "local_volume_kwh", "self_sufficiency", "average_internal_price_per_kwh", "community_cost",
    "standalone_cost", "savings", "better_off", "worse_off", "gas_per_slot", "audit",
)  # fmt: skip
BASE_UNITS_PER_TOKEN = 1_000_000


@dataclass(frozen=True)
class ModeSummary:
    """One mode's day in tokens (costs: what members paid net; savings: against alone)."""

    mode: str
    local_volume_kwh: float
    self_sufficiency: float
    average_internal_price_per_kwh: float | None
    community_cost: float
    standalone_cost: float
    savings: float
    better_off: int
    worse_off: int
    gas_per_slot: int
    audit: str
    member_bills: dict[str, tuple[int, int]]  # member address -> (net amount, alone), base units
    slot_prices: list[float | None]  # tokens per kWh inside the community, per slot of the day

    def row(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in SUMMARY_COLUMNS}


def summarise(result: DayResult, run: ModeRun) -> ModeSummary:
    """Reads the mode's day back from its ledger."""
    assert run.ledger_path is not None and run.audit is not None
    ledger = Ledger.open(run.ledger_path)
    try:
        days = ledger.daily_summary()
        slots = range(result.first_slot, result.first_slot + result.n_slots)
        import_price, export_price = call(run.settlement.w3, run.deployment.market, "CdaMarket", "tariffs")[0]
        bills = {}
        for address in run.deployment.members.values():
            rows = ledger.statements(address, slots.start, slots.stop - 1)
            net = int(rows["net_amount"].sum())
            alone = sum(
                tariff_amount(int(e) - int(i), int(import_price), int(export_price))
                for i, e in zip(rows["import_wh"], rows["export_wh"])
            )
            bills[address] = (net, alone)
        prices = _slot_prices(ledger, run.mode, slots)
    finally:
        ledger.store.close()
    total = {
        column: int(days[column].sum())
        for column in ("traded_wh", "traded_value", "shared_wh", "internal_wh", "internal_value", "net_import_wh")
    }
    # energy sold inside the community and what it was sold for
    if run.mode == "cda":
        local_wh, sold_wh, sold_value = total["traded_wh"], total["traded_wh"], total["traded_value"]
    else:
        local_wh = total["internal_wh"] if run.mode == "optimisation" else total["shared_wh"]
        sold_wh, sold_value = total["internal_wh"], total["internal_value"]
    cost = -sum(net for net, _ in bills.values())
    alone = -sum(alone for _, alone in bills.values())
    return ModeSummary(
        mode=run.mode,
        local_volume_kwh=round(local_wh / 1000, 1),
        self_sufficiency=round(total["shared_wh"] / total["net_import_wh"], 3) if total["net_import_wh"] else 0.0,
        average_internal_price_per_kwh=round(sold_value / sold_wh * 1000 / BASE_UNITS_PER_TOKEN, 4)
        if sold_wh
        else None,
        community_cost=round(cost / BASE_UNITS_PER_TOKEN, 2),
        standalone_cost=round(alone / BASE_UNITS_PER_TOKEN, 2),
        savings=round((alone - cost) / BASE_UNITS_PER_TOKEN, 2),
        better_off=sum(net > alone for net, alone in bills.values()),
        worse_off=sum(net < alone for net, alone in bills.values()),
        gas_per_slot=sum(run.gas.values()) // result.n_slots,
        audit="passed" if run.audit.ok else f"{len(run.audit.discrepancies)} discrepancies",
        member_bills=bills,
        slot_prices=prices,
    )


def _slot_prices(ledger: Ledger, mode: str, slots: range) -> list[float | None]:
    """Tokens per kWh inside the community per slot: Cda trades' average, the sharing rule's
    buy price, the posted optimisation price."""
    prices: list[float | None] = [None] * len(slots)
    if mode == "cda":
        trades = ledger.trades(slots.start, slots.stop - 1)
        for slot, group in trades.groupby("slot"):
            value = int((group["qty_wh"] * group["price"]).sum())
            prices[int(slot) - slots.start] = value / int(group["qty_wh"].sum()) / BASE_UNITS_PER_TOKEN
        return prices
    name, numerator, denominator = (
        ("ScheduleCompleted", "pricePerKwh", None) if mode == "optimisation" else ("SharingRates", "buyNum", "buyDen")
    )
    for args in ledger.events(event=name)["args"]:
        values = json.loads(args)
        slot = int(values["slot"])
        if slot in slots:
            price = Fraction(int(values[numerator]), int(values[denominator]) if denominator else 1)
            prices[slot - slots.start] = float(price) / BASE_UNITS_PER_TOKEN
    return prices


def write_report(out: Path, result: DayResult, summaries: list[ModeSummary], day_start: int) -> list[Path]:
    """CSV tables, PNG plots and the audit reports in ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [_write_csv(out / "summary.csv", [s.row() for s in summaries], SUMMARY_COLUMNS)]
    names = {
        address: member
        for run in result.runs
        for address, member in zip(run.deployment.members.values(), result.members)
    }
    member_rows = [
        {
            "mode": summary.mode,
            "member": names[address].label,
            "kind": names[address].kind,
            "bill": round(-net / BASE_UNITS_PER_TOKEN, 4),
            "standalone_bill": round(-alone / BASE_UNITS_PER_TOKEN, 4),
            "saving": round((net - alone) / BASE_UNITS_PER_TOKEN, 4),
        }
        for summary in summaries
        for address, (net, alone) in summary.member_bills.items()
    ]
    written.append(
        _write_csv(out / "members.csv", member_rows, ("mode", "member", "kind", "bill", "standalone_bill", "saving"))
    )
    zone = ZoneInfo(Site().timezone)
    starts = [dt.datetime.fromtimestamp(day_start + 900 * t, zone) for t in range(result.n_slots)]
    load = sum(result.day.load_wh.values()) + sum(result.day.flexible_wh.values())
    pv = sum(result.day.pv_wh.values())
    slot_rows = []
    for t in range(result.n_slots):
        row: dict[str, Any] = {
            "slot": result.first_slot + t,
            "time": starts[t].strftime("%H:%M"),
            "load_kwh": round(float(load[t]) / 1000, 2),
            "pv_kwh": round(float(pv[t]) / 1000, 2),
        }
        row.update({f"price_{s.mode}": s.slot_prices[t] for s in summaries})
        slot_rows.append(row)
    written.append(_write_csv(out / "slots.csv", slot_rows, tuple(slot_rows[0])))
    audit = out / "audit.json"
    audit.write_text(json.dumps({run.mode: run.audit.to_dict() for run in result.runs if run.audit}, indent=2))
    written.append(audit)
    written += _plots(out, starts, load, pv, summaries, names)
    return written


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _plots(
    out: Path,
    starts: list[dt.datetime],
    load: np.ndarray,
    pv: np.ndarray,
    summaries: list[ModeSummary],
    names: dict[str, Any],
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    hours = [start.hour + start.minute / 60 for start in starts]
    figure, axes = plt.subplots(figsize=(9, 4))
    axes.plot(hours, load * 4 / 1000, label="community load")
    axes.plot(hours, pv * 4 / 1000, label="community PV")
    paths = [_save(figure, axes, out / "load_pv.png", "Community load and PV over the day", "kW")]

    figure, axes = plt.subplots(figsize=(9, 4))
    for summary in summaries:
        axes.plot(hours, [np.nan if p is None else p for p in summary.slot_prices], label=summary.mode, marker=".")
    title = "Internal price per slot (Cda: trades; sharing: buy price; optimisation: posted)"
    paths.append(_save(figure, axes, out / "prices.png", title, "tokens per kWh"))

    figure, axes = plt.subplots(figsize=(9, 5))
    for summary in summaries:
        alone = [-a / BASE_UNITS_PER_TOKEN for _, a in summary.member_bills.values()]
        bill = [-n / BASE_UNITS_PER_TOKEN for n, _ in summary.member_bills.values()]
        axes.scatter(alone, bill, label=summary.mode, s=14)
    limits = axes.get_xlim()
    axes.plot(limits, limits, color="grey", linewidth=0.8, label="bill = alone")
    axes.set_xscale("symlog")
    axes.set_yscale("symlog")
    title = "Each member's bill against its stand-alone bill"
    xlabel = "stand-alone bill at the tariffs (tokens)"
    paths.append(_save(figure, axes, out / "bills.png", title, "bill in the community (tokens)", xlabel))
    return paths


def _save(figure: Any, axes: Any, path: Path, title: str, ylabel: str, xlabel: str = "local hour (Corby)") -> Path:
    import matplotlib.pyplot as plt

    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

"""``peerwatt demo`` end to end, shortened (10 members, 8 slots from 11:00, every mode) on the
default chain (ganache through npx): the command starts and stops its own chain, every mode's
audit passes, the report's money adds up (each mode's cost is the sum of its members' bills and
its savings are against the sum of their stand-alone bills), and every report file exists and is
not empty; a busy port fails with a one-line reason."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable

from peerwatt_cli import Cli, free_port

from peerwatt.demo.runner import MODES

FILES = ("summary.csv", "members.csv", "slots.csv", "audit.json", "load_pv.png", "prices.png", "bills.png")


def test_a_short_demo_day_settles_audits_and_reports(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    out = cli.workdir / "report"
    port = free_port()
    ran = cli.ok("demo", "--port", port, "--members", 10, "--slots", 8, "--from-hour", 11, "--out", out)
    assert "One day of 10 members (8 slots of 2026-06-18)" in ran.stdout
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    audits = json.loads((out / "audit.json").read_text())
    assert sorted(audits) == sorted(MODES)
    for mode, report in audits.items():
        assert report["ok"] and report["discrepancies"] == [], mode
        assert report["slots_audited"] == 8 and report["member_results"] >= 80
    with (out / "summary.csv").open() as handle:
        summary = {row["mode"]: row for row in csv.DictReader(handle)}
    with (out / "members.csv").open() as handle:
        members = list(csv.DictReader(handle))
    assert set(summary) == set(MODES)
    for mode, row in summary.items():
        bills = [member for member in members if member["mode"] == mode]
        assert len(bills) == 10
        cost, alone = (sum(float(member[key]) for member in bills) for key in ("bill", "standalone_bill"))
        assert abs(float(row["community_cost"]) - cost) < 0.01 and abs(float(row["standalone_cost"]) - alone) < 0.01
        assert abs(float(row["savings"]) - (alone - cost)) < 0.01
        assert int(row["better_off"]) + int(row["worse_off"]) <= 10 and row["audit"] == "passed"
        assert int(row["gas_per_slot"]) > 0
    # the same metered day: physical self-sufficiency is the same in every mode without a schedule
    assert len({summary[mode]["self_sufficiency"] for mode in ("cda", "mmr", "sdr", "bs")}) == 1
    with (out / "slots.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 8

    cli.ok("chain", "start", "--engine", "anvil", "--port", cli.port)
    cli.fails("demo", "--port", cli.port, "--slots", 1, match=f"port {cli.port} is busy")

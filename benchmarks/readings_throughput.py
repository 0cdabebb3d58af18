"""Readings per second through `peerwatt readings push` on a local anvil.

Starts a fresh anvil with `peerwatt chain start`, deploys a community of METERS members (one dev
meter key each), lets SLOTS slots end, writes a CSV of every meter's reading for every slot and
times the whole `readings push` command: parse, validate, sign with the meter keys, store in the
outbox, send in batches of BATCH and wait for every receipt. Results:
benchmarks/results/readings_throughput.json.

    python benchmarks/readings_throughput.py [--meters 50] [--slots 100] [--batch 100]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

from cli_runner import peerwatt

from peerwatt.config import CommunityConfig
from peerwatt.toolchain import PROJECT_ROOT

TARGET = 500  # readings per second (issue 3)


def write_readings(path: Path, meters: int, slots: int) -> int:
    """A household-like profile per meter: import varies by slot, a little export at midday."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["meter", "slot", "import_wh", "export_wh", "import_register_wh", "export_register_wh"])
        for meter in range(meters):
            imported = exported = 0
            for slot in range(slots):
                import_wh = 50 + (meter * 7 + slot * 13) % 400
                export_wh = max(0, 300 - abs(slot % 96 - 48) * 10) if meter % 3 == 0 else 0
                imported += import_wh
                exported += export_wh
                writer.writerow([f"member{meter}", slot, import_wh, export_wh, imported, exported])
    return meters * slots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--port", type=int, default=8730)
    parser.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "readings_throughput.json"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = dict(os.environ, PEERWATT_RPC=f"http://127.0.0.1:{args.port}", PW_CWD=str(workdir))
        env["PEERWATT_DEPLOYMENT"] = str(workdir / "deployment.json")
        peerwatt("chain", "start", "--engine", "anvil", "--port", str(args.port), env=env)
        try:
            peerwatt("deploy", "--members", str(args.meters), env=env)
            peerwatt("chain", "advance", "--seconds", str((args.slots + 1) * CommunityConfig().slot_seconds), env=env)
            readings = write_readings(workdir / "readings.csv", args.meters, args.slots)
            started = time.perf_counter()
            output = peerwatt("readings", "push", "readings.csv", "--batch", str(args.batch), env=env)
            elapsed = time.perf_counter() - started
        finally:
            peerwatt("chain", "stop", "--port", str(args.port), env=env)
    assert f"{readings} readings accepted" in output, output
    result = {
        "chain": "anvil (peerwatt chain start)",
        "meters": args.meters,
        "slots": args.slots,
        "batch": args.batch,
        "readings": readings,
        "seconds": round(elapsed, 3),
        "readings_per_second": round(readings / elapsed, 1),
        "target_readings_per_second": TARGET,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{readings} readings in {elapsed:.2f} s: {readings / elapsed:.0f} readings/s (target >= {TARGET})")


if __name__ == "__main__":
    main()

"""Events indexed per second by `peerwatt ledger sync` from a local anvil.

Starts a fresh anvil with `peerwatt chain start`, deploys a 20-member community, places ORDERS
orders through `peerwatt orders replay` (ladders around 0.25 token/kWh: about a third trade, so
the chain also holds fills and cancellations), lets the slots end and pushes every meter's
readings for READING_SLOTS slots with `peerwatt readings push`. Then times a full sync into an
empty ledger twice: the whole `peerwatt ledger sync` command (process start included) and the
indexer alone, in this process. Results: benchmarks/results/ledger_indexing.json.

    python benchmarks/ledger_indexing.py [--orders 30000] [--reading-slots 200] [--port 8751]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from cli_runner import peerwatt
from readings_throughput import write_readings
from replay_throughput import MEMBERS, order_rows, write_csv

from peerwatt.chain import connect
from peerwatt.config import CommunityConfig
from peerwatt.deployment import Deployment
from peerwatt.toolchain import PROJECT_ROOT
from settlement.ledger.indexer import Indexer
from settlement.ledger.store import Store

TARGET = 5_000  # events per second (issue 5)


def generate(env: dict[str, str], workdir: Path, orders: int, reading_slots: int) -> None:
    """Orders, then (after their slots ended) readings, on the chain ``env`` points at."""
    next_open = json.loads(peerwatt("slot", "--format", "json", env=env))["next_open_slot"]
    orders_csv = workdir / "orders.csv"
    write_csv(orders_csv, order_rows(next_open + 1, orders, interleaved=False))
    started = time.perf_counter()
    peerwatt("orders", "replay", str(orders_csv), env=env)
    print(f"{orders} orders placed in {time.perf_counter() - started:.1f} s")
    slot_seconds = CommunityConfig().slot_seconds
    peerwatt("chain", "advance", "--seconds", str((max(reading_slots, next_open + 5) + 1) * slot_seconds), env=env)
    readings = write_readings(workdir / "readings.csv", MEMBERS, reading_slots)
    started = time.perf_counter()
    peerwatt("readings", "push", "readings.csv", "--batch", "100", env=env)
    print(f"{readings} readings pushed in {time.perf_counter() - started:.1f} s")


def table_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return {
            table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("events", "blocks", "orders", "trades", "cancellations", "readings")
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=30_000)
    parser.add_argument("--reading-slots", type=int, default=200)
    parser.add_argument("--port", type=int, default=8751)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "ledger_indexing.json")
    args = parser.parse_args()
    if not 8751 <= args.port <= 8760:
        raise SystemExit("use a port in 8751-8760 (the others belong to tests and other benchmarks)")

    with tempfile.TemporaryDirectory(prefix="peerwatt-ledger-bench-") as tmp:
        workdir = Path(tmp)
        rpc = f"http://127.0.0.1:{args.port}"
        env = dict(os.environ, PEERWATT_RPC=rpc, PW_CWD=str(workdir))
        env["PEERWATT_DEPLOYMENT"] = str(workdir / "deployment.json")
        env.pop("PEERWATT_LEDGER_DB", None)
        peerwatt("chain", "start", "--engine", "anvil", "--port", str(args.port), env=env)
        try:
            peerwatt("deploy", "--members", str(MEMBERS), env=env)
            generate(env, workdir, args.orders, args.reading_slots)

            started = time.perf_counter()
            output = peerwatt("ledger", "sync", "--db", str(workdir / "cli.sqlite"), env=env)
            command_seconds = time.perf_counter() - started
            print(output.strip())
            reported = re.search(r"indexed (\d+) events in (\d+) blocks .* in ([\d.]+) s", output)
            assert reported is not None, output

            w3 = connect(rpc)
            deployment = Deployment.load(workdir / "deployment.json")
            with Store(workdir / "direct.sqlite") as store:
                report = Indexer(w3, deployment, store).sync()
            counts = table_counts(workdir / "direct.sqlite")
            assert counts == table_counts(workdir / "cli.sqlite")
        finally:
            peerwatt("chain", "stop", "--port", str(args.port), env=env)

    events = report.events
    result: dict[str, Any] = {
        "chain": "anvil (peerwatt chain start)",
        "members": MEMBERS,
        "orders_placed": args.orders,
        "reading_slots": args.reading_slots,
        "rows": counts,
        "blocks_scanned": report.blocks,
        "indexer": {
            "events": events,
            "seconds": round(report.seconds, 3),
            "events_per_second": round(report.events_per_second),
        },
        "sync_command": {
            "events": int(reported.group(1)),
            "seconds_reported": float(reported.group(3)),
            "seconds_whole_command": round(command_seconds, 3),
            "events_per_second_whole_command": round(int(reported.group(1)) / command_seconds),
        },
        "target_events_per_second": TARGET,
        "meets_target": report.events_per_second >= TARGET,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

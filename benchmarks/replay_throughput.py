"""Orders per second through `peerwatt orders replay` on local anvil and ganache chains.

For each engine: start a fresh chain with `peerwatt chain start`, deploy a 20-member community,
write a CSV of orders for the next open slots and time the `orders replay` command end to end
(parse, validate, send, wait for every receipt). Two files per engine:

- ``grouped``: each member submits its orders for a slot together (a ladder of limit orders),
  as a trading agent does; consecutive rows of one member travel in one batch transaction;
- ``interleaved``: every row is from a different member than the one before: one transaction
  per order, the worst case for batching.

Results: benchmarks/results/replay_throughput.json.

    python benchmarks/replay_throughput.py [--orders 1000] [--engines anvil,ganache]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from cli_runner import peerwatt

from peerwatt.toolchain import PROJECT_ROOT

MEMBERS = 20
LADDER = 5  # orders per member and slot in the grouped file


def order_rows(first_slot: int, orders: int, interleaved: bool, seed: int = 11) -> list[dict[str, Any]]:
    """Limit orders around 0.25 token/kWh so that about a third of them trade."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    slots = 4
    while len(rows) < orders:
        index = len(rows)
        if interleaved:
            member = index % MEMBERS
            slot = first_slot + (index // MEMBERS) % slots
        else:
            member = (index // LADDER) % MEMBERS
            slot = first_slot + (index // (LADDER * MEMBERS)) % slots
        is_buy = member % 2 == 0
        price = 1_000 * (rng.randint(200, 262) if is_buy else rng.randint(238, 300))  # the default tick
        rows.append(
            {
                "action": "place",
                "ref": f"r{index}",
                "member": f"member{member}",
                "slot": slot,
                "side": "buy" if is_buy else "sell",
                "price": price,
                "qty_wh": rng.randint(100, 2_000),
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["action", "ref", "member", "slot", "side", "price", "qty_wh"])
        writer.writeheader()
        writer.writerows(rows)


def measure_engine(engine: str, port: int, orders: int, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for layout in ("grouped", "interleaved"):
        env = dict(os.environ, PEERWATT_RPC=f"http://127.0.0.1:{port}", PW_CWD=str(workdir))
        env["PEERWATT_DEPLOYMENT"] = str(workdir / f"{engine}-{layout}.json")
        peerwatt("chain", "start", "--engine", engine, "--port", str(port), env=env)
        try:
            peerwatt("deploy", "--members", str(MEMBERS), env=env)
            next_open = json.loads(peerwatt("slot", "--format", "json", env=env))["next_open_slot"]
            csv_path = workdir / f"{engine}-{layout}.csv"
            write_csv(csv_path, order_rows(next_open + 1, orders, interleaved=layout == "interleaved"))
            started = time.perf_counter()
            peerwatt("orders", "replay", str(csv_path), env=env)
            elapsed = time.perf_counter() - started
            results[layout] = {
                "orders": orders,
                "seconds": round(elapsed, 3),
                "orders_per_second": round(orders / elapsed, 1),
            }
        finally:
            peerwatt("chain", "stop", "--port", str(port), env=env)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--engines", default="anvil,ganache")
    parser.add_argument("--port", type=int, default=8720)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "replay_throughput.json")
    args = parser.parse_args()

    results: dict[str, Any] = {"target_orders_per_second_anvil": 200, "engines": {}}
    with tempfile.TemporaryDirectory(prefix="peerwatt-bench-") as tmp:
        for engine in args.engines.split(","):
            results["engines"][engine] = measure_engine(engine, args.port, args.orders, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print("| engine | file layout | orders | seconds | orders/s |")
    print("|---|---|---:|---:|---:|")
    for engine, layouts in results["engines"].items():
        for layout, row in layouts.items():
            print(f"| {engine} | {layout} | {row['orders']} | {row['seconds']} | {row['orders_per_second']} |")


if __name__ == "__main__":
    main()

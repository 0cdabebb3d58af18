"""Gas of MeterOracle.submitReadings per reading, measured on a local anvil through Brownie.

Scenarios (each from the same snapshot: a 100-member community with one meter key each):

- ``slot_batch_N``: one slot's readings of N meters in one batch (what the oracle sends after
  each slot), meters whose previous slot is already on chain, so registers are checked exactly;
- ``first_readings_N``: the same for meters with no reading yet;
- ``catch_up_meter_50``: one meter's 50 consecutive slots in one batch (after an outage).

Results go to benchmarks/results/oracle_gas.json and a Markdown table to stdout.

    python benchmarks/oracle_gas.py [--port 8711] [--out benchmarks/results/oracle_gas.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from community import launch_community
from eth_account import Account

from oracle.readings import OracleDomain, Reading, SignedReading, pack
from peerwatt.toolchain import PROJECT_ROOT

METERS = 100
TARGET_PER_READING = 15_000  # batches of 50 and 100 (issue 3)


class OracleBench:
    def __init__(self, port: int) -> None:
        community = launch_community(port, METERS, "PeerwattOracleBench", deposit=10**6)
        self.chain, admin = community.chain, community.admin
        self.oracle = community.project.MeterOracle.deploy(community.market, {"from": admin})
        self.domain = OracleDomain(self.chain.id, self.oracle.address)
        self.keys = [Account.create() for _ in community.members]
        for key, member in zip(self.keys, community.members, strict=True):
            self.oracle.registerMeter(key.address, member, 0, {"from": admin})
        self.sender = admin
        slot_seconds = community.market.slotClock()[1]
        self.chain.sleep(60 * slot_seconds)  # 60 slots have ended
        self.chain.mine()
        self.chain.snapshot()

    def signed(self, meter: int, slot: int, energy: int = 250) -> SignedReading:
        """Meter ``meter``'s reading for ``slot`` on a steady profile: ``energy`` Wh imported and
        a tenth of it exported in every slot from slot 0 on."""
        key = self.keys[meter]
        reading = Reading(key.address, slot, energy, energy // 10, energy * (slot + 1), energy // 10 * (slot + 1))
        return self.domain.sign(reading, key.key)

    def submit(self, readings: list[SignedReading]) -> Any:
        tx = self.oracle.submitReadings(pack(readings), {"from": self.sender})
        assert tx.return_value == len(readings), "every reading of a benchmark batch must be accepted"
        return tx

    def per_reading(self, readings: list[SignedReading], prepare: list[SignedReading] | None = None) -> int:
        self.chain.revert()
        if prepare:
            self.submit(prepare)
        return round(self.submit(readings).gas_used / len(readings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8711)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "oracle_gas.json")
    args = parser.parse_args()
    bench = OracleBench(args.port)

    measured: dict[str, int] = {}
    for size in (1, 50, 100):
        previous = [bench.signed(m, 9) for m in range(size)]
        measured[f"slot_batch_{size}"] = bench.per_reading([bench.signed(m, 10) for m in range(size)], previous)
        measured[f"first_readings_{size}"] = bench.per_reading([bench.signed(m, 10) for m in range(size)])
    measured["catch_up_meter_50"] = bench.per_reading([bench.signed(0, slot) for slot in range(50)])

    targeted = {"slot_batch_50", "slot_batch_100", "first_readings_50", "first_readings_100"}
    results = {
        "chain": "anvil (Brownie-launched), EVM shanghai, solc 0.8.37 via-IR, optimizer runs 10000",
        "gas_per_reading": {
            name: {
                "gas": gas,
                "target": TARGET_PER_READING if name in targeted else None,
                "meets_target": gas <= TARGET_PER_READING if name in targeted else None,
            }
            for name, gas in measured.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| readings | gas per reading | target |")
    print("|---|---:|---:|")
    for name, row in results["gas_per_reading"].items():
        target = "report" if row["target"] is None else f"<= {row['target']:,}"
        mark = "" if row["meets_target"] in (None, True) else " (missed)"
        print(f"| {name} | {row['gas']:,}{mark} | {target} |")


if __name__ == "__main__":
    main()

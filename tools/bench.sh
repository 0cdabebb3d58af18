#!/usr/bin/env bash
# Benchmarks: gas per market operation, per meter reading and per member settled, `orders replay` and
# `readings push` throughput, ledger indexing, statement queries over HTTP and the audit of a day; JSON in
# benchmarks/results/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup.sh
# shellcheck disable=SC1091
. .toolchain/env.sh
.venv/bin/python benchmarks/gas.py
.venv/bin/python benchmarks/oracle_gas.py
.venv/bin/python benchmarks/settlement_gas.py
.venv/bin/python benchmarks/clearing.py
.venv/bin/python benchmarks/replay_throughput.py
.venv/bin/python benchmarks/readings_throughput.py
.venv/bin/python benchmarks/ledger_indexing.py
.venv/bin/python benchmarks/ledger_queries.py
.venv/bin/python benchmarks/audit.py

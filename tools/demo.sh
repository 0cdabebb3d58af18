#!/usr/bin/env bash
# The main job on a fresh machine: set-up, then `peerwatt demo`: a local chain (ganache via npx;
# PEERWATT_ENGINE=anvil for anvil) on PEERWATT_PORT (default 8545), a 34-member community
# modelled on the FleXunity Corby pilot trading, metering, settling and auditing one day under
# every settlement mode, a comparison table and a report folder in reports/. Extra arguments go
# to `peerwatt demo` (see `peerwatt demo --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup.sh
# shellcheck disable=SC1091
. .toolchain/env.sh

peerwatt demo --engine "${PEERWATT_ENGINE:-ganache}" --port "${PEERWATT_PORT:-8545}" "$@"

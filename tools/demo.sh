#!/usr/bin/env bash
# The main job on a fresh machine: set-up, a local chain (ganache via npx; PEERWATT_ENGINE=anvil
# for anvil), a 4-member community, a short scripted CDA session that prints its trades, and
# the chain stopped again. PEERWATT_PORT picks the port (default 8545).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup.sh
# shellcheck disable=SC1091
. .toolchain/env.sh

PORT="${PEERWATT_PORT:-8545}"
ENGINE="${PEERWATT_ENGINE:-ganache}"
export PEERWATT_RPC="http://127.0.0.1:$PORT"
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/peerwatt-demo.XXXXXX")"
export PEERWATT_DEPLOYMENT="$WORKDIR/deployment.json"

peerwatt chain start --engine "$ENGINE" --port "$PORT"
trap 'peerwatt chain stop --port "$PORT" >/dev/null 2>&1 || true' EXIT
peerwatt deploy --members 4
peerwatt session

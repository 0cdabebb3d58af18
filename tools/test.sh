#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (idempotent), then
#  1. contract unit, access-control and stateful property tests through Brownie on anvil
#     (Brownie launches the chain itself);
#  2. pure-Python unit tests and end-to-end CLI tests that start real ganache and anvil
#     chains with `peerwatt chain start` (plain pytest, without the Brownie plugin).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup.sh
# shellcheck disable=SC1091
. .toolchain/env.sh

.venv/bin/brownie test tests/contracts tests/properties --network peerwatt-anvil "$@"
.venv/bin/python -m pytest -p no:pytest-brownie -p no:cacheprovider tests/unit tests/integration -q

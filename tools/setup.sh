#!/usr/bin/env bash
# Idempotent set-up of everything Peerwatt needs on a fresh machine, offline but for the
# package registries: a Python virtual environment with the project installed, another with
# the schemathesis CLI (for the ledger service's schema test), the pinned
# npm toolchain (solcjs, OpenZeppelin, ganache, anvil), a `solc-v<version>` wrapper where
# py-solc-x looks for compilers, the Brownie networks, and the compiled contracts.
# Each step is skipped when its inputs have not changed since the last run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="$ROOT/.toolchain"
mkdir -p "$STATE"
PYTHON="${PYTHON:-python3}"
SOLC_VERSION="$(sed -n 's/^ *version: *\([0-9.]*\) *$/\1/p' brownie-config.yaml | head -n 1)"

log() { printf 'setup: %s\n' "$*" >&2; }
fingerprint() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }
up_to_date() { [ -f "$STATE/$1.stamp" ] && [ "$(cat "$STATE/$1.stamp")" = "$2" ]; }
mark_done() { echo "$2" > "$STATE/$1.stamp"; }

command -v node >/dev/null || { echo "setup: node (>= 18) is required but not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup: npm is required but not installed" >&2; exit 1; }

# 1. Python virtual environment with the project and its dependencies.
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PYTHON" -m venv .venv
fi
py_fp="$(fingerprint pyproject.toml)"
if ! up_to_date python "$py_fp"; then
  log "installing Python packages"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  mark_done python "$py_fp"
fi

# 1b. The schemathesis CLI in a virtual environment of its own: it needs a far newer hypothesis
# than the 6.27.3 eth-brownie pins in .venv. The ledger service's schema test runs it.
SCHEMATHESIS_VERSION="4.32.5"
st_fp="$(printf '%s %s' "$SCHEMATHESIS_VERSION" "$("$PYTHON" --version 2>&1)" | sha256sum | cut -d' ' -f1)"
if ! up_to_date schemathesis "$st_fp" || [ ! -x .venv-schemathesis/bin/schemathesis ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION in .venv-schemathesis"
  [ -x .venv-schemathesis/bin/python ] || "$PYTHON" -m venv .venv-schemathesis
  .venv-schemathesis/bin/python -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  mark_done schemathesis "$st_fp"
fi

# 2. npm toolchain, as pinned in package.json and package-lock.json.
npm_fp="$(fingerprint package.json package-lock.json)"
if ! up_to_date npm "$npm_fp" || [ ! -d node_modules/solc ]; then
  log "installing npm packages"
  # `npm install` honours package-lock.json; `npm ci` rejects the lock because of anvil's
  # per-platform optional packages.
  npm install --no-audit --no-fund --loglevel=error
  mark_done npm "$(fingerprint package.json package-lock.json)"
fi

# 3. The compiler wrapper py-solc-x finds through $SOLCX_BINARY_PATH.
mkdir -p "$STATE/solcx"
cat > "$STATE/solcx/solc-v$SOLC_VERSION" <<SHIM
#!/bin/sh
PEERWATT_SOLCJS="$ROOT/node_modules/solc" exec node "$ROOT/tools/solc-wrapper.js" "\$@"
SHIM
chmod +x "$STATE/solcx/solc-v$SOLC_VERSION"

# 4. Environment for every entry point (make targets, .venv/bin/activate, the CLI).
cat > "$STATE/env.sh" <<ENV
export SOLCX_BINARY_PATH="$STATE/solcx"
case ":\$PATH:" in *":$ROOT/node_modules/.bin:"*) ;; *) export PATH="$ROOT/.venv/bin:$ROOT/node_modules/.bin:\$PATH" ;; esac
ENV
grep -q "toolchain/env.sh" .venv/bin/activate || echo ". \"$STATE/env.sh\"" >> .venv/bin/activate
# shellcheck disable=SC1091
. "$STATE/env.sh"

# 5. Brownie networks (Brownie keeps them in ~/.brownie): ganache at shanghai and anvil.
.venv/bin/python -m peerwatt.toolchain register-networks

# 6. Compile the contracts (Brownie skips unchanged sources).
sol_fp="$(fingerprint brownie-config.yaml $(find contracts -name '*.sol' | sort))"
if ! up_to_date contracts "$sol_fp" || [ ! -d build/contracts ]; then
  log "compiling contracts"
  .venv/bin/brownie compile >/dev/null
  mark_done contracts "$sol_fp"
fi

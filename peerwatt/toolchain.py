"""Where the project's toolchain lives and how Brownie is told about it.

tools/setup.sh creates the pieces; this module is the one place Python code finds them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = PROJECT_ROOT / "node_modules" / ".bin"
SOLCX_DIR = PROJECT_ROOT / ".toolchain" / "solcx"
BUILD_DIR = PROJECT_ROOT / "build" / "contracts"

# Brownie networks the project registers (name -> `brownie networks add` settings).
BROWNIE_NETWORKS: dict[str, dict[str, str]] = {
    "peerwatt-ganache": {
        "cmd": "ganache-cli",
        "host": "http://127.0.0.1",
        "port": "8545",
        "evm_version": "shanghai",
        "accounts": "20",
        "chain_id": "1337",
    },
    "peerwatt-anvil": {
        "cmd": "anvil",
        "host": "http://127.0.0.1",
        "port": "8545",
        "accounts": "20",
        "chain_id": "31337",
    },
}


def toolchain_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment in which Brownie compiles with the npm solc and finds ganache and anvil."""
    env = dict(os.environ if base is None else base)
    env["SOLCX_BINARY_PATH"] = str(SOLCX_DIR)
    path = env.get("PATH", "")
    if str(NODE_BIN) not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join([str(NODE_BIN), path])
    return env


def apply_toolchain_env() -> None:
    """Make this process (and its children) use the project's toolchain."""
    os.environ.update(toolchain_env())


def _brownie(*args: str) -> subprocess.CompletedProcess[str]:
    brownie = Path(sys.executable).with_name("brownie")
    return subprocess.run(
        [str(brownie), *args], capture_output=True, text=True, env=toolchain_env(), cwd=PROJECT_ROOT
    )


def _registered_network_ids() -> set[str]:
    """Ids of the networks in Brownie's network config (~/.brownie/network-config.yaml)."""
    import yaml

    config_file = Path.home() / ".brownie" / "network-config.yaml"
    if not config_file.exists():
        _brownie("networks", "list")  # makes Brownie write its default config
    config = yaml.safe_load(config_file.read_text()) or {}
    return {network["id"] for network in config.get("development", [])} | {
        network["id"] for group in config.get("live", []) for network in group.get("networks", [])
    }


def register_networks() -> None:
    """Add (or update) the project's Brownie development networks; idempotent."""
    existing = _registered_network_ids()
    for name, settings in BROWNIE_NETWORKS.items():
        pairs = [f"{key}={value}" for key, value in settings.items()]
        args = ["networks", "modify", name, *pairs] if name in existing else ["networks", "add", "Development", name, *pairs]
        result = _brownie(*args)
        if result.returncode != 0:
            raise SystemExit(f"setup: could not register Brownie network {name}: {result.stdout}{result.stderr}")


if __name__ == "__main__":
    if sys.argv[1:] == ["register-networks"]:
        register_networks()
    else:
        raise SystemExit("usage: python -m peerwatt.toolchain register-networks")

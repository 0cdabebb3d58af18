"""Compiled contract artifacts (ABI, bytecode) and custom-error decoding: the one place
runtime code loads them. Brownie writes them to build/contracts (tools/setup.sh compiles)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from peerwatt.errors import NotFoundError
from peerwatt.toolchain import BUILD_DIR

CONTRACT_NAMES = ("PeerwattToken", "CdaMarket")


@lru_cache(maxsize=None)
def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> dict[str, Any]:
    """Brownie's build JSON for contract ``name``."""
    path = build_dir / f"{name}.json"
    if not path.exists():
        raise NotFoundError(f"no compiled artifact {path}; run tools/setup.sh (it compiles the contracts)")
    return json.loads(path.read_text())


def abi(name: str) -> list[dict[str, Any]]:
    return load_artifact(name)["abi"]


def bytecode(name: str) -> str:
    return load_artifact(name)["bytecode"]


@lru_cache(maxsize=None)
def _error_selectors() -> dict[bytes, dict[str, Any]]:
    selectors: dict[bytes, dict[str, Any]] = {}
    for name in CONTRACT_NAMES:
        for entry in abi(name):
            if entry.get("type") != "error":
                continue
            signature = f"{entry['name']}({','.join(arg['type'] for arg in entry['inputs'])})"
            selectors[keccak(text=signature)[:4]] = entry
    return selectors


def decode_custom_error(data: bytes | str) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of a custom error in revert data, or None if it is not one of ours."""
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    entry = _error_selectors().get(raw[:4])
    if entry is None:
        return None
    types = [arg["type"] for arg in entry["inputs"]]
    values = abi_decode(types, raw[4:]) if types else ()
    return entry["name"], {arg["name"]: value for arg, value in zip(entry["inputs"], values)}

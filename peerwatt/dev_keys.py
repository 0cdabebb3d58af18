"""Dev meter keys: the signing keys of the meters ``peerwatt deploy --members N`` creates for its
dev members, stored in plain JSON beside the deployment file (``<deployment>.meter-keys.json``)
where the oracle finds them.

For local dev chains only: a real meter keeps its key inside the device and signs there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_account import Account

from peerwatt.errors import InputError, NotFoundError

KEY_STORE_SUFFIX = ".meter-keys.json"


@dataclass(frozen=True)
class DevMeterKey:
    member: str  # the member's name in the deployment file
    address: str  # the meter's identity on chain
    private_key: str  # 0x-prefixed hex


def create_dev_keys(member_names: Iterable[str]) -> list[DevMeterKey]:
    """A fresh random key per member."""
    keys = []
    for name in member_names:
        account = Account.create()
        keys.append(DevMeterKey(name, account.address, "0x" + account.key.hex().removeprefix("0x")))
    return keys


def key_store_path(deployment_file: Path) -> Path:
    """The key store beside a deployment file: ``deployments/31337.json`` ->
    ``deployments/31337.meter-keys.json``."""
    return deployment_file.with_name(deployment_file.stem + KEY_STORE_SUFFIX)


def save_dev_keys(path: Path, keys: Iterable[DevMeterKey]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dev_only": True, "meters": [asdict(key) for key in keys]}, indent=2) + "\n")
    path.chmod(0o600)
    return path


def load_dev_keys(path: Path) -> list[DevMeterKey]:
    if not path.exists():
        raise NotFoundError(f"no dev meter key store {path}; `peerwatt deploy --members N` writes one on dev chains")
    try:
        return [DevMeterKey(**entry) for entry in json.loads(path.read_text())["meters"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"dev meter key store {path} is not valid: {type(exc).__name__}: {exc}") from None

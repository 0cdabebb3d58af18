"""The deployment file: round trip, location and errors (pure Python, no chain)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from peerwatt.deployment import Deployment, deployment_path
from peerwatt.dev_keys import create_dev_keys, key_store_path, load_dev_keys, save_dev_keys
from peerwatt.errors import InputError, NotFoundError
from peerwatt.slots import SlotClock

DEPLOYMENT = Deployment(
    chain_id=1337,
    token="0x" + "11" * 20,
    market="0x" + "22" * 20,
    oracle="0x" + "66" * 20,
    settlement="0x" + "99" * 20,
    deployer="0x" + "33" * 20,
    deploy_block=2,
    deploy_block_hash="0x" + "ab" * 32,
    slot_clock=SlotClock(1_800_000_000, 900, 300),
    members={"member0": "0x" + "44" * 20, "member1": "0x" + "55" * 20},
    meters={"member0": "0x" + "77" * 20, "member1": "0x" + "88" * 20},
    parties={"supplier": "0x" + "aa" * 20, "dso": "0x" + "bb" * 20, "manager": "0x" + "33" * 20},
)


def test_round_trip(tmp_path: Path) -> None:
    path = DEPLOYMENT.save(tmp_path / "nested" / "1337.json")
    assert Deployment.load(path) == DEPLOYMENT
    assert list(Deployment.load(path).members) == ["member0", "member1"]  # registration order kept


def test_member_lookup() -> None:
    assert DEPLOYMENT.member_address("member1") == "0x" + "55" * 20
    assert DEPLOYMENT.member_names()["0x" + "44" * 20] == "member0"
    with pytest.raises(NotFoundError, match=r"unknown member 'bob' \(members: member0, member1\)"):
        DEPLOYMENT.member_address("bob")


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="run `peerwatt deploy` first"):
        Deployment.load(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"chain_id": 1}')
    with pytest.raises(InputError, match="is not valid"):
        Deployment.load(broken)
    broken.write_text("not json")
    with pytest.raises(InputError, match="is not valid"):
        Deployment.load(broken)


def test_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PEERWATT_DEPLOYMENT", raising=False)
    assert deployment_path(None, 31337) == tmp_path / "deployments" / "31337.json"
    monkeypatch.setenv("PEERWATT_DEPLOYMENT", "/env/d.json")
    assert deployment_path(None, 31337) == Path("/env/d.json")
    assert deployment_path("/flag/d.json", 31337) == Path("/flag/d.json")


def test_dev_meter_keys_round_trip_beside_the_deployment_file(tmp_path: Path) -> None:
    keys = create_dev_keys(["member0", "member1"])
    path = save_dev_keys(key_store_path(tmp_path / "31337.json"), keys)
    assert path == tmp_path / "31337.meter-keys.json"
    assert path.stat().st_mode & 0o777 == 0o600  # private keys: owner only
    assert load_dev_keys(path) == keys
    assert [key.member for key in keys] == ["member0", "member1"] and keys[0].address != keys[1].address
    assert all(Account.from_key(key.private_key).address == key.address for key in keys)
    with pytest.raises(NotFoundError, match="no dev meter key store"):
        load_dev_keys(tmp_path / "none.meter-keys.json")
    path.write_text("{}")
    with pytest.raises(InputError, match="is not valid"):
        load_dev_keys(path)

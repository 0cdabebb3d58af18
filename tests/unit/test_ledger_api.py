"""The ledger API in process (the ASGI app over a store of encoded logs): JSON and CSV bodies,
exact integers, 422 reasons, and readings public when no auditor key is set."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from test_ledger_queries import ASK_2, BOB, sample_ledger

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # starlette's note about httpx versions
    from fastapi.testclient import TestClient

from settlement.ledger.api import ApiSettings, create_app


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    sample_ledger(path).store.close()
    return path


def test_json_keeps_order_ids_exact_and_csv_matches(db: Path) -> None:
    client = TestClient(create_app(ApiSettings(db)))
    book = client.get("/book/10").json()["items"]
    assert [(o["order_id"], o["remaining_wh"]) for o in book] == [(str(ASK_2), 1_500)]
    csv_text = client.get("/book/10", params={"format": "csv"}).text
    assert csv_text.splitlines()[1].startswith(f"sell,240000,{ASK_2},")
    assert len(client.get("/readings").json()["items"]) == 3  # no key configured: public
    assert client.get("/trades", params={"member": BOB}).json()["next_offset"] is None


def test_a_missing_ledger_is_a_422_with_the_reason(tmp_path: Path) -> None:
    client = TestClient(create_app(ApiSettings(tmp_path / "none.sqlite")))
    answer = client.get("/trades")
    assert answer.status_code == 422 and "ledger sync" in answer.json()["detail"]


def test_readings_need_the_key_when_one_is_set(db: Path) -> None:
    client = TestClient(create_app(ApiSettings(db, auditor_key="k")))
    assert client.get("/readings").status_code == 401
    assert client.get("/readings", headers={"X-API-Key": "k"}).status_code == 200
    assert client.get("/trades").status_code == 200

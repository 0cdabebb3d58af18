"""The ledger API in process (the ASGI app over a store of encoded logs): JSON and CSV bodies,
exact integers, 422 reasons, readings public when no auditor key is set, concurrent requests,
and what the schema documents."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import httpx
import pytest
from test_ledger_queries import ASK_2, BOB, sample_ledger

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # starlette's note about httpx versions
    from fastapi.testclient import TestClient

from settlement.ledger.api import INT64_MAX, ApiSettings, create_app


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


def test_concurrent_requests_each_query_in_their_own_thread(db: Path) -> None:
    """Each request's SQLite connection is opened, used and closed in one worker thread (a
    ``yield`` dependency used to open it in one thread and the endpoint query it in another:
    500 under concurrent requests)."""

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(ApiSettings(db)), raise_app_exceptions=False)  # a 500
        async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as client:
            paths = ["/status", "/orders", "/trades", "/book/10", "/readings", "/summary/daily"] * 5
            return await asyncio.gather(*(client.get(path) for path in paths))

    assert [answer.status_code for answer in asyncio.run(together())] == [200] * 30


def test_offsets_and_blocks_beyond_sqlite_integers_are_a_422(db: Path) -> None:
    """SQLite binds 64-bit integers only: a bigger offset or block used to be a 500."""
    client = TestClient(create_app(ApiSettings(db)))
    for path, params in (
        ("/orders", {"offset": INT64_MAX + 1}),
        ("/trades", {"offset": 2**200}),
        ("/orders", {"at_block": INT64_MAX + 1}),
        ("/book/10", {"at_block": 2**200}),
    ):
        answer = client.get(path, params=params)
        assert answer.status_code == 422 and "less than or equal to" in answer.text, (path, params, answer.text)
    assert client.get("/orders", params={"offset": INT64_MAX}).json()["items"] == []
    assert len(client.get("/book/10", params={"at_block": INT64_MAX}).json()["items"]) == 1


def test_the_schema_documents_csv_bodies_and_422_reasons(db: Path) -> None:
    """What the service answers is in its OpenAPI schema: tables also as text/csv, and 422 with a
    reason (a string) as well as FastAPI's list of parameter errors."""
    client = TestClient(create_app(ApiSettings(db)))
    paths = client.get("/openapi.json").json()["paths"]
    assert "text/csv" in paths["/trades"]["get"]["responses"]["200"]["content"]
    assert "text/csv" not in paths["/audit/report"]["get"]["responses"]["200"]["content"]
    for path in paths:
        assert paths[path]["get"]["responses"]["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    answer = client.get("/trades", params={"slot_from": 5, "slot_to": 4})
    assert answer.status_code == 422 and isinstance(answer.json()["detail"], str)

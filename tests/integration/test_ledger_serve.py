"""``peerwatt ledger serve``: a real uvicorn server over a synced ledger, queried over HTTP with
httpx: JSON and CSV, paging, filters, 422 with a reason for bad parameters, and readings
restricted to the auditor key."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from peerwatt_cli import Cli, serving, start_community, write_csv

from peerwatt.config import CommunityConfig

KEY = "auditor-secret"


@pytest.fixture
def served(new_cli: Callable[[], Cli], tmp_path: Path) -> Iterator[tuple[Cli, httpx.Client, int]]:
    """A 4-member community with 3 trades and 8 readings, synced and served with an auditor key."""
    cli = new_cli()
    start_community(cli, "anvil")
    slot = int(cli.ok("slot", "--format", "json").json()["next_open_slot"]) + 1
    rows = [
        f"place,a,member0,{slot},sell,240000,2000",
        f"place,b,member1,{slot},buy,250000,1500",
        f"place,c,member2,{slot},sell,245000,1000",
        f"place,d,member3,{slot},buy,250000,900",
    ]
    cli.ok("orders", "replay", write_csv(tmp_path / "orders.csv", rows))
    cli.ok("chain", "advance", "--seconds", 3 * CommunityConfig().slot_seconds)
    readings = [
        f"member{m},{s},{100 + m},{10 * s},{(s + 1) * (100 + m)},{5 * s * (s + 1)}" for m in range(4) for s in (0, 1)
    ]
    header = "meter,slot,import_wh,export_wh,import_register_wh,export_register_wh"
    cli.ok("readings", "push", write_csv(tmp_path / "readings.csv", readings, header=header))
    db = cli.workdir / "ledger.sqlite"
    cli.ok("ledger", "sync", "--db", db)

    with serving(cli, db, {"PEERWATT_AUDITOR_KEY": KEY}) as client:
        yield cli, client, slot


def test_the_api_serves_the_ledger(served: tuple[Cli, httpx.Client, int]) -> None:
    cli, client, slot = served
    db = cli.workdir / "ledger.sqlite"
    status = client.get("/status").json()
    assert status["chain_id"] == 31337 and status["last_block"] == cli.block_number()

    trades = client.get("/trades").json()
    chain_trades = list(csv.DictReader(io.StringIO(cli.ok("trades", "--slot", slot, "--format", "csv").stdout)))
    assert [(t["buy_order"], t["sell_order"], t["qty_wh"], t["tx_hash"]) for t in trades["items"]] == [
        (t["buy_order"], t["sell_order"], int(t["qty_wh"]), t["tx_hash"]) for t in chain_trades
    ]
    assert len(chain_trades) == 3
    exported = cli.ok("ledger", "export", "--table", "trades", "--db", db).stdout
    assert client.get("/trades", params={"format": "csv"}).text == exported
    as_csv = client.get("/trades", headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv") and as_csv.text == exported

    # paging and filters
    page = client.get("/orders", params={"limit": 2, "offset": 1}).json()
    assert (len(page["items"]), page["offset"], page["limit"], page["next_offset"]) == (2, 1, 2, 3)
    assert client.get("/orders", params={"limit": 2, "offset": 3}).json()["next_offset"] is None
    member0 = trades["items"][0]["seller"]
    assert {o["member"] for o in client.get("/orders", params={"member": member0.lower()}).json()["items"]} == {member0}
    assert client.get("/trades", params={"slot_from": slot + 1}).json()["items"] == []
    book = client.get(f"/book/{slot}").json()["items"]
    assert [(o["side"], o["remaining_wh"]) for o in book] == [("sell", 600)]  # a filled, c has 600 left
    assert client.get("/summary/daily").json()["items"][0]["traded_wh"] == 2400

    # bad parameters: 422 with the reason
    for params, reason in (
        ({"member": "member0"}, "address"),
        ({"slot_from": -1}, "greater than or equal to 0"),
        ({"slot_from": 5, "slot_to": 4}, "after slot_to"),
        ({"limit": 0}, "greater than or equal to 1"),
        ({"format": "xml"}, "json"),
    ):
        answer = client.get("/trades", params=params)
        assert answer.status_code == 422 and reason in answer.text, (params, answer.text)

    # member-level data needs the auditor key; aggregates do not
    assert client.get("/readings").status_code == 401
    assert client.get("/readings", headers={"X-API-Key": "guess"}).status_code == 403
    readings = client.get("/readings", headers={"X-API-Key": KEY}, params={"slot_to": 0}).json()["items"]
    assert sorted((r["slot"], r["import_wh"]) for r in readings) == [(0, 100 + m) for m in range(4)]

    schema = client.get("/openapi.json").json()
    assert {"/orders", "/trades", "/book/{slot}", "/readings", "/summary/daily", "/status"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200

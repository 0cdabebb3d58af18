"""``peerwatt audit`` and ``GET /audit/report`` end to end: a community on anvil trades, meters
and settles (an unmetered seller among them); the audit syncs the ledger, recomputes every
settlement from raw events and finds nothing, over the CLI and over HTTP; the ledger serves the
members' statements behind the auditor key, equal to ``peerwatt statements``. Then the admin
hands itself the settlement role and credits a member outside settlement: the audit exits 1 and
names the slot, the member and the amounts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from peerwatt_cli import Cli, serving, write_csv
from test_settlement_cli import HEADER as READINGS_HEADER
from test_settlement_cli import end_slot, next_open_slot, past_deadline, push_readings

from peerwatt import artifacts
from peerwatt.chain import connect
from peerwatt.deployment import Deployment

KEY = "auditor-secret"
CREDIT = 12_345


def settled_history(cli: Cli) -> int:
    """Two Cda slots settled: trades, imbalances and fees; in the second, the seller sends no
    reading (settled as contracted). Returns the second slot."""
    cli.ok("chain", "start", "--engine", "anvil", "--port", cli.port)
    cli.ok("deploy", "--members", 4, "--grid-fee", 1_000, "--savings-share-bps", 1_000, "--price-tick", 1)
    first = next_open_slot(cli)
    second = first + 1
    for slot, (seller, buyer) in ((first, ("member0", "member1")), (second, ("member2", "member3"))):
        cli.ok("order", "place", "--member", seller, "--slot", slot, "--side", "sell", "--price", 200_000, "--qty", 900)
        cli.ok("order", "place", "--member", buyer, "--slot", slot, "--side", "buy", "--price", 210_003, "--qty", 1200)
    end_slot(cli, second)
    push_readings(cli, first, {"member0": (0, 800), "member1": (1300, 0), "member2": (100, 50)})
    # member1's second reading: registers carry on from its first (1300 imported)
    rows = [f"member3,{second},700,0,700,0", f"member1,{second},0,300,1300,300"]
    cli.ok("readings", "push", write_csv(cli.workdir / "readings-second.csv", rows, READINGS_HEADER))
    past_deadline(cli, second)
    cli.ok("settle", "--slot", first)
    cli.ok("settle", "--slot", second)
    return second


def test_a_settled_history_passes_the_audit_on_the_cli_and_over_http(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    slot = settled_history(cli)
    db = cli.workdir / "ledger.sqlite"
    audit = cli.ok("audit", "--db", db)
    assert "audited 2 settled slots (6 member results)" in audit.stdout  # 3 metered, then 2 + 1 unmetered
    assert "balances and solvency checked" in audit.stdout
    assert "no discrepancy" in audit.stdout
    one = cli.ok("audit", "--slot", slot, "--db", db, "--format", "json").json()
    assert (one["ok"], one["slots_audited"], one["first_slot"], one["discrepancies"]) == (True, 1, slot, [])
    cli.fails("audit", "--slot", slot, "--from", slot, "--db", db, match="not both")

    deployment = Deployment.load(cli.deployment)
    member2 = deployment.members["member2"]
    with serving(cli, db, {"PEERWATT_AUDITOR_KEY": KEY}) as client:
        assert client.get("/audit/report").status_code == 401
        report = client.get("/audit/report", headers={"X-API-Key": KEY}).json()
        assert (report["ok"], report["slots_audited"], report["balances_checked"]) == (True, 2, True)
        bad = client.get("/audit/report", params={"slot_from": slot, "slot_to": slot - 1}, headers={"X-API-Key": KEY})
        assert bad.status_code == 422 and "after" in bad.text
        rows = client.get(f"/statements/{member2.lower()}", headers={"X-API-Key": KEY}).json()["items"]
        assert client.get(f"/statements/{member2}").status_code == 401
        assert client.get("/statements/not-an-address", headers={"X-API-Key": KEY}).status_code == 422
    # the ledger's statement rows are `peerwatt statements`' rows of the member, by address
    chain_rows = []
    for settled_slot in (slot - 1, slot):
        chain_rows += [
            {**row, "member": member2}
            for row in cli.ok("statements", "--slot", settled_slot, "--format", "json").json()
            if row["member"] == "member2"
        ]
    assert rows == chain_rows
    assert [row["contracted_wh"] for row in rows] == [0, 900]  # unmetered in the second slot: as contracted

    # the day's summary: what members got against the same flows alone at the tariffs
    day = cli.ok("ledger", "export", "--table", "daily", "--db", db).stdout.splitlines()
    summary = dict(zip(day[0].split(","), day[1].split(",")))
    statements = [row for s in (slot - 1, slot) for row in cli.ok("statements", "--slot", s, "--format", "json").json()]
    got = sum(row["energy_amount"] + row["imbalance_amount"] - row["fees"] for row in statements)
    alone = sum(
        (flow * 60_000 // 1000 if flow >= 0 else -(-flow * 250_000 // 1000))
        for row in statements
        for flow in [row["export_wh"] - row["import_wh"]]
        if row["import_wh"] or row["export_wh"]
    )
    assert (int(summary["settled_slots"]), int(summary["members_amount"])) == (2, got)
    assert (int(summary["standalone_amount"]), int(summary["savings"])) == (alone, got - alone)
    assert int(summary["internal_wh"]) == 1800 and int(summary["average_internal_price_per_kwh"]) == 200_000


def test_a_credit_outside_settlement_fails_the_audit(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    slot = settled_history(cli)
    db = cli.workdir / "ledger.sqlite"
    cli.ok("audit", "--db", db)
    deployment = Deployment.load(cli.deployment)
    w3 = connect(cli.rpc_url)
    role = artifacts.function("CdaMarket", "SETTLEMENT_ROLE")
    settlement_role = role.decode(w3.eth.call({"to": deployment.market, "data": role.encode()}))[0]
    member0 = deployment.members["member0"]
    record = bytes.fromhex(member0[2:]) + (CREDIT << 1).to_bytes(12, "big")
    for data in (
        artifacts.function("CdaMarket", "grantRole").encode(settlement_role, deployment.deployer),
        artifacts.function("CdaMarket", "applySettlement").encode(slot, record),
    ):
        tx = w3.eth.send_transaction({"from": deployment.deployer, "to": deployment.market, "data": data})
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1

    failed = cli.fails("audit", "--db", db, "--format", "json", code=1)
    findings = {(f["check"], f["member"], f["field"]): f for f in failed.json()["discrepancies"]}
    money = findings[("money", None, "supplierAmount")]
    assert (money["slot"], money["recorded"], money["expected"]) == (slot, -CREDIT, 0)
    credited = findings[("balances", member0.lower(), "balance")]
    assert credited["recorded"] - credited["expected"] == CREDIT
    text = cli.fails("audit", "--db", db, code=1)
    assert f"balances,,{member0.lower()},balance," in text.stdout


@pytest.mark.parametrize(
    "args, match",
    [
        (("audit", "--from", 5, "--to", 3), "--from 5 is after --to 3"),
        (("audit", "--clearing", "out"), "--clearing, --input and --clearing-slot go together"),
        (("demo", "--date", "18/06/2026"), "--date must be YYYY-MM-DD"),
        (("demo", "--members", 1), "--members"),
        (("demo", "--mode", "auction"), "--mode"),
    ],
)
def test_bad_audit_and_demo_options_are_refused_before_anything_runs(
    new_cli: Callable[[], Cli], args: tuple[object, ...], match: str
) -> None:
    cli = new_cli()  # no chain on its port: a refusal must come first
    cli.fails(*args, match=match)
    assert not (cli.workdir / "reports").exists()

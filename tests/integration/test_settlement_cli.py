"""Settlement end to end with the real ``peerwatt`` executable: a Cda slot and a sharing slot
traded or metered, pushed by the oracle, settled in chunks and read back as statements that
match the Python reference rules (settlement/pricing.py) and balance to the base unit; and the
one-line refusals of settling too early, twice, or reading statements of an open slot."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from peerwatt_cli import Cli, write_csv

from peerwatt.chain import connect
from peerwatt.config import CommunityConfig
from peerwatt.deployment import Deployment
from peerwatt.transactions import call
from settlement.pricing import slot_amounts

WINDOW = CommunityConfig().reading_window_seconds
PI, PE = 250_000, 60_000
HEADER = "meter,slot,import_wh,export_wh,import_register_wh,export_register_wh"


def push_readings(cli: Cli, slot: int, flows: dict[str, tuple[int, int]]) -> None:
    """One reading per member for ``slot`` (each meter's first: registers = the interval)."""
    rows = [f"{member},{slot},{imp},{exp},{imp},{exp}" for member, (imp, exp) in flows.items()]
    cli.ok("readings", "push", write_csv(cli.workdir / f"readings-{slot}.csv", rows, HEADER))


def next_open_slot(cli: Cli) -> int:
    deployment = Deployment.load(cli.deployment)
    return int(call(connect(cli.rpc_url), deployment.market, "CdaMarket", "nextOpenSlot")[0])


def advance_to(cli: Cli, timestamp: int) -> None:
    """Moves chain time on to ``timestamp`` (if it is not there yet)."""
    now = int(connect(cli.rpc_url).eth.get_block("latest")["timestamp"])
    if now < timestamp:
        cli.ok("chain", "advance", "--seconds", timestamp - now)


def end_slot(cli: Cli, slot: int) -> None:
    """Chain time past the end of ``slot``: its readings can be pushed."""
    advance_to(cli, Deployment.load(cli.deployment).slot_clock.slot_start(slot + 1) + 1)


def past_deadline(cli: Cli, slot: int) -> None:
    deployment = Deployment.load(cli.deployment)
    deadline = int(call(connect(cli.rpc_url), deployment.settlement, "CommunitySettlement", "readingDeadline", slot)[0])
    advance_to(cli, deadline + 1)


def balances(cli: Cli) -> dict[str, int]:
    """Market balances of the members and the parties (supplier, DSO, manager)."""
    deployment = Deployment.load(cli.deployment)
    w3 = connect(cli.rpc_url)
    accounts = {**deployment.members, **deployment.parties}
    return {
        name: int(call(w3, deployment.market, "CdaMarket", "balanceOf", address)[0])
        for name, address in accounts.items()
    }


def test_a_cda_slot_settles_against_readings(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    cli.ok("chain", "start", "--engine", "anvil", "--port", cli.port)
    cli.ok("deploy", "--members", 4, "--grid-fee", 1_000)
    slot = next_open_slot(cli)
    cli.ok("order", "place", "--member", "member0", "--slot", slot, "--side", "sell", "--price", 200_000, "--qty", 1000)
    cli.ok("order", "place", "--member", "member1", "--slot", slot, "--side", "buy", "--price", 200_000, "--qty", 1000)
    end_slot(cli, slot)
    push_readings(cli, slot, {"member0": (0, 800), "member1": (1300, 0), "member2": (100, 50)})
    early = cli.fails("settle", "--slot", slot, match="reading deadline")
    assert "3 of 4 readings in" in early.stderr
    before = balances(cli)
    past_deadline(cli, slot)
    settled = cli.ok("settle", "--slot", slot, "--chunk", 2)
    assert "3 readings, 0 members without a reading" in settled.stdout
    rows = {row["member"]: row for row in cli.ok("statements", "--slot", slot, "--format", "json").json()}
    # member0: +200000 for the trade, 200 Wh short bought at import (-50000), grid fee 1000 Wh * 1 = 1000
    assert rows["member0"] == {
        "member": "member0", "slot": slot, "import_wh": 0, "export_wh": 800, "contracted_wh": 1000,
        "imbalance_wh": -200, "energy_amount": 200_000, "imbalance_amount": -50_000, "fees": 1_000, "share": 0,
        "net_amount": 149_000,
    }  # fmt: skip
    # member1: paid 200000 (held since the trade), 300 Wh more at import (-75000), fee 1000
    assert (rows["member1"]["energy_amount"], rows["member1"]["imbalance_amount"]) == (-200_000, -75_000)
    # member2 (no trade): net import 50 Wh at the import tariff
    assert rows["member2"]["imbalance_amount"] == -12_500 and rows["member2"]["contracted_wh"] == 0
    after = balances(cli)
    change = {name: after[name] - before[name] for name in after}
    # member1 paid its 200000 at trade time: settlement moves the rest; the DSO got both fees
    assert change["member0"] == 149_000 and change["member1"] == -76_000 and change["member2"] == -12_500
    assert change["dso"] == 2_000
    assert sum(change.values()) == 200_000  # the trade payment held since the trade was released
    cli.fails("settle", "--slot", slot, match="already settled")


def test_a_sharing_slot_matches_the_reference_rule(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    cli.ok("chain", "start", "--engine", "anvil", "--port", cli.port)
    cli.ok("deploy", "--members", 4, "--mode", "sharing", "--rule", "sdr")
    slot = next_open_slot(cli)
    flows = {"member0": (0, 1200), "member1": (900, 0), "member2": (700, 30), "member3": (5, 400)}
    end_slot(cli, slot)
    cli.fails("statements", "--slot", slot, match="not settled")
    push_readings(cli, slot, flows)
    before = balances(cli)
    cli.ok("settle", "--slot", slot)  # every reading is in: no need to wait for the deadline
    expected, supplier = slot_amounts("sdr", list(flows.values()), PI, PE)
    rows = cli.ok("statements", "--slot", slot, "--format", "json").json()
    assert {row["member"]: row["net_amount"] for row in rows} == dict(zip(flows, expected))
    after = balances(cli)
    assert after["supplier"] - before["supplier"] == supplier
    assert sum(after.values()) == sum(before.values())  # budget-balanced to the base unit


@pytest.mark.parametrize(
    "args, match",
    [
        (("rules", "set", "--mode", "barter"), "unknown mode 'barter'"),
        (("deploy", "--rule", "fair"), "unknown rule 'fair'"),
        (("shares", "--period", 0, "--rule", "shapley"), "published share rule is equal"),
        (("rules", "set", "--mode", "sharing", "--from-slot", 0), "SettlementConfigNotFuture"),
        (("clear", "--input", "missing.yaml", "--horizon", 4), "cannot read"),
        (("settle", "--slot", 4_000_000_000), "cannot be settled before its reading deadline"),
    ],
)
def test_bad_settlement_input_is_refused_in_one_line(community: Cli, args: tuple[object, ...], match: str) -> None:
    community.fails(*args, match=match)


COMMUNITY_YAML = """
slot_seconds: 900
fee_per_kwh: 0
tariffs: {import_per_kwh: 250_000, export_per_kwh: 60_000}
members:
  - {name: member0, load_wh: [100, 100], pv_wh: [900, 700]}
  - {name: member1, load_wh: [600, 500], pv_wh: [0, 0]}
  - {name: member2, load_wh: [300, 400], pv_wh: [0, 0],
     battery: {capacity_wh: 2000, max_charge_w: 1000, max_discharge_w: 1000}}
  - {name: member3, load_wh: [50, 50], pv_wh: [0, 0]}
"""


def test_an_optimisation_schedule_is_cleared_posted_and_settled(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    cli.ok("chain", "start", "--engine", "anvil", "--port", cli.port)
    cli.ok("deploy", "--members", 4, "--mode", "optimisation")
    (cli.workdir / "community.yaml").write_text(COMMUNITY_YAML)
    first = next_open_slot(cli)
    cleared = cli.ok("clear", "--input", "community.yaml", "--horizon", 2, "--post", "--out", "out")
    assert f"posted slots {first}..{first + 1}" in cleared.stdout
    schedule = (cli.workdir / "out" / "schedule.csv").read_text().splitlines()
    rows = [line.split(",") for line in schedule[1:]]
    posted = {(row[0], int(row[1])): (int(row[2]), int(row[3]), int(row[4])) for row in rows}
    # slot 0: member0 exports 800 Wh, the others import 600 + 300 + 50 (+ what member2 charges)
    assert posted[("member0", 0)][1] > 0 and sum(posted[(f"member{n}", 0)][1] for n in range(4)) == 0
    price = posted[("member0", 0)][2]
    assert 60_000 <= price <= 250_000
    end_slot(cli, first)
    flows = {
        f"member{n}": (max(-posted[(f"member{n}", 0)][0], 0), max(posted[(f"member{n}", 0)][0], 0)) for n in range(4)
    }
    push_readings(cli, first, flows)  # every member delivers exactly its schedule
    cli.ok("settle", "--slot", first)
    statements = {row["member"]: row for row in cli.ok("statements", "--slot", first, "--format", "json").json()}
    for n in range(4):
        net_export, internal, _ = posted[(f"member{n}", 0)]
        row = statements[f"member{n}"]
        assert row["contracted_wh"] == internal and row["imbalance_wh"] == net_export - internal
        assert row["energy_amount"] == (internal * price // 1000 if internal >= 0 else -(-internal * price // 1000))
    cli.fails("clear", "--input", "community.yaml", "--horizon", 2, "--post", "--from-slot", first, match="gate")
    # the audit: the settled slot recomputed, the certificate verified, the posted hash the file's
    clearing = ("--clearing", "out", "--input", "community.yaml", "--clearing-slot", first, "--db", "ledger.sqlite")
    audited = cli.ok("audit", *clearing, "--format", "json").json()
    assert audited["ok"] and audited["slots_audited"] == 1 and 0 <= audited["clearing_duality_gap"] < 1
    with (cli.workdir / "out" / "schedule.csv").open("a") as schedule_file:
        schedule_file.write("member0,0,0,0,0\n")  # not what was posted
    tampered = cli.fails("audit", *clearing, "--format", "json", code=1).json()["discrepancies"]
    assert [(f["check"], f["slot"], f["field"]) for f in tampered] == [
        ("certificate", first, "resultHash"),
        ("certificate", first + 1, "resultHash"),
    ]


def test_savings_kept_in_a_period_are_shared_equally(new_cli: Callable[[], Cli]) -> None:
    """Sharing mode keeps half of each member's savings for the pot; after both slots of the
    period settle, `shares --post` pays the pot out in equal shares."""
    cli = new_cli()
    cli.ok("chain", "start", "--engine", "anvil", "--port", cli.port)
    cli.ok("deploy", "--members", 4, "--mode", "sharing", "--period-slots", 2, "--savings-share-bps", 5_000)
    period = (next_open_slot(cli) + 1) // 2
    slots = (2 * period, 2 * period + 1)
    flows = {"member0": (0, 2000), "member1": (1500, 0), "member2": (700, 0), "member3": (0, 100)}
    end_slot(cli, slots[1])
    rows = [
        f"{m},{slot},{imp},{exp},{imp * k},{exp * k}"
        for k, slot in enumerate(slots, 1)
        for m, (imp, exp) in flows.items()
    ]
    cli.ok("readings", "push", write_csv(cli.workdir / "period.csv", rows, HEADER))
    cli.fails("shares", "--period", period, "--rule", "equal", "--post", match="slots settled")
    retained = 0
    for slot in slots:
        cli.ok("settle", "--slot", slot)
        retained -= sum(row["share"] for row in cli.ok("statements", "--slot", slot, "--format", "json").json())
    assert retained > 0  # MMR: importers pay less than alone, exporters get more
    before = balances(cli)
    shared = cli.ok("shares", "--period", period, "--rule", "equal", "--post", "--format", "json").json()
    pot = sum(row["share"] for row in shared)
    assert pot == retained and {row["share"] for row in shared} <= {pot // 4, pot // 4 + 1}
    after = balances(cli)
    assert {name: after[name] - before[name] for name in flows} == {row["member"]: row["share"] for row in shared}
    cli.fails("shares", "--period", period, "--rule", "equal", "--post", match="already paid")

"""The meter oracle end to end with the real ``peerwatt`` executable: ``readings push`` with bad
rows, a push killed with SIGKILL in the middle, and a chain stopped and restarted (persisted
state) under a running push. Every reading must end on chain exactly once: listed once by
``readings --slot`` and counted once in the oracle's slot commitment."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from peerwatt_cli import ENGINES, PEERWATT, Cli, start_community, write_csv

from oracle.outbox import Outbox, outbox_path
from oracle.pusher import BLOCK_GAS_SHARE, GAS_PER_READING, TX_BASE_GAS, Pusher
from peerwatt.chain import connect
from peerwatt.config import CommunityConfig
from peerwatt.deployment import Deployment
from peerwatt.meter_readings import accepted_readings
from peerwatt.transactions import call

HEADER = "meter,slot,import_wh,export_wh,import_register_wh,export_register_wh"
MEMBERS = 4
SLOT_SECONDS = CommunityConfig().slot_seconds


def reading_rows(slots: int, members: int = MEMBERS) -> list[str]:
    """Every member's reading for slots 0..slots-1, registers consistent."""
    rows = []
    for member in range(members):
        imported = exported = 0
        for slot in range(slots):
            import_wh, export_wh = 100 + 10 * member + slot % 7, (slot * 3) % 11
            imported, exported = imported + import_wh, exported + export_wh
            rows.append(f"member{member},{slot},{import_wh},{export_wh},{imported},{exported}")
    return rows


def end_slots(cli: Cli, slots: int) -> None:
    cli.ok("chain", "advance", "--seconds", (slots + 1) * SLOT_SECONDS)


def assert_state_has_every_reading_once(cli: Cli, slots: int, members: int = MEMBERS, from_csv: bool = True) -> None:
    """The oracle's state counts each slot's readings once per member, and each meter's last
    reading is its last slot -- with the registers of the whole file of ``reading_rows`` when
    ``from_csv`` (the contract refuses a second reading for a slot and registers that skip an
    interval)."""
    deployment = Deployment.load(cli.deployment)
    w3 = connect(cli.rpc_url)
    for slot in range(slots):
        _, count = call(w3, deployment.oracle, "MeterOracle", "slotCommitment", slot)
        assert count == members, slot
    last_rows = {row.split(",")[0]: row.split(",") for row in reading_rows(slots, members)}  # each member's last
    for member, meter in deployment.meters.items():
        view = call(w3, deployment.oracle, "MeterOracle", "meter", meter)[0]
        _, _, _, _, has_reading, last_slot, import_register, export_register = view
        assert (has_reading, last_slot) == (True, slots - 1)
        if from_csv:
            assert (import_register, export_register) == (int(last_rows[member][4]), int(last_rows[member][5]))


def assert_on_chain_once(cli: Cli, slots: int, members: int = MEMBERS, from_csv: bool = True) -> None:
    """Each member's reading of each slot is on chain exactly once: in the oracle's state and in
    its events (`readings --slot` lists the last slot's)."""
    assert_state_has_every_reading_once(cli, slots, members, from_csv)
    deployment = Deployment.load(cli.deployment)
    accepted = Counter(
        (reading.meter, reading.slot) for reading, _ in accepted_readings(connect(cli.rpc_url), deployment)
    )
    assert accepted == {(meter, slot): 1 for meter in deployment.meters.values() for slot in range(slots)}
    listed = cli.ok("readings", "--slot", slots - 1, "--format", "json").json()
    assert sorted(row["member"] for row in listed) == [f"member{m}" for m in range(members)]


def outbox_counts(cli: Cli) -> dict[str, int]:
    path = outbox_path(cli.deployment)
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM readings GROUP BY status").fetchall())
    except sqlite3.OperationalError:  # the push has created the file but not its table yet
        return {}


def start_push(cli: Cli, csv: Path, batch: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PEERWATT), "readings", "push", str(csv), "--batch", str(batch)],
        cwd=cli.workdir,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def pushing(cli: Cli) -> bool:
    """Some readings are on chain and some are still to go."""
    counts = outbox_counts(cli)
    return counts.get("done", 0) > 0 and counts.get("pending", 0) > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_good_rows_are_pushed_and_bad_rows_quarantined(engine: str, new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    start_community(cli, engine)
    end_slots(cli, 4)
    rows = reading_rows(4)
    bad = [
        "member0,9,10,0,10,0",  # line 18: slot 9 has not ended
        "member1,2,-5,0,0,0",  # line 19: negative
        "nobody,1,1,1,1,1",  # line 20: unknown meter
    ]
    csv = write_csv(cli.workdir / "readings.csv", rows + bad, header=HEADER)
    result = cli.fails("readings", "push", csv, "--batch", 5, code=65, match="3 rows quarantined")
    assert "16 readings accepted on chain in 4 transactions" in result.stdout
    quarantined = (cli.workdir / "readings.quarantine.csv").read_text().splitlines()
    assert quarantined[0].startswith("line,reason,")
    assert [line.split(",")[0] for line in quarantined[1:]] == ["18", "19", "20"]
    assert_on_chain_once(cli, 4)

    again = cli.fails("readings", "push", csv, code=65)  # the bad rows are still bad; nothing is sent twice
    assert "0 readings accepted on chain in 0 transactions" in again.stdout
    assert outbox_counts(cli) == {"done": 16}
    assert_on_chain_once(cli, 4)


def test_a_push_killed_mid_batch_lands_every_reading_once_when_run_again(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    start_community(cli, "anvil")
    slots = 150
    end_slots(cli, slots)
    csv = write_csv(cli.workdir / "readings.csv", reading_rows(slots), header=HEADER)
    push = start_push(cli, csv, batch=4)
    wait_until(lambda: pushing(cli), "the push to be under way")
    push.send_signal(signal.SIGKILL)
    push.wait(timeout=30)
    assert push.returncode == -signal.SIGKILL
    left = outbox_counts(cli)
    assert left.get("pending", 0) + left.get("sent", 0) > 0, left  # it really was cut off

    cli.ok("readings", "push", csv, "--batch", 4)
    assert outbox_counts(cli) == {"done": MEMBERS * slots}
    assert_on_chain_once(cli, slots)


def test_a_push_survives_a_chain_restart_with_persisted_state(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    state = cli.workdir / "chain-state"
    cli.ok("chain", "start", "--engine", "anvil", "--port", cli.port, "--state", state)
    cli.ok("deploy", "--members", MEMBERS)
    slots = 150
    end_slots(cli, slots)
    csv = write_csv(cli.workdir / "readings.csv", reading_rows(slots), header=HEADER)
    push = start_push(cli, csv, batch=4)
    wait_until(lambda: pushing(cli), "the push to be under way")
    cli.ok("chain", "stop", "--port", cli.port)
    cli.ok("chain", "start", "--engine", "anvil", "--port", cli.port, "--state", state)
    stdout, stderr = push.communicate(timeout=180)
    assert push.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr
    assert outbox_counts(cli) == {"done": MEMBERS * slots}
    # an anvil restored from --state has the contracts' state but not the old blocks' logs
    assert_state_has_every_reading_once(cli, slots)


def test_meter_rotation_on_the_command_line(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    start_community(cli, "anvil")
    end_slots(cli, 8)
    rows = reading_rows(4)
    cli.ok("readings", "push", write_csv(cli.workdir / "first.csv", rows, header=HEADER))
    old = Deployment.load(cli.deployment).meters["member1"]

    cli.fails("meter", "add", "--member", "member1", code=65, match="member1 has meter")
    cli.fails("meter", "rotate", "--member", "nobody", code=66, match="unknown member 'nobody'")
    cli.fails("meter", "rotate", "--member", "member1", "--from-slot", 3, match="OracleInvalidRevocation")
    key_file = cli.workdir / "member1.key"
    key_file.write_text("0x" + "5a" * 32 + "\n")
    rotated = cli.ok("meter", "rotate", "--member", "member1", "--key-file", key_file, "--from-slot", 5)
    new = Account.from_key("0x" + "5a" * 32).address
    assert f"meter {old} revoked from slot 5; meter {new} signs from slot 5 on" in rotated.stdout
    assert Deployment.load(cli.deployment).meters["member1"] == new

    # the replaced device starts its registers afresh; its readings from slot 5 on are accepted
    later = write_csv(cli.workdir / "later.csv", ["member1,5,100,0,100,0", "member1,6,50,10,150,10"], header=HEADER)
    pushed = cli.ok("readings", "push", later)
    assert "2 readings accepted" in pushed.stdout
    listed = cli.ok("readings", "--slot", 6, "--format", "json").json()
    assert [(row["meter"], row["member"], row["import_register_wh"]) for row in listed] == [(new, "member1", 150)]


def test_oracle_run_pushes_simulated_meters_slot_by_slot(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    start_community(cli, "anvil")
    end_slots(cli, 6)
    first = cli.ok("oracle", "run", "--source", "sim")
    assert f"{MEMBERS * 7} readings accepted" in first.stdout  # slots 0..6 have ended
    assert_on_chain_once(cli, 7, from_csv=False)
    again = cli.ok("oracle", "run", "--source", "sim")  # nothing new has ended
    assert "0 readings accepted on chain in 0 transactions" in again.stdout

    follow = subprocess.Popen(
        [str(PEERWATT), "oracle", "run", "--source", "sim", "--follow", "--poll-seconds", "0.1"],
        cwd=cli.workdir,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cli.ok("chain", "advance", "--seconds", 2 * SLOT_SECONDS)  # two more slots end
        wait_until(lambda: outbox_counts(cli).get("done", 0) == MEMBERS * 9, "the follower to push slots 7 and 8")
    finally:
        follow.send_signal(signal.SIGINT)
        follow.communicate(timeout=30)
    assert follow.returncode != 0  # interrupted
    assert_on_chain_once(cli, 9, from_csv=False)


def test_oracle_run_needs_a_file_for_the_csv_source(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    start_community(cli, "anvil")
    cli.fails("oracle", "run", "--source", "csv", code=64, match="--source csv needs --file FILE")
    end_slots(cli, 2)
    csv = write_csv(cli.workdir / "readings.csv", reading_rows(2), header=HEADER)
    assert f"{MEMBERS * 2} readings accepted" in cli.ok("oracle", "run", "--source", "csv", "--file", csv).stdout


def test_batches_are_sized_to_fit_a_block(community: Cli) -> None:
    """--batch 1000 asks for more readings than a block takes at the worst-case gas per reading:
    the pusher sends fewer per transaction."""
    deployment = Deployment.load(community.deployment)
    w3 = connect(community.rpc_url)
    box = Outbox(community.workdir / "sizing.sqlite", deployment.chain_id, deployment.oracle)
    try:
        gas_limit = int(w3.provider.make_request("eth_getBlockByNumber", ["latest", False])["result"]["gasLimit"], 16)
        expected = int((gas_limit * BLOCK_GAS_SHARE - TX_BASE_GAS) // GAS_PER_READING)
        assert Pusher(w3, deployment, box, deployment.deployer, batch_size=1000).readings_per_batch() == expected < 1000
        assert Pusher(w3, deployment, box, deployment.deployer, batch_size=50).readings_per_batch() == 50
    finally:
        box.close()

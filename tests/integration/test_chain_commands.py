"""``peerwatt chain start|stop|status`` around the edges: busy ports, unknown chains and state
kept across restarts with ``--state``."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from peerwatt_cli import ENGINES, Cli

EX_USAGE, EX_DATAERR, EX_NOINPUT = 64, 65, 66


def test_start_refuses_a_busy_port(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", cli.port))
        listener.listen()
        cli.fails("chain", "start", "--engine", "anvil", code=EX_DATAERR, match=f"port {cli.port} is busy")


def test_start_refuses_a_port_it_already_serves(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    first = cli.ok("chain", "start", "--engine", "anvil")
    cli.fails("chain", "start", "--engine", "anvil", code=EX_DATAERR, match="peerwatt already runs anvil there")
    pid = first.stdout.split("pid ")[1].split(",")[0]
    assert f"(pid {pid})" in cli.ok("chain", "stop").stdout


def test_stop_without_a_chain(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    cli.fails("chain", "stop", code=EX_NOINPUT, match=f"no chain started by peerwatt on port {cli.port}")


def test_start_on_a_port_other_than_rpc_says_how_to_reach_it(new_cli: Callable[[], Cli]) -> None:
    cli, other = new_cli(), new_cli()
    started = cli.ok("chain", "start", "--engine", "anvil", "--port", other.port)
    assert f"--rpc {other.rpc_url}" in started.stdout
    cli.ok("chain", "stop", "--port", other.port)


@pytest.mark.parametrize("engine", ENGINES)
def test_state_survives_a_restart(engine: str, new_cli: Callable[[], Cli], tmp_path: Path) -> None:
    cli = new_cli()
    state = tmp_path / f"{engine}-state"
    cli.ok("chain", "start", "--engine", engine, "--state", state)
    cli.ok("deploy", "--members", 2)
    slot = int(cli.ok("slot", "--format", "json").json()["next_open_slot"]) + 1
    cli.ok("order", "place", "--member", "member0", "--slot", slot, "--side", "buy", "--price", 100_000, "--qty", 500)
    book = cli.ok("book", "--slot", slot, "--format", "json").json()
    cli.ok("chain", "stop")

    assert "state in" in cli.ok("chain", "start", "--engine", engine, "--state", state).stdout
    assert cli.ok("book", "--slot", slot, "--format", "json").json() == book
    assert [m["balance"] for m in cli.ok("members", "--format", "json").json()] == [499_950_000, 500_000_000]
    # the members' keys are still the node's: they can trade
    cli.ok("order", "cancel", "--member", "member0", "--order", book["bids"][0]["order_id"])
    cli.ok("chain", "stop")


def test_state_directory_of_the_other_engine_is_refused(new_cli: Callable[[], Cli], tmp_path: Path) -> None:
    cli = new_cli()
    state = tmp_path / "state"
    cli.ok("chain", "start", "--engine", "anvil", "--state", state)
    cli.ok("chain", "stop")
    cli.fails(
        "chain",
        "start",
        "--engine",
        "ganache",
        "--state",
        state,
        code=EX_USAGE,
        match="was written by anvil; start it with --engine anvil",
    )


def test_a_fresh_chain_does_not_trust_an_old_deployment_file(new_cli: Callable[[], Cli]) -> None:
    """Dev chains have deterministic accounts, so a new chain reuses the contract addresses of
    the last one; the deployment file's block hash tells them apart."""
    cli = new_cli()
    cli.ok("chain", "start", "--engine", "anvil")
    cli.ok("deploy", "--members", 1)
    cli.ok("chain", "stop")
    cli.ok("chain", "start", "--engine", "anvil")
    cli.fails("members", code=EX_NOINPUT, match="are not on this chain")

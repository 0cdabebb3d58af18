"""The thin Brownie scripts run the same code as the CLI, on Brownie's web3.

Brownie's own networks listen on 8545, so the test points the registered ``peerwatt-anvil``
network at a chain of its own (in memory only: ~/.brownie is left alone), lets Brownie attach to
it and runs the scripts as ``brownie run`` does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from peerwatt_cli import COMMAND_TIMEOUT_SECONDS, Cli

from peerwatt.toolchain import PROJECT_ROOT

RUN_SCRIPTS = """
import pathlib, sys
from brownie import network, web3
from brownie._config import CONFIG
from brownie.project.scripts import run
from peerwatt.deployment import load_checked
from peerwatt.market import Market

port, orders = int(sys.argv[1]), pathlib.Path(sys.argv[2])
settings = CONFIG.networks["peerwatt-anvil"]
settings["host"] = "http://127.0.0.1"
settings["cmd_settings"]["port"] = port
network.connect("peerwatt-anvil")  # something answers on the port: Brownie attaches to it
try:
    run("scripts/deploy.py", "main", args=("3",))
    run("scripts/cda_session.py")
    market = Market(web3, load_checked(web3, None)[0])
    slot = market.slot_clock().next_open_slot(market.now()) + 1
    orders.write_text(f"action,ref,member,slot,side,price,qty_wh\\nplace,a,member1,{slot},sell,100000,100\\n")
    run("scripts/orders_replay.py", "main", args=(str(orders),))
finally:
    network.disconnect(kill_rpc=False)  # the test's finalizer stops the chain
"""


def test_deploy_session_and_replay_scripts(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()
    cli.ok("chain", "start", "--engine", "anvil")
    process = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPTS, str(cli.port), str(cli.workdir / "orders.csv")],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,  # Brownie runs scripts from the project root
        env=cli.env,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "3 members" in process.stdout
    assert "trades of slot" in process.stdout
    assert "1 rows, 1 transactions, 1 placed" in process.stdout

    # the script wrote the deployment file the CLI reads
    members = cli.ok("members", "--format", "json").json()
    assert [m["name"] for m in members] == ["member0", "member1", "member2"]

"""The scripted CDA session of `peerwatt session`, through Brownie (after scripts/deploy.py):

    brownie run scripts/cda_session.py --network peerwatt-anvil
"""

from __future__ import annotations

from brownie import web3

from peerwatt.deployment import load_checked
from peerwatt.market import Market
from peerwatt.session import SessionResult, run_session, trades_table


def main() -> SessionResult:
    deployment, _ = load_checked(web3, None)
    result = run_session(Market(web3, deployment))
    print(f"trades of slot {result.slot}:")
    print(trades_table(result.trades, deployment.member_names()))
    return result

"""Deploy a Peerwatt community through Brownie, like `peerwatt deploy`:

    brownie run scripts/deploy.py --network peerwatt-anvil            # 4 members
    brownie run scripts/deploy.py main 10 --network peerwatt-ganache  # 10 members

Writes the deployment file (``$PEERWATT_DEPLOYMENT`` or ``deployments/<chain-id>.json``) that
the ``peerwatt`` command and the other scripts read.
"""

from __future__ import annotations

from brownie import web3

from peerwatt.config import CommunityConfig
from peerwatt.deploy import DEFAULT_DEV_MEMBERS, deploy_community
from peerwatt.deployment import Deployment, deployment_path


def main(members: int | str = DEFAULT_DEV_MEMBERS) -> Deployment:
    community = deploy_community(web3, CommunityConfig(), int(members), progress=print)
    deployment = community.deployment
    path = community.save(deployment_path(None, deployment.chain_id))
    print(
        f"CdaMarket {deployment.market}, PeerwattToken {deployment.token}, MeterOracle {deployment.oracle}, "
        f"{len(deployment.members)} members"
    )
    print(f"deployment file: {path}")
    return deployment

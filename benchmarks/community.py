"""A community deployed through Brownie on an anvil it launches: the common start of the gas
benchmarks (token, market with the default parameters, the admin as manager, funded members)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peerwatt.config import CommunityConfig
from peerwatt.toolchain import PROJECT_ROOT, apply_toolchain_env


@dataclass
class Community:
    project: Any
    chain: Any
    admin: Any
    token: Any
    market: Any
    members: list[Any]


def launch_community(port: int, members: int, name: str, deposit: int = 10**12) -> Community:
    """Launches anvil on ``port`` with ``members + 2`` accounts and deploys the community;
    accounts[1..members] are members that approved the market and deposited ``deposit``."""
    apply_toolchain_env()
    from brownie import accounts, chain, network, project
    from brownie._config import CONFIG

    settings = CONFIG.networks["peerwatt-anvil"]["cmd_settings"]
    settings["port"], settings["accounts"] = port, members + 2
    loaded = project.load(str(PROJECT_ROOT), name=name)
    network.connect("peerwatt-anvil")
    network.gas_price("auto")
    config = CommunityConfig()
    admin = accounts[0]
    token = loaded.PeerwattToken.deploy(admin, "Peerwatt Euro", "PWEUR", {"from": admin})
    market = loaded.CdaMarket.deploy(
        admin,
        token,
        config.epoch_for(chain.time()),
        config.slot_seconds,
        config.price_tick,
        config.market.as_tuple(),
        config.tariffs.as_tuple(),
        {"from": admin},
    )
    market.grantRole(market.MANAGER_ROLE(), admin, {"from": admin})
    member_accounts = list(accounts[1 : members + 1])
    for member in member_accounts:
        market.addMember(member, {"from": admin})
        token.mint(member, 10 * deposit, {"from": admin})
        token.approve(market, 2**256 - 1, {"from": member})
        market.deposit(deposit, {"from": member})
    return Community(loaded, chain, admin, token, market, member_accounts)

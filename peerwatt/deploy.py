"""Deploys a community (settlement token, CDA market, meter oracle, settlement) from the node's
first account, which is also the community manager (it receives manager fees) and, on a dev
chain, registers and funds members from the node's next accounts, gives each a meter key (kept
in the dev key store, :mod:`peerwatt.dev_keys`), and makes the two accounts after them the
supplier (funded with a deposit) and the DSO.

Used by ``peerwatt deploy`` and by ``scripts/deploy.py`` (Brownie's web3); both pass a Web3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from web3 import Web3

from peerwatt import artifacts
from peerwatt.chain import chain_id, dev_engine, latest_timestamp, request
from peerwatt.config import CommunityConfig
from peerwatt.deployment import Deployment
from peerwatt.dev_keys import DevMeterKey, create_dev_keys, key_store_path, save_dev_keys
from peerwatt.errors import InputError, PeerwattError
from peerwatt.slots import SlotClock
from peerwatt.transactions import TxSender, call, estimate_gas

TOKEN_NAME = "Peerwatt Euro"
TOKEN_SYMBOL = "PWEUR"
DEFAULT_DEV_MEMBERS = 4
PARTY_ROLES = ("supplier", "dso")  # dev chains: node accounts after the members

Progress = Callable[[str], None]


def member_name(index: int) -> str:
    return f"member{index}"


@dataclass(frozen=True)
class DeployedCommunity:
    deployment: Deployment
    meter_keys: list[DevMeterKey] = field(default_factory=list)  # dev members' meter keys

    def save(self, path: Path) -> Path:
        """Writes the deployment file to ``path`` and the dev meter keys beside it."""
        self.deployment.save(path)
        if self.meter_keys:
            save_dev_keys(key_store_path(path), self.meter_keys)
        return path


def deploy_community(
    w3: Web3, config: CommunityConfig, members: int, progress: Progress | None = None, sender: TxSender | None = None
) -> DeployedCommunity:
    """Deploys the contracts with ``config`` and registers ``members`` dev accounts, each with a
    fresh meter key.

    The market's constructor is dry-run first, so invalid parameters are reported (with the
    registry's custom error) before anything is deployed.
    """
    say = progress or (lambda message: None)
    accounts: list[str] = request(w3, "eth_accounts", [])
    if not accounts:
        raise InputError("the node holds no unlocked account to deploy from")
    if members < 0:
        raise InputError(f"--members must be >= 0, got {members}")
    if members and dev_engine(w3) is None:
        raise InputError("--members registers the node's own accounts as members: dev chains (ganache, anvil) only")
    needed = members + 1 + (len(PARTY_ROLES) if dev_engine(w3) is not None else 0)
    if needed > len(accounts):
        raise InputError(
            f"--members {members} needs {needed} unlocked accounts (deployer, members, supplier, DSO); "
            f"the node has {len(accounts)} (`peerwatt chain start` creates 60)"
        )
    deployer = accounts[0]
    sender = sender or TxSender(w3)
    epoch = config.epoch_for(latest_timestamp(w3))

    def market_init(token: str) -> str:
        return artifacts.constructor_data(
            "CdaMarket",
            deployer,
            token,
            epoch,
            config.slot_seconds,
            config.price_tick,
            config.market.as_tuple(),
            config.tariffs.as_tuple(),
        )

    estimate_gas(w3, {"from": deployer, "data": market_init(deployer)})  # dry run: parameters valid?

    say("deploying PeerwattToken")
    token_init = artifacts.constructor_data("PeerwattToken", deployer, TOKEN_NAME, TOKEN_SYMBOL)
    token_receipt = sender.mined(sender.send(deployer, None, token_init))
    token = _created(token_receipt.contract_address)
    say("deploying CdaMarket")
    market_receipt = sender.mined(sender.send(deployer, None, market_init(token)))
    market = _created(market_receipt.contract_address)
    manager_role = call(w3, market, "CdaMarket", "MANAGER_ROLE")[0]
    sender.mined(
        sender.send(deployer, market, artifacts.function("CdaMarket", "grantRole").encode(manager_role, deployer))
    )

    say("deploying MeterOracle")
    oracle_init = artifacts.constructor_data("MeterOracle", market)
    oracle = _created(sender.mined(sender.send(deployer, None, oracle_init)).contract_address)

    parties = _parties(w3, accounts, members)
    say("deploying CommunitySettlement")
    settlement_init = artifacts.constructor_data(
        "CommunitySettlement",
        market,
        oracle,
        parties["dso"],
        parties["manager"],
        config.settlement.as_tuple(),
        config.period_slots,
        config.reading_window_seconds,
    )
    settlement = _created(sender.mined(sender.send(deployer, None, settlement_init)).contract_address)
    settlement_role = call(w3, market, "CdaMarket", "SETTLEMENT_ROLE")[0]
    sender.all_mined(
        [
            sender.send(deployer, market, artifacts.function("CdaMarket", "grantRole").encode(settlement_role, settlement)),
            sender.send(deployer, oracle, artifacts.function("MeterOracle", "setSealer").encode(settlement)),
            sender.send(
                deployer, market, artifacts.function("CdaMarket", "setSupplierAccount").encode(parties["supplier"])
            ),
        ]
    )
    if dev_engine(w3) is not None:
        say("funding the supplier's deposit")
        fund_accounts(sender, deployer, token, market, [parties["supplier"]], config.supplier_deposit_base_units)

    member_accounts: list[str] = [w3.to_checksum_address(account) for account in accounts[1 : members + 1]]
    named = {member_name(index): account for index, account in enumerate(member_accounts)}
    keys = create_dev_keys(named)
    if member_accounts:
        say(f"registering and funding {len(member_accounts)} members, each with a meter key")
        fund_members(sender, deployer, token, market, member_accounts, config)
        register = artifacts.function("MeterOracle", "registerMeter")
        sender.all_mined(
            [sender.send(deployer, oracle, register.encode(key.address, named[key.member], 0)) for key in keys]
        )

    block = request(w3, "eth_getBlockByNumber", [hex(market_receipt.block_number), False])
    deployment = Deployment(
        chain_id=chain_id(w3),
        token=w3.to_checksum_address(token),
        market=w3.to_checksum_address(market),
        oracle=w3.to_checksum_address(oracle),
        settlement=w3.to_checksum_address(settlement),
        deployer=w3.to_checksum_address(deployer),
        deploy_block=market_receipt.block_number,
        first_block=token_receipt.block_number,
        deploy_block_hash=block["hash"],
        slot_clock=SlotClock(epoch, config.slot_seconds, config.market.gate_seconds),
        members=named,
        meters={key.member: key.address for key in keys},
        parties=parties,
    )
    return DeployedCommunity(deployment, keys)


def fund_members(
    sender: TxSender, deployer: str, token: str, market: str, members: list[str], config: CommunityConfig
) -> None:
    """Registers each account as a member, mints it tokens and deposits part of them."""
    add_member = artifacts.function("CdaMarket", "addMember")
    sender.all_mined([sender.send(deployer, market, add_member.encode(member)) for member in members])
    fund_accounts(
        sender,
        deployer,
        token,
        market,
        members,
        config.member_deposit_base_units,
        minted=config.member_funding_base_units,
    )


def fund_accounts(
    sender: TxSender,
    deployer: str,
    token: str,
    market: str,
    accounts: list[str],
    deposit_base_units: int,
    minted: int | None = None,
) -> None:
    """Mints each account ``minted`` tokens (default: the deposit) and deposits part of them in
    the market (members, or the supplier's deposit).

    Three rounds (mint, approve, deposit); within a round the transactions are independent, so
    they are sent back to back and their receipts collected once.
    """
    mint = artifacts.function("PeerwattToken", "mint")
    approve = artifacts.function("PeerwattToken", "approve")
    deposit = artifacts.function("CdaMarket", "deposit")
    amount = deposit_base_units if minted is None else minted
    rounds: list[list[tuple[str, str, str]]] = [
        [(deployer, token, mint.encode(account, amount)) for account in accounts],
        [(account, token, approve.encode(market, deposit_base_units)) for account in accounts],
        [(account, market, deposit.encode(deposit_base_units)) for account in accounts],
    ]
    for transactions in rounds:
        sender.all_mined([sender.send(frm, to, data) for frm, to, data in transactions])


def _parties(w3: Web3, accounts: list[str], members: int) -> dict[str, str]:
    """Who settlement pays besides members. The deployer manages the community (manager fees);
    on a dev chain the supplier and the DSO are the node's accounts after the members,
    elsewhere the deployer stands in for them (the admin can move the supplier's account
    later; the DSO's is fixed at deployment)."""
    deployer = w3.to_checksum_address(accounts[0])
    parties = {"manager": deployer}
    for offset, role in enumerate(PARTY_ROLES):
        index = members + 1 + offset
        parties[role] = w3.to_checksum_address(accounts[index]) if dev_engine(w3) is not None else deployer
    return parties


def _created(address: str | None) -> str:
    if not address:
        raise PeerwattError("a contract creation transaction returned no contract address")
    return address

"""Shared fixtures for the contract and property tests.

A community is deployed once per module (token and market with the defaults of
``peerwatt.config`` but a price tick of 1, epoch at the start of the current slot), with a
manager, four funded members that approved the market and deposited, and an outsider. Every
chain test starts from a snapshot of it (``fn_isolation``, autouse for tests/contracts and
tests/properties). ``deploy_community`` adds markets with another tick or parameters to it
(``ticked_market``: the default tick of 1000).

This file is also loaded by plain pytest runs of tests/unit and tests/integration (without
the Brownie plugin): nothing here touches Brownie unless a chain test asks for it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from peerwatt.config import CommunityConfig, MarketParams
from peerwatt.orderbook_model import ModelRevert, OrderBookModel
from peerwatt.slots import SlotClock
from settlement.chunks import unpack_member_results

CHAIN_TEST_DIRS = ("contracts", "properties")
MAX_UINT256 = 2**256 - 1
PANIC_MESSAGES = {0x11: "Integer overflow"}  # how Brownie renders Solidity panics we can hit


# ------------------------------------------------------------------------- isolation


def pytest_configure(config: pytest.Config) -> None:
    # Brownie's own isolation fixtures call its deprecated rpc methods on every test
    config.addinivalue_line("filterwarnings", r"ignore:rpc\.\w+ should not be called directly:FutureWarning")
    # tests/unit uses hypothesis.given on purpose: pure Python, no chain state to isolate
    config.addinivalue_line("filterwarnings", "ignore:Directly importing `hypothesis.given`")


@pytest.fixture(scope="session", autouse=True)
def _auto_gas_price() -> None:
    """EIP-1559 fees once per session (without it transactions can wait for a base fee)."""
    brownie = sys.modules.get("brownie")
    if brownie is not None and brownie.network.is_connected():
        brownie.network.gas_price("auto")


@pytest.fixture(autouse=True)
def isolation(request: pytest.FixtureRequest) -> None:
    """Each chain test starts from the module's snapshot (Brownie's fn_isolation)."""
    if request.path.parent.name in CHAIN_TEST_DIRS:
        request.getfixturevalue("fn_isolation")


# ------------------------------------------------------------------------ revert text


def render_arg(value: Any) -> str:
    """One custom-error argument as Brownie renders it (lower-case addresses, bytes repr)."""
    if isinstance(value, int):  # bools render as True / False
        return str(value)
    if isinstance(value, bytes):
        return repr(bytes(value))
    if hasattr(value, "address"):
        value = value.address
    text = str(value)
    if text.startswith("0x") and len(text) == 42:
        return text.lower()
    if text.startswith("0x") and len(text) == 66:
        return repr(bytes.fromhex(text[2:]))
    return text


def revert_message(name: str, *args: Any) -> str:
    """Brownie's revert string for custom error ``name(args)``: ``"Name: arg1, arg2"``."""
    return f"{name}: {', '.join(render_arg(arg) for arg in args)}"


def model_revert_message(error: ModelRevert) -> str:
    """The revert string the chain must show for an error the model raised."""
    if error.error == "Panic":
        return PANIC_MESSAGES[int(error.error_args["code"])]  # type: ignore[call-overload]
    return revert_message(error.error, *error.values)


@pytest.fixture(scope="session")
def model_revert_text() -> Callable[[ModelRevert], str]:
    """``model_revert_text(error)``: the revert string the chain shows for a model error."""
    return model_revert_message


@pytest.fixture(scope="session")
def error_pattern() -> Callable[..., str]:
    """``error_pattern("Name", arg, ...)``: a revert_pattern for brownie.reverts matching that
    custom error exactly; pass ``...`` for an argument whose value does not matter."""

    def pattern(name: str, *args: Any) -> str:
        parts = [r"[^,]+" if arg is ... else re.escape(render_arg(arg)) for arg in args]
        return re.escape(f"{name}: ") + ", ".join(parts)

    return pattern


# ------------------------------------------------------------------- chain values


def to_plain(value: Any) -> Any:
    """Brownie return values and event data as plain tuples (this compiled Brownie's
    ReturnValue.__eq__ raises TypeError against plain ints, so compare plain tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(to_plain(item) for item in value)
    return value


def tx_logs(tx: Any, name: str | None = None, address: Any = None) -> list[Any]:
    """Events of ``tx`` in log order: ``(name, args)`` pairs, or only the args of events called
    ``name``; only those emitted by ``address`` if given."""
    wanted = None if address is None else str(getattr(address, "address", address))
    found = []
    for event in tx.events:
        if wanted is not None and event.address != wanted:
            continue
        args = tuple(to_plain(value) for value in event.values())
        if name is None:
            found.append((event.name, args))
        elif event.name == name:
            found.append(args)
    return found


@pytest.fixture(scope="session")
def plain() -> Callable[[Any], Any]:
    """``plain(market.getOrder(1))``: a return value as nested plain tuples."""
    return to_plain


def _member_results(tx: Any) -> list[tuple[Any, ...]]:
    """The members a settlement transaction settled, from its ``MembersSettled`` events:
    ``(slot, member, contractedWh, energyAmount, imbalanceAmount, fees, retained)`` each."""
    return [
        (
            slot,
            result.member,
            result.contracted_wh,
            result.energy_amount,
            result.imbalance_amount,
            result.fees,
            result.retained,
        )
        for slot, results in tx_logs(tx, "MembersSettled")
        for result in unpack_member_results(bytes(results))
    ]


@pytest.fixture(scope="session")
def member_results() -> Callable[[Any], list[tuple[Any, ...]]]:
    """``member_results(tx)``: the members a settlement transaction settled (see
    :func:`_member_results`)."""
    return _member_results


@pytest.fixture(scope="session")
def logs() -> Callable[..., list[Any]]:
    """``logs(tx, "TradeExecuted")``: args tuples of those events; ``logs(tx)``: all events
    as ``(name, args)``; ``address=`` keeps one contract's events."""
    return tx_logs


# ---------------------------------------------------------------------------- actors


@pytest.fixture(scope="session")
def config() -> CommunityConfig:
    """The defaults, but a price tick of 1 base unit: tests place orders at any price (the
    tick's own tests deploy with a larger one)."""
    return CommunityConfig(price_tick=1)


@pytest.fixture(scope="session")
def admin(accounts: Any) -> Any:
    return accounts[0]


@pytest.fixture(scope="session")
def manager(accounts: Any) -> Any:
    """Holds MANAGER_ROLE (members) in the deployed market; not an admin."""
    return accounts[1]


@pytest.fixture(scope="session")
def members(accounts: Any) -> list[Any]:
    """Four registered, funded members that deposited into the market."""
    return list(accounts[2:6])


@pytest.fixture(scope="session")
def alice(members: list[Any]) -> Any:
    return members[0]


@pytest.fixture(scope="session")
def bob(members: list[Any]) -> Any:
    return members[1]


@pytest.fixture(scope="session")
def carol(members: list[Any]) -> Any:
    return members[2]


@pytest.fixture(scope="session")
def dave(members: list[Any]) -> Any:
    return members[3]


@pytest.fixture(scope="session")
def outsider(accounts: Any) -> Any:
    """Never a member."""
    return accounts[9]


# ------------------------------------------------------------------------ deployment


def deploy_market(
    container: Any, admin: Any, token: Any, config: CommunityConfig, epoch: int, params: MarketParams | None = None
) -> Any:
    """A CdaMarket with the clock and tariffs of ``config`` (and its market params unless given)."""
    params = config.market if params is None else params
    return container.deploy(
        admin,
        token,
        epoch,
        config.slot_seconds,
        config.price_tick,
        params.as_tuple(),
        config.tariffs.as_tuple(),
        {"from": admin},
    )


@pytest.fixture(scope="module")
def token(module_isolation: None, PeerwattToken: Any, admin: Any) -> Any:
    """A fresh settlement token; ``admin`` holds DEFAULT_ADMIN_ROLE and MINTER_ROLE."""
    return PeerwattToken.deploy(admin, "Peerwatt Euro", "PWEUR", {"from": admin})


def register_members(
    market: Any, token: Any, config: CommunityConfig, admin: Any, manager: Any, members: list[Any]
) -> Any:
    """Gives ``manager`` MANAGER_ROLE in ``market`` and registers ``members`` (ids 1.. in order),
    each funded with ``config.member_funding_base_units``, approved and with
    ``config.member_deposit_base_units`` deposited. Returns the market."""
    market.grantRole(market.MANAGER_ROLE(), manager, {"from": admin})
    for member in members:
        market.addMember(member, {"from": manager})
        token.mint(member, config.member_funding_base_units, {"from": admin})
        token.approve(market, MAX_UINT256, {"from": member})
        market.deposit(config.member_deposit_base_units, {"from": member})
    return market


@pytest.fixture(scope="module")
def market(
    CdaMarket: Any, token: Any, chain: Any, config: CommunityConfig, admin: Any, manager: Any, members: list[Any]
) -> Any:
    """The community: default parameters, epoch = start of the current slot, ``manager`` holds
    MANAGER_ROLE, every member registered (ids 1..4 in order), funded with
    ``config.member_funding_base_units``, approved and with ``config.member_deposit_base_units``
    deposited."""
    market = deploy_market(CdaMarket, admin, token, config, config.epoch_for(chain.time()))
    return register_members(market, token, config, admin, manager, members)


@pytest.fixture(scope="module")
def market_at(CdaMarket: Any, token: Any, admin: Any, config: CommunityConfig) -> Callable[[int], Any]:
    """``market_at(epoch)``: a bare market (no members) with the config's parameters and slot 0
    starting at ``epoch``."""
    return lambda epoch: deploy_market(CdaMarket, admin, token, config, epoch)


@pytest.fixture(scope="module")
def deploy_community(
    CdaMarket: Any, token: Any, chain: Any, admin: Any, manager: Any, members: list[Any]
) -> Callable[[CommunityConfig], Any]:
    """``deploy_community(config)``: another market like the ``market`` fixture's (same token,
    manager and members, epoch at the start of the current slot) but with ``config``'s price
    tick and parameters. Called from a module-scoped fixture, the market is deployed once per
    module; from a test, once per test."""

    def deploy(config: CommunityConfig) -> Any:
        market = deploy_market(CdaMarket, admin, token, config, config.epoch_for(chain.time()))
        return register_members(market, token, config, admin, manager, members)

    return deploy


@pytest.fixture(scope="module")
def ticked_market(deploy_community: Callable[[CommunityConfig], Any], config: CommunityConfig) -> Any:
    """A second community market with CommunityConfig's default price tick (1000 base units per
    kWh) and the default parameters (band [1000, 1_000_000], both multiples of it); the
    ``market`` fixture's tick is 1."""
    return deploy_community(replace(config, price_tick=CommunityConfig().price_tick))


@pytest.fixture
def model(market: Any, members: list[Any], config: CommunityConfig) -> OrderBookModel:
    """A reference model in the state of the freshly deployed ``market``."""
    epoch, slot_seconds, _ = market.slotClock()
    model = OrderBookModel(epoch, slot_seconds, config.market, price_tick=market.priceTick())
    for member in members:
        model.add_member(str(member))
        model.deposit(str(member), config.member_deposit_base_units)
    return model


@pytest.fixture
def slot(market: Any) -> int:
    """A slot open for trading for at least one more slot length."""
    return market.nextOpenSlot() + 1


# ------------------------------------------------------------------------------ time


@dataclass
class ChainClock:
    """Block time on the test chain, set exactly with anvil's ``evm_setNextBlockTimestamp``.

    View calls run at the latest block's timestamp; a transaction runs at the timestamp of the
    block that includes it (one transaction per block on anvil)."""

    chain: Any
    web3: Any
    market: Any

    @property
    def slots(self) -> SlotClock:
        """The market's slot clock with its current gate lead time."""
        return SlotClock(*self.market.slotClock())

    @property
    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.chain[-1].timestamp)

    def next_tx_at(self, timestamp: int) -> None:
        """The next block (so the next transaction) gets exactly ``timestamp`` (>= now)."""
        assert timestamp >= self.now, f"cannot go back in time to {timestamp} (now {self.now})"
        response = self.web3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
        assert "error" not in response, response

    def mine_at(self, timestamp: int) -> None:
        """Mines an empty block at exactly ``timestamp``: views then see that time."""
        self.next_tx_at(timestamp)
        self.chain.mine()
        assert self.now == timestamp

    def sleep(self, seconds: int) -> None:
        """Advances time by about ``seconds`` and mines a block (chain.sleep + chain.mine)."""
        self.chain.sleep(seconds)
        self.chain.mine()

    def to_gate_closure(self, slot: int, offset: int = 0) -> int:
        """Mines a block at ``offset`` seconds after ``slot``'s gate closure; returns its time."""
        timestamp = self.slots.gate_closure(slot) + offset
        self.mine_at(timestamp)
        return timestamp


@pytest.fixture
def clock(chain: Any, web3: Any, market: Any) -> ChainClock:
    return ChainClock(chain, web3, market)


# ------------------------------------------------------------------ state snapshots


def next_order_ids(market: Any, member: Any, slot: int) -> tuple[int | str, int | str]:
    """The ids a buy and a sell of ``member`` at the top of the price band (minimum quantity)
    would get in ``slot`` if placed one second before the slot's gate closure: ``eth_call``s
    with that block time, so nothing changes and the answer does not depend on the time now.

    Together they show the slot's id nonce, which no view returns: an order takes the next
    nonce when it crosses the book or creates a level, and shows only a level's tail when it
    joins one without crossing. The sell shows the nonce unless an ask level rests at the top;
    then the best ask is at most the top, so the buy crosses it and shows the nonce. A call that
    would revert gives its error as the node reports it."""
    from brownie import web3

    params = market.marketParams()
    block = {"time": hex(max(market.gateClosure(slot) - 1, 0))}
    ids: list[int | str] = []
    for is_buy in (True, False):
        request = {
            "from": str(member),
            "to": market.address,
            "data": market.placeOrder.encode_input(slot, is_buy, params[1], params[2]),
        }
        response = web3.provider.make_request("eth_call", [request, "latest", {}, block])
        if "error" in response:
            ids.append(repr(response["error"]))
        else:
            ids.append(int(market.placeOrder.decode_output(response["result"])))
    return ids[0], ids[1]


def market_state(market: Any, token: Any, accounts: Iterable[Any], slots: Iterable[int]) -> dict[str, Any]:
    """Everything a failed call must leave as it was: the next order ids of ``slots`` (see
    :func:`next_order_ids`, asked for the first account), balances (market and token), both
    sides of the books of ``slots`` with their best prices, positions, membership and the
    market parameters."""
    accounts = list(accounts)
    slots = list(slots)
    return to_plain_dict(
        {
            "next_order_ids": [next_order_ids(market, accounts[0], s) for s in slots],
            "token_held": token.balanceOf(market),
            "balances": [market.balanceOf(account) for account in accounts],
            "wallets": [token.balanceOf(account) for account in accounts],
            "books": [
                (market.bookSide(s, True, 100), market.bookSide(s, False, 100), market.bestPrices(s)) for s in slots
            ],
            "positions": [market.positionOf(s, account) for s in slots for account in accounts],
            "members": [market.memberOf(account) for account in accounts],
            "params": market.marketParams(),
        }
    )


def to_plain_dict(state: dict[str, Any]) -> dict[str, Any]:
    return {key: to_plain(value) for key, value in state.items()}


@pytest.fixture
def snapshot_state(market: Any, token: Any, members: list[Any], outsider: Any) -> Callable[..., dict[str, Any]]:
    """``snapshot_state(slot, ...)``: the market state of all members, the outsider and the
    given slots, to compare before and after a call that must change nothing; ``market=``
    another market of the same token (see ``deploy_community``)."""

    def take(*slots: int, market: Any = market) -> dict[str, Any]:
        return market_state(market, token, [*members, outsider], slots)

    return take


# ---------------------------------------------------------------------- settlement

# ICommunitySettlement enums
CDA, SHARING, OPTIMISATION = range(3)
MMR, SDR, BS = range(3)
EQUAL, PROPORTIONAL, SHAPLEY = range(3)
OPEN, TALLYING, PAYING, SETTLED = range(4)
READING_WINDOW_SECONDS = 600
PERIOD_SLOTS = 4
SUPPLIER_DEPOSIT = 100_000_000  # 100 tokens: what the supplier pays for exports comes from it


def settlement_config(
    mode: int = CDA,
    rule: int = MMR,
    share_rule: int = EQUAL,
    grid_fee: int = 0,
    manager_fee: int = 0,
    savings_bps: int = 0,
) -> tuple[int, int, int, int, int, int]:
    """ICommunitySettlement.Config in ABI order."""
    return (mode, rule, share_rule, grid_fee, manager_fee, savings_bps)


def fixed_meter_key(label: str) -> Any:
    """A meter's signing key derived from a fixed label (same addresses on every run)."""
    from eth_account import Account
    from eth_utils import keccak

    return Account.from_key(keccak(text=f"Peerwatt test meter {label}"))


@dataclass
class SettlementCommunity:
    """The ``market`` fixture's community with a meter oracle and a settlement contract wired
    to it: every member has a meter key, the supplier has deposited, and readings are tracked
    in acceptance order so that tests can cut settlement chunks."""

    market: Any
    token: Any
    oracle: Any
    settlement: Any
    clock: ChainClock
    members: list[Any]
    keys: list[Any]
    supplier: Any
    dso: Any
    fee_manager: Any
    relayer: Any

    def __post_init__(self) -> None:
        from oracle.readings import OracleDomain

        self.domain = OracleDomain(self.clock.chain.id, self.oracle.address)
        self.registers: dict[str, tuple[int, int]] = {}
        self.accepted: dict[int, list[Any]] = {}

    def end_slot(self, slot: int, after: int = 0) -> None:
        """Mines a block ``after`` seconds after ``slot`` ended (unless time is already past)."""
        epoch, slot_seconds, _ = self.market.slotClock()
        timestamp = epoch + (slot + 1) * slot_seconds + after
        if self.clock.now < timestamp:
            self.clock.mine_at(timestamp)

    def past_deadline(self, slot: int) -> None:
        self.end_slot(slot, READING_WINDOW_SECONDS)

    def deliver(self, slot: int, flows: dict[Any, tuple[int, int]]) -> Any:
        """Signs and submits the readings ``{member: (import_wh, export_wh)}`` for ``slot``
        (after it ended), keeping each meter's registers consistent."""
        from oracle.readings import Reading, pack
        from settlement.chunks import SlotReading

        self.end_slot(slot)
        signed = []
        for member, (import_wh, export_wh) in flows.items():
            key = self.keys[self.members.index(member)]
            last_import, last_export = self.registers.get(key.address, (0, 0))
            registers = (last_import + import_wh, last_export + export_wh)
            reading = Reading(key.address, slot, import_wh, export_wh, *registers)
            signed.append(self.domain.sign(reading, key.key))
            self.registers[key.address] = registers
        tx = self.oracle.submitReadings(pack(signed), {"from": self.relayer})
        assert tx.return_value == len(signed), "every reading must be accepted"
        for member, (import_wh, export_wh) in flows.items():
            member_id = self.market.memberOf(member)[0]
            self.accepted.setdefault(slot, []).append(SlotReading(member_id, import_wh, export_wh))
        return tx

    def chunks(self, slot: int, size: int = 200) -> list[Any]:
        from settlement.chunks import backward_chunks

        return backward_chunks(slot, self.accepted.get(slot, []), size)

    def settle(self, slot: int, size: int = 200, caller: Any = None) -> list[Any]:
        """Settles ``slot`` completely (two passes in sharing mode); returns the transactions."""
        from settlement.chunks import backward_chunks

        caller = caller or self.relayer
        readings = self.accepted.get(slot, [])
        txs = []
        while (state := self.settlement.slotState(slot))[0] != SETTLED:
            remaining = len(readings) if state[0] == OPEN else state[4]
            for chunk in backward_chunks(slot, readings[:remaining], size) or [None]:
                from_chain = chunk.from_chain_bytes if chunk else bytes(32)
                data = chunk.data if chunk else b""
                txs.append(self.settlement.settle(slot, from_chain, data, {"from": caller}))
        return txs

    def balances(self) -> list[int]:
        """Market balances of the members, the supplier, the DSO and the manager, in that order."""
        accounts = [*self.members, self.supplier, self.dso, self.fee_manager]
        return [self.market.balanceOf(account) for account in accounts]

    def owed(self) -> int:
        """What the market owes: every account's balance plus escrows and held payments are
        not visible one by one, so tests compare against this sum of balances after
        settlement (no resting orders, no unsettled positions)."""
        accounts = [*self.members, self.supplier, self.dso, self.fee_manager, self.settlement]
        return sum(self.market.balanceOf(account) for account in accounts)


def deltas(before: list[int], after: list[int]) -> list[int]:
    return [b - a for a, b in zip(before, after, strict=True)]


def assert_solvent(community: SettlementCommunity) -> None:
    """The market holds exactly what it owes (no resting orders or open positions assumed)."""
    assert community.token.balanceOf(community.market) == community.owed()


def weighted(*choices: tuple[int, Any]) -> Any:
    """A hypothesis strategy: one of the ``(weight, strategy)`` choices, chosen by weight
    (hypothesis's own choice between the branches of one_of / sampled_from is far from uniform,
    and merges identical branches). Shrinks towards the first choice."""
    from hypothesis import strategies as st

    total = sum(weight for weight, _ in choices)

    def choose(number: int) -> Any:
        for weight, strategy in choices:
            if number < weight:
                return strategy
            number -= weight
        raise AssertionError(number)

    return st.integers(0, total - 1).flatmap(choose)


@pytest.fixture(scope="module")
def settlement_parts(
    market: Any,
    token: Any,
    MeterOracle: Any,
    CommunitySettlement: Any,
    admin: Any,
    manager: Any,
    members: list[Any],
    accounts: Any,
) -> tuple[Any, Any, list[Any]]:
    """Oracle and settlement (Cda mode, no fees, periods of PERIOD_SLOTS slots) for the
    ``market`` fixture, wired together; a meter key per member from slot 0; the supplier
    (accounts[6]) funded with SUPPLIER_DEPOSIT deposited. DSO: accounts[7]; manager fees:
    accounts[8]."""
    supplier, dso, fee_manager = accounts[6], accounts[7], accounts[8]
    oracle = MeterOracle.deploy(market, {"from": admin})
    settlement = CommunitySettlement.deploy(
        market, oracle, dso, fee_manager, settlement_config(), PERIOD_SLOTS, READING_WINDOW_SECONDS, {"from": admin}
    )
    market.grantRole(market.SETTLEMENT_ROLE(), settlement, {"from": admin})
    oracle.setSealer(settlement, {"from": admin})
    market.setSupplierAccount(supplier, {"from": admin})
    token.mint(supplier, SUPPLIER_DEPOSIT, {"from": admin})
    token.approve(market, MAX_UINT256, {"from": supplier})
    market.deposit(SUPPLIER_DEPOSIT, {"from": supplier})
    keys = [fixed_meter_key(f"settlement {index}") for index in range(len(members))]
    for key, member in zip(keys, members):
        oracle.registerMeter(key.address, member, 0, {"from": manager})
    return oracle, settlement, keys


@pytest.fixture
def community(
    settlement_parts: tuple[Any, Any, list[Any]],
    market: Any,
    token: Any,
    clock: ChainClock,
    members: list[Any],
    accounts: Any,
    outsider: Any,
) -> SettlementCommunity:
    oracle, settlement, keys = settlement_parts
    return SettlementCommunity(
        market, token, oracle, settlement, clock, members, keys, accounts[6], accounts[7], accounts[8], outsider
    )


def send_awaited(fn: Any, args: tuple[Any, ...], sender: Any) -> Any:
    """``fn(*args)`` sent from ``sender`` (an unlocked dev account) and awaited by its receipt
    alone; returns Brownie's receipt of it (events, gas used).

    Brownie's own wait reads the sender's nonce first, then the receipt, and takes a transaction
    whose nonce is used but whose receipt is missing for dropped ("Tx dropped without known
    replacement"). anvil shows a transaction's nonce a moment before its receipt, so now and
    then a transaction that did go through raises that error: rarely for small ones, often
    enough to matter after bursts and for heavy ones, and in a loop that retries an example
    (hypothesis) the transaction then runs twice. Tests that send many transactions use this."""
    from brownie import chain, web3

    txid = web3.eth.send_transaction({"from": str(sender), "to": fn._address, "data": fn.encode_input(*args)})
    receipt = web3.eth.wait_for_transaction_receipt(txid, timeout=120, poll_latency=0.02)
    assert receipt["status"] == 1, f"{fn.abi['name']}{tuple(args)[:1]} reverted"
    return chain.get_transaction(txid)

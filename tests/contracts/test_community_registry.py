"""CommunityRegistry (deployed as part of CdaMarket): constructor checks, members, roles and
access control, market parameters and the price tick, tariffs and the slot clock views.

A failed deployment leaves no contract behind (checked with the container's length); every
other rejected call is checked to leave the market as it was (``snapshot_state``)."""

from dataclasses import replace

import brownie
import pytest
from eth_utils import keccak

from peerwatt.config import MarketParams, Tariffs
from peerwatt.order_ids import first_seq, order_id_at
from peerwatt.orderbook_model import MAX_PRICE_TICKS
from peerwatt.slots import SlotClock

ZERO_ADDRESS = "0x" + "0" * 40
DEFAULT_ADMIN_ROLE = "0x" + "00" * 32


def role(name):
    return "0x" + keccak(text=name).hex().removeprefix("0x")


def deploy(
    CdaMarket,
    admin,
    token,
    config,
    *,
    epoch=None,
    slot_seconds=None,
    price_tick=None,
    params=None,
    tariffs=None,
    owner=None,
):
    """A market with ``config``'s values unless overridden."""
    return CdaMarket.deploy(
        admin if owner is None else owner,
        token,
        config.epoch_for(brownie.chain.time()) if epoch is None else epoch,
        config.slot_seconds if slot_seconds is None else slot_seconds,
        config.price_tick if price_tick is None else price_tick,
        (config.market if params is None else params).as_tuple(),
        (config.tariffs if tariffs is None else tariffs).as_tuple(),
        {"from": admin},
    )


# ------------------------------------------------------------------------ constructor


def test_constructor_state_and_events(CdaMarket, token, config, admin, chain, plain, logs):
    epoch = config.epoch_for(chain.time())
    market = deploy(CdaMarket, admin, token, config, epoch=epoch)
    tx = market.tx
    assert market.hasRole(DEFAULT_ADMIN_ROLE, admin)
    assert market.token() == token
    assert plain(market.slotClock()) == (epoch, config.slot_seconds, config.market.gate_seconds)
    assert market.priceTick() == config.price_tick == 1
    assert market.MAX_PRICE_TICKS() == MAX_PRICE_TICKS == 2**24 - 1
    assert plain(market.marketParams()) == config.market.as_tuple()
    assert plain(market.tariffs()) == config.tariffs.as_tuple()
    assert market.memberCount() == 0
    assert market.MAX_FILL_CAP() == 256
    assert logs(tx, "MarketParamsUpdated") == [config.market.as_tuple()]
    assert logs(tx, "TariffsUpdated") == [config.tariffs.as_tuple()]
    assert logs(tx, "RoleGranted") == [(DEFAULT_ADMIN_ROLE, admin, admin)]


def test_role_constants(market):
    assert market.DEFAULT_ADMIN_ROLE() == DEFAULT_ADMIN_ROLE
    assert market.MANAGER_ROLE() == role("MANAGER_ROLE")
    assert market.DSO_ROLE() == role("DSO_ROLE")
    assert market.SUPPLIER_ROLE() == role("SUPPLIER_ROLE")
    for name in ("MANAGER_ROLE", "DSO_ROLE", "SUPPLIER_ROLE"):
        assert market.getRoleAdmin(role(name)) == DEFAULT_ADMIN_ROLE


@pytest.mark.parametrize("tick", [1_000, 256, 2**32 - 1])
def test_constructor_sets_the_price_tick(CdaMarket, token, config, admin, plain, tick):
    """The tick is fixed at deployment; the band must be made of whole ticks (a single tick
    here, the top of the uint32 range for the largest tick)."""
    params = replace(config.market, min_price_per_kwh=tick, max_price_per_kwh=tick)
    market = deploy(CdaMarket, admin, token, config, price_tick=tick, params=params)
    assert market.priceTick() == tick
    assert plain(market.marketParams()) == params.as_tuple()


def test_constructor_rejects_zero_admin(CdaMarket, token, config, admin, error_pattern):
    deployed = len(CdaMarket)
    with brownie.reverts(revert_pattern=error_pattern("RegistryZeroAddress")):
        deploy(CdaMarket, admin, token, config, owner=ZERO_ADDRESS)
    assert len(CdaMarket) == deployed


def test_constructor_rejects_zero_slot_length(CdaMarket, token, config, admin, error_pattern):
    deployed = len(CdaMarket)
    with brownie.reverts(revert_pattern=error_pattern("RegistryInvalidClock", 1_000, 0)):
        deploy(CdaMarket, admin, token, config, epoch=1_000, slot_seconds=0)
    assert len(CdaMarket) == deployed


def test_constructor_rejects_zero_price_tick(CdaMarket, token, config, admin, error_pattern):
    """Checked before the market parameters (a band is a multiple of no tick of zero)."""
    deployed = len(CdaMarket)
    with brownie.reverts(revert_pattern=error_pattern("RegistryInvalidPriceTick", 0)):
        deploy(CdaMarket, admin, token, config, price_tick=0)
    with brownie.reverts(revert_pattern=error_pattern("RegistryInvalidPriceTick", 0)):
        deploy(CdaMarket, admin, token, config, price_tick=0, params=replace(config.market, min_price_per_kwh=0))
    assert len(CdaMarket) == deployed


# (price tick, band) pairs the registry rejects: a bound off the tick, or more than
# MAX_PRICE_TICKS ticks (with tick 128, 2^31 is 2^24 ticks)
BANDS_OFF_THE_TICK = [
    (1, (1_000, 2**24)),
    (1, (1_000, 2**32 - 1)),
    (128, (128, 2**31)),
    (256, (256, 2**32 - 1)),
    (1_000, (1_500, 1_000_000)),
    (1_000, (1_000, 999_999)),
    (1_000, (500, 1_000)),
    (1_000, (1, 1_000_000)),
]


@pytest.mark.parametrize("tick, band", BANDS_OFF_THE_TICK)
def test_constructor_rejects_a_band_off_the_tick(CdaMarket, token, config, admin, error_pattern, tick, band):
    params = replace(config.market, min_price_per_kwh=band[0], max_price_per_kwh=band[1])
    deployed = len(CdaMarket)
    with brownie.reverts(revert_pattern=error_pattern("RegistryInvalidPriceBand", *band)):
        deploy(CdaMarket, admin, token, config, price_tick=tick, params=params)
    assert len(CdaMarket) == deployed


@pytest.mark.parametrize("tick", [1, 128, 256])
def test_constructor_accepts_max_price_ticks(CdaMarket, token, config, admin, plain, tick):
    """The band may reach MAX_PRICE_TICKS ticks exactly (2^24 - 1 with tick 1, 2^32 - 256 with
    tick 256)."""
    params = replace(config.market, min_price_per_kwh=tick, max_price_per_kwh=MAX_PRICE_TICKS * tick)
    market = deploy(CdaMarket, admin, token, config, price_tick=tick, params=params)
    assert plain(market.marketParams()) == params.as_tuple()


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"min_price_per_kwh": 0}, ("RegistryInvalidPriceBand", 0, 1_000_000)),
        ({"min_price_per_kwh": 7, "max_price_per_kwh": 6}, ("RegistryInvalidPriceBand", 7, 6)),
        ({"min_qty_wh": 0}, ("RegistryInvalidMinQty", 0)),
        ({"fill_cap": 0}, ("RegistryInvalidFillCap", 0)),
        ({"fill_cap": 257}, ("RegistryInvalidFillCap", 257)),
        ({"fill_cap": 2**16 - 1}, ("RegistryInvalidFillCap", 2**16 - 1)),
    ],
)
def test_constructor_rejects_bad_market_params(CdaMarket, token, config, admin, error_pattern, changes, error):
    params = replace(config.market, **changes)
    deployed = len(CdaMarket)
    with brownie.reverts(revert_pattern=error_pattern(*error)):
        deploy(CdaMarket, admin, token, config, params=params)
    assert len(CdaMarket) == deployed


@pytest.mark.parametrize("import_price, export_price", [(100, 100), (100, 101), (0, 0)])
def test_constructor_rejects_bad_tariffs(CdaMarket, token, config, admin, error_pattern, import_price, export_price):
    deployed = len(CdaMarket)
    with brownie.reverts(revert_pattern=error_pattern("RegistryInvalidTariffs", import_price, export_price)):
        deploy(CdaMarket, admin, token, config, tariffs=Tariffs(import_price, export_price))
    assert len(CdaMarket) == deployed


# ---------------------------------------------------------------------------- members


def test_fixture_members(market, members, manager, plain):
    assert market.memberCount() == len(members)
    for member_id, member in enumerate(members, start=1):
        assert plain(market.memberOf(member)) == (member_id, True)
        assert market.memberAddress(member_id) == member
    assert market.hasRole(market.MANAGER_ROLE(), manager)


def test_add_member(market, manager, accounts, logs, plain):
    tx = market.addMember(accounts[10], {"from": manager})
    assert tx.return_value == 5
    assert logs(tx, "MemberAdded") == [(accounts[10], 5)]
    assert plain(market.memberOf(accounts[10])) == (5, True)
    assert market.memberAddress(5) == accounts[10]
    assert market.memberCount() == 5
    tx = market.addMember(accounts[11], {"from": manager})
    assert tx.return_value == 6


def test_unknown_member_views(market, outsider, plain):
    assert plain(market.memberOf(outsider)) == (0, False)
    assert market.memberAddress(0) == ZERO_ADDRESS
    assert market.memberAddress(99) == ZERO_ADDRESS


def test_add_member_rejects_zero_address(market, manager, error_pattern, plain):
    with brownie.reverts(revert_pattern=error_pattern("RegistryZeroAddress")):
        market.addMember(ZERO_ADDRESS, {"from": manager})
    assert market.memberCount() == 4
    assert plain(market.memberOf(ZERO_ADDRESS)) == (0, False)


def test_add_member_rejects_active_member(market, manager, alice, error_pattern, plain):
    with brownie.reverts(revert_pattern=error_pattern("RegistryAlreadyMember", alice)):
        market.addMember(alice, {"from": manager})
    assert market.memberCount() == 4
    assert plain(market.memberOf(alice)) == (1, True)


def test_remove_member(market, manager, bob, logs, plain):
    tx = market.removeMember(bob, {"from": manager})
    assert logs(tx, "MemberRemoved") == [(bob, 2)]
    assert plain(market.memberOf(bob)) == (2, False)
    assert market.memberAddress(2) == bob  # the id stays bound to the account
    assert market.memberCount() == 3


def test_remove_member_rejects_non_member(market, manager, bob, outsider, error_pattern):
    with brownie.reverts(revert_pattern=error_pattern("RegistryNotMember", outsider)):
        market.removeMember(outsider, {"from": manager})
    market.removeMember(bob, {"from": manager})
    with brownie.reverts(revert_pattern=error_pattern("RegistryNotMember", bob)):
        market.removeMember(bob, {"from": manager})
    assert market.memberCount() == 3


def test_readded_member_keeps_its_id(market, manager, bob, accounts, logs, plain):
    market.removeMember(bob, {"from": manager})
    market.addMember(accounts[10], {"from": manager})
    tx = market.addMember(bob, {"from": manager})
    assert tx.return_value == 2
    assert logs(tx, "MemberAdded") == [(bob, 2)]
    assert plain(market.memberOf(bob)) == (2, True)
    assert market.memberCount() == 5


# ------------------------------------------------------------------- access control


@pytest.mark.parametrize("caller_name", ["admin", "alice", "outsider"])
def test_member_functions_require_manager_role(market, accounts, alice, request, error_pattern, caller_name, plain):
    caller = request.getfixturevalue(caller_name)
    pattern = error_pattern("AccessControlUnauthorizedAccount", caller, market.MANAGER_ROLE())
    with brownie.reverts(revert_pattern=pattern):
        market.addMember(accounts[10], {"from": caller})
    with brownie.reverts(revert_pattern=pattern):
        market.removeMember(alice, {"from": caller})
    assert plain(market.memberOf(accounts[10])) == (0, False)
    assert plain(market.memberOf(alice)) == (1, True)


@pytest.mark.parametrize("caller_name", ["manager", "alice", "outsider"])
def test_parameter_functions_require_admin_role(market, config, request, error_pattern, plain, caller_name):
    caller = request.getfixturevalue(caller_name)
    pattern = error_pattern("AccessControlUnauthorizedAccount", caller, DEFAULT_ADMIN_ROLE)
    with brownie.reverts(revert_pattern=pattern):
        market.setMarketParams(replace(config.market, fill_cap=3).as_tuple(), {"from": caller})
    with brownie.reverts(revert_pattern=pattern):
        market.setTariffs((300_000, 50_000), {"from": caller})
    with brownie.reverts(revert_pattern=pattern):
        market.grantRole(market.DSO_ROLE(), caller, {"from": caller})
    with brownie.reverts(revert_pattern=pattern):
        market.revokeRole(market.MANAGER_ROLE(), caller, {"from": caller})
    assert plain(market.marketParams()) == config.market.as_tuple()
    assert plain(market.tariffs()) == config.tariffs.as_tuple()
    assert not market.hasRole(market.DSO_ROLE(), caller)


def test_grant_revoke_and_renounce_roles(market, admin, manager, accounts, error_pattern, logs):
    dso, supplier = market.DSO_ROLE(), market.SUPPLIER_ROLE()
    tx = market.grantRole(dso, accounts[12], {"from": admin})
    assert logs(tx, "RoleGranted") == [(dso, accounts[12], admin)]
    market.grantRole(supplier, accounts[13], {"from": admin})
    assert market.hasRole(dso, accounts[12]) and market.hasRole(supplier, accounts[13])

    tx = market.revokeRole(dso, accounts[12], {"from": admin})
    assert logs(tx, "RoleRevoked") == [(dso, accounts[12], admin)]
    assert not market.hasRole(dso, accounts[12])

    with brownie.reverts(revert_pattern=error_pattern("AccessControlBadConfirmation")):
        market.renounceRole(supplier, accounts[13], {"from": admin})
    assert market.hasRole(supplier, accounts[13])
    market.renounceRole(supplier, accounts[13], {"from": accounts[13]})
    assert not market.hasRole(supplier, accounts[13])

    # a manager that renounced its role can no longer add members
    market.renounceRole(market.MANAGER_ROLE(), manager, {"from": manager})
    with brownie.reverts(
        revert_pattern=error_pattern("AccessControlUnauthorizedAccount", manager, market.MANAGER_ROLE())
    ):
        market.addMember(accounts[10], {"from": manager})


def test_supports_interface(market):
    assert market.supportsInterface("0x01ffc9a7")  # IERC165
    assert market.supportsInterface("0x7965db0b")  # IAccessControl
    assert not market.supportsInterface("0xffffffff")


# ---------------------------------------------------------------- market parameters


def test_set_market_params(market, admin, config, plain, logs):
    params = MarketParams(5, 9_999, 2, 60, 7)
    tx = market.setMarketParams(params.as_tuple(), {"from": admin})
    assert logs(tx, "MarketParamsUpdated") == [params.as_tuple()]
    assert plain(market.marketParams()) == params.as_tuple()
    _, slot_seconds, gate_seconds = market.slotClock()
    assert (slot_seconds, gate_seconds) == (config.slot_seconds, 60)


def test_set_market_params_accepts_edge_values(market, admin, plain):
    params = MarketParams(1, 1, 1, 0, 1)  # a single price, gate at slot start, cap 1
    market.setMarketParams(params.as_tuple(), {"from": admin})
    assert plain(market.marketParams()) == params.as_tuple()
    top = MarketParams(MAX_PRICE_TICKS, MAX_PRICE_TICKS, 2**64 - 1, 2**32 - 1, market.MAX_FILL_CAP())  # cap 256
    market.setMarketParams(top.as_tuple(), {"from": admin})
    assert plain(market.marketParams()) == top.as_tuple()


def test_set_market_params_on_the_tick(ticked_market, admin, plain, logs):
    """With a tick of 1000, any band of whole ticks is accepted (up to the largest multiple of
    1000 in uint32); the tick itself never changes."""
    market = ticked_market
    for band in ((1_000, 1_000), (2_000, 5_000), (1_000, 4_294_967_000)):
        params = MarketParams(*band, 1, 0, 1)
        tx = market.setMarketParams(params.as_tuple(), {"from": admin})
        assert logs(tx, "MarketParamsUpdated") == [params.as_tuple()]
        assert plain(market.marketParams()) == params.as_tuple()
        assert market.priceTick() == 1_000


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"min_price_per_kwh": 0}, ("RegistryInvalidPriceBand", 0, 1_000_000)),
        ({"min_price_per_kwh": 1_000_001}, ("RegistryInvalidPriceBand", 1_000_001, 1_000_000)),
        ({"max_price_per_kwh": 2**24}, ("RegistryInvalidPriceBand", 1_000, 2**24)),  # 2^24 ticks of 1
        ({"max_price_per_kwh": 2**32 - 1}, ("RegistryInvalidPriceBand", 1_000, 2**32 - 1)),
        ({"min_qty_wh": 0}, ("RegistryInvalidMinQty", 0)),
        ({"fill_cap": 0}, ("RegistryInvalidFillCap", 0)),
        ({"fill_cap": 257}, ("RegistryInvalidFillCap", 257)),  # above MAX_FILL_CAP
        ({"fill_cap": 2**16 - 1}, ("RegistryInvalidFillCap", 2**16 - 1)),
    ],
)
def test_set_market_params_rejects_bad_values(
    market, admin, config, slot, snapshot_state, error_pattern, plain, changes, error
):
    before = snapshot_state(slot)
    with brownie.reverts(revert_pattern=error_pattern(*error)):
        market.setMarketParams(replace(config.market, **changes).as_tuple(), {"from": admin})
    assert plain(market.marketParams()) == config.market.as_tuple()
    assert snapshot_state(slot) == before


@pytest.mark.parametrize("tick, band", [(t, b) for t, b in BANDS_OFF_THE_TICK if t == 1_000])
def test_set_market_params_rejects_a_band_off_the_tick(
    ticked_market, admin, alice, bob, snapshot_state, error_pattern, plain, tick, band
):
    """The band checks of the constructor, on a live market with tick 1000 and resting orders."""
    market = ticked_market
    slot = market.nextOpenSlot() + 1
    market.placeOrder(slot, False, 300_000, 10, {"from": alice})
    market.placeOrder(slot, True, 200_000, 10, {"from": bob})
    params = plain(market.marketParams())
    before = snapshot_state(slot, market=market)
    bad = MarketParams(*band, *params[2:])
    with brownie.reverts(revert_pattern=error_pattern("RegistryInvalidPriceBand", *band)):
        market.setMarketParams(bad.as_tuple(), {"from": admin})
    assert snapshot_state(slot, market=market) == before
    assert plain(market.marketParams()) == params
    assert market.priceTick() == tick


def test_market_params_do_not_touch_order_ids(market, admin, alice, slot, config, plain):
    """Orders and the slot's id nonce survive a parameter change: the next level created in the
    slot takes nonce 2."""
    first = market.placeOrder(slot, False, 100_000, config.market.min_qty_wh, {"from": alice}).return_value
    market.setMarketParams(replace(config.market, fill_cap=2).as_tuple(), {"from": admin})
    second = market.placeOrder(slot, False, 100_001, config.market.min_qty_wh, {"from": alice}).return_value
    assert [first, second] == [
        order_id_at(slot, False, 100_000, first_seq(1)),
        order_id_at(slot, False, 100_001, first_seq(2)),
    ]
    assert [order[0] for order in plain(market.bookSide(slot, False, 10))] == [first, second]


# ------------------------------------------------------------------------- tariffs


def test_set_tariffs(market, admin, plain, logs):
    tx = market.setTariffs((300_000, 50_000), {"from": admin})
    assert logs(tx, "TariffsUpdated") == [(300_000, 50_000)]
    assert plain(market.tariffs()) == (300_000, 50_000)
    market.setTariffs((2, 1), {"from": admin})
    assert plain(market.tariffs()) == (2, 1)


@pytest.mark.parametrize("tariffs", [(100, 100), (100, 200), (0, 0)])
def test_set_tariffs_rejects_export_not_below_import(market, admin, config, error_pattern, plain, tariffs):
    with brownie.reverts(revert_pattern=error_pattern("RegistryInvalidTariffs", *tariffs)):
        market.setTariffs(tariffs, {"from": admin})
    assert plain(market.tariffs()) == config.tariffs.as_tuple()


# ---------------------------------------------------------------------- slot clock


def assert_clock_views(market, clock, slots):
    """The registry's clock views agree with peerwatt.slots.SlotClock at the latest block."""
    now = clock.now
    reference = SlotClock(*market.slotClock())
    assert market.currentSlot() == reference.slot_at(now)
    assert market.nextOpenSlot() == reference.next_open_slot(now)
    for slot in slots:
        assert market.gateClosure(slot) == reference.gate_closure(slot)


def test_clock_views_at_slot_boundaries(market, clock, config):
    base = market.currentSlot() + 2
    gate = config.market.gate_seconds
    for slot in (base, base + 1):
        start = clock.slots.slot_start(slot)
        for timestamp in (start - gate - 1, start - gate, start - gate + 1, start - 1, start, start + 1):
            if timestamp <= clock.now:
                continue
            clock.mine_at(timestamp)
            assert_clock_views(market, clock, range(base - 1, base + 3))
            expected_open = slot if timestamp < start - gate else slot + 1
            assert market.nextOpenSlot() == expected_open
            assert market.currentSlot() == (slot if timestamp >= start else slot - 1)


def test_gate_closure_follows_gate_seconds(market, admin, clock, config):
    slot = market.currentSlot() + 3
    start = clock.slots.slot_start(slot)
    assert market.gateClosure(slot) == start - config.market.gate_seconds
    market.setMarketParams(replace(config.market, gate_seconds=0).as_tuple(), {"from": admin})
    assert market.gateClosure(slot) == start
    market.setMarketParams(replace(config.market, gate_seconds=2 * config.slot_seconds).as_tuple(), {"from": admin})
    assert market.gateClosure(slot) == start - 2 * config.slot_seconds
    assert_clock_views(market, clock, range(slot - 3, slot + 3))


def test_clock_before_epoch_and_early_slots(CdaMarket, token, config, admin, clock):
    """An epoch in the future: slot 0 before it, and gate closures clamp at zero."""
    future = clock.now + 10 * config.slot_seconds
    market = deploy(CdaMarket, admin, token, config, epoch=future)
    assert market.currentSlot() == 0
    assert market.nextOpenSlot() == 0  # now + gate < epoch
    assert market.gateClosure(0) == future - config.market.gate_seconds

    early = deploy(CdaMarket, admin, token, config, epoch=config.market.gate_seconds - 1)
    assert early.gateClosure(0) == 0  # the slot starts before the lead time: always closed
    assert early.gateClosure(1) == config.slot_seconds - 1
    reference = SlotClock(*early.slotClock())
    assert early.currentSlot() == reference.slot_at(clock.now)
    assert early.nextOpenSlot() == reference.next_open_slot(clock.now)

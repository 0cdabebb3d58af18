"""Stateful property test: random sequences of market calls, on chain and in the model.

Hypothesis generates sequences of steps -- place, sweep (a large order at the far end of the
band), batch place, cancel, cancel own orders, deposit, withdraw, expire, expire a slot,
remove/re-add a member, advance time (by seconds or to a gate closure +-1) -- by four members
and an outsider over two slots, with a narrow price band (orders cross often, and prices near
1000 per kWh make escrow rounding show) and a fill cap of 2 (so that it triggers). Every step
runs on the deployed contracts and on peerwatt.orderbook_model at the same block time:

* a call that reverts on chain must raise the same custom error with the same arguments in the
  model, and the other way round; a successful call must emit exactly the model's events (all
  of them, in order: OrderPlaced, TradeExecuted, OrderCancelled, ...) and return the same ids;
* after every step the books (both sides of every slot, best prices), balances, positions and
  membership equal the model's, and the market is solvent:
  token.balanceOf(market) == sum(balances) + sum(escrow of resting orders) + sum(paid).

Why not brownie.test.state_machine or a hypothesis RuleBasedStateMachine: Brownie's
state_machine is unusable in this compiled Brownie build (its mypyc-compiled
_BrownieStateMachine.__init__ raises "TypeError: brownie.test.stateful._BrownieStateMachine
object expected" for every generated machine class), and hypothesis 6.27 starts a
RuleBasedStateMachine with about ten 1-3 step "small examples": 8 examples gave 26 steps in all,
and a long enough run needed 40 examples and 150 s. Here every example is a full sequence of
STEPS_PER_EXAMPLE steps drawn before anything runs on chain, and its step kinds and values are
weighted explicitly (see ``weighted``). Hypothesis keeps failing sequences in its database and
replays them first; shrinking is off unless PEERWATT_SHRINK=1 (see PHASES).
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from dataclasses import dataclass, replace

import brownie
import pytest
from brownie.test import given  # hypothesis.given plus a chain revert before every example
from conftest import weighted
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st

from peerwatt.config import CommunityConfig
from peerwatt.orderbook_model import CancelReason, ModelRevert, OrderBookModel, OrderPlaced, OrderRequest

PRICE_BAND = (998, 1_003)  # base units per kWh: six levels where q * p // 1000 rounds often
MIN_QTY = CommunityConfig().market.min_qty_wh  # the deployed default (tests/conftest.py)
FILL_CAP = 2
START_BALANCE = 400  # base units each member keeps deposited at the start: buys run out
SLOTS = 2
FIRST_GATE_IN = 900  # seconds from the start of an example to the first slot's gate closure
STEPS_PER_EXAMPLE = 50
EXAMPLES = 12  # 600 steps in a normal run
# Shrinking replays sequences of up to 50 transactions hundreds of times (hypothesis stops it
# after five minutes): off unless asked for. A failing run prints its steps up to the failure.
PHASES = tuple(Phase) if os.environ.get("PEERWATT_SHRINK") else (Phase.explicit, Phase.reuse, Phase.generate)
MIN_TRANSACTIONS = 200
ACTORS = 5  # four members, then the outsider


# ------------------------------------------------------------------------------ steps


@dataclass(frozen=True)
class Advance:
    """Moves the clock by ``by`` seconds, or to just before, at or after the next gate closure."""

    by: int | str

    def run(self, runner: MarketRunner) -> None:
        runner.advance(self.by)


@dataclass(frozen=True)
class Place:
    actor: int
    slot: int
    is_buy: bool
    price: int
    qty: int

    def run(self, runner: MarketRunner) -> None:
        who, address, slot = runner.actor(self.actor), runner.address(self.actor), runner.slots[self.slot]
        result = runner.transact(
            lambda: runner.market.placeOrder(slot, self.is_buy, self.price, self.qty, {"from": who}),
            lambda now: runner.model.place_order(address, slot, self.is_buy, self.price, self.qty, now=now),
        )
        if result is not None:
            order_id, tx = result
            assert tx.return_value == order_id


@dataclass(frozen=True)
class Sweep:
    """A large order at the far end of the band: it crosses the whole other side of the book,
    so it runs into the fill cap whenever more than FILL_CAP orders rest there."""

    actor: int
    slot: int
    is_buy: bool
    qty: int

    def run(self, runner: MarketRunner) -> None:
        price = PRICE_BAND[1] if self.is_buy else PRICE_BAND[0]
        Place(self.actor, self.slot, self.is_buy, price, self.qty).run(runner)


@dataclass(frozen=True)
class PlaceBatch:
    actor: int
    requests: tuple[tuple[int, bool, int, int], ...]

    def run(self, runner: MarketRunner) -> None:
        who, address = runner.actor(self.actor), runner.address(self.actor)
        orders = [OrderRequest(runner.slots[s], is_buy, price, qty) for s, is_buy, price, qty in self.requests]
        result = runner.transact(
            lambda: runner.market.placeOrders([order.as_tuple() for order in orders], {"from": who}),
            lambda now: runner.model.place_orders(address, orders, now=now),
        )
        if result is not None:
            order_ids, tx = result
            assert list(tx.return_value) == order_ids


@dataclass(frozen=True)
class Cancel:
    """Cancels one order: usually a resting one (anybody's), sometimes a gone or unknown id."""

    actor: int
    pick: int

    def run(self, runner: MarketRunner) -> None:
        who, address = runner.actor(self.actor), runner.address(self.actor)
        order_id = runner.pick_order(self.pick)
        runner.transact(
            lambda: runner.market.cancelOrder(order_id, {"from": who}),
            lambda now: runner.model.cancel_order(address, order_id, now=now),
        )


@dataclass(frozen=True)
class CancelOwn:
    """Cancels a few of the actor's own resting orders (and now and then a wrong id)."""

    actor: int
    picks: tuple[int, ...]

    def run(self, runner: MarketRunner) -> None:
        who, address = runner.actor(self.actor), runner.address(self.actor)
        own = [order.order_id for order in runner.model.resting_orders() if order.member == address]
        order_ids = [own[pick % len(own)] if own and pick % 5 else runner.pick_order(pick) for pick in self.picks]
        runner.transact(
            lambda: runner.market.cancelOrders(order_ids, {"from": who}),
            lambda now: runner.model.cancel_orders(address, order_ids, now=now),
        )


@dataclass(frozen=True)
class Deposit:
    actor: int
    amount: int

    def run(self, runner: MarketRunner) -> None:
        who, address = runner.actor(self.actor), runner.address(self.actor)
        runner.transact(
            lambda: runner.market.deposit(self.amount, {"from": who}),
            lambda now: runner.model.deposit(address, self.amount),
        )


@dataclass(frozen=True)
class Withdraw:
    actor: int
    amount: int

    def run(self, runner: MarketRunner) -> None:
        who, address = runner.actor(self.actor), runner.address(self.actor)
        runner.transact(
            lambda: runner.market.withdraw(self.amount, {"from": who}),
            lambda now: runner.model.withdraw(address, self.amount),
        )


@dataclass(frozen=True)
class Expire:
    """Anyone expires a few orders (resting, gone or unknown)."""

    actor: int
    picks: tuple[int, ...]

    def run(self, runner: MarketRunner) -> None:
        order_ids = [runner.pick_order(pick) for pick in self.picks]
        runner.transact(
            lambda: runner.market.expireOrders(order_ids, {"from": runner.actor(self.actor)}),
            lambda now: runner.model.expire_orders(order_ids, now=now),
        )


@dataclass(frozen=True)
class ExpireSlot:
    """What a keeper does: expire every resting order of one slot."""

    actor: int
    slot: int

    def run(self, runner: MarketRunner) -> None:
        slot = runner.slots[self.slot]
        order_ids = [order.order_id for order in runner.model.resting_orders() if order.slot == slot]
        runner.transact(
            lambda: runner.market.expireOrders(order_ids, {"from": runner.actor(self.actor)}),
            lambda now: runner.model.expire_orders(order_ids, now=now),
        )


@dataclass(frozen=True)
class ToggleMembership:
    """The manager removes an active member or (re-)adds an inactive one."""

    member: int

    def run(self, runner: MarketRunner) -> None:
        who, address = runner.actor(self.member), runner.address(self.member)
        if runner.model.member_of(address)[1]:
            runner.transact(
                lambda: runner.market.removeMember(who, {"from": runner.manager}),
                lambda now: runner.model.remove_member(address),
            )
        else:
            runner.transact(
                lambda: runner.market.addMember(who, {"from": runner.manager}),
                lambda now: runner.model.add_member(address),
            )




ACTOR = weighted((19, st.integers(0, 3)), (1, st.just(ACTORS - 1)))  # rarely the outsider
SLOT = st.integers(0, SLOTS - 1)
VALID_PRICE = st.integers(*PRICE_BAND)
LOW, HIGH = st.integers(PRICE_BAND[0], PRICE_BAND[0] + 2), st.integers(PRICE_BAND[1] - 2, PRICE_BAND[1])
OUT_OF_BAND = st.sampled_from([PRICE_BAND[0] - 1, PRICE_BAND[1] + 1])
# buyers mostly bid low and sellers mostly ask high, so that books grow a few orders deep (and
# sweeps hit the fill cap); one order in three is priced to cross
PRICE = {
    True: weighted((6, LOW), (3, HIGH), (1, OUT_OF_BAND)),
    False: weighted((6, HIGH), (3, LOW), (1, OUT_OF_BAND)),
}
VALID_QTY = st.integers(MIN_QTY, 6 * MIN_QTY)
# mostly small orders, some large ones that sweep several levels (and hit the fill cap)
QTY = weighted((6, VALID_QTY), (3, st.integers(MIN_QTY, 25 * MIN_QTY)), (1, st.just(MIN_QTY - 1)))
AMOUNT = weighted((9, st.integers(1, 300)), (1, st.just(0)))
PICKS = st.lists(st.integers(0, 1_000), max_size=4).map(tuple)
REQUESTS = st.lists(st.tuples(SLOT, st.booleans(), VALID_PRICE, VALID_QTY), max_size=5).map(tuple)
STEP = weighted(  # the first kind is what the other steps of a failing sequence shrink to
    (6, st.builds(Advance, weighted((7, st.integers(1, 60)), (1, st.sampled_from(["gate-1", "gate", "gate+1"]))))),
    (38, st.booleans().flatmap(lambda is_buy: st.builds(Place, ACTOR, SLOT, st.just(is_buy), PRICE[is_buy], QTY))),
    (6, st.builds(Sweep, ACTOR, SLOT, st.booleans(), st.integers(10 * MIN_QTY, 30 * MIN_QTY))),
    (10, st.builds(PlaceBatch, ACTOR, REQUESTS)),
    (6, st.builds(Cancel, ACTOR, st.integers(0, 1_000))),
    (8, st.builds(CancelOwn, ACTOR, PICKS)),
    (10, st.builds(Deposit, ACTOR, AMOUNT)),
    (6, st.builds(Withdraw, ACTOR, AMOUNT)),
    (5, st.builds(Expire, ACTOR, PICKS)),
    (6, st.builds(ExpireSlot, ACTOR, SLOT)),
    (2, st.builds(ToggleMembership, st.integers(0, ACTORS - 2))),
)


# Hypothesis starts with "small examples": the first sequence is all "advance 1 second" and
# about half of the next ten are one random step followed by such no-ops. Requiring a few real
# steps makes those invalid before anything runs on chain; after five of them in a row
# hypothesis stops trying small examples, and every example that runs is a full random one.
# (With PEERWATT_SHRINK=1 a failing sequence shrinks down to MIN_ACTIONS steps that are not
# time advances.)
MIN_ACTIONS = 5
STEPS = st.lists(STEP, min_size=STEPS_PER_EXAMPLE, max_size=STEPS_PER_EXAMPLE).filter(
    lambda steps: sum(not isinstance(step, Advance) for step in steps) >= MIN_ACTIONS
)


# ----------------------------------------------------------------------------- runner


class MarketRunner:
    """The chain and the model side by side, for one example (a chain snapshot per test)."""

    def __init__(self, env: dict, base_model: OrderBookModel, stats: Counter) -> None:
        self.__dict__.update(env)  # market, token, manager, actors, clock, web3, logs, plain, revert_text, slots
        self.addresses = [str(actor) for actor in self.actors]
        self.model = copy.deepcopy(base_model)
        self.stats = stats
        self.now = self.clock.now

    def actor(self, index: int):
        return self.actors[index]

    def address(self, index: int) -> str:
        return self.addresses[index]

    def pick_order(self, pick: int) -> int:
        """An order id: usually a resting one, sometimes a gone (filled, cancelled, expired or
        never rested) or never-used one."""
        resting = [order.order_id for order in self.model.resting_orders()]
        if resting and pick % 4:
            return resting[pick % len(resting)]
        placed = [event.order_id for event in self.model.log if isinstance(event, OrderPlaced)]
        if placed and pick % 4 == 1:
            return placed[pick % len(placed)]
        return pick  # no order has such a small id

    def advance(self, by: int | str) -> None:
        if isinstance(by, int):
            target = self.now + by
        else:
            upcoming = [c for c in map(self.model.clock.gate_closure, self.slots) if c > self.now + 1]
            if not upcoming:
                return
            target = min(upcoming) + {"gate-1": -1, "gate": 0, "gate+1": 1}[by]
        self.now = target
        self.clock.mine_at(target)
        self.stats["time advances"] += 1

    def transact(self, send, model_call):
        """One transaction, at the next second, on chain and in the model. Both must revert with
        the same error and arguments, or both succeed with the same events. Returns the model's
        return value and the receipt, or None after a revert."""
        self.stats["transactions"] += 1
        self.now += 1
        self.clock.next_tx_at(self.now)
        try:
            expected, model_error = model_call(self.now), None
        except ModelRevert as error:
            expected, model_error = None, error
        try:
            tx = send()
        except brownie.exceptions.VirtualMachineError as chain_error:
            assert model_error is not None, f"the chain reverted with {chain_error.revert_msg!r}, the model did not"
            assert chain_error.revert_msg == self.revert_text(model_error)
            assert self.clock.now == self.now  # the reverted transaction ran at the model's time
            self.stats[f"revert {model_error.error}"] += 1
            return None
        assert model_error is None, f"the model reverted with {model_error}, the chain did not"
        assert tx.timestamp == self.now
        assert self.logs(tx, address=self.market) == [(e.name, e.as_tuple()) for e in self.model.last_events]
        for event in self.model.last_events:
            reason = getattr(event, "reason", None)
            self.stats[event.name if reason is None else f"{event.name} {CancelReason(reason).name}"] += 1
        return expected, tx

    def read_many(self, calls):
        """View calls ``[(contract_method, args), ...]`` in one JSON-RPC batch at the latest
        block (about 20 times faster than one request each), decoded as plain tuples."""
        requests = [("eth_call", [{"to": fn._address, "data": fn.encode_input(*args)}, "latest"]) for fn, args in calls]
        responses = self.web3.provider.make_batch_request(requests)
        assert len(responses) == len(calls)
        return [self.plain(fn.decode_output(resp["result"])) for (fn, _), resp in zip(calls, responses, strict=True)]

    def check(self) -> None:
        """Books, best prices, balances, positions and membership equal the model's; the market's
        tokens are exactly its balances, escrows and held payments."""
        market, model = self.market, self.model
        calls = [(self.token.balanceOf, (market,))]
        for slot in self.slots:
            calls += [(market.bookSide, (slot, True, 500)), (market.bookSide, (slot, False, 500))]
            calls += [(market.bestPrices, (slot,))]
            calls += [(market.positionOf, (slot, actor)) for actor in self.actors]
        calls += [(market.balanceOf, (actor,)) for actor in self.actors]
        calls += [(market.memberOf, (actor,)) for actor in self.actors]
        results = iter(self.read_many(calls))

        held = next(results)
        escrow = paid = 0
        for slot in self.slots:
            for is_buy in (True, False):
                side = next(results)
                assert side == tuple(view.as_tuple() for view in model.book_side(slot, is_buy))
                escrow += sum(order[6] for order in side)
            assert next(results) == model.best_prices(slot)
            for address in self.addresses:
                position = next(results)
                assert position == model.position_of(slot, address).as_tuple()
                paid += position[2]
        balances = [next(results) for _ in self.actors]
        assert balances == [model.balance_of(address) for address in self.addresses]
        assert [next(results) for _ in self.actors] == [model.member_of(address) for address in self.addresses]
        assert held == model.token_held == sum(balances) + escrow + paid
        assert model.solvency_gap() == 0


# ------------------------------------------------------------------------------- test


@pytest.fixture
def community(market, token, config, admin, manager, members, outsider, clock, web3, logs, plain, model_revert_text):
    """The deployed community set up for the run (narrow band, fill cap 2, small balances, the
    clock FIRST_GATE_IN seconds before the first slot's gate closure) and its model. Brownie's
    given snapshots the chain before the first example and reverts to it before each other."""
    params = replace(config.market, min_price_per_kwh=PRICE_BAND[0], max_price_per_kwh=PRICE_BAND[1], fill_cap=FILL_CAP)
    market.setMarketParams(params.as_tuple(), {"from": admin})
    epoch, slot_seconds, _ = market.slotClock()
    model = OrderBookModel(epoch, slot_seconds, params, price_tick=market.priceTick())
    for member in members:  # what the market fixture did, then the withdrawals below
        model.add_member(str(member))
        model.deposit(str(member), config.member_deposit_base_units)
        excess = config.member_deposit_base_units - START_BALANCE
        market.withdraw(excess, {"from": member})
        model.withdraw(str(member), excess)
    first = market.nextOpenSlot() + 1
    clock.mine_at(model.clock.gate_closure(first) - FIRST_GATE_IN)
    env = {
        "market": market,
        "token": token,
        "manager": manager,
        "actors": [*members, outsider],
        "clock": clock,
        "web3": web3,
        "logs": logs,
        "plain": plain,
        "revert_text": model_revert_text,
        "slots": [first + i for i in range(SLOTS)],
    }
    return env, model


def test_market_matches_model(community):
    env, base_model = community
    stats: Counter = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
    @given(steps=STEPS)
    def run(steps):
        runner = MarketRunner(env, base_model, stats)
        runner.check()
        for number, step in enumerate(steps):
            note(f"step {number}: {step}")  # printed for a failing example only
            step.run(runner)
            runner.check()
            stats["steps"] += 1
        stats["examples"] += 1

    run()
    print("\n" + "\n".join(f"{key}: {count}" for key, count in sorted(stats.items())))
    assert stats["steps"] >= EXAMPLES * STEPS_PER_EXAMPLE  # the run had the size asked for
    assert stats["transactions"] >= MIN_TRANSACTIONS
    assert stats["TradeExecuted"] > 0

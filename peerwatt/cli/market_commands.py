"""Commands on a deployed community: deploy, members, slot, order, book, orders, trades, session."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from peerwatt import replay as replay_file
from peerwatt.chain import dev_engine, latest_timestamp
from peerwatt.cli.app import app, context
from peerwatt.cli.output import TableFormat, TextFormat, emit_json, emit_rows, note
from peerwatt.config import (
    SETTLEMENT_MODES,
    SHARE_RULES,
    SHARING_RULES,
    CommunityConfig,
    MarketParams,
    SettlementRules,
    Tariffs,
)
from peerwatt.deploy import DEFAULT_DEV_MEMBERS, deploy_community
from peerwatt.deployment import deployment_path
from peerwatt.dev_keys import key_store_path
from peerwatt.errors import InputError
from peerwatt.market import TRADE_COLUMNS, CancelReason, OrderRequest, RestingOrder, Side
from peerwatt.order_ids import ORDER_ID_BITS
from peerwatt.session import run_session, trades_table
from peerwatt.tables import text_table
from peerwatt.units import format_tokens

UINT32, UINT64 = 2**32 - 1, 2**64 - 1
_DEFAULTS = CommunityConfig()

order_app = typer.Typer(help="Place or cancel one order.", no_args_is_help=True)
orders_app = typer.Typer(help="Many orders: replay a CSV file, expire a closed slot.", no_args_is_help=True)

SlotOption = Annotated[int, typer.Option("--slot", min=0, max=UINT32, help="Delivery slot number.")]
MemberOption = Annotated[str, typer.Option("--member", help="Member name from the deployment (member0, ...).")]


def _uint(bits: int, help: str, minimum: int = 0) -> Any:
    """An integer option limited to the Solidity type ``uint<bits>`` it is passed as."""
    return typer.Option(min=minimum, max=2**bits - 1, help=help)


_MARKET, _TARIFFS = _DEFAULTS.market, _DEFAULTS.tariffs
_MEMBERS_HELP = (
    f"Dev-chain accounts to register as member0.. (default: {DEFAULT_DEV_MEMBERS} on dev chains, 0 elsewhere)."
)


@app.command()
def deploy(
    ctx: typer.Context,
    members: Annotated[Optional[int], typer.Option("--members", min=0, help=_MEMBERS_HELP)] = None,
    slot_seconds: Annotated[int, _uint(32, "Slot length.", minimum=1)] = _DEFAULTS.slot_seconds,
    gate_seconds: Annotated[int, _uint(32, "Gate closure lead time.")] = _MARKET.gate_seconds,
    price_tick: Annotated[
        int, _uint(32, "Limit prices are multiples of it, base units/kWh (fixed).", minimum=1)
    ] = _DEFAULTS.price_tick,
    min_price: Annotated[int, _uint(32, "Lowest limit price, base units/kWh.")] = _MARKET.min_price_per_kwh,
    max_price: Annotated[int, _uint(32, "Highest limit price, base units/kWh.")] = _MARKET.max_price_per_kwh,
    min_qty: Annotated[int, _uint(64, "Smallest order, Wh.")] = _MARKET.min_qty_wh,
    fill_cap: Annotated[int, _uint(16, "Most fills per incoming order.")] = _MARKET.fill_cap,
    import_price: Annotated[int, _uint(32, "Supplier import tariff, base units/kWh.")] = _TARIFFS.import_price_per_kwh,
    export_price: Annotated[int, _uint(32, "Supplier export tariff, base units/kWh.")] = _TARIFFS.export_price_per_kwh,
    mode: Annotated[str, typer.Option("--mode", help=f"Settlement mode: {', '.join(SETTLEMENT_MODES)}.")] = "cda",
    rule: Annotated[str, typer.Option("--rule", help=f"Sharing mode's rule: {', '.join(SHARING_RULES)}.")] = "mmr",
    share_rule: Annotated[
        str, typer.Option("--share-rule", help=f"Profit-share rule: {', '.join(SHARE_RULES)}.")
    ] = "equal",
    grid_fee: Annotated[int, _uint(32, "DSO fee per kWh traded inside, each side, base units.")] = 0,
    manager_fee: Annotated[int, _uint(32, "Manager fee per kWh traded inside, each side, base units.")] = 0,
    savings_share_bps: Annotated[
        int, typer.Option("--savings-share-bps", min=0, max=10_000, help="Savings kept for the profit-share pot.")
    ] = 0,
    period_slots: Annotated[int, _uint(32, "Slots per profit-share period.", minimum=1)] = _DEFAULTS.period_slots,
    reading_window: Annotated[
        int, _uint(32, "Seconds after a slot's end until it settles.")
    ] = _DEFAULTS.reading_window_seconds,
) -> None:
    """Deploy the token, the market, the meter oracle and settlement; write the deployment file."""
    app_ctx = context(ctx)
    w3 = app_ctx.w3()
    try:
        rules = SettlementRules(mode, rule, share_rule, grid_fee, manager_fee, savings_share_bps)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    config = replace(
        _DEFAULTS,
        slot_seconds=slot_seconds,
        price_tick=price_tick,
        market=MarketParams(min_price, max_price, min_qty, gate_seconds, fill_cap),
        tariffs=Tariffs(import_price, export_price),
        settlement=rules,
        period_slots=period_slots,
        reading_window_seconds=reading_window,
    )
    if members is None:
        members = DEFAULT_DEV_MEMBERS if dev_engine(w3) is not None else 0
    community = deploy_community(w3, config, members, progress=note)
    deployment = community.deployment
    path = community.save(deployment_path(app_ctx.deployment_option, deployment.chain_id))
    typer.echo(f"deployed on chain {deployment.chain_id} at block {deployment.deploy_block}")
    typer.echo(f"  PeerwattToken {deployment.token}")
    typer.echo(f"  CdaMarket     {deployment.market}")
    typer.echo(f"  MeterOracle   {deployment.oracle}")
    typer.echo(f"  CommunitySettlement {deployment.settlement} ({rules.mode}, rule {rules.rule}, shares {rules.share_rule})")
    if deployment.members:
        typer.echo(
            f"  {len(deployment.members)} members ({', '.join(deployment.members)}), each with "
            f"{format_tokens(config.member_deposit_base_units)} tokens deposited and a meter key"
        )
    typer.echo(f"deployment file: {path}")
    if community.meter_keys:
        typer.echo(f"dev meter keys: {key_store_path(path)} (plain text: dev chains only)")


@app.command()
def members(
    ctx: typer.Context,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = TableFormat.CSV,
) -> None:
    """List members with their deposited balances (token base units)."""
    rows = [vars(member) for member in context(ctx).market().members()]
    emit_rows(rows, ("name", "address", "balance"), fmt)


AmountOption = Annotated[
    int, typer.Option("--amount", min=0, max=2**256 - 1, help="Token base units (1 token = 1000000).")
]


@app.command()
def deposit(ctx: typer.Context, member: MemberOption, amount: AmountOption) -> None:
    """Move tokens from a member's wallet into its market balance."""
    balance = context(ctx).market().deposit(member, amount)
    typer.echo(f"{member} deposited {format_tokens(amount)} tokens; market balance {format_tokens(balance)}")


@app.command()
def withdraw(ctx: typer.Context, member: MemberOption, amount: AmountOption) -> None:
    """Move tokens from a member's market balance back to its wallet."""
    balance = context(ctx).market().withdraw(member, amount)
    typer.echo(f"{member} withdrew {format_tokens(amount)} tokens; market balance {format_tokens(balance)}")


@app.command()
def slot(
    ctx: typer.Context,
    fmt: Annotated[TextFormat, typer.Option("--format", help="Output format.")] = TextFormat.TEXT,
) -> None:
    """Show the slot in delivery now and the next slot still open for trading."""
    market = context(ctx).market()
    clock = market.slot_clock()
    now = latest_timestamp(market.w3)
    current, next_open = clock.slot_at(now), clock.next_open_slot(now)
    if fmt is TextFormat.JSON:
        emit_json(
            {
                "current_slot": current,
                "next_open_slot": next_open,
                "chain_time": now,
                "next_open_gate_closure": clock.gate_closure(next_open),
                "slot_seconds": clock.slot_seconds,
                "gate_seconds": clock.gate_seconds,
            }
        )
        return
    typer.echo(f"current slot:   {current} (chain time {now})")
    closure = clock.gate_closure(next_open)
    typer.echo(f"next open slot: {next_open} (gate closes at {closure}, in {closure - now} s)")


@order_app.command("place")
def order_place(
    ctx: typer.Context,
    member: MemberOption,
    slot: SlotOption,
    side: Annotated[Side, typer.Option("--side", help="buy or sell.")],
    price: Annotated[int, typer.Option("--price", min=0, max=UINT32, help="Limit price, token base units per kWh.")],
    qty: Annotated[int, typer.Option("--qty", min=0, max=UINT64, help="Quantity, Wh.")],
) -> None:
    """Place a limit order; it matches at once against the book."""
    market = context(ctx).market()
    outcome = market.place(member, OrderRequest(slot, side, price, qty))
    typer.echo(
        f"order {outcome.order_id}: {member} {side.value} {qty} Wh at {price}/kWh for slot {slot}: "
        f"{_count(len(outcome.events.trades), 'trade')}, {outcome.traded_wh} Wh traded, {outcome.resting_wh} Wh resting"
        + (f", {outcome.dropped_wh} Wh cancelled at the fill cap" if outcome.dropped_wh else "")
    )
    names = market.deployment.member_names()
    for trade in outcome.events.trades:
        counterpart = trade.seller if side is Side.BUY else trade.buyer
        counterpart_name = names.get(counterpart.lower(), counterpart)
        typer.echo(f"  traded {trade.qty_wh} Wh at {trade.price_per_kwh}/kWh with {counterpart_name}")
    typer.echo(f"tx {outcome.events.tx_hash}")


@order_app.command("cancel")
def order_cancel(
    ctx: typer.Context,
    member: MemberOption,
    order: Annotated[int, typer.Option("--order", min=0, max=2**ORDER_ID_BITS - 1, help="Order id.")],
) -> None:
    """Cancel a resting order of the member; its escrow goes back to its balance."""
    cancelled = context(ctx).market().cancel(member, order)
    typer.echo(
        f"order {cancelled.order_id} cancelled: {cancelled.remaining_wh} Wh left the book, "
        f"{format_tokens(cancelled.escrow_released)} tokens of escrow released"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _order_row(order: RestingOrder, names: dict[str, str]) -> dict[str, object]:
    return {
        "order_id": order.order_id,
        "member": names.get(order.member.lower(), order.member),
        "side": order.side.value,
        "price": order.price_per_kwh,
        "remaining_wh": order.remaining_wh,
        "escrow": order.escrow,
    }


@app.command()
def book(
    ctx: typer.Context,
    slot: SlotOption,
    fmt: Annotated[TextFormat, typer.Option("--format", help="Output format.")] = TextFormat.TEXT,
) -> None:
    """Show a slot's order book: asks and bids, best first."""
    market = context(ctx).market()
    names = market.deployment.member_names()
    asks = [_order_row(order, names) for order in market.book_side(slot, Side.SELL)]
    bids = [_order_row(order, names) for order in market.book_side(slot, Side.BUY)]
    best_bid, best_ask = market.best_prices(slot)
    if fmt is TextFormat.JSON:
        emit_json({"slot": slot, "best_bid": best_bid, "best_ask": best_ask, "asks": asks, "bids": bids})
        return
    typer.echo(f"slot {slot}: best bid {best_bid or '-'}, best ask {best_ask or '-'}")
    if not asks and not bids:
        typer.echo("(empty book)")
        return
    columns = ("side", "order_id", "member", "price", "remaining_wh", "escrow")
    rows = [[row[column] for column in columns] for row in list(reversed(asks)) + bids]
    typer.echo(text_table(columns, rows, right=(False, True, False, True, True, True)))


@orders_app.command("replay")
def orders_replay(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with columns action,ref,member,slot,side,price,qty_wh.")],
    ids_out: Annotated[
        Optional[Path], typer.Option("--ids-out", help="Write ref,order_id of placed rows here.")
    ] = None,
) -> None:
    """Apply a CSV of order placements and cancellations in file order."""
    if ids_out is not None and not ids_out.parent.is_dir():
        raise InputError(f"--ids-out {ids_out}: no directory {ids_out.parent}")
    market = context(ctx).market()
    rules = replay_file.CommunityRules(
        market.deployment.members, market.market_params(), market.slot_clock(), market.now(), market.price_tick()
    )
    rows = replay_file.read_rows(file, rules)
    result = replay_file.replay(market, rows)
    if ids_out is not None:
        replay_file.write_order_ids(ids_out, result.order_ids)
    typer.echo(
        f"replayed {result.rows} rows from {file} in {result.transactions} transactions: "
        f"{result.placed} orders placed, {result.cancelled} cancelled, {result.trades} trades; "
        f"{result.seconds:.2f} s, {result.orders_per_second:.0f} orders/s"
    )
    if result.failures:
        for failure in result.failures:
            typer.echo(f"failed: {failure.describe()}")
        failed_rows = sum(len(failure.lines) for failure in result.failures)
        raise replay_file.ReplayFailedError(
            f"{failed_rows} of {result.rows} rows were refused on chain; first: {result.failures[0].describe()}"
        )


@orders_app.command("expire")
def orders_expire(ctx: typer.Context, slot: SlotOption) -> None:
    """Expire a slot's resting orders after its gate closure, releasing their escrow."""
    expired = context(ctx).market().expire(slot)
    released = sum(c.escrow_released for c in expired if c.reason is CancelReason.EXPIRED)
    typer.echo(f"slot {slot}: {len(expired)} orders expired, {format_tokens(released)} tokens of escrow released")


@app.command()
def trades(
    ctx: typer.Context,
    slot: SlotOption,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = TableFormat.CSV,
) -> None:
    """Every trade of a slot in execution order."""
    emit_rows((trade.row() for trade in context(ctx).market().trades(slot)), TRADE_COLUMNS, fmt)


@app.command()
def session(ctx: typer.Context) -> None:
    """The main job for now: a short scripted CDA session on the next open slot, then its trades."""
    market = context(ctx).market()
    result = run_session(market, say=typer.echo)
    typer.echo(f"trades of slot {result.slot}:")
    typer.echo(trades_table(result.trades, market.deployment.member_names()))


app.add_typer(order_app, name="order")
app.add_typer(orders_app, name="orders")

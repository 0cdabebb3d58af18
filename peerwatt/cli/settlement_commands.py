"""Settlement commands: settle, statements, rules, shares, clear."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from eth_utils import keccak

from peerwatt import artifacts
from peerwatt.chain import latest_timestamp
from peerwatt.cli.app import AppContext, app, context
from peerwatt.cli.output import TableFormat, emit_rows, note
from peerwatt.config import SETTLEMENT_MODES, SHARE_RULES, SHARING_RULES, SettlementRules
from peerwatt.errors import InputError, PeerwattError
from peerwatt.transactions import TxSender, call
from peerwatt.units import format_tokens
from settlement.chunks import DEFAULT_CHUNK_READINGS
from settlement.client import SETTLEMENT, Settlement
from settlement.community import Community, load_community
from settlement.optimisation import check_posted, to_posted, write_certificate, write_schedule
from settlement.optimisation import clear as clear_community
from settlement.shares import compute_shares, rollover
from settlement.statements import STATEMENT_COLUMNS

UINT32 = 2**32 - 1
SlotOption = Annotated[int, typer.Option("--slot", min=0, max=UINT32, help="Delivery slot number.")]

rules_app = typer.Typer(help="The community's settlement rules: show them or change them for future slots.")
app.add_typer(rules_app, name="rules")


def _settlement(app_ctx: AppContext) -> Settlement:
    return Settlement(app_ctx.w3(), app_ctx.deployment())


@app.command()
def settle(
    ctx: typer.Context,
    slot: SlotOption,
    chunk: Annotated[
        int, typer.Option("--chunk", min=1, max=2_000, help="Readings per settle transaction.")
    ] = DEFAULT_CHUNK_READINGS,
) -> None:
    """Settle a slot against its meter readings (in chunks, resuming where it stopped)."""
    settlement = _settlement(context(ctx))
    outcome = settlement.settle(slot, chunk)
    state = settlement.slot_state(slot)
    typer.echo(
        f"slot {slot} settled ({state.mode}{', ' + state.rule if state.mode == 'sharing' else ''}): "
        f"{outcome.members_settled} readings, {outcome.unmetered} members without a reading settled as contracted, "
        f"{len(outcome.receipts)} transactions, {outcome.gas_used} gas"
    )


@app.command()
def statements(
    ctx: typer.Context,
    slot: SlotOption,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = TableFormat.CSV,
) -> None:
    """Members' statements for a settled slot (token base units, positive = the member receives)."""
    emit_rows(_settlement(context(ctx)).statements(slot), STATEMENT_COLUMNS, fmt)


@rules_app.callback(invoke_without_command=True)
def rules(
    ctx: typer.Context,
    slot: Annotated[
        Optional[int], typer.Option("--slot", min=0, max=UINT32, help="Slot to show (default: next open).")
    ] = None,
) -> None:
    """Show the rules in force for a slot."""
    if ctx.invoked_subcommand is not None:
        return
    app_ctx = context(ctx)
    slot = _next_open_slot(app_ctx) if slot is None else slot
    for key, value in vars(_settlement(app_ctx).rules_at(slot)).items():
        typer.echo(f"{key}: {value}")


@rules_app.command("set")
def rules_set(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option("--mode", help=f"One of {', '.join(SETTLEMENT_MODES)}.")],
    rule: Annotated[str, typer.Option("--rule", help=f"Sharing rule: {', '.join(SHARING_RULES)}.")] = "mmr",
    share_rule: Annotated[str, typer.Option("--share-rule", help=f"One of {', '.join(SHARE_RULES)}.")] = "equal",
    grid_fee: Annotated[int, typer.Option("--grid-fee", min=0, max=UINT32, help="DSO fee, base units/kWh.")] = 0,
    manager_fee: Annotated[
        int, typer.Option("--manager-fee", min=0, max=UINT32, help="Manager fee, base units/kWh.")
    ] = 0,
    savings_bps: Annotated[
        int, typer.Option("--savings-share-bps", min=0, max=10_000, help="Savings kept for the profit-share pot.")
    ] = 0,
    from_slot: Annotated[
        Optional[int], typer.Option("--from-slot", min=0, max=UINT32, help="First slot (default: next open).")
    ] = None,
) -> None:
    """Change the rules from a slot still open for trading on (the admin)."""
    app_ctx = context(ctx)
    try:
        rules_value = SettlementRules(mode, rule, share_rule, grid_fee, manager_fee, savings_bps)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    slot = _next_open_slot(app_ctx) if from_slot is None else from_slot
    deployment = app_ctx.deployment()
    data = artifacts.function(SETTLEMENT, "setConfig").encode(rules_value.as_tuple(), slot)
    sender = TxSender(app_ctx.w3())
    sender.mined(sender.send(deployment.deployer, deployment.settlement, data))
    typer.echo(f"rules from slot {slot} on: {rules_value}")


@app.command()
def shares(
    ctx: typer.Context,
    period: Annotated[int, typer.Option("--period", min=0, max=UINT32, help="Profit-share period number.")],
    rule: Annotated[str, typer.Option("--rule", help=f"One of {', '.join(SHARE_RULES)}: the community's rule.")],
    post: Annotated[bool, typer.Option("--post", help="Pay the shares on chain.")] = False,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = TableFormat.CSV,
) -> None:
    """Compute a period's profit shares by the community's rule (and pay them with --post)."""
    app_ctx = context(ctx)
    settlement = _settlement(app_ctx)
    deployment = app_ctx.deployment()
    period_slots = settlement.period_slots()
    published = settlement.rules_at(period * period_slots).share_rule
    if rule != published:
        raise InputError(f"period {period}'s published share rule is {published}, not {rule}")
    pot, settled, distributed = settlement.period(period)
    if distributed:
        raise InputError(f"period {period}'s shares are already paid")
    if settled < period_slots and (post or rule == "shapley"):
        raise InputError(f"period {period} has {settled} of {period_slots} slots settled; settle them first")
    ids = {settlement.member_id(address): name for name, address in deployment.members.items()}
    active = [member_id for member_id in sorted(ids) if _active(app_ctx, deployment.members[ids[member_id]])]
    if rule == "equal":
        result = compute_shares("equal", pot, members=active)
    elif rule == "proportional":
        contributions = {k: v for k, v in settlement.contributions(period, ids).items() if v > 0}
        result = compute_shares("proportional", pot, contributions=contributions or {})
    else:
        net = _period_net_exports(settlement, period, period_slots, active)
        tariffs = call(app_ctx.w3(), deployment.market, "CdaMarket", "tariffs")[0]
        result = compute_shares(
            "shapley", pot, members=active, net_export_wh=net, import_price=tariffs[0], export_price=tariffs[1]
        )
    rows = [
        {"member": ids[member_id], "member_id": member_id, "share": share} for member_id, share in result.shares.items()
    ]
    emit_rows(rows, ("member", "member_id", "share"), fmt)
    note(
        f"period {period}: pot {format_tokens(pot)} tokens, {result.method} shares"
        + (f" (error bound {result.error_bound} base units)" if result.error_bound else "")
        + (f", {rollover(pot, result.shares)} base units roll over" if rule == "proportional" else "")
    )
    if post:
        receipts = settlement.distribute_shares(period, result.shares)
        note(f"paid in {len(receipts)} transactions, {sum(r.gas_used for r in receipts)} gas")


def _period_net_exports(
    settlement: Settlement, period: int, period_slots: int, member_ids: list[int]
) -> list[list[int]]:
    """Members' metered net exports (Wh) per slot of the period, rows in ``member_ids`` order."""
    index = {member_id: row for row, member_id in enumerate(member_ids)}
    net = [[0] * period_slots for _ in member_ids]
    first = period * period_slots
    for slot, readings in settlement.slots_readings(range(first, first + period_slots)).items():
        for reading in readings:
            if reading.member_id in index:
                net[index[reading.member_id]][slot - first] = reading.net_export_wh
    return net


def _active(app_ctx: AppContext, address: str) -> bool:
    return bool(call(app_ctx.w3(), app_ctx.deployment().market, "CdaMarket", "memberOf", address)[1])


def _next_open_slot(app_ctx: AppContext) -> int:
    return int(call(app_ctx.w3(), app_ctx.deployment().market, "CdaMarket", "nextOpenSlot")[0])


@app.command()
def clear(
    ctx: typer.Context,
    input_file: Annotated[
        Path, typer.Option("--input", help="community.yaml: members' forecasts, batteries, tariffs.")
    ],
    horizon: Annotated[int, typer.Option("--horizon", min=1, max=100_000, help="Slots to schedule.")] = 96,
    post: Annotated[bool, typer.Option("--post", help="Post the result for the optimisation slots ahead.")] = False,
    from_slot: Annotated[
        Optional[int], typer.Option("--from-slot", min=0, max=UINT32, help="First slot posted (default: next open).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the schedule and the optimality certificate.")
    ] = Path("clearing"),
) -> None:
    """Clear the community by optimisation (HiGHS LP) and write (or --post) the schedule."""
    community = load_community(input_file, horizon)
    app_ctx = context(ctx)
    settlement = None
    first = 0
    if post:
        settlement = _settlement(app_ctx)
        first = _next_open_slot(app_ctx) if from_slot is None else from_slot
        community = _as_on_chain(app_ctx, settlement, community, first)
    result = clear_community(community)
    posted = to_posted(result)
    problems = check_posted(posted, community)
    if problems:
        raise PeerwattError(f"the clearing result breaks {len(problems)} rules, first: {problems[0]}")
    out.mkdir(parents=True, exist_ok=True)
    schedule = out / "schedule.csv"
    write_schedule(schedule, posted)
    write_certificate(result, out / "certificate.json")
    certificate_gap = json.loads((out / "certificate.json").read_text())["relative_gap"]
    alone, together = result.standalone_bill.sum(), result.bill.sum()
    typer.echo(
        f"cleared {community.n_members} members x {community.n_slots} slots in "
        f"{result.build_seconds + result.solve_seconds:.2f} s: community bill {format_tokens(int(together))} tokens, "
        f"{format_tokens(int(alone - together))} less than everyone alone for the same schedule"
    )
    typer.echo(
        f"schedule: {schedule}; optimality certificate: {out / 'certificate.json'} "
        f"(relative duality gap {certificate_gap:.1e})"
    )
    if settlement is not None:
        result_hash = keccak(schedule.read_bytes())
        ids = [settlement.member_id(app_ctx.deployment().member_address(name)) for name in posted.member_names]
        gas = 0
        for offset in range(community.n_slots):
            entries = [
                (member_id, int(posted.net_export_wh[row, offset]), int(posted.internal_wh[row, offset]))
                for row, member_id in enumerate(ids)
            ]
            receipts = settlement.post_schedule(first + offset, int(posted.price_per_kwh[offset]), entries, result_hash)
            gas += sum(receipt.gas_used for receipt in receipts)
        typer.echo(f"posted slots {first}..{first + community.n_slots - 1}: {gas} gas")


def _as_on_chain(app_ctx: AppContext, settlement: Settlement, community: Community, first: int) -> Community:
    """The community with the chain's tariffs and fees (what the contract checks the result
    against), after checking that every slot to post is an optimisation slot."""
    for slot in range(first, first + community.n_slots):
        mode = settlement.rules_at(slot).mode
        if mode != "optimisation":
            raise InputError(f"slot {slot} is settled in {mode} mode; set optimisation first (`peerwatt rules set`)")
    deployment = app_ctx.deployment()
    closure = int(call(app_ctx.w3(), deployment.market, "CdaMarket", "gateClosure", first)[0])
    if latest_timestamp(app_ctx.w3()) >= closure:
        raise InputError(f"slot {first} is past its gate closure: a schedule is posted before delivery")
    for member in community.members:
        deployment.member_address(member.name)  # NotFoundError for a name the community lacks
    rules = settlement.rules_at(first)
    import_price, export_price = call(app_ctx.w3(), deployment.market, "CdaMarket", "tariffs")[0]
    slots = community.n_slots
    return dataclasses.replace(
        community,
        import_price=np.full(slots, int(import_price)),
        export_price=np.full(slots, int(export_price)),
        fee_per_kwh=rules.grid_fee_per_kwh + rules.manager_fee_per_kwh,
    )

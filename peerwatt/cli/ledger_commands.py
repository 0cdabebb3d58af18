"""``peerwatt ledger sync|export|serve``: the auditor's ledger of every contract event."""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from peerwatt.chain import chain_id
from peerwatt.cli.app import AppContext, app, context
from peerwatt.cli.output import TableFormat, TextFormat, emit_json, emit_rows, note
from peerwatt.deployment import deployment_path
from peerwatt.errors import InputError
from settlement.audit import audit_clearing
from settlement.chain_audit import NodeState
from settlement.community import load_community
from settlement.ledger.export import ExportFormat, ExportTable, table_frame, write
from settlement.ledger.indexer import MAX_RANGE_BLOCKS, Indexer, SyncReport
from settlement.ledger.queries import Ledger
from settlement.ledger.store import LEDGER_DB_ENV, Store, resolve_path

ledger_app = typer.Typer(help="The auditor's ledger: index every contract event, export tables.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

UINT32 = 2**32 - 1
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        envvar=LEDGER_DB_ENV,
        dir_okay=False,
        help="Ledger database (default: beside the deployment file, <name>.ledger.sqlite).",
    ),
]
PROGRESS_SECONDS = 2.0


def _db_path(app_ctx: AppContext, db: Path | None) -> Path:
    """The ledger file; asks the chain only when the deployment file is the default one
    (``deployments/<chain-id>.json``), so export works with the chain stopped."""
    deployment_file = (
        Path(app_ctx.deployment_option) if app_ctx.deployment_option else deployment_path(None, chain_id(app_ctx.w3()))
    )
    path = resolve_path(db, deployment_file)
    assert path is not None
    return path


@ledger_app.command()
def sync(
    ctx: typer.Context,
    db: DbOption = None,
    max_range: Annotated[
        int, typer.Option("--max-range", min=1, help="Most blocks read per eth_getLogs request.")
    ] = MAX_RANGE_BLOCKS,
    confirmations: Annotated[
        int, typer.Option("--confirmations", min=0, help="Leave the newest N blocks for a later sync.")
    ] = 0,
) -> None:
    """Index every event of the community's contracts since the last sync (re-indexing from where
    a reorganised or reset chain diverged)."""
    app_ctx = context(ctx)
    deployment = app_ctx.deployment()
    path = resolve_path(db, app_ctx.deployment_file())
    assert path is not None
    shown = [time.monotonic()]

    def progress(last: int, head: int, events: int) -> None:
        if time.monotonic() - shown[0] >= PROGRESS_SECONDS:
            shown[0] = time.monotonic()
            note(f"block {last} of {head}: {events} events")

    with Store(path) as store:
        indexer = Indexer(
            app_ctx.w3(), deployment, store, max_range=max_range, confirmations=confirmations, progress=progress
        )
        report = indexer.sync()
        total, last = store.count("events"), store.last_block()
    _report_sync(report, path, total, last)


def _report_sync(report: SyncReport, path: Path, total: int, last: tuple[int, str] | None) -> None:
    if report.reset:
        typer.echo(f"the chain was reset under the ledger: {report.events_removed} events removed, indexing anew")
    elif report.rolled_back_to is not None:
        typer.echo(
            f"the chain diverged after block {report.rolled_back_to}: {report.events_removed} events above it removed"
        )
    if report.blocks:
        typer.echo(
            f"indexed {report.events} events in {report.blocks} blocks ({report.first_block}..{report.last_block}) "
            f"in {report.seconds:.2f} s: {report.events_per_second:,.0f} events/s"
        )
    else:
        typer.echo("the ledger is up to date")
    typer.echo(f"ledger {path}: {total} events up to block {last[0] if last else '-'}")


@ledger_app.command()
def export(
    ctx: typer.Context,
    table: Annotated[ExportTable, typer.Option("--table", help="Which table.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = ExportFormat.CSV,
    out: Annotated[
        Path | None, typer.Option("--out", dir_okay=False, help="Output file (CSV: default stdout).")
    ] = None,
    slot_from: Annotated[int | None, typer.Option("--from-slot", min=0, max=UINT32, help="First slot.")] = None,
    slot_to: Annotated[int | None, typer.Option("--to-slot", min=0, max=UINT32, help="Last slot.")] = None,
    member: Annotated[str | None, typer.Option("--member", help="Only this member's rows (an address).")] = None,
    db: DbOption = None,
) -> None:
    """Write a ledger table (orders, trades, readings, events, daily) as CSV or Parquet; reads the
    ledger only, never the chain."""
    path = _db_path(context(ctx), db)
    ledger = Ledger.open(path)
    try:
        frame = table_frame(ledger, table, slot_from, slot_to, member)
    finally:
        ledger.store.close()
    write(frame, fmt, out if out is not None else sys.stdout)
    if out is not None:
        typer.echo(f"{len(frame)} {table.value} rows written to {out}")


@ledger_app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    db: DbOption = None,
) -> None:
    """Serve the ledger read-only over HTTP (OpenAPI docs at /docs); member-level data (readings,
    settlements, statements, shares, the audit report) needs the auditor key in X-API-Key when
    PEERWATT_AUDITOR_KEY is set. The audit report compares balances with the node at --rpc."""
    import uvicorn  # only this command needs the server

    from settlement.ledger.api import ApiSettings, create_app

    app_ctx = context(ctx)
    path = _db_path(app_ctx, db)
    Ledger.open(path).store.close()  # a missing or empty ledger is reported before listening
    settings = ApiSettings.from_env(path, app_ctx.rpc_url)
    restricted = "member-level data needs the auditor key" if settings.auditor_key else "no auditor key set"
    note(f"serving the ledger {path} at http://{host}:{port} ({restricted}); docs at /docs")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


AUDIT_COLUMNS = ("check", "slot", "member", "field", "recorded", "expected", "message")


@app.command()
def audit(
    ctx: typer.Context,
    slot: Annotated[int | None, typer.Option("--slot", min=0, max=UINT32, help="Audit this slot only.")] = None,
    slot_from: Annotated[int | None, typer.Option("--from", min=0, max=UINT32, help="First slot audited.")] = None,
    slot_to: Annotated[int | None, typer.Option("--to", min=0, max=UINT32, help="Last slot audited.")] = None,
    fmt: Annotated[TextFormat, typer.Option("--format", help="text (a summary and tables) or json.")] = TextFormat.TEXT,
    clearing: Annotated[
        Path | None,
        typer.Option("--clearing", file_okay=False, help="A `peerwatt clear --out` directory whose posting to check."),
    ] = None,
    community_file: Annotated[
        Path | None, typer.Option("--input", dir_okay=False, help="The community.yaml that clearing solved.")
    ] = None,
    clearing_slot: Annotated[
        int | None, typer.Option("--clearing-slot", min=0, max=UINT32, help="The first slot that clearing posted.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Recompute every settlement from raw events (after syncing the ledger) and compare it with
    what the contracts recorded; check energy and money balance, and (for the whole history)
    every market balance and the market's solvency against the chain; with --clearing, --input and
    --clearing-slot, the clearing's optimality certificate (duality gap) and the result hash it
    posted. Exits 1 if anything is off."""
    if slot is not None and (slot_from is not None or slot_to is not None):
        raise InputError("pass --slot or --from/--to, not both")
    if (clearing is None) != (community_file is None) or (clearing is None) != (clearing_slot is None):
        raise InputError("--clearing, --input and --clearing-slot go together")
    slots = None
    if slot is not None:
        slots = range(slot, slot + 1)
    elif slot_from is not None or slot_to is not None:
        first, last = slot_from or 0, UINT32 if slot_to is None else slot_to
        if first > last:
            raise InputError(f"--from {first} is after --to {last}")
        slots = range(first, last + 1)
    app_ctx = context(ctx)
    deployment = app_ctx.deployment()
    path = resolve_path(db, app_ctx.deployment_file())
    assert path is not None
    with Store(path) as store:
        Indexer(app_ctx.w3(), deployment, store).sync()
    ledger = Ledger.open(path)
    try:
        block = ledger.last_block() or 0
        state = NodeState(app_ctx.w3(), deployment.token, deployment.market, deployment.settlement, block)
        report = ledger.audit(state, state.parties(), slots)
        gap = None
        if clearing is not None and community_file is not None and clearing_slot is not None:
            gap, findings = audit_clearing(
                ledger.chain_events(), clearing, load_community(community_file, _horizon(clearing)), clearing_slot
            )
            report.discrepancies += findings
    finally:
        ledger.store.close()
    if fmt is TextFormat.JSON:
        emit_json({**report.to_dict(), "clearing_duality_gap": gap})
    else:
        if gap is not None:
            typer.echo(f"clearing from slot {clearing_slot}: certificate verified, duality gap {gap:.3g} base units")
        summary = report.to_dict()
        checked = "balances and solvency checked" if slots is None else "balances not checked (a slot range)"
        typer.echo(
            f"audited {summary['slots_audited']} settled slots ({summary['member_results']} member results) "
            f"up to block {block}; {checked}"
        )
        if report.discrepancies:
            typer.echo(f"{len(report.discrepancies)} discrepancies:")
            emit_rows((asdict(finding) for finding in report.discrepancies), AUDIT_COLUMNS, TableFormat.CSV)
        else:
            typer.echo("no discrepancy: every settlement matches its recomputation")
        if report.notes:
            typer.echo(f"{len(report.notes)} notes (rule properties, not errors):")
            emit_rows((asdict(finding) for finding in report.notes), AUDIT_COLUMNS, TableFormat.CSV)
    if not report.ok:
        typer.echo(f"error: the audit found {len(report.discrepancies)} discrepancies", err=True)
        raise typer.Exit(1)


def _horizon(clearing: Path) -> int:
    """The slots a clearing's schedule.csv covers (its slot_offset column)."""
    schedule = clearing / "schedule.csv"
    if not schedule.exists():
        raise InputError(f"{schedule} is missing: --clearing takes a `peerwatt clear --out` directory")
    with schedule.open() as handle:
        return 1 + max((int(row["slot_offset"]) for row in csv.DictReader(handle)), default=-1)

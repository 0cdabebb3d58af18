"""Commands of the meter oracle: meter keys, pushing signed readings from a CSV file, listing a
slot's readings."""

from __future__ import annotations

import time
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from eth_account import Account
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from oracle.outbox import Outbox, Status, outbox_path
from oracle.pusher import DEFAULT_BATCH, ORACLE, Pusher, PushResult, last_slot_on_chain
from oracle.readings import OracleDomain, SignedReading
from oracle.sources import read_csv
from oracle.validation import ValidReading, validate, write_quarantine
from peerwatt import artifacts
from peerwatt.chain import current_slot
from peerwatt.cli.app import AppContext, app, context
from peerwatt.cli.output import TableFormat, emit_rows, note
from peerwatt.deployment import Deployment
from peerwatt.dev_keys import DevMeterKey, create_dev_keys, key_store_path, load_dev_keys, save_dev_keys
from peerwatt.errors import ConflictError, InputError, NotFoundError
from peerwatt.meter_readings import accepted_readings
from peerwatt.transactions import TxSender

READING_COLUMNS = (
    "meter",
    "member",
    "slot",
    "import_wh",
    "export_wh",
    "import_register_wh",
    "export_register_wh",
    "tx_hash",
)

readings_app = typer.Typer(help="Meter readings: push signed readings, list a slot's.")
app.add_typer(readings_app, name="readings")
meter_app = typer.Typer(help="Meter keys: register a member's meter, replace it.", no_args_is_help=True)
app.add_typer(meter_app, name="meter")
oracle_app = typer.Typer(help="The meter oracle: push readings from a source as slots end.", no_args_is_help=True)
app.add_typer(oracle_app, name="oracle")

MemberOption = Annotated[str, typer.Option("--member", help="Member name from the deployment (member0, ...).")]
KeyFileOption = Annotated[
    Optional[Path],
    typer.Option("--key-file", help="File holding the meter's private key (0x hex); default: a new dev key."),
]
FromSlotOption = Annotated[
    Optional[int],
    typer.Option("--from-slot", min=0, max=2**32 - 1, help="First slot the key signs (default: the current slot)."),
]


@meter_app.command("add")
def meter_add(
    ctx: typer.Context, member: MemberOption, key_file: KeyFileOption = None, from_slot: FromSlotOption = None
) -> None:
    """Register a meter key for a member that has none."""
    app_ctx = context(ctx)
    deployment = app_ctx.deployment()
    address = deployment.member_address(member)
    if member in deployment.meters:
        raise ConflictError(f"{member} has meter {deployment.meters[member]}; replace it with `peerwatt meter rotate`")
    key = _meter_key(member, key_file)
    slot = _from_slot(app_ctx, from_slot)
    _transact(app_ctx, "registerMeter", key.address, address, slot)
    _record_key(app_ctx, key)
    typer.echo(f"{member}: meter {key.address} registered from slot {slot}")


@meter_app.command("rotate")
def meter_rotate(
    ctx: typer.Context, member: MemberOption, key_file: KeyFileOption = None, from_slot: FromSlotOption = None
) -> None:
    """Replace a member's meter key (device replaced): the old key signs no slot from --from-slot on."""
    app_ctx = context(ctx)
    deployment = app_ctx.deployment()
    deployment.member_address(member)  # a known member
    if member not in deployment.meters:
        raise NotFoundError(f"{member} has no meter; register one with `peerwatt meter add`")
    old = deployment.meters[member]
    key = _meter_key(member, key_file)
    slot = _from_slot(app_ctx, from_slot)
    _transact(app_ctx, "rotateMeter", old, key.address, slot)
    _record_key(app_ctx, key)
    typer.echo(f"{member}: meter {old} revoked from slot {slot}; meter {key.address} signs from slot {slot} on")


def _meter_key(member: str, key_file: Path | None) -> DevMeterKey:
    if key_file is None:
        return create_dev_keys([member])[0]
    try:
        private_key = key_file.read_text().strip()
        address = Account.from_key(private_key).address
    except FileNotFoundError:
        raise NotFoundError(f"no key file {key_file}") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"{key_file} does not hold a private key (0x hex): {exc}") from None
    return DevMeterKey(member, address, private_key)


def _from_slot(app_ctx: AppContext, from_slot: int | None) -> int:
    if from_slot is not None:
        return from_slot
    return current_slot(app_ctx.w3(), app_ctx.deployment().slot_clock)


def _transact(app_ctx: AppContext, function: str, *args: object) -> None:
    """Sends a MeterOracle call from the deployer (the dev manager), refused ones decoded first."""
    deployment = app_ctx.deployment()
    sender = TxSender(app_ctx.w3())
    sender.mined(
        sender.send(deployment.deployer, deployment.oracle, artifacts.function(ORACLE, function).encode(*args))
    )


def _record_key(app_ctx: AppContext, key: DevMeterKey) -> None:
    """The deployment file names the member's meter; the key store keeps its key."""
    path = app_ctx.deployment_file()
    deployment = app_ctx.deployment()
    replace(deployment, meters={**deployment.meters, key.member: key.address}).save(path)
    store = key_store_path(path)
    kept = [k for k in load_dev_keys(store) if k.member != key.member] if store.exists() else []
    save_dev_keys(store, [*kept, key])


@readings_app.callback(invoke_without_command=True)
def readings(
    ctx: typer.Context,
    slot: Annotated[Optional[int], typer.Option("--slot", min=0, max=2**32 - 1, help="Delivery slot.")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = TableFormat.CSV,
) -> None:
    """List the readings the oracle accepted for a slot (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    if slot is None:
        raise InputError("give --slot S to list a slot's readings, or a subcommand (push)")
    app_ctx = context(ctx)
    deployment = app_ctx.deployment()
    names = {address.lower(): name for name, address in deployment.meters.items()}
    rows = [
        {
            "meter": reading.meter,
            "member": names.get(reading.meter.lower(), ""),
            "slot": reading.slot,
            "import_wh": reading.import_wh,
            "export_wh": reading.export_wh,
            "import_register_wh": reading.import_register_wh,
            "export_register_wh": reading.export_register_wh,
            "tx_hash": tx_hash,
        }
        for reading, tx_hash in accepted_readings(app_ctx.w3(), deployment)
        if reading.slot == slot
    ]
    emit_rows(rows, READING_COLUMNS, fmt)


OutboxOption = Annotated[
    Optional[Path], typer.Option("--outbox", help="Outbox database (default: beside the deployment file).")
]
KeysOption = Annotated[
    Optional[Path], typer.Option("--keys", help="Dev meter key store (default: beside the deployment file).")
]
BatchOption = Annotated[int, typer.Option("--batch", min=1, max=1000, help="Readings per transaction.")]


@readings_app.command("push")
def readings_push(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV: meter,slot,import_wh,export_wh,import_register_wh,export_register_wh")
    ],
    batch: BatchOption = DEFAULT_BATCH,
    quarantine: Annotated[
        Optional[Path], typer.Option("--quarantine", help="Bad rows go here (default: FILE.quarantine.csv).")
    ] = None,
    outbox: OutboxOption = None,
    keys: KeysOption = None,
) -> None:
    """Validate, sign (dev meter keys) and push a CSV of readings, exactly once."""
    app_ctx = context(ctx)
    readings, problems = _checked_csv(app_ctx, file, quarantine)
    _deliver(app_ctx, readings, batch, outbox, keys, problems)


class Source(str, Enum):
    CSV = "csv"
    SIM = "sim"


@oracle_app.command("run")
def oracle_run(
    ctx: typer.Context,
    source: Annotated[Source, typer.Option("--source", help="csv: a file (--file); sim: simulated meters.")],
    file: Annotated[Optional[Path], typer.Option("--file", help="The CSV file of --source csv.")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep running: push each slot once it has ended.")] = False,
    poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.05, help="How often --follow looks.")] = 2.0,
    batch: BatchOption = DEFAULT_BATCH,
    outbox: OutboxOption = None,
    keys: KeysOption = None,
) -> None:
    """Push every ended slot's readings from a source; with --follow, go on slot by slot."""
    if source is Source.CSV and file is None:
        raise InputError("--source csv needs --file FILE")
    app_ctx = context(ctx)
    deployment = app_ctx.deployment()
    simulated = None
    if source is Source.SIM:
        from oracle.simulated import SimulatedMeters  # pandas, pvlib, demandlib: only for --source sim

        simulated = SimulatedMeters(deployment.slot_clock, deployment.meters)
    next_slot = _first_unreported_slot(app_ctx)
    while True:
        ended = current_slot(app_ctx.w3(), deployment.slot_clock)
        if simulated is not None:
            readings = [ValidReading(0, member, r) for member, r in simulated.readings(next_slot, ended)]
            problems: list[str] = []
        else:
            assert file is not None
            readings, problems = _checked_csv(app_ctx, file, None)
        if readings or not follow:
            note(f"slots before {ended}: {len(readings)} readings")
            _deliver(app_ctx, readings, batch, outbox, keys, problems if not follow else [])
        next_slot = max(next_slot, ended)
        if not follow:
            return
        while current_slot(app_ctx.w3(), deployment.slot_clock) <= ended:
            time.sleep(poll_seconds)


def _first_unreported_slot(app_ctx: AppContext) -> int:
    """The earliest slot after some meter's last reading on chain (0 if one has none)."""
    deployment = app_ctx.deployment()
    lasts = [last_slot_on_chain(app_ctx.w3(), deployment, meter) for meter in deployment.meters.values()]
    return min((0 if last is None else last + 1) for last in lasts) if lasts else 0


def _checked_csv(app_ctx: AppContext, file: Path, quarantine: Path | None) -> tuple[list[ValidReading], list[str]]:
    """The file's valid readings, and a problem line if rows went to the quarantine file."""
    deployment = app_ctx.deployment()
    rows = read_csv(file)
    checked = validate(rows, deployment.meters, current_slot(app_ctx.w3(), deployment.slot_clock))
    typer.echo(f"{len(rows)} rows: {len(checked.readings)} valid, {len(checked.quarantined)} quarantined")
    if not checked.quarantined:
        return checked.readings, []
    quarantine_file = quarantine or file.with_name(file.stem + ".quarantine.csv")
    write_quarantine(quarantine_file, checked.quarantined)
    return checked.readings, [f"{len(checked.quarantined)} rows quarantined in {quarantine_file}"]


def _deliver(
    app_ctx: AppContext,
    readings: list[ValidReading],
    batch: int,
    outbox: Path | None,
    keys: Path | None,
    problems: list[str],
) -> None:
    """Signs the readings, stores them in the outbox and pushes everything pending; reports
    what happened, and fails (one line, non-zero exit) if anything was refused."""
    w3, deployment, deployment_file = app_ctx.w3(), app_ctx.deployment(), app_ctx.deployment_file()
    box = Outbox(outbox or outbox_path(deployment_file), deployment.chain_id, deployment.oracle)
    try:
        added = box.add(_sign(readings, deployment, keys or key_store_path(deployment_file)))
        pusher = Pusher(w3, deployment, box, relayer=deployment.deployer, batch_size=batch)
        before = box.counts()
        result = _push_with_progress(pusher, before[Status.PENDING] + before[Status.SENT])
        counts = box.counts()
    finally:
        box.close()

    typer.echo(
        f"{result.accepted} readings accepted on chain in {result.transactions} transactions "
        f"({result.readings_per_second:.0f} readings/s), {result.already_on_chain} already there"
    )
    typer.echo(f"outbox: {', '.join(f'{count} {status.value}' for status, count in counts.items())}")
    if result.waiting:
        typer.echo(f"{result.waiting} readings wait in the outbox for their slot to end; push again later")
    problems = list(problems)
    if added.conflicts:
        problems.append(f"{len(added.conflicts)} readings differ from ones already in the outbox")
    if result.rejected:
        problems.append("rejected on chain: " + ", ".join(f"{n} {reason}" for reason, n in result.rejected.items()))
    if problems:
        raise ConflictError("; ".join(problems))


def _sign(readings: list[ValidReading], deployment: Deployment, key_store: Path) -> list[SignedReading]:
    """Signs each reading with its meter's dev key."""
    private_keys = {key.address.lower(): key.private_key for key in load_dev_keys(key_store)}
    missing = sorted({v.member for v in readings if v.reading.meter.lower() not in private_keys})
    if missing:
        raise InputError(f"no key in {key_store} for the meters of {', '.join(missing)}")
    domain = OracleDomain(deployment.chain_id, deployment.oracle)
    return [domain.sign(v.reading, private_keys[v.reading.meter.lower()]) for v in readings]


def _push_with_progress(pusher: Pusher, total: int) -> PushResult:
    """Pushes with a progress bar on stderr (when it is a terminal)."""
    console = Console(stderr=True)
    if not console.is_terminal or total == 0:
        return pusher.push()
    columns = (TextColumn("pushing readings"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("push", total=total)
        return pusher.push(progress=lambda settled: progress.advance(task, settled))

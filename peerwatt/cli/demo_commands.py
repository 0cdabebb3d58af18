"""``peerwatt demo``: the main job. A community modelled on the FleXunity Corby pilot trades,
meters, settles, shares its savings and audits one day on a local chain it starts itself,
under each settlement mode side by side, and reports what it saved."""

from __future__ import annotations

import datetime as dt
import time
from enum import Enum
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from peerwatt import localchain
from peerwatt.chain import connect
from peerwatt.cli.app import app
from peerwatt.errors import InputError, NotFoundError
from peerwatt.localchain import DevEngine
from peerwatt.profiles import Site

DEFAULT_DATE = "2026-06-18"  # a sunny June Thursday: the profiles' day (the chain's slots map onto it)
DEFAULT_PORT = 8545
HEADERS = {
    "mode": "mode",
    "local_volume_kwh": "local kWh",
    "self_sufficiency": "self-suff.",
    "average_internal_price_per_kwh": "price/kWh",
    "community_cost": "cost",
    "standalone_cost": "alone",
    "savings": "savings",
    "better_off": "better",
    "worse_off": "worse",
    "gas_per_slot": "gas/slot",
    "audit": "audit",
}


class DemoMode(str, Enum):
    CDA = "cda"
    MMR = "mmr"
    SDR = "sdr"
    BS = "bs"
    OPTIMISATION = "optimisation"
    ALL = "all"


@app.command()
def demo(
    engine: Annotated[DevEngine, typer.Option("--engine", help="Which local chain to start.")] = DevEngine.GANACHE,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port for the chain.")] = DEFAULT_PORT,
    mode: Annotated[DemoMode, typer.Option("--mode", help="Settlement mode, or all side by side.")] = DemoMode.ALL,
    members: Annotated[int, typer.Option("--members", min=2, max=34, help="Members (34: the whole pilot).")] = 34,
    slots: Annotated[int, typer.Option("--slots", min=1, max=96, help="15-minute slots of the day to run.")] = 96,
    from_hour: Annotated[int, typer.Option("--from-hour", min=0, max=23, help="Local hour the run starts at.")] = 0,
    date: Annotated[
        str, typer.Option("--date", help="The day whose weather and load profiles are used.")
    ] = DEFAULT_DATE,
    out: Annotated[
        Path | None, typer.Option("--out", file_okay=False, help="Report folder (default: a new one in reports/).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of forecast errors and trading agents.")] = 1,
) -> None:
    """Run a community day end to end on a fresh local chain and compare the settlement modes."""
    from peerwatt.demo.corby import demo_members
    from peerwatt.demo.report import SUMMARY_COLUMNS, summarise, write_report
    from peerwatt.demo.runner import MODES, run_day

    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise InputError(f"--date must be YYYY-MM-DD, got {date!r}") from None
    try:
        import matplotlib  # noqa: F401  (the report's plots; checked before a chain is started)
    except ImportError:
        raise NotFoundError("matplotlib (the report's plots) is not installed: run tools/setup.sh") from None
    started = time.perf_counter()
    local = dt.datetime.combine(day, dt.time(from_hour), ZoneInfo(Site().timezone))
    day_start = int(local.timestamp())
    modes = MODES if mode is DemoMode.ALL else (mode.value,)
    out = out or Path("reports") / f"demo-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    chosen = demo_members(members)
    console = Console(stderr=True)
    chain = localchain.start(engine, port)
    console.print(f"{engine.value} chain started at {chain.rpc_url}; {len(chosen)} members, {slots} slots of {day}")
    try:
        w3 = connect(chain.rpc_url)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("slots settled", total=slots)
            result = run_day(
                w3,
                chosen,
                modes,
                slots,
                day_start,
                out,
                seed,
                say=lambda message: progress.console.print(message),
                on_slot=lambda done: progress.update(task, completed=done),
            )
        summaries = [summarise(result, run) for run in result.runs]
        files = write_report(out, result, summaries, day_start)
    finally:
        localchain.stop(port)
    table = Table(title=f"One day of {len(chosen)} members ({slots} slots of {day}), per settlement mode")
    for column in SUMMARY_COLUMNS:
        table.add_column(HEADERS[column], justify="left" if column in ("mode", "audit") else "right")
    for summary in summaries:
        table.add_row(*(_cell(value) for value in summary.row().values()))
    terminal = Console()
    terminal.width = max(terminal.width, 132)  # the whole table, also when piped
    terminal.print(table)
    elapsed = time.perf_counter() - started
    typer.echo(
        f"amounts in tokens; savings against every member alone at the tariffs. {len(files)} report files in {out}. "
        f"{elapsed:.0f} s in all: {result.chain_seconds:.0f} s waiting for the chain, {result.python_seconds:.0f} s "
        f"in Python for the day, the rest setting up"
    )
    if not all(run.audit and run.audit.ok for run in result.runs):
        raise InputError("the audit found discrepancies: see audit.json in the report folder")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)

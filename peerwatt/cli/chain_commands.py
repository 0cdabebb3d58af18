"""``peerwatt chain start|stop|status|advance``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from peerwatt import localchain
from peerwatt.chain import DevEngine, advance_time, block_number, chain_id, client_version, latest_timestamp, rpc_port
from peerwatt.cli.app import app, context
from peerwatt.errors import RpcUnavailableError
from peerwatt.tables import text_table

chain_app = typer.Typer(help="Local dev chains: start, stop, status, time travel.", no_args_is_help=True)

PortOption = Annotated[
    Optional[int],
    typer.Option("--port", min=1, max=65535, help="Port (default: the port of --rpc)."),
]


def _port(ctx: typer.Context, port: Optional[int]) -> int:
    return port if port is not None else rpc_port(context(ctx).rpc_url)


@chain_app.command()
def start(
    ctx: typer.Context,
    engine: Annotated[DevEngine, typer.Option("--engine", help="Which chain to run.")] = DevEngine.GANACHE,
    port: PortOption = None,
    state: Annotated[
        Optional[Path],
        typer.Option("--state", file_okay=False, help="Keep the chain's state in this directory across restarts."),
    ] = None,
) -> None:
    """Start a local chain in the background (ganache through npx by default, or anvil)."""
    chain = localchain.start(engine, _port(ctx, port), state)
    persisted = f", state in {chain.state_dir}" if chain.state_dir else ""
    typer.echo(
        f"{engine.value} chain started at {chain.rpc_url} (chain id {chain.chain_id}, pid {chain.pid}, "
        f"{localchain.ACCOUNTS} funded unlocked accounts{persisted}; log {chain.log_file})"
    )
    if rpc_port(context(ctx).rpc_url) != chain.port:
        typer.echo(f"use it with --rpc {chain.rpc_url} (or PEERWATT_RPC={chain.rpc_url})")


@chain_app.command()
def stop(ctx: typer.Context, port: PortOption = None) -> None:
    """Stop the chain that `peerwatt chain start` started on a port."""
    chain = localchain.stop(_port(ctx, port))
    typer.echo(f"{chain.engine.value} chain on port {chain.port} stopped (pid {chain.pid})")


@chain_app.command()
def status(ctx: typer.Context) -> None:
    """Show the chains peerwatt started and whether the chain at --rpc answers (exit 75 if not)."""
    chains = localchain.started_chains()
    if chains:
        rows = [
            (
                chain.port,
                chain.engine.value,
                chain.pid,
                ("answering" if localchain.rpc_answers(chain.rpc_url) else "not answering") if alive else "exited",
                chain.state_dir or "-",
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(chain.started_at)),
            )
            for chain, alive in chains
        ]
        typer.echo(text_table(("port", "engine", "pid", "status", "state", "started"), rows))
    else:
        typer.echo("no chains started by peerwatt")
    app_ctx = context(ctx)
    try:
        w3 = app_ctx.w3()
    except RpcUnavailableError:
        typer.echo(f"rpc {app_ctx.rpc_url}: not answering")
        raise
    typer.echo(
        f"rpc {app_ctx.rpc_url}: {client_version(w3)}, chain id {chain_id(w3)}, "
        f"block {block_number(w3)}, time {latest_timestamp(w3)}"
    )


@chain_app.command()
def advance(
    ctx: typer.Context,
    seconds: Annotated[int, typer.Option("--seconds", min=1, help="How far to move chain time forward.")],
) -> None:
    """Move a dev chain's time forward and mine a block (slots close without waiting)."""
    w3 = context(ctx).w3()
    timestamp = advance_time(w3, seconds)
    typer.echo(f"chain time advanced by {seconds} s: block {block_number(w3)} at {timestamp}")


app.add_typer(chain_app, name="chain")

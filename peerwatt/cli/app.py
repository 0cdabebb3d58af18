"""The Typer application, its global options and the per-invocation context commands share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer
from web3 import Web3

from peerwatt import __version__
from peerwatt.chain import DEFAULT_RPC, RPC_ENV, connect
from peerwatt.deployment import DEPLOYMENT_ENV, Deployment, load_checked
from peerwatt.market import Market

app = typer.Typer(
    name="peerwatt",
    help="Peer-to-peer energy trading on an EVM chain: local chains, deployment, the CDA market.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # errors are reported in one place: peerwatt.cli.main
)


@dataclass
class AppContext:
    """Global options and the connections built from them, created lazily once per command."""

    rpc_url: str
    deployment_option: Optional[str]
    _w3: Optional[Web3] = field(default=None, repr=False)
    _deployment: Optional[tuple[Deployment, Path]] = field(default=None, repr=False)
    _market: Optional[Market] = field(default=None, repr=False)

    def w3(self) -> Web3:
        """Connected Web3 (RpcUnavailableError if nothing answers at --rpc)."""
        if self._w3 is None:
            self._w3 = connect(self.rpc_url)
        return self._w3

    def deployment(self) -> Deployment:
        """The deployment file's contents, verified against the chain."""
        return self._loaded_deployment()[0]

    def deployment_file(self) -> Path:
        """Where the deployment file is (dev meter keys and the oracle's outbox live beside it)."""
        return self._loaded_deployment()[1]

    def _loaded_deployment(self) -> tuple[Deployment, Path]:
        if self._deployment is None:
            self._deployment = load_checked(self.w3(), self.deployment_option)
        return self._deployment

    def market(self) -> Market:
        if self._market is None:
            self._market = Market(self.w3(), self.deployment())
        return self._market


def context(ctx: typer.Context) -> AppContext:
    """The AppContext of this invocation (set up by the root callback)."""
    root = ctx.find_root()
    assert isinstance(root.obj, AppContext)
    return root.obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"peerwatt {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    rpc: Annotated[str, typer.Option("--rpc", envvar=RPC_ENV, help="JSON-RPC URL of the chain.")] = DEFAULT_RPC,
    deployment: Annotated[
        Optional[str],
        typer.Option(
            "--deployment",
            envvar=DEPLOYMENT_ENV,
            help="Deployment file (default: deployments/<chain-id>.json in the current directory).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = AppContext(rpc_url=rpc, deployment_option=deployment)

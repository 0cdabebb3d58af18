"""The ``peerwatt`` command line. :func:`main` is the one place errors become output: a single
``error: ...`` line on stderr and the error's exit code, never a traceback (set
``PEERWATT_DEBUG=1`` to see one for unexpected errors)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import requests
import typer
from typer import main as typer_main
from typer._click import exceptions as click_exceptions  # Typer's vendored Click

from peerwatt.cli import (  # noqa: F401  (registers the commands)
    chain_commands,
    demo_commands,
    ledger_commands,
    market_commands,
    oracle_commands,
    settlement_commands,
)
from peerwatt.cli.app import app
from peerwatt.errors import ContractRevertError, InputError, PeerwattError, RpcUnavailableError

EX_SOFTWARE = 70  # sysexits.h: internal software error
EX_IOERR = 74
EX_INTERRUPTED = 130


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def report(exc: BaseException) -> int:
    """Prints ``exc`` as one ``error:`` line on stderr; returns the exit code."""
    if isinstance(exc, click_exceptions.NoArgsIsHelpError):
        print(exc.format_message())
        return 0
    if isinstance(exc, ContractRevertError):
        message, code = f"the contract refused it: {exc}", exc.exit_code
    elif isinstance(exc, PeerwattError):
        message, code = str(exc), exc.exit_code
    elif isinstance(exc, click_exceptions.ClickException):
        usage_ctx = getattr(exc, "ctx", None)  # set on usage errors
        command = usage_ctx.command_path if usage_ctx is not None else "peerwatt"
        message, code = f"{exc.format_message()} (see `{command} --help`)", InputError.exit_code
    elif isinstance(exc, (KeyboardInterrupt, typer.Abort)):
        message, code = "interrupted", EX_INTERRUPTED
    elif isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        unavailable = RpcUnavailableError(f"the chain stopped answering ({type(exc).__name__})")
        message, code = str(unavailable), unavailable.exit_code
    elif isinstance(exc, OSError):
        message, code = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), EX_IOERR
    else:
        if os.environ.get("PEERWATT_DEBUG"):
            traceback.print_exception(exc)
        message, code = f"internal error: {type(exc).__name__}: {exc} (PEERWATT_DEBUG=1 shows a traceback)", EX_SOFTWARE
    print(f"error: {_one_line(message)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    command = typer_main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None, prog_name="peerwatt", standalone_mode=False
        )
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except BaseException as exc:  # noqa: BLE001 - the one place every error is reported
        if isinstance(exc, SystemExit):
            raise
        sys.exit(report(exc))
    sys.exit(result if isinstance(result, int) else 0)

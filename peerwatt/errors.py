"""One root exception for Peerwatt; each family carries a CLI exit code and an HTTP status.

The CLI and the API each turn these into output in one place (exit codes follow sysexits.h).
"""

from __future__ import annotations


class PeerwattError(Exception):
    """Root of every error Peerwatt raises on purpose."""

    exit_code = 1
    http_status = 500


class InputError(PeerwattError, ValueError):
    """Bad input from the user: a flag, a CSV row, a parameter."""

    exit_code = 64
    http_status = 422


class NotFoundError(PeerwattError, LookupError):
    """Something named does not exist: a member, an order, a deployment file."""

    exit_code = 66
    http_status = 404


class ConflictError(PeerwattError):
    """The request clashes with recorded state (e.g. a duplicate reading)."""

    exit_code = 65
    http_status = 409


class SignatureError(PeerwattError):
    """A signature does not verify or comes from the wrong key."""

    exit_code = 77
    http_status = 403


class RpcUnavailableError(PeerwattError, ConnectionError):
    """The chain's RPC endpoint does not answer."""

    exit_code = 75
    http_status = 503


class ContractRevertError(PeerwattError):
    """A transaction or call reverted; ``error`` is the decoded custom error name."""

    exit_code = 65
    http_status = 409

    def __init__(self, error: str, args: dict[str, object] | None = None) -> None:
        self.error = error
        self.error_args = args or {}
        details = ", ".join(f"{key}={value}" for key, value in self.error_args.items())
        super().__init__(f"{error}({details})" if details else error)

"""Connection to the chain's JSON-RPC endpoint, dev-chain detection and dev-chain time travel.

Every part of Peerwatt that talks to a node gets its ``Web3`` from :func:`connect`, so that a
node that does not answer is always reported the same way (:class:`RpcUnavailableError`).
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Any
from urllib.parse import urlparse

import requests
from web3 import Web3

from peerwatt.errors import InputError, PeerwattError, RpcUnavailableError
from peerwatt.slots import SlotClock

DEFAULT_RPC = "http://127.0.0.1:8545"
RPC_ENV = "PEERWATT_RPC"
RPC_TIMEOUT_SECONDS = 60


class DevEngine(str, Enum):
    """Local development chains Peerwatt knows how to start and to move in time."""

    GANACHE = "ganache"
    ANVIL = "anvil"


def rpc_url_from_env() -> str:
    return os.environ.get(RPC_ENV, DEFAULT_RPC)


def rpc_port(rpc_url: str) -> int:
    """Port of an http(s) RPC URL (80/443 when the URL does not name one)."""
    parsed = urlparse(rpc_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InputError(f"RPC URL {rpc_url!r} is not an http(s) URL")
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def connect(rpc_url: str, timeout: float = RPC_TIMEOUT_SECONDS) -> Web3:
    """A Web3 bound to ``rpc_url``, checked to answer (its chain id is read once).

    web3.py retries a refused connection five times with back-off by default; a CLI should say
    at once that nothing answers, so retries are off.
    """
    rpc_port(rpc_url)  # rejects non-http URLs with a clear message
    provider = Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
    w3 = Web3(provider)
    request(w3, "eth_chainId", [])
    return w3


def request(w3: Web3, method: str, params: list[Any]) -> Any:
    """One raw JSON-RPC call; node errors and dead endpoints become Peerwatt errors.

    Raw calls skip web3.py's request/response formatters, which cost more than the node itself
    when thousands of transactions are sent (``orders replay``).
    """
    try:
        response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    except (requests.RequestException, ConnectionError, TimeoutError, ValueError) as exc:
        # refused, timed out, an HTTP error or an answer that is not JSON-RPC
        raise unavailable(w3, exc) from None
    if "error" in response:
        raise NodeError(method, dict(response["error"]))
    return response.get("result")


class NodeError(PeerwattError):
    """The node answered a JSON-RPC call with an error (other than a contract revert)."""

    def __init__(self, method: str, error: dict[str, Any] | str) -> None:  # str: a non-conforming node
        self.method = method
        self.rpc_error = error
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        super().__init__(f"the node rejected {method}: {message}")


def unavailable(w3: Web3, exc: BaseException) -> RpcUnavailableError:
    url = getattr(w3.provider, "endpoint_uri", "the RPC endpoint")
    if isinstance(exc, (requests.Timeout, TimeoutError)):
        reason = "timed out"
    elif isinstance(exc, (requests.ConnectionError, ConnectionError)):
        reason = "connection refused"
    else:
        reason = f"not a JSON-RPC answer: {exc}"
    return RpcUnavailableError(f"no chain answers at {url} ({reason}); start one with `peerwatt chain start`")


def client_version(w3: Web3) -> str:
    return str(request(w3, "web3_clientVersion", []))


def chain_id(w3: Web3) -> int:
    return int(request(w3, "eth_chainId", []), 16)


def dev_engine(w3: Web3) -> DevEngine | None:
    """Which local dev chain answers (from ``web3_clientVersion``), or None for a real network."""
    version = client_version(w3).lower()
    for engine in DevEngine:
        if version.startswith(engine.value):
            return engine
    return None


def require_dev_chain(w3: Web3, what: str) -> DevEngine:
    engine = dev_engine(w3)
    if engine is None:
        raise InputError(f"{what} works on local dev chains only (ganache or anvil), not on {client_version(w3)}")
    return engine


def latest_block(w3: Web3) -> dict[str, Any]:
    """The latest block header, raw (hex quantities)."""
    return request(w3, "eth_getBlockByNumber", ["latest", False])  # type: ignore[no-any-return]


def latest_timestamp(w3: Web3) -> int:
    return int(latest_block(w3)["timestamp"], 16)


def current_slot(w3: Web3, clock: SlotClock) -> int:
    """The slot in delivery at the chain's time (its latest block), not the wall clock's."""
    return clock.slot_at(latest_timestamp(w3))


def block_number(w3: Web3) -> int:
    return int(request(w3, "eth_blockNumber", []), 16)


def advance_time(w3: Web3, seconds: int) -> int:
    """Moves a dev chain's clock forward by ``seconds`` and mines a block at the new time.

    Returns the new block's timestamp. Both ganache and anvil add the offset to the wall clock
    for every later block, so slots keep closing at real speed afterwards.
    """
    if seconds <= 0:
        raise InputError(f"--seconds must be positive, got {seconds}")
    require_dev_chain(w3, "advancing time")
    request(w3, "evm_increaseTime", [seconds])
    request(w3, "evm_mine", [])
    return latest_timestamp(w3)

"""Calls and transactions from accounts the node holds (dev chains unlock theirs), with
reverts decoded into :class:`ContractRevertError` carrying the contract's custom error.

Transactions go out as raw ``eth_sendTransaction`` requests with the gas limit and EIP-1559
fees filled in here: web3.py would otherwise ask the node for fees and an estimate on every
send, which costs more than the node's own work when thousands of orders are replayed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from web3 import Web3

from peerwatt import artifacts
from peerwatt.chain import NodeError, latest_block, request
from peerwatt.errors import ContractRevertError, InputError, PeerwattError

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)

RECEIPT_TIMEOUT_SECONDS = 120
GAS_MARGIN = 1.25  # estimates are exact for the state they ran on; leave room for a changed book


def revert_data(rpc_error: dict[str, Any] | str) -> str | None:
    """Revert data in a node's error answer: anvil puts it in ``data``, ganache in
    ``data.result`` (or ``data`` as well, depending on the call)."""
    if not isinstance(rpc_error, dict):
        return None
    data = rpc_error.get("data")
    if isinstance(data, dict):
        data = data.get("result", data.get("data"))
    if isinstance(data, str) and data.startswith("0x"):
        return data
    message = str(rpc_error.get("message", ""))
    if "revert" in message.lower():
        return "0x"  # a revert without data
    return None


def revert_error(data: str | bytes) -> ContractRevertError:
    """The decoded reason of a revert: one of our custom errors, Error(string) or Panic."""
    raw = artifacts.hex_bytes(data)
    custom = artifacts.decode_custom_error(raw) if len(raw) >= 4 else None
    if custom is not None:
        name, args = custom
        return ContractRevertError(name, args)
    if raw[:4] == _ERROR_STRING:
        return ContractRevertError("Error", {"reason": abi_decode(["string"], raw[4:])[0]})
    if raw[:4] == _PANIC:
        return ContractRevertError("Panic", {"code": hex(abi_decode(["uint256"], raw[4:])[0])})
    if not raw:
        return ContractRevertError("reverted without a reason")
    return ContractRevertError("unknown revert", {"data": "0x" + raw.hex()})


def _raise_revert(exc: NodeError) -> None:
    data = revert_data(exc.rpc_error)
    if data is not None:
        raise revert_error(data) from None


def eth_call(w3: Web3, tx: dict[str, Any], block: str = "latest") -> str:
    """Runs ``tx`` as a call; a revert raises :class:`ContractRevertError`."""
    try:
        return str(request(w3, "eth_call", [tx, block]))
    except NodeError as exc:
        _raise_revert(exc)
        raise


def call(w3: Web3, to: str, contract: str, function: str, *args: Any, sender: str | None = None) -> tuple[Any, ...]:
    """Calls a view (or simulates a transaction) of ``contract`` at ``to``; decoded results."""
    fn = artifacts.function(contract, function)
    tx: dict[str, Any] = {"to": to, "data": fn.encode(*args)}
    if sender is not None:
        tx["from"] = sender
    return fn.decode(eth_call(w3, tx))


def estimate_gas(w3: Web3, tx: dict[str, Any]) -> int:
    """The node's gas estimate for ``tx``; a revert raises :class:`ContractRevertError`."""
    try:
        return int(request(w3, "eth_estimateGas", [tx]), 16)
    except NodeError as exc:
        _raise_revert(exc)
        raise


@dataclass(frozen=True)
class Receipt:
    """What Peerwatt needs from a transaction receipt (raw JSON-RPC values parsed)."""

    tx_hash: str
    block_number: int
    status: bool
    gas_used: int
    contract_address: str | None
    logs: tuple[dict[str, Any], ...]

    @classmethod
    def from_rpc(cls, raw: dict[str, Any]) -> Receipt:
        return cls(
            tx_hash=raw["transactionHash"],
            block_number=int(raw["blockNumber"], 16),
            status=int(raw.get("status", "0x1"), 16) == 1,
            gas_used=int(raw["gasUsed"], 16),
            contract_address=raw.get("contractAddress"),
            logs=tuple(raw.get("logs", ())),
        )

    def events(self, address: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Decoded events of our contracts, in log order (optionally of one address only)."""
        found = []
        for log in self.logs:
            if address is not None and log["address"].lower() != address.lower():
                continue
            decoded = artifacts.decode_event(log["topics"], log["data"])
            if decoded is not None:
                found.append(decoded)
        return found


@dataclass
class TxSender:
    """Sends transactions from node-held accounts without waiting for each one to be mined.

    On automining dev chains a transaction is mined in the order it was sent, so a caller can
    send a stream of dependent transactions and collect the receipts afterwards.
    """

    w3: Web3
    # False: send with the block gas limit instead of asking the node to estimate each
    # transaction first (ganache spends most of its time estimating); a transaction that
    # reverts is then mined as failed and reported from its receipt. Only for nodes that mine
    # each transaction in a block of its own (ganache's eager instamine): elsewhere several
    # block-sized transactions would not fit one block
    estimates: bool = True
    _fees: dict[str, str] | None = field(default=None, repr=False)
    _gas_limit_cap: int | None = field(default=None, repr=False)

    def fees(self) -> dict[str, str]:
        """EIP-1559 fee fields (twice the latest base fee plus the tip, so a few rising blocks
        do not strand a transaction), or a legacy gas price before London."""
        if self._fees is None:
            block = latest_block(self.w3)
            base_fee = block.get("baseFeePerGas")
            if base_fee is None:
                self._fees = {"gasPrice": request(self.w3, "eth_gasPrice", [])}
            else:
                try:
                    tip = int(request(self.w3, "eth_maxPriorityFeePerGas", []), 16)
                except NodeError:
                    tip = 10**9
                max_fee = 2 * int(base_fee, 16) + tip
                self._fees = {"maxFeePerGas": hex(max_fee), "maxPriorityFeePerGas": hex(tip)}
            self._gas_limit_cap = int(block["gasLimit"], 16)
        return self._fees

    def block_gas_limit(self) -> int:
        self.fees()
        assert self._gas_limit_cap is not None
        return self._gas_limit_cap

    def send(self, sender: str, to: str | None, data: str, gas: int | None = None, value: int = 0) -> str:
        """Sends a transaction and returns its hash. Without ``gas`` the node estimates it
        first, so a transaction that would revert raises :class:`ContractRevertError` and is
        not sent."""
        tx: dict[str, Any] = {"from": sender, "data": data, **self.fees()}
        if to is not None:
            tx["to"] = to
        if value:
            tx["value"] = hex(value)
        if gas is None and not self.estimates:
            gas = self.block_gas_limit()
        elif gas is None:
            gas = min(int(estimate_gas(self.w3, tx) * GAS_MARGIN) + 10_000, self.block_gas_limit())
        tx["gas"] = hex(gas)
        try:
            return str(request(self.w3, "eth_sendTransaction", [tx]))
        except NodeError as exc:
            _raise_revert(exc)
            message = str(exc).lower()
            if "signer" in message or "not recognized" in message or "unknown account" in message:
                raise InputError(f"the node does not hold the key of {sender}; it cannot send for it") from None
            raise

    def receipt(self, tx_hash: str, timeout: float = RECEIPT_TIMEOUT_SECONDS) -> Receipt:
        """Waits for one transaction to be mined."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            raw = request(self.w3, "eth_getTransactionReceipt", [tx_hash])
            if raw is not None:
                return Receipt.from_rpc(raw)
            if time.monotonic() > deadline:
                raise PeerwattError(f"transaction {tx_hash} was not mined within {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def receipts(self, tx_hashes: list[str], timeout: float = RECEIPT_TIMEOUT_SECONDS) -> list[Receipt]:
        """Waits for many transactions, fetching their receipts in JSON-RPC batches."""
        found: dict[str, Receipt] = {}
        deadline = time.monotonic() + timeout
        missing = list(dict.fromkeys(tx_hashes))
        while missing:
            found.update(self.mined_so_far(missing))
            missing = [tx_hash for tx_hash in missing if tx_hash not in found]
            if missing:
                if time.monotonic() > deadline:
                    raise PeerwattError(f"{len(missing)} transactions were not mined within {timeout:.0f} s")
                time.sleep(0.05)
        return [found[tx_hash] for tx_hash in tx_hashes]

    def mined_so_far(self, tx_hashes: list[str]) -> dict[str, Receipt]:
        """Receipts of those of ``tx_hashes`` that are mined already (does not wait)."""
        found: dict[str, Receipt] = {}
        for start in range(0, len(tx_hashes), 200):
            chunk = tx_hashes[start : start + 200]
            for tx_hash, raw in zip(chunk, self._batch_receipts(chunk), strict=True):
                if raw is not None:
                    found[tx_hash] = Receipt.from_rpc(raw)
        return found

    def _batch_receipts(self, tx_hashes: list[str]) -> list[dict[str, Any] | None]:
        make_batch = getattr(self.w3.provider, "make_batch_request", None)
        if make_batch is not None:
            try:
                responses = make_batch([("eth_getTransactionReceipt", [tx_hash]) for tx_hash in tx_hashes])
            except Exception:  # noqa: BLE001 - a provider without batch support: fall back below
                responses = None
            if isinstance(responses, list) and len(responses) == len(tx_hashes):
                by_id = sorted(responses, key=lambda response: int(response.get("id", 0)))
                if all("error" not in response for response in by_id):
                    return [response.get("result") for response in by_id]
        return [request(self.w3, "eth_getTransactionReceipt", [tx_hash]) for tx_hash in tx_hashes]

    def mined(self, tx_hash: str) -> Receipt:
        """Waits for a transaction and raises the decoded revert if it failed."""
        receipt = self.receipt(tx_hash)
        if not receipt.status:
            raise self.failure_reason(receipt)
        return receipt

    def all_mined(self, tx_hashes: list[str]) -> list[Receipt]:
        """Waits for many transactions and raises the decoded revert of the first that failed."""
        receipts = self.receipts(tx_hashes)
        for receipt in receipts:
            if not receipt.status:
                raise self.failure_reason(receipt)
        return receipts

    def failure_reason(self, receipt: Receipt) -> ContractRevertError:
        """Why a mined transaction reverted: the transaction is replayed as a call on the state
        before its block (on an automining chain it was the block's only transaction)."""
        tx = request(self.w3, "eth_getTransactionByHash", [receipt.tx_hash])
        call_tx = {key: tx[key] for key in ("from", "to", "input", "value", "gas") if tx.get(key) is not None}
        call_tx["data"] = call_tx.pop("input", "0x")
        try:
            eth_call(self.w3, call_tx, hex(receipt.block_number - 1))
        except ContractRevertError as exc:
            return exc
        except NodeError:
            # the node dropped that block's state (anvil keeps a bounded history)
            return ContractRevertError("reverted (the node no longer holds the state to tell why)")
        if receipt.gas_used >= int(tx["gas"], 16):
            return ContractRevertError("out of gas", {"gas_limit": int(tx["gas"], 16)})
        return ContractRevertError("reverted (reason not reproducible)", {"tx": receipt.tx_hash})

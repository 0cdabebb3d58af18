"""Revert data as ganache and anvil report it, decoded into named errors (pure Python)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from eth_abi import encode
from eth_utils import keccak

from peerwatt.errors import ContractRevertError
from peerwatt.transactions import Receipt, TxSender, revert_data, revert_error

NOT_MEMBER = keccak(text="MarketNotMember(address)")[:4] + encode(["address"], ["0x" + "12" * 20])


def test_custom_errors_are_decoded_with_their_arguments() -> None:
    error = revert_error("0x" + NOT_MEMBER.hex())
    assert isinstance(error, ContractRevertError)
    assert error.error == "MarketNotMember"
    assert error.error_args == {"account": "0x" + "12" * 20}
    assert str(error) == f"MarketNotMember(account=0x{'12' * 20})"
    assert error.exit_code == 65


def test_error_string_panic_and_empty_reverts() -> None:
    assert str(revert_error(bytes.fromhex("08c379a0") + encode(["string"], ["nope"]))) == "Error(reason=nope)"
    assert str(revert_error(bytes.fromhex("4e487b71") + encode(["uint256"], [0x11]))) == "Panic(code=0x11)"
    assert str(revert_error("0x")) == "reverted without a reason"
    assert revert_error("0xdeadbeef").error == "unknown revert"


@pytest.mark.parametrize(
    "rpc_error, expected",
    [
        ({"code": 3, "message": "execution reverted", "data": "0xabcd"}, "0xabcd"),  # anvil
        (
            {
                "code": -32000,
                "message": "VM Exception while processing transaction: revert",
                "data": {"result": "0xabcd"},
            },
            "0xabcd",
        ),  # ganache
        ({"code": -32000, "message": "execution reverted"}, "0x"),
        ({"code": -32602, "message": "No Signer available"}, None),
        ("plain text", None),
    ],
)
def test_revert_data_in_node_errors(rpc_error: object, expected: str | None) -> None:
    assert revert_data(rpc_error) == expected  # type: ignore[arg-type]


class FakeProvider:
    """Answers JSON-RPC methods from a table (callables get the params)."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers

    def make_request(self, method: str, params: list[object]) -> dict[str, object]:
        answer = self.answers[method]
        return answer(params) if callable(answer) else answer  # type: ignore[return-value]


def fake_sender(answers: dict[str, object]) -> TxSender:
    return TxSender(SimpleNamespace(provider=FakeProvider(answers)))  # type: ignore[arg-type]


def failed_receipt() -> Receipt:
    return Receipt(
        tx_hash="0x" + "aa" * 32, block_number=7, status=False, gas_used=50_000, contract_address=None, logs=()
    )


TX = {"result": {"from": "0x" + "01" * 20, "to": "0x" + "02" * 20, "input": "0x1234", "gas": hex(2_000_000)}}


def test_failure_reason_replays_the_transaction_on_the_state_before_it() -> None:
    calls: list[object] = []

    def eth_call(params: list[object]) -> dict[str, object]:
        calls.append(params)
        return {"error": {"code": 3, "message": "execution reverted", "data": "0x" + NOT_MEMBER.hex()}}

    sender = fake_sender({"eth_getTransactionByHash": TX, "eth_call": eth_call})
    reason = sender.failure_reason(failed_receipt())
    assert reason.error == "MarketNotMember"
    assert calls == [
        [{"from": "0x" + "01" * 20, "to": "0x" + "02" * 20, "gas": hex(2_000_000), "data": "0x1234"}, "0x6"]
    ]


def test_failure_reason_when_the_node_dropped_the_state() -> None:
    pruned = {"error": {"code": -32000, "message": "state for block 6 is not available"}}
    sender = fake_sender({"eth_getTransactionByHash": TX, "eth_call": pruned})
    assert "no longer holds the state" in str(sender.failure_reason(failed_receipt()))

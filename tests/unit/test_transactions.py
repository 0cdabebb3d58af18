"""Revert data as ganache and anvil report it, decoded into named errors (pure Python)."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from peerwatt.errors import ContractRevertError
from peerwatt.transactions import revert_data, revert_error

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

"""PeerwattToken: ERC-20 metadata, minting by MINTER_ROLE, transfers and allowances, roles.

ERC20InvalidSender and ERC20InvalidApprover cannot be reached through the token's external
functions (the sender or owner is always msg.sender, never the zero address, and the token
exposes no burn); test_every_custom_error_is_accounted_for keeps that list honest.
"""

import brownie
import pytest
from eth_utils import keccak

from peerwatt.units import TOKEN_DECIMALS

MINT = 1_000_000
MAX_UINT256 = 2**256 - 1
ZERO_ADDRESS = "0x" + "0" * 40
DEFAULT_ADMIN_ROLE = "0x" + "00" * 32

TESTED_ERRORS = {
    "AccessControlUnauthorizedAccount",
    "AccessControlBadConfirmation",
    "ERC20InsufficientBalance",
    "ERC20InsufficientAllowance",
    "ERC20InvalidReceiver",
    "ERC20InvalidSpender",
}
UNREACHABLE_ERRORS = {"ERC20InvalidSender", "ERC20InvalidApprover"}


@pytest.fixture
def holder(accounts, token, admin):
    """An account holding MINT base units."""
    token.mint(accounts[2], MINT, {"from": admin})
    return accounts[2]


def test_every_custom_error_is_accounted_for(token):
    errors = {entry["name"] for entry in token.abi if entry["type"] == "error"}
    assert errors == TESTED_ERRORS | UNREACHABLE_ERRORS


def test_metadata(token):
    assert token.name() == "Peerwatt Euro"
    assert token.symbol() == "PWEUR"
    assert token.decimals() == TOKEN_DECIMALS == 6
    assert token.totalSupply() == 0


def test_roles_at_deployment(token, admin, accounts):
    minter = token.MINTER_ROLE()
    assert minter == "0x" + keccak(text="MINTER_ROLE").hex().removeprefix("0x")
    assert token.DEFAULT_ADMIN_ROLE() == DEFAULT_ADMIN_ROLE
    assert token.hasRole(DEFAULT_ADMIN_ROLE, admin)
    assert token.hasRole(minter, admin)
    assert not token.hasRole(minter, accounts[1])
    assert token.getRoleAdmin(minter) == DEFAULT_ADMIN_ROLE


def test_supports_interface(token):
    assert token.supportsInterface("0x01ffc9a7")  # IERC165
    assert token.supportsInterface("0x7965db0b")  # IAccessControl
    assert not token.supportsInterface("0x36372b07")  # IERC20 is not advertised by OZ ERC20
    assert not token.supportsInterface("0xffffffff")


def test_mint_by_minter(token, admin, accounts, logs):
    tx = token.mint(accounts[3], MINT, {"from": admin})
    assert token.balanceOf(accounts[3]) == MINT
    assert token.totalSupply() == MINT
    assert logs(tx, "Transfer") == [(ZERO_ADDRESS, accounts[3], MINT)]


def test_mint_requires_minter_role(token, accounts, error_pattern):
    with brownie.reverts(
        revert_pattern=error_pattern("AccessControlUnauthorizedAccount", accounts[1], token.MINTER_ROLE())
    ):
        token.mint(accounts[1], MINT, {"from": accounts[1]})
    assert token.totalSupply() == 0
    assert token.balanceOf(accounts[1]) == 0


def test_mint_to_zero_address(token, admin, error_pattern):
    with brownie.reverts(revert_pattern=error_pattern("ERC20InvalidReceiver", ZERO_ADDRESS)):
        token.mint(ZERO_ADDRESS, MINT, {"from": admin})
    assert token.totalSupply() == 0


def test_granted_minter_can_mint_until_revoked(token, admin, accounts, error_pattern, logs):
    minter = token.MINTER_ROLE()
    tx = token.grantRole(minter, accounts[1], {"from": admin})
    assert logs(tx, "RoleGranted") == [(minter, accounts[1], admin)]
    token.mint(accounts[1], 5, {"from": accounts[1]})
    assert token.balanceOf(accounts[1]) == 5

    tx = token.revokeRole(minter, accounts[1], {"from": admin})
    assert logs(tx, "RoleRevoked") == [(minter, accounts[1], admin)]
    with brownie.reverts(revert_pattern=error_pattern("AccessControlUnauthorizedAccount", accounts[1], minter)):
        token.mint(accounts[1], 5, {"from": accounts[1]})
    assert token.balanceOf(accounts[1]) == 5


def test_grant_and_revoke_require_admin(token, admin, accounts, error_pattern):
    minter = token.MINTER_ROLE()
    pattern = error_pattern("AccessControlUnauthorizedAccount", accounts[1], DEFAULT_ADMIN_ROLE)
    with brownie.reverts(revert_pattern=pattern):
        token.grantRole(minter, accounts[1], {"from": accounts[1]})
    with brownie.reverts(revert_pattern=pattern):
        token.revokeRole(minter, admin, {"from": accounts[1]})
    assert not token.hasRole(minter, accounts[1])
    assert token.hasRole(minter, admin)


def test_renounce_role(token, admin, accounts, error_pattern, logs):
    minter = token.MINTER_ROLE()
    with brownie.reverts(revert_pattern=error_pattern("AccessControlBadConfirmation")):
        token.renounceRole(minter, admin, {"from": accounts[1]})
    assert token.hasRole(minter, admin)

    tx = token.renounceRole(minter, admin, {"from": admin})
    assert logs(tx, "RoleRevoked") == [(minter, admin, admin)]
    assert not token.hasRole(minter, admin)
    with brownie.reverts(revert_pattern=error_pattern("AccessControlUnauthorizedAccount", admin, minter)):
        token.mint(admin, 1, {"from": admin})


def test_transfer(token, holder, accounts, logs):
    tx = token.transfer(accounts[3], 400, {"from": holder})
    assert tx.return_value is True
    assert logs(tx, "Transfer") == [(holder, accounts[3], 400)]
    assert token.balanceOf(holder) == MINT - 400
    assert token.balanceOf(accounts[3]) == 400
    assert token.totalSupply() == MINT


def test_transfer_more_than_balance(token, holder, accounts, error_pattern):
    with brownie.reverts(revert_pattern=error_pattern("ERC20InsufficientBalance", holder, MINT, MINT + 1)):
        token.transfer(accounts[3], MINT + 1, {"from": holder})
    assert token.balanceOf(holder) == MINT
    assert token.balanceOf(accounts[3]) == 0


def test_transfer_to_zero_address(token, holder, error_pattern):
    with brownie.reverts(revert_pattern=error_pattern("ERC20InvalidReceiver", ZERO_ADDRESS)):
        token.transfer(ZERO_ADDRESS, 1, {"from": holder})
    assert token.balanceOf(holder) == MINT


def test_approve_and_transfer_from(token, holder, accounts, logs):
    spender, receiver = accounts[3], accounts[4]
    tx = token.approve(spender, 300, {"from": holder})
    assert logs(tx, "Approval") == [(holder, spender, 300)]
    assert token.allowance(holder, spender) == 300

    tx = token.transferFrom(holder, receiver, 120, {"from": spender})
    assert tx.return_value is True
    assert logs(tx, "Transfer") == [(holder, receiver, 120)]
    assert token.allowance(holder, spender) == 180
    assert token.balanceOf(receiver) == 120
    assert token.balanceOf(holder) == MINT - 120


def test_unlimited_allowance_is_not_spent(token, holder, accounts):
    token.approve(accounts[3], MAX_UINT256, {"from": holder})
    token.transferFrom(holder, accounts[4], 120, {"from": accounts[3]})
    assert token.allowance(holder, accounts[3]) == MAX_UINT256


def test_transfer_from_beyond_allowance(token, holder, accounts, error_pattern):
    token.approve(accounts[3], 100, {"from": holder})
    with brownie.reverts(revert_pattern=error_pattern("ERC20InsufficientAllowance", accounts[3], 100, 101)):
        token.transferFrom(holder, accounts[4], 101, {"from": accounts[3]})
    assert token.allowance(holder, accounts[3]) == 100
    assert token.balanceOf(holder) == MINT


def test_transfer_from_beyond_balance(token, holder, accounts, error_pattern):
    token.approve(accounts[3], MAX_UINT256, {"from": holder})
    with brownie.reverts(revert_pattern=error_pattern("ERC20InsufficientBalance", holder, MINT, MINT + 1)):
        token.transferFrom(holder, accounts[4], MINT + 1, {"from": accounts[3]})
    assert token.balanceOf(holder) == MINT


def test_approve_zero_spender(token, holder, error_pattern):
    with brownie.reverts(revert_pattern=error_pattern("ERC20InvalidSpender", ZERO_ADDRESS)):
        token.approve(ZERO_ADDRESS, 1, {"from": holder})
    assert token.allowance(holder, ZERO_ADDRESS) == 0

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title Settlement token: a 6-decimal ERC-20 standing in for a euro stablecoin
/// @notice Holders of MINTER_ROLE (the deployer on a dev chain) can mint, so dev chains can
/// fund members; on a real network, bridge or issue it as that network's stablecoin instead.
contract PeerwattToken is ERC20, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    constructor(address admin, string memory name_, string memory symbol_) ERC20(name_, symbol_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice 6 decimals: 1 token = 1,000,000 base units (DESIGN.md section 2).
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Creates `amount` base units for `to`.
    /// @dev Requirements: caller has MINTER_ROLE. Emits a {Transfer} event from the zero address.
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Peerwatt units (DESIGN.md section 2): energy in Wh, prices in token base units per kWh
library EnergyMath {
    /// @dev Value of `qtyWh` at `pricePerKwh`, rounded down: the same figure for payer and payee.
    /// Cannot overflow: both factors are below 2^64.
    function value(uint64 qtyWh, uint32 pricePerKwh) internal pure returns (uint256) {
        unchecked {
            return (uint256(qtyWh) * pricePerKwh) / 1000;
        }
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Community sharing rules of DESIGN.md section 5, in exact rational arithmetic
/// @notice For a slot with total net export `supplyWh` (S) and total net import `demandWh` (D),
/// each rule gives the price net importers pay (Pb) and net exporters receive (Ps), in base
/// units per kWh, as fractions `num / den`. A member's amount is then `q * num / (den * 1000)`
/// rounded down (DESIGN.md section 2); the supplier takes the rounding remainder.
/// @dev Magnitudes: prices < 2^32 and S, D < 2^64, so every numerator and denominator stays
/// below 2^194 and `q * num` (q < 2^32) below 2^232.
library SharingPrices {
    /// @notice The rules, numbered as in the settlement contract's `SharingRule`.
    uint8 internal constant MMR = 0;
    uint8 internal constant SDR = 1;
    uint8 internal constant BS = 2;

    /// @notice A price as an exact fraction of base units per kWh.
    struct Price {
        uint256 num;
        uint256 den;
    }

    /// @notice Buy and sell prices of `rule` for supply S and demand D at tariffs Pi > Pe.
    function prices(uint8 rule, uint256 supplyWh, uint256 demandWh, uint256 importPrice, uint256 exportPrice)
        internal
        pure
        returns (Price memory buy, Price memory sell)
    {
        (uint256 s, uint256 d, uint256 pi, uint256 pe) = (supplyWh, demandWh, importPrice, exportPrice);
        if (rule == MMR) {
            // Pm = (Pi + Pe) / 2 on the short side; the long side shares the rest at the tariff
            if (s >= d) {
                buy = Price(pi + pe, 2);
                sell = s == 0 ? Price(pe, 1) : Price(d * (pi + pe) + 2 * (s - d) * pe, 2 * s);
            } else {
                sell = Price(pi + pe, 2);
                buy = Price(s * (pi + pe) + 2 * (d - s) * pi, 2 * d);
            }
        } else if (rule == SDR) {
            if (s >= d) return (Price(pe, 1), Price(pe, 1));
            if (s == 0) return (Price(pi, 1), Price(pi, 1)); // the limit of the formulas (and Pe = 0 safe)
            // SDR = S/D < 1: Ps = Pi*Pe / ((Pi - Pe)*SDR + Pe) = Pi*Pe*D / ((Pi - Pe)*S + Pe*D)
            uint256 k = (pi - pe) * s + pe * d;
            sell = Price(pi * pe * d, k);
            // Pb = Ps*SDR + Pi*(1 - SDR) = Pi*Pe*S/k + Pi*(D - S)/D = (Pi*Pe*S*D + Pi*(D - S)*k) / (D*k)
            buy = Price(pi * pe * s * d + pi * (d - s) * k, d * k);
        } else {
            // BS: importers share the import bill, exporters the export revenue
            buy = d == 0 ? Price(0, 1) : Price(pi * (d > s ? d - s : 0), d);
            sell = s == 0 ? Price(0, 1) : Price(pe * (s > d ? s - d : 0), s);
        }
    }

    /// @notice Value of `qtyWh` at `price`, rounded down.
    function valueAt(uint256 qtyWh, Price memory price) internal pure returns (uint256) {
        return (qtyWh * price.num) / (price.den * 1000);
    }
}

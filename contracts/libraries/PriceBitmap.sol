// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title Set of occupied price levels (indices below 2^24) with constant-cost best-price search
/// @notice A three-level radix bitmap (256-bit words, 8 bits of the index per level):
///
///     depth 2: one word, bit = index >> 16            ("which depth-1 words are non-empty")
///     depth 1: word index >> 16, bit = (index >> 8) & 0xff
///     depth 0: word index >> 8,  bit = index & 0xff     (one bit per price level)
///
/// A word is stored under key `depth << 32 | wordIndex`. Setting or clearing an index touches
/// one word, plus its parents only when a word turns non-empty or empty; searching reads at
/// most five words, whatever the number of levels in the book. The market indexes prices in
/// ticks, so one depth-0 word covers 256 ticks.
library PriceBitmap {
    struct Bitmap {
        mapping(uint256 key => uint256 bits) words;
    }

    uint256 private constant DEPTHS = 3;

    function _key(uint256 depth, uint256 wordIndex) private pure returns (uint256) {
        return (depth << 32) | wordIndex;
    }

    /// @dev Marks `index` as occupied.
    function set(Bitmap storage self, uint256 index) internal {
        uint256 position = index;
        for (uint256 depth = 0; depth < DEPTHS; ++depth) {
            uint256 key = _key(depth, position >> 8);
            uint256 word = self.words[key];
            self.words[key] = word | (uint256(1) << (position & 0xff));
            if (word != 0) return; // parents already mark this word as non-empty
            position >>= 8;
        }
    }

    /// @dev Marks `index` as free.
    function clear(Bitmap storage self, uint256 index) internal {
        uint256 position = index;
        for (uint256 depth = 0; depth < DEPTHS; ++depth) {
            uint256 key = _key(depth, position >> 8);
            uint256 word = self.words[key] & ~(uint256(1) << (position & 0xff));
            self.words[key] = word;
            if (word != 0) return; // the word still has levels: parents stay marked
            position >>= 8;
        }
    }

    /// @dev Lowest occupied index >= `index` (0 if none).
    function lowestAtOrAbove(Bitmap storage self, uint256 index) internal view returns (uint256) {
        uint256 position = index;
        for (uint256 depth = 0; depth < DEPTHS; ++depth) {
            uint256 wordIndex = position >> 8;
            uint256 word = self.words[_key(depth, wordIndex)] & (type(uint256).max << (position & 0xff));
            if (word != 0) return _descend(self, depth, (wordIndex << 8) | _lowestBit(word), true);
            position = wordIndex + 1; // continue after this word, one depth up
        }
        return 0;
    }

    /// @dev Highest occupied index <= `index` (0 if none).
    function highestAtOrBelow(Bitmap storage self, uint256 index) internal view returns (uint256) {
        uint256 position = index;
        for (uint256 depth = 0; depth < DEPTHS; ++depth) {
            uint256 wordIndex = position >> 8;
            uint256 bit = position & 0xff;
            // bits 0..bit; for bit 255 the shift wraps to 0 and the mask becomes all ones
            uint256 mask;
            unchecked {
                mask = (uint256(2) << bit) - 1;
            }
            uint256 word = self.words[_key(depth, wordIndex)] & mask;
            if (word != 0) return _descend(self, depth, (wordIndex << 8) | Math.log2(word), false);
            if (wordIndex == 0) return 0;
            position = wordIndex - 1;
        }
        return 0;
    }

    /// @dev From a set bit at `depth`, walks down to depth 0 taking the lowest (or highest) bit.
    function _descend(Bitmap storage self, uint256 depth, uint256 position, bool lowest) private view returns (uint256) {
        while (depth > 0) {
            --depth;
            uint256 word = self.words[_key(depth, position)];
            position = (position << 8) | (lowest ? _lowestBit(word) : Math.log2(word));
        }
        return position;
    }

    function _lowestBit(uint256 word) private pure returns (uint256) {
        unchecked {
            return Math.log2(word & (~word + 1)); // isolate the lowest set bit
        }
    }
}

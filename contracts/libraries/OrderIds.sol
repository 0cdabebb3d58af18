// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Order ids of the CDA market: where an order rests, packed in one number
/// @notice `id = slot << 97 | isBuy << 96 | price << 64 | seq` (129 bits): an order's limit
/// price and its place `seq` in the FIFO queue of that price level, so the id is also the
/// order's storage key and the queue needs no links. A level's places start at
/// `nonce << 32 | 1` for a fresh per-slot `nonce` each time the level is created, so ids never
/// repeat although an emptied level's storage is deleted. An order that crosses the book takes
/// the first place of a fresh level at its limit price before matching (the book never
/// crosses, so that level is empty), whether or not anything of it is left to rest there.
/// `id >> 64` is the key of the order's price level (slot, side, price).
library OrderIds {
    uint256 private constant SEQ_BITS = 64;

    /// @dev Key of the price level `price` on one side of the book of `slot`.
    function levelKey(uint32 slot, bool isBuy, uint32 price) internal pure returns (uint256) {
        return (uint256(slot) << 33) | (isBuy ? uint256(1) << 32 : 0) | price;
    }

    /// @dev Id of the order at place `seq` of the level `key`.
    function atLevel(uint256 key, uint64 seq) internal pure returns (uint256) {
        return (key << SEQ_BITS) | seq;
    }

    /// @dev First place of a level created with the slot's `nonce` (places follow it).
    function firstSeq(uint32 nonce) internal pure returns (uint64) {
        return (uint64(nonce) << 32) + 1;
    }

    function levelOf(uint256 orderId) internal pure returns (uint256) {
        return orderId >> SEQ_BITS;
    }

    function slotOf(uint256 orderId) internal pure returns (uint32) {
        return uint32(orderId >> (SEQ_BITS + 33));
    }

    function isBuy(uint256 orderId) internal pure returns (bool) {
        return (orderId >> (SEQ_BITS + 32)) & 1 == 1;
    }

    function priceOf(uint256 orderId) internal pure returns (uint32) {
        return uint32(orderId >> SEQ_BITS);
    }

    function seqOf(uint256 orderId) internal pure returns (uint64) {
        return uint64(orderId);
    }
}

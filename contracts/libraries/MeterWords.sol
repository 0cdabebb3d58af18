// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title The MeterOracle's storage word per meter key, and its packed readings
/// @notice A meter word, from the low bits up: memberId (32) | fromSlot (32) | untilSlot (32) |
/// nextSlot (32: last accepted reading's slot + 1, 0 for none) | importRegisterWh (48) |
/// exportRegisterWh (48) | tag (32: low bits of the last accepted reading's digest).
///
/// A packed reading is two calldata words: `head` = meter (160) | slot (32) | importWh (32) |
/// exportWh (32), and `registers` = importRegisterWh (48) | exportRegisterWh (48) | ...
/// (high bits first: the batch layout of {IMeterOracle-submitReadings}).
library MeterWords {
    uint256 private constant MASK32 = type(uint32).max;
    uint256 private constant MASK48 = type(uint48).max;

    function pack(uint32 memberId, uint32 fromSlot, uint32 untilSlot) internal pure returns (uint256) {
        return uint256(memberId) | (uint256(fromSlot) << 32) | (uint256(untilSlot) << 64);
    }

    function memberId(uint256 word) internal pure returns (uint32) {
        return uint32(word);
    }

    function fromSlot(uint256 word) internal pure returns (uint32) {
        return uint32(word >> 32);
    }

    function untilSlot(uint256 word) internal pure returns (uint32) {
        return uint32(word >> 64);
    }

    function nextSlot(uint256 word) internal pure returns (uint32) {
        return uint32(word >> 96);
    }

    function importRegister(uint256 word) internal pure returns (uint48) {
        return uint48(word >> 128);
    }

    function exportRegister(uint256 word) internal pure returns (uint48) {
        return uint48(word >> 176);
    }

    function tag(uint256 word) internal pure returns (uint32) {
        return uint32(word >> 224);
    }

    function withUntilSlot(uint256 word, uint32 slot) internal pure returns (uint256) {
        return (word & ~(MASK32 << 64)) | (uint256(slot) << 64);
    }

    /// @dev The word after accepting a reading: identity kept, last reading replaced.
    function withReading(uint256 word, uint32 slot, uint256 registers, uint32 digestTag)
        internal
        pure
        returns (uint256)
    {
        return (word & ((1 << 96) - 1)) | (uint256(slot + 1) << 96) | (registerPair(registers) << 128)
            | (uint256(digestTag) << 224);
    }

    /// @dev importRegisterWh | exportRegisterWh << 48, from a reading's `registers` word.
    function registerPair(uint256 registers) internal pure returns (uint256) {
        return (registers >> 208) | (((registers >> 160) & MASK48) << 48);
    }

    // ----------------------------------------------------------------- packed readings

    function meterOf(uint256 head) internal pure returns (address) {
        return address(uint160(head >> 96));
    }

    function slotOf(uint256 head) internal pure returns (uint32) {
        return uint32(head >> 64);
    }

    function importWh(uint256 head) internal pure returns (uint32) {
        return uint32(head >> 32);
    }

    function exportWh(uint256 head) internal pure returns (uint32) {
        return uint32(head);
    }

    function importRegisterWh(uint256 registers) internal pure returns (uint48) {
        return uint48(registers >> 208);
    }

    function exportRegisterWh(uint256 registers) internal pure returns (uint48) {
        return uint48(registers >> 160);
    }
}

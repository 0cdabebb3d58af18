// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ICommunityRegistry} from "./interfaces/ICommunityRegistry.sol";
import {IMeterOracle} from "./interfaces/IMeterOracle.sol";
import {MeterWords} from "./libraries/MeterWords.sol";

/// @title Peerwatt meter oracle: meter keys and signed readings, verified on-chain
/// @notice See {IMeterOracle}. Members and the manager role come from the community registry
/// (the market); its slot clock is copied at deployment (it never changes).
/// @dev Gas layout: one storage word per meter key ({MeterWords}: member id, active slots, last
/// reading's slot, registers and a 32-bit tag of its digest) and one per slot (the readings'
/// hash chain and count). A batch of one slot's readings from many meters thus costs, per
/// reading, the signature check, one meter word read and written once, a warm write of the
/// slot word and 44 bytes of the batch's log. Readings stay in calldata throughout.
contract MeterOracle is IMeterOracle, EIP712 {
    using MeterWords for uint256;

    bytes32 public constant READING_TYPEHASH = keccak256(
        "Reading(address meter,uint32 slot,uint32 importWh,uint32 exportWh,uint48 importRegisterWh,uint48 exportRegisterWh)"
    );
    /// @notice Bytes per reading in a packed batch (see {submitReadings}).
    uint256 public constant PACKED_READING_BYTES = 109;
    /// @notice Bytes per reading in {ReadingsAccepted}: the packed reading without its signature.
    uint256 public constant ACCEPTED_READING_BYTES = 44;
    uint32 private constant OPEN = type(uint32).max;

    /// @notice The community registry (the market contract) holding members and roles.
    ICommunityRegistry public immutable registry;
    bytes32 private immutable _managerRole;
    uint64 private immutable _epoch;
    uint32 private immutable _slotSeconds;

    /// @dev Top bit of a slot commitment's low 32 bits: settlement has begun, readings are closed.
    uint256 private constant SEALED = 1 << 31;

    mapping(address meterKey => uint256 word) private _meters;
    // uint224 hash chain << 32 | sealed flag << 31 | count
    mapping(uint32 slot => uint256) private _slotCommitments;
    // the member's latest meter key: a member has at most one key per slot
    mapping(uint32 memberId => address meterKey) private _memberMeters;

    /// @notice The contract allowed to seal slots (the settlement contract), set once.
    address public sealer;

    /// @param communityRegistry the market contract: members, MANAGER_ROLE and the slot clock
    constructor(ICommunityRegistry communityRegistry) EIP712("Peerwatt MeterOracle", "1") {
        if (address(communityRegistry) == address(0)) revert OracleZeroAddress();
        registry = communityRegistry;
        _managerRole = keccak256("MANAGER_ROLE");
        (_epoch, _slotSeconds,) = communityRegistry.slotClock();
    }

    modifier onlyManager() {
        if (!IAccessControl(address(registry)).hasRole(_managerRole, msg.sender)) revert OracleNotManager(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ meter keys

    /// @inheritdoc IMeterOracle
    function setSealer(address settlement) external {
        if (!IAccessControl(address(registry)).hasRole(bytes32(0), msg.sender)) revert OracleNotAdmin(msg.sender);
        if (settlement == address(0)) revert OracleZeroAddress();
        if (sealer != address(0)) revert OracleSealerSet(sealer);
        sealer = settlement;
        emit SealerSet(settlement);
    }

    /// @inheritdoc IMeterOracle
    function sealSlot(uint32 slot) external returns (bytes32 chain, uint32 readings) {
        if (msg.sender != sealer) revert OracleNotSealer(msg.sender);
        uint256 commitment = _slotCommitments[slot];
        chain = bytes32(commitment >> 32);
        readings = uint32(commitment & (SEALED - 1));
        if (commitment & SEALED == 0) {
            _slotCommitments[slot] = commitment | SEALED;
            emit SlotSealed(slot, chain, readings);
        }
    }

    /// @inheritdoc IMeterOracle
    function registerMeter(address meterKey, address member, uint32 fromSlot) external onlyManager {
        _register(meterKey, member, fromSlot);
    }

    /// @inheritdoc IMeterOracle
    function rotateMeter(address oldMeter, address newMeter, uint32 fromSlot) external onlyManager {
        uint32 memberId = _revoke(oldMeter, fromSlot);
        _register(newMeter, registry.memberAddress(memberId), fromSlot);
    }

    /// @inheritdoc IMeterOracle
    function revokeMeter(address meterKey, uint32 fromSlot) external onlyManager {
        _revoke(meterKey, fromSlot);
    }

    function _register(address meterKey, address member, uint32 fromSlot) private {
        if (meterKey == address(0) || member == address(0)) revert OracleZeroAddress();
        if (_meters[meterKey] != 0) revert OracleMeterExists(meterKey);
        (uint32 memberId, bool active) = registry.memberOf(member);
        if (!active) revert OracleNotMember(member);
        // one key per member and slot: its reading is the member's net flow at the connection
        address previous = _memberMeters[memberId];
        if (previous != address(0) && _meters[previous].untilSlot() > fromSlot) {
            revert OracleMemberHasMeter(member, previous);
        }
        _memberMeters[memberId] = meterKey;
        _meters[meterKey] = MeterWords.pack(memberId, fromSlot, OPEN);
        emit MeterRegistered(meterKey, member, fromSlot);
    }

    function _revoke(address meterKey, uint32 fromSlot) private returns (uint32 memberId) {
        uint256 word = _meters[meterKey];
        memberId = word.memberId();
        if (memberId == 0) revert OracleUnknownMeter(meterKey);
        // readings already accepted stand: the key can only lose slots it has not reported
        if (fromSlot < word.fromSlot() || fromSlot > word.untilSlot() || fromSlot < word.nextSlot()) {
            revert OracleInvalidRevocation(meterKey, fromSlot);
        }
        _meters[meterKey] = word.withUntilSlot(fromSlot);
        emit MeterRevoked(meterKey, fromSlot);
    }

    // -------------------------------------------------------------------- readings

    /// @inheritdoc IMeterOracle
    function submitReadings(bytes calldata batch) external returns (uint256 accepted) {
        if (batch.length % PACKED_READING_BYTES != 0) revert OracleMalformedBatch(batch.length);
        uint32 current = _currentSlot();
        bytes32 domainSeparator = _domainSeparatorV4();
        bytes memory log = new bytes((batch.length / PACKED_READING_BYTES) * ACCEPTED_READING_BYTES);
        for (uint256 offset = 0; offset < batch.length; offset += PACKED_READING_BYTES) {
            uint256 head;
            uint256 registers;
            bytes32 r;
            bytes32 s;
            uint8 v;
            assembly ("memory-safe") {
                let p := add(batch.offset, offset)
                head := calldataload(p) // meter | slot | importWh | exportWh
                registers := calldataload(add(p, 32)) // importRegisterWh | exportRegisterWh | (r...)
                r := calldataload(add(p, 44))
                s := calldataload(add(p, 76))
                v := byte(0, calldataload(add(p, 108)))
            }
            bytes32 digest = MessageHashUtils.toTypedDataHash(domainSeparator, _structHash(head, registers));
            if (_submit(head, registers, digest, v, r, s, current)) {
                assembly ("memory-safe") {
                    let to := add(add(log, 0x20), mul(accepted, ACCEPTED_READING_BYTES))
                    calldatacopy(to, add(batch.offset, offset), ACCEPTED_READING_BYTES)
                }
                ++accepted;
            }
        }
        if (accepted != 0) {
            assembly ("memory-safe") {
                mstore(log, mul(accepted, ACCEPTED_READING_BYTES)) // trim to the accepted readings
            }
            emit ReadingsAccepted(log);
        }
    }

    /// @dev Checks one reading and records it; returns whether it was accepted. Cheap checks come
    /// before the signature; a re-sent reading is recognised by its digest alone.
    function _submit(
        uint256 head,
        uint256 registers,
        bytes32 digest,
        uint8 v,
        bytes32 r,
        bytes32 s,
        uint32 current
    ) private returns (bool) {
        address meterKey = head.meterOf();
        uint32 slot = head.slotOf();
        uint256 word = _meters[meterKey];
        if (word.memberId() == 0) return _reject(meterKey, slot, RejectReason.UnknownMeter);
        if (slot < word.fromSlot() || slot >= word.untilSlot()) return _reject(meterKey, slot, RejectReason.KeyNotActive);
        if (slot >= current) return _reject(meterKey, slot, RejectReason.SlotNotEnded);
        uint32 next = word.nextSlot();
        if (slot + 1 == next && uint32(uint256(digest)) == word.tag()) return false; // sent again

        (address signer, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, v, r, s);
        if (error != ECDSA.RecoverError.NoError || signer != meterKey) {
            return _reject(meterKey, slot, RejectReason.BadSignature);
        }
        if (next != 0) {
            if (slot + 1 < next) return _reject(meterKey, slot, RejectReason.OutOfOrder);
            if (slot + 1 == next) {
                emit ReadingConflict(
                    meterKey,
                    slot,
                    head.importWh(),
                    head.exportWh(),
                    registers.importRegisterWh(),
                    registers.exportRegisterWh()
                );
                return false;
            }
        }
        // a sealed slot still reports conflicts (evidence), but takes no new reading
        uint256 commitment = _slotCommitments[slot];
        if (commitment & SEALED != 0) return _reject(meterKey, slot, RejectReason.SlotSealed);
        (bool fits, RejectReason reason) = _checkRegisters(head, registers, word, slot);
        if (!fits) return _reject(meterKey, slot, reason);

        _meters[meterKey] = word.withReading(slot, registers, uint32(uint256(digest)));
        _commit(word.memberId(), head, commitment);
        return true;
    }

    /// @dev Registers never go backwards and grow by at least the interval values -- by exactly
    /// them when the meter's last accepted reading is the previous slot's. A first reading's
    /// registers count at least its own interval.
    function _checkRegisters(uint256 head, uint256 registers, uint256 word, uint32 slot)
        private
        pure
        returns (bool fits, RejectReason reason)
    {
        uint256 importRegister = registers.importRegisterWh();
        uint256 exportRegister = registers.exportRegisterWh();
        uint256 lastImport = word.importRegister();
        uint256 lastExport = word.exportRegister();
        if (importRegister < lastImport || exportRegister < lastExport) return (false, RejectReason.RegistersBackwards);
        uint256 imported = importRegister - lastImport;
        uint256 exported = exportRegister - lastExport;
        fits = slot == word.nextSlot() && slot != 0
            ? imported == head.importWh() && exported == head.exportWh()
            : imported >= head.importWh() && exported >= head.exportWh();
        reason = RejectReason.RegistersMismatch;
    }

    function _commit(uint32 memberId, uint256 head, uint256 commitment) private {
        uint32 slot = head.slotOf();
        uint256 link;
        uint256 reading = head & type(uint64).max; // importWh | exportWh
        assembly ("memory-safe") {
            let ptr := mload(0x40) // scratch beyond the free memory pointer
            mstore(ptr, shr(32, commitment))
            mstore(add(ptr, 0x20), memberId)
            mstore(add(ptr, 0x40), slot)
            mstore(add(ptr, 0x60), shr(32, reading))
            mstore(add(ptr, 0x80), and(reading, 0xffffffff))
            link := keccak256(ptr, 0xa0)
        }
        _slotCommitments[slot] = (uint256(uint224(link)) << 32) | (uint32(commitment) + 1);
    }

    function _reject(address meterKey, uint32 slot, RejectReason reason) private returns (bool) {
        emit ReadingRejected(meterKey, slot, reason);
        return false;
    }

    /// @dev EIP-712 struct hash of a packed reading, computed in scratch memory.
    function _structHash(uint256 head, uint256 registers) private pure returns (bytes32 hash) {
        bytes32 typeHash = READING_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40) // scratch beyond the free memory pointer
            mstore(ptr, typeHash)
            mstore(add(ptr, 0x20), shr(96, head))
            mstore(add(ptr, 0x40), and(shr(64, head), 0xffffffff))
            mstore(add(ptr, 0x60), and(shr(32, head), 0xffffffff))
            mstore(add(ptr, 0x80), and(head, 0xffffffff))
            mstore(add(ptr, 0xa0), shr(208, registers))
            mstore(add(ptr, 0xc0), and(shr(160, registers), 0xffffffffffff))
            hash := keccak256(ptr, 0xe0)
        }
    }

    function _currentSlot() private view returns (uint32) {
        if (block.timestamp < _epoch) return 0;
        return uint32((block.timestamp - _epoch) / _slotSeconds);
    }

    // ----------------------------------------------------------------------- views

    /// @inheritdoc IMeterOracle
    function readingDigest(Reading calldata reading) external view returns (bytes32) {
        uint256 head = (uint256(uint160(reading.meter)) << 96) | (uint256(reading.slot) << 64)
            | (uint256(reading.importWh) << 32) | reading.exportWh;
        uint256 registers = (uint256(reading.importRegisterWh) << 208) | (uint256(reading.exportRegisterWh) << 160);
        return _hashTypedDataV4(_structHash(head, registers));
    }

    /// @inheritdoc IMeterOracle
    function meter(address meterKey) external view returns (MeterView memory) {
        uint256 word = _meters[meterKey];
        uint32 memberId = word.memberId();
        if (memberId == 0) revert OracleUnknownMeter(meterKey);
        uint32 next = word.nextSlot();
        return MeterView(
            registry.memberAddress(memberId),
            memberId,
            word.fromSlot(),
            word.untilSlot(),
            next != 0,
            next == 0 ? 0 : next - 1,
            word.importRegister(),
            word.exportRegister()
        );
    }

    /// @inheritdoc IMeterOracle
    function slotCommitment(uint32 slot) external view returns (bytes32 chain, uint32 readings) {
        uint256 commitment = _slotCommitments[slot];
        return (bytes32(commitment >> 32), uint32(commitment & (SEALED - 1)));
    }

    /// @inheritdoc IMeterOracle
    function isSealed(uint32 slot) external view returns (bool) {
        return _slotCommitments[slot] & SEALED != 0;
    }
}

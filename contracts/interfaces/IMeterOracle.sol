// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Signed meter readings per delivery slot (DESIGN.md section 7)
/// @notice Each meter has its own key. A reading is EIP-712 typed data signed by that key:
///
///     Reading(address meter,uint32 slot,uint32 importWh,uint32 exportWh,uint48 importRegisterWh,uint48 exportRegisterWh)
///
/// in the domain ("Peerwatt MeterOracle", "1", chain id, this contract). `importWh`/`exportWh`
/// are the energy that flowed in the slot; the registers are the meter's cumulative counters at
/// the slot's end. Anyone may relay readings in batches; the signature is what counts.
///
/// Per meter, accepted readings advance in slot order (gaps allowed). A reading is accepted if
/// its signature is the meter key's, the key is active for its slot, the slot has ended, and
/// its registers never go backwards and include its interval values -- exactly
/// (`register == previous register + interval`) when the previous slot's reading is the last
/// one accepted. Re-sending the last accepted reading is a no-op; a different reading for an
/// accepted slot is a conflict, reported for auditors. Other bad readings are rejected with a
/// reason; neither makes the rest of the batch fail.
///
/// Accepted readings of a slot are committed in a hash chain (see {slotCommitment}) that
/// settlement replays, and each is in its batch's {ReadingsAccepted} event.
interface IMeterOracle {
    /// @notice The signed fields of a reading (see the contract's notes for the EIP-712 type).
    struct Reading {
        address meter;
        uint32 slot;
        uint32 importWh;
        uint32 exportWh;
        uint48 importRegisterWh;
        uint48 exportRegisterWh;
    }

    /// @notice A meter key and what it last reported.
    struct MeterView {
        address member;
        uint32 memberId; // the registry's id of the member (in events and slot commitments)
        uint32 fromSlot; // first slot the key may sign
        uint32 untilSlot; // first slot it may no longer sign (type(uint32).max: open)
        bool hasReading;
        uint32 lastSlot; // slot of the last accepted reading (if any)
        uint48 importRegisterWh; // registers of the last accepted reading
        uint48 exportRegisterWh;
    }

    /// @notice Why a reading of a batch was not accepted.
    enum RejectReason {
        UnknownMeter, // no key registered at that address
        KeyNotActive, // the slot is before the key's first slot or from its revocation on
        SlotNotEnded, // the slot is still in delivery or in the future
        BadSignature, // not signed by the meter key (or a malleable signature)
        OutOfOrder, // a slot before the meter's last accepted reading
        RegistersBackwards, // a register below the last accepted one
        RegistersMismatch, // registers that do not include the interval values as required
        SlotSealed // settlement of the slot has begun
    }

    error OracleNotManager(address caller);
    error OracleZeroAddress();
    error OracleNotMember(address member);
    error OracleMeterExists(address meter);
    error OracleUnknownMeter(address meter);
    error OracleInvalidRevocation(address meter, uint32 fromSlot);
    error OracleMalformedBatch(uint256 length);
    error OracleMemberHasMeter(address member, address meter);
    error OracleNotAdmin(address caller);
    error OracleNotSealer(address caller);
    error OracleSealerSet(address sealer);

    event MeterRegistered(address indexed meter, address indexed member, uint32 fromSlot);
    event MeterRevoked(address indexed meter, uint32 fromSlot);
    /// @notice The readings a batch had accepted, in acceptance order: 44 bytes each, the first
    /// 44 bytes of their packed form (meter | slot | importWh | exportWh | importRegisterWh |
    /// exportRegisterWh). One event per batch rather than per reading: a log costs per topic
    /// and per byte, and this keeps a reading's log at 44 bytes.
    event ReadingsAccepted(bytes readings);
    event SealerSet(address indexed sealer);
    /// @notice Settlement of `slot` began: no more readings for it; its commitment is final.
    event SlotSealed(uint32 indexed slot, bytes32 chain, uint32 readings);
    event ReadingRejected(address indexed meter, uint32 indexed slot, RejectReason reason);
    /// @notice The meter key signed a second, different reading for a slot it already reported:
    /// the first one stands; this one is evidence for auditors.
    event ReadingConflict(
        address indexed meter,
        uint32 indexed slot,
        uint32 importWh,
        uint32 exportWh,
        uint48 importRegisterWh,
        uint48 exportRegisterWh
    );

    /// @notice Sets the contract that may seal slots (the settlement contract), once.
    /// @dev Requirements: caller has the registry's DEFAULT_ADMIN_ROLE. Emits {SealerSet}.
    function setSealer(address settlement) external;

    /// @notice Closes `slot` to readings (settlement begins) and returns its final commitment.
    /// @dev Requirements: caller is the sealer. Idempotent. Emits {SlotSealed} the first time.
    function sealSlot(uint32 slot) external returns (bytes32 chain, uint32 readings);

    function isSealed(uint32 slot) external view returns (bool);

    /// @notice Registers `meter` (the address of its signing key) for `member` from `fromSlot` on.
    /// @dev Requirements: caller has the registry's MANAGER_ROLE; `member` is an active member;
    /// `meter` was never registered (keys are not reused); the member's previous key (if any) is
    /// revoked from `fromSlot` or earlier: one key per member and slot, whose reading is the
    /// member's net flow at its grid connection (settlement relies on it). Emits {MeterRegistered}.
    function registerMeter(address meter, address member, uint32 fromSlot) external;

    /// @notice Replaces a meter's key (device replaced): `oldMeter` may sign no slot from
    /// `fromSlot` on, `newMeter` signs for the same member from `fromSlot` on.
    /// @dev Requirements as {revokeMeter} and {registerMeter}. Emits {MeterRevoked} and
    /// {MeterRegistered}.
    function rotateMeter(address oldMeter, address newMeter, uint32 fromSlot) external;

    /// @notice Revokes `meter` from `fromSlot` on.
    /// @dev Requirements: caller has MANAGER_ROLE; `meter` is registered; `fromSlot` is not before
    /// its first slot, not after its current revocation, and after its last accepted reading.
    /// Emits {MeterRevoked}.
    function revokeMeter(address meter, uint32 fromSlot) external;

    /// @notice Verifies and records a batch of signed readings, packed back to back, 109 bytes
    /// each: meter (20) | slot (4) | importWh (4) | exportWh (4) | importRegisterWh (6) |
    /// exportRegisterWh (6) | r (32) | s (32) | v (1), big-endian.
    /// @dev Anyone may call it. Reverts only on a malformed batch (length not a multiple of 109);
    /// each reading is accepted, skipped as a duplicate, or reported ({ReadingRejected},
    /// {ReadingConflict}).
    /// @return accepted the number of readings accepted
    function submitReadings(bytes calldata batch) external returns (uint256 accepted);

    /// @notice The EIP-712 digest a meter key signs for `reading`.
    function readingDigest(Reading calldata reading) external view returns (bytes32);

    function meter(address meterKey) external view returns (MeterView memory);

    /// @notice The hash chain of the slot's accepted readings (224 bits) and their count:
    /// starting from 0, each accepted reading makes `chain = uint224(uint256(keccak256(
    /// abi.encode(chain, memberId, slot, importWh, exportWh))))`, in acceptance order (the
    /// order of {ReadingsAccepted} events).
    function slotCommitment(uint32 slot) external view returns (bytes32 chain, uint32 readings);
}

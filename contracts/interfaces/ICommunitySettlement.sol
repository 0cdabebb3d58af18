// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Slot settlement against meter readings, clearing results and profit shares
/// @notice After delivery, each slot is settled from the meter oracle's committed readings
/// (DESIGN.md sections 5 and 6), by the community's mode for that slot:
/// - **Cda**: a member's trades (its market position) are paid at the trade prices; its
///   imbalance, metered net export minus contracted net export, is sold to the supplier at the
///   export tariff or bought at the import tariff; grid and manager fees per kWh traded.
/// - **Sharing**: no orders; metered net imports and exports are priced by the rule (MMR, SDR,
///   BS) from the slot's totals, the supplier taking the community's exchange.
/// - **Optimisation**: as Cda, with the internal trades and price of the clearing result the
///   manager posted before the slot ({postSchedule}) as the contracted position.
///
/// Settling a slot: anyone may start it once its reading deadline passed (slot end plus the
/// reading window) or every active member's reading is in; starting seals the slot at the
/// oracle. Readings are then replayed **from the last to the first** in chunks: each chunk gives
/// the chain value before its first reading, and replaying the chunk from there must reproduce
/// the verified value after its last one, so every chunk is checked on its own and nothing
/// unverified is ever applied. Sharing slots take two passes (totals, then payments). A member's
/// result depends only on its reading and the slot's totals: the result is independent of the
/// chunking, and the cursor makes settling anything twice impossible.
///
/// Missing readings (the rule): a member with a position (or a posted schedule) but no reading
/// when the slot is settled is settled **as contracted** -- its trades are paid at their prices
/// and fees charged, nothing is charged at the tariffs -- and {ReadingMissing} flags it for the
/// auditor ({settleUnmetered}). An optimisation slot without a complete posted schedule is
/// settled with no internal trades (everyone at the tariffs) and flagged {ScheduleMissing}.
///
/// Profit shares: a slot's settlement may retain `savingsShareBps` of each member's savings
/// against its stand-alone bill (its metered flow at the tariffs) into the period's pot, which
/// also takes external revenue ({fundPot}); once every slot of a period is settled the pot is
/// shared by the published rule ({distributeShares}).
interface ICommunitySettlement {
    enum Mode {
        Cda,
        Sharing,
        Optimisation
    }

    enum SharingRule {
        Mmr,
        Sdr,
        Bs
    }

    enum ShareRule {
        Equal,
        Proportional,
        Shapley
    }

    enum Phase {
        Open, // not started
        Tallying, // sharing mode: summing the slot's supply and demand
        Paying, // applying members' results
        Settled
    }

    /// @notice Community rules, effective from a slot on ({setConfig}).
    struct Config {
        Mode mode;
        SharingRule rule;
        ShareRule shareRule;
        uint32 gridFeePerKwh; // DSO fee per kWh traded inside the community, charged to each side
        uint32 managerFeePerKwh; // manager fee per kWh traded inside the community, each side
        uint16 savingsShareBps; // part of each member's savings retained in the period's pot
    }

    /// @notice A slot's settlement progress and totals.
    struct SlotView {
        Phase phase;
        Mode mode;
        SharingRule rule;
        uint32 readings; // readings committed when the slot was sealed
        uint32 remaining; // readings not yet processed in the current pass
        uint64 supplyWh; // sum of members' net exports (sharing mode)
        uint64 demandWh; // sum of members' net imports (sharing mode)
    }

    /// @notice A profit-share period: `periodSlots` consecutive slots.
    struct Period {
        uint128 pot; // base units to share
        uint32 settledSlots;
        bool distributed;
    }

    error SettlementNotAdmin(address caller);
    error SettlementNotManager(address caller);
    error SettlementZeroAddress();
    error SettlementInvalidConfig();
    error SettlementInvalidPeriod(uint32 periodSlots);
    error SettlementConfigNotFuture(uint32 fromSlot, uint32 firstOpenSlot);
    error SettlementTooEarly(uint32 slot, uint64 deadline, uint64 timestamp);
    error SettlementAlreadySettled(uint32 slot);
    error SettlementNotSettled(uint32 slot);
    error SettlementMalformedChunk(uint256 length);
    error SettlementChunkMismatch(uint32 slot, uint256 remaining);
    error SettlementWrongMode(uint32 slot, Mode mode);
    error SettlementGateClosed(uint32 slot);
    error SettlementScheduleComplete(uint32 slot);
    error SettlementMembersNotAscending(uint32 memberId, uint32 previous);
    error SettlementUnknownMember(uint32 memberId);
    error SettlementPriceOutOfBand(uint32 slot, uint32 pricePerKwh, uint32 exportPrice, uint32 importPrice);
    error SettlementPriceChanged(uint32 slot, uint32 pricePerKwh, uint32 posted);
    error SettlementTradeExceedsFlow(uint32 memberId, int256 netExportWh, int256 internalWh);
    error SettlementNotRational(uint32 memberId, int256 communityCost, int256 standaloneCost);
    error SettlementTradesUnbalanced(uint32 slot, int256 sumWh);
    error SettlementPeriodOpen(uint32 period, uint32 settledSlots, uint32 periodSlots);
    error SettlementSharesDistributed(uint32 period);
    error SettlementShareMismatch(uint32 memberId, uint256 share, uint256 expected);
    error SettlementSharesExceedPot(uint32 period, uint256 total, uint256 pot);
    error SettlementSharesIncomplete(uint32 period, uint256 posted, uint256 expected);

    event ConfigScheduled(
        uint32 indexed fromSlot,
        Mode mode,
        SharingRule rule,
        ShareRule shareRule,
        uint32 gridFeePerKwh,
        uint32 managerFeePerKwh,
        uint16 savingsShareBps
    );
    event SettlementStarted(uint32 indexed slot, Mode mode, SharingRule rule, uint32 readings);
    /// @notice Sharing mode: the slot's totals are in; members are paid at these prices
    /// (fractions of base units per kWh).
    event SharingRates(uint32 indexed slot, uint64 supplyWh, uint64 demandWh, uint256 buyNum, uint256 buyDen, uint256 sellNum, uint256 sellDen);
    /// @notice Members settled by one call for `slot` (positive amounts: the member receives),
    /// packed {RESULT_BYTES} = 96 bytes per member, big-endian: account (20 bytes) | contractedWh
    /// (int96) | energyAmount (int128) | imbalanceAmount (int128) | fees (uint128) | retained
    /// (uint128). `energyAmount`: internal energy (trades, schedule or sharing price);
    /// `imbalanceAmount`: at the tariffs; `fees`: grid and manager fees charged; `retained`:
    /// savings kept for the profit-share pot. A member's net is energy + imbalance - fees -
    /// retained. One event per call rather than per member: a fifth of the gas.
    event MembersSettled(uint32 indexed slot, bytes results);
    event ReadingMissing(uint32 indexed slot, address indexed member);
    event ScheduleMissing(uint32 indexed slot);
    event SlotSettled(uint32 indexed slot, uint32 readings);
    event SchedulePosted(uint32 indexed slot, uint32 pricePerKwh, uint32 members, int256 sumWh);
    event ScheduleCompleted(uint32 indexed slot, uint32 pricePerKwh, uint32 members, bytes32 resultHash);
    event PotFunded(uint32 indexed period, address indexed from, uint256 amount);
    event ShareDistributed(uint32 indexed period, address indexed member, uint256 amount);
    event SharesCompleted(uint32 indexed period, ShareRule rule, uint256 pot, uint256 distributed);

    /// @notice Schedules new rules from `fromSlot` on (slots open for trading only).
    /// @dev Requirements: the registry's DEFAULT_ADMIN_ROLE; `fromSlot` not before the market's
    /// next open slot; fees below the price band. Emits {ConfigScheduled}.
    function setConfig(Config calldata config, uint32 fromSlot) external;

    /// @notice The rules in force for `slot`.
    function configAt(uint32 slot) external view returns (Config memory);

    /// @notice Settles (part of) `slot`. `readings` are the next chunk going backwards: the
    /// slot's accepted readings as the oracle committed them, 12 bytes each (memberId | importWh
    /// | exportWh, big-endian), in acceptance order, ending with the last reading not yet
    /// processed; `fromChain` is the oracle's chain value before the chunk's first reading
    /// (0 for the slot's first reading). The first call starts the slot (see the notes).
    /// @dev Anyone may call it. Emits {MembersSettled} for the members paid, and {SettlementStarted},
    /// {SharingRates}, {SlotSettled} as the slot advances.
    function settle(uint32 slot, bytes32 fromChain, bytes calldata readings) external;

    /// @notice Settles, as contracted (see the notes), what is left in a settled slot (ids in
    /// ascending order): market
    /// positions and (optimisation) posted internal trades of members that had no reading, and
    /// trades made in a slot whose mode is not Cda (they are paid at their prices, nothing at the
    /// tariffs). Ids with nothing left are skipped.
    /// @dev Anyone may call it. Emits {MembersSettled} for the members settled, with {ReadingMissing}
    /// where the slot's mode expected a reading.
    function settleUnmetered(uint32 slot, uint32[] calldata memberIds) external;

    /// @notice Posts (part of) the clearing result for an optimisation slot, before its gate
    /// closure: the internal price and, per member in ascending id order, its scheduled net
    /// export and internal trade (12 bytes each: memberId | netExportWh int32 | internalWh int32,
    /// positive internalWh = sells inside the community). Every entry is checked: the trade has
    /// the sign of the net flow, no more energy, and at most {INTERNAL_TRADE_MAX_WH} (trades are
    /// stored as int20, twelve to a storage word); and the member's cost at the posted schedule
    /// is no more than its stand-alone cost of the same flow at the tariffs (individual
    /// rationality). `complete` closes the slot's schedule: internal trades must sum to zero.
    /// @dev Requirements: MANAGER_ROLE; the slot's mode is Optimisation; price within the
    /// tariffs. Emits {SchedulePosted}, and {ScheduleCompleted} with `resultHash` (the engine's
    /// result file, for auditors) when complete.
    function postSchedule(uint32 slot, uint32 pricePerKwh, bytes calldata entries, bool complete, bytes32 resultHash)
        external;

    /// @notice A member's posted internal trade in an optimisation slot (0 once settled).
    function scheduledInternalWh(uint32 slot, uint32 memberId) external view returns (int256);

    /// @notice Adds `amount` tokens of external revenue (e.g. flexibility sold by the aggregator)
    /// to `period`'s pot; the caller approved the market for them. Emits {PotFunded}.
    function fundPot(uint32 period, uint256 amount) external;

    /// @notice Pays (part of) `period`'s pot as shares to members, in ascending member id order.
    /// Equal and proportional shares are recomputed here and must match: equal gives each of the
    /// n active members `pot / n`, plus one base unit to the first `pot % n` of them;
    /// proportional gives each member with a contribution c (energy supplied to other members
    /// in the period) `pot * c / C`, rounded down, and the remainder rolls over to the next
    /// period not yet distributed. Shapley shares are computed off-chain and posted by the manager: none is
    /// negative and they must sum exactly to the pot.
    /// @dev Requirements: every slot of the period settled; Shapley: MANAGER_ROLE.
    /// Emits {ShareDistributed} each and {SharesCompleted} when done.
    function distributeShares(uint32 period, uint32[] calldata memberIds, uint256[] calldata shares) external;

    function slotState(uint32 slot) external view returns (SlotView memory);

    function period(uint32 periodIndex) external view returns (Period memory);

    /// @notice Energy member `memberId` supplied to other members in `periodIndex` (Wh), counted
    /// when the community's share rule is proportional (up to 2^36 - 1 Wh, where it stays).
    function contributionOf(uint32 periodIndex, uint32 memberId) external view returns (uint64);

    /// @notice Slots per profit-share period.
    function periodSlots() external view returns (uint32);

    /// @notice The reading deadline of `slot`: the end of the slot plus the reading window.
    function readingDeadline(uint32 slot) external view returns (uint64);
}

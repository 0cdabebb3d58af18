// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ICommunityRegistry} from "./interfaces/ICommunityRegistry.sol";
import {ICommunitySettlement} from "./interfaces/ICommunitySettlement.sol";
import {IMarketLedger, LEDGER_CLOSE_POSITION, LEDGER_PAYMENT_BYTES} from "./interfaces/IMarketLedger.sol";
import {IMeterOracle} from "./interfaces/IMeterOracle.sol";
import {SharingPrices} from "./libraries/SharingPrices.sol";

/// @title Peerwatt settlement: slots against meter readings, clearing results, profit shares
/// @notice See {ICommunitySettlement}. Money moves only through the market's ledger
/// ({IMarketLedger}), which gives the supplier the residual of every application: each chunk,
/// and so each slot, is budget-balanced to the base unit, and the market stays solvent.
/// @dev Per member and slot, settlement reads the member's address and position (two cold
/// words) and writes its account (one word) and position; the reading comes from calldata,
/// checked against the oracle's hash chain. A chunk costs one packed read of the market, one
/// packed ledger application and one event, so the per-member work is storage and arithmetic
/// only. Nothing loops over members beyond the chunk a caller passes. The profit-share pot is
/// this contract's own account in the market.
contract CommunitySettlement is ICommunitySettlement {
    using SafeCast for uint256;
    using SafeCast for int256;

    /// @notice Bytes per reading in a settlement chunk: memberId | importWh | exportWh.
    uint256 public constant CHUNK_READING_BYTES = 12;
    /// @notice Bytes per member in a posted schedule: memberId | netExportWh | internalWh.
    uint256 public constant SCHEDULE_ENTRY_BYTES = 12;
    /// @notice Bytes per member in {MembersSettled}.
    uint256 public constant RESULT_BYTES = 96;
    /// @notice Largest posted internal trade, in Wh per member and slot (int20: 2 MW for 15 minutes).
    int256 public constant INTERNAL_TRADE_MAX_WH = 2 ** 19 - 1;
    uint256 private constant LANES = 12; // 20-bit internal trades per storage word
    uint256 private constant LANE_BITS = 20;
    uint256 private constant LANE_MASK = 2 ** 20 - 1;
    uint256 private constant CONTRIBUTION_LANES = 7; // 36-bit period contributions per word
    uint256 private constant CONTRIBUTION_BITS = 36;
    uint256 private constant CONTRIBUTION_MAX = 2 ** 36 - 1; // 68.7 GWh a period: saturates, never reverts
    /// @notice Largest profit-share pot of a period (2^88 - 1 base units).
    uint256 public constant MAX_POT = type(uint88).max;

    /// @notice The community market: registry, roles, tariffs and the accounts ledger.
    address public immutable market;
    IMeterOracle public immutable oracle;
    /// @notice Accounts receiving the grid (DSO) and manager fees.
    address public immutable dsoAccount;
    address public immutable managerAccount;
    uint32 public immutable periodSlots;
    uint32 public immutable readingWindowSeconds;
    uint64 private immutable _epoch;
    uint32 private immutable _slotSeconds;
    bytes32 private immutable _managerRole;

    /// @dev One storage word: the rules from `fromSlot` on.
    struct ConfigWord {
        uint32 fromSlot;
        Mode mode;
        SharingRule rule;
        ShareRule shareRule;
        uint32 gridFeePerKwh;
        uint32 managerFeePerKwh;
        uint16 savingsShareBps;
    }

    /// @dev The verified position of a pass: the oracle chain value after the last unprocessed
    /// reading, and how many readings remain before it.
    struct Cursor {
        uint224 chain;
        uint32 remaining;
    }

    /// @dev One storage word per slot.
    struct SlotWord {
        uint64 supplyWh;
        uint64 demandWh;
        uint32 readings;
        Phase phase;
        Mode mode;
        SharingRule rule;
        uint32 importPrice; // tariffs frozen when settlement starts
        uint32 exportPrice;
    }

    /// @dev A posted schedule's progress (one word per optimisation slot).
    struct ScheduleWord {
        uint32 price;
        uint32 lastMemberId;
        uint32 members;
        int64 sumWh;
        bool complete;
    }

    /// @dev Distribution of a period's pot in progress.
    struct ShareProgress {
        uint32 lastMemberId;
        uint32 posted;
        uint32 expected;
        uint128 distributed;
    }

    /// @dev Total contributions of a period (proportional rule).
    struct Contributions {
        uint128 totalWh;
        uint32 contributors;
    }

    /// @dev Everything a chunk's members share, kept in memory.
    struct Context {
        uint32 slot;
        Mode mode;
        uint256 importPrice;
        uint256 exportPrice;
        uint256 gridFee;
        uint256 managerFee;
        uint256 savingsBps;
        bool countContributions;
        SharingPrices.Price buy;
        SharingPrices.Price sell;
        uint64 supplyWh;
        uint64 demandWh;
        uint256 schedulePrice;
        bool hasSchedule;
        uint256 gridFeeTotal; // what the chunk's members owe the DSO, the manager and the pot
        uint256 managerFeeTotal;
        uint256 retainedTotal;
        uint256 contributedWh; // the chunk's new contributions and contributors (proportional)
        uint256 newContributors;
    }

    /// @dev A call's packed outputs: payment records for the ledger ({LEDGER_CLOSE_POSITION}) and
    /// member results for {MembersSettled}.
    struct Output {
        bytes payments;
        bytes results;
        uint256 paymentCount;
        uint256 resultCount;
    }

    /// @dev One member's result.
    struct Result {
        int256 contractedWh;
        int256 energyAmount;
        int256 imbalanceAmount;
        uint256 gridFee;
        uint256 managerFee;
        uint256 retained;
        uint256 contributionWh;
    }

    ConfigWord[] private _configs;
    mapping(uint32 slot => Cursor) private _cursors;
    mapping(uint32 slot => SlotWord) private _slots;
    mapping(uint32 slot => ScheduleWord) private _schedules;
    // slot << 32 | memberId / LANES => twelve int20 internal trades
    mapping(uint256 laneKey => uint256) private _lanes;
    mapping(uint32 period => Period) private _periods;
    mapping(uint32 period => ShareProgress) private _shareProgress;
    mapping(uint32 period => Contributions) private _contributionTotals;
    // period << 32 | memberId / CONTRIBUTION_LANES => seven uint36 contributions (Wh)
    mapping(uint256 contributionKey => uint256) private _contributions;
    // one more than the highest period whose distribution has begun: rollovers go there, to a
    // period no distribution has touched yet
    uint32 private _shareFrontier;

    /// @param communityMarket the market (registry and ledger); this contract needs its
    /// SETTLEMENT_ROLE, and must be the oracle's sealer
    /// @param meterOracle the oracle whose committed readings are settled
    /// @param dso account receiving grid fees
    /// @param manager account receiving manager fees
    /// @param config the rules from slot 0 on
    /// @param periodSlots_ slots per profit-share period (e.g. 96: a day of 15-minute slots)
    /// @param readingWindowSeconds_ how long after a slot's end readings are awaited
    constructor(
        address communityMarket,
        IMeterOracle meterOracle,
        address dso,
        address manager,
        Config memory config,
        uint32 periodSlots_,
        uint32 readingWindowSeconds_
    ) {
        if (communityMarket == address(0) || address(meterOracle) == address(0) || dso == address(0) || manager == address(0)) {
            revert SettlementZeroAddress();
        }
        if (periodSlots_ == 0) revert SettlementInvalidPeriod(periodSlots_);
        market = communityMarket;
        oracle = meterOracle;
        dsoAccount = dso;
        managerAccount = manager;
        periodSlots = periodSlots_;
        readingWindowSeconds = readingWindowSeconds_;
        (_epoch, _slotSeconds,) = ICommunityRegistry(communityMarket).slotClock();
        _managerRole = keccak256("MANAGER_ROLE");
        _pushConfig(config, 0);
    }

    // ------------------------------------------------------------------- rules

    /// @inheritdoc ICommunitySettlement
    function setConfig(Config calldata config, uint32 fromSlot) external {
        if (!IAccessControl(market).hasRole(bytes32(0), msg.sender)) revert SettlementNotAdmin(msg.sender);
        uint32 firstOpen = ICommunityRegistry(market).nextOpenSlot();
        ConfigWord storage last = _configs[_configs.length - 1];
        if (fromSlot < firstOpen || fromSlot < last.fromSlot) revert SettlementConfigNotFuture(fromSlot, firstOpen);
        if (fromSlot == last.fromSlot) _configs.pop(); // replaces a change not yet in force
        _pushConfig(config, fromSlot);
    }

    /// @inheritdoc ICommunitySettlement
    function configAt(uint32 slot) public view returns (Config memory) {
        ConfigWord memory word = _configWordAt(slot);
        return Config(
            word.mode, word.rule, word.shareRule, word.gridFeePerKwh, word.managerFeePerKwh, word.savingsShareBps
        );
    }

    function _pushConfig(Config memory config, uint32 fromSlot) private {
        if (config.savingsShareBps > 10_000) revert SettlementInvalidConfig();
        ICommunityRegistry.MarketParams memory params = ICommunityRegistry(market).marketParams();
        if (uint256(config.gridFeePerKwh) + config.managerFeePerKwh >= params.maxPricePerKwh) {
            revert SettlementInvalidConfig();
        }
        _configs.push(
            ConfigWord(
                fromSlot,
                config.mode,
                config.rule,
                config.shareRule,
                config.gridFeePerKwh,
                config.managerFeePerKwh,
                config.savingsShareBps
            )
        );
        emit ConfigScheduled(
            fromSlot,
            config.mode,
            config.rule,
            config.shareRule,
            config.gridFeePerKwh,
            config.managerFeePerKwh,
            config.savingsShareBps
        );
    }

    /// @dev Binary search of the last change in force at `slot` (the first is at slot 0).
    function _configWordAt(uint32 slot) private view returns (ConfigWord memory) {
        uint256 low = 0;
        uint256 high = _configs.length;
        while (high - low > 1) {
            uint256 mid = (low + high) / 2;
            if (_configs[mid].fromSlot <= slot) low = mid;
            else high = mid;
        }
        return _configs[low];
    }

    // ------------------------------------------------------------- settlement

    /// @inheritdoc ICommunitySettlement
    function settle(uint32 slot, bytes32 fromChain, bytes calldata readings) external {
        if (readings.length % CHUNK_READING_BYTES != 0) revert SettlementMalformedChunk(readings.length);
        SlotWord memory state = _slots[slot];
        if (state.phase == Phase.Settled) revert SettlementAlreadySettled(slot);
        Cursor memory cursor;
        if (state.phase == Phase.Open) (state, cursor) = _start(slot);
        else cursor = _cursors[slot];

        uint256 count = readings.length / CHUNK_READING_BYTES;
        if (count != 0) {
            if (count > cursor.remaining || _replay(slot, uint224(uint256(fromChain)), readings) != cursor.chain) {
                revert SettlementChunkMismatch(slot, cursor.remaining);
            }
            unchecked {
                cursor.remaining -= uint32(count); // count <= remaining
            }
            if (cursor.remaining == 0 && fromChain != 0) revert SettlementChunkMismatch(slot, count);
            cursor.chain = uint224(uint256(fromChain));
            if (state.phase == Phase.Tallying) _tally(state, readings);
            else _pay(slot, state, readings);
        }
        if (cursor.remaining == 0) (state, cursor) = _finishPass(slot, state);
        _slots[slot] = state;
        _cursors[slot] = cursor;
    }

    /// @inheritdoc ICommunitySettlement
    function settleUnmetered(uint32 slot, uint32[] calldata memberIds) external {
        SlotWord memory state = _slots[slot];
        if (state.phase != Phase.Settled) revert SettlementNotSettled(slot);
        Context memory ctx = _context(slot, state);
        // ascending ids: each member once (positions are all read before any closes)
        bytes memory members = IMarketLedger(market).settlementPositions(slot, _packIds(memberIds), 4, true);
        Output memory out = _output(memberIds.length);
        Result memory result;
        for (uint256 i = 0; i < memberIds.length; ++i) {
            (address account, uint256 position) = _memberAt(members, i);
            bool traded = uint128(position) != 0; // boughtWh or soldWh
            if (traded) {
                _contracted(ctx, result, position);
            } else if (ctx.mode == Mode.Optimisation && ctx.hasSchedule) {
                int256 internalWh = _takeLane(slot, memberIds[i]);
                if (internalWh == 0) continue;
                _scheduled(ctx, result, internalWh);
            } else {
                continue;
            }
            if (ctx.mode != Mode.Sharing) emit ReadingMissing(slot, account);
            _record(ctx, out, account, result, traded ? _paidOf(position) : 0, traded);
            _addContribution(ctx, memberIds[i], result.contributionWh);
        }
        _apply(slot, out, ctx);
    }

    /// @dev Starts a slot: checks its deadline (or that every member's reading is in), seals it
    /// at the oracle and freezes its rules and tariffs.
    function _start(uint32 slot) private returns (SlotWord memory state, Cursor memory cursor) {
        uint64 slotEnd = _slotStart(slot + 1);
        uint64 deadline = slotEnd + readingWindowSeconds;
        if (block.timestamp < deadline) {
            (, uint32 count) = oracle.slotCommitment(slot);
            if (block.timestamp < slotEnd || count < ICommunityRegistry(market).memberCount()) {
                revert SettlementTooEarly(slot, deadline, uint64(block.timestamp));
            }
        }
        (bytes32 chain, uint32 readings) = oracle.sealSlot(slot);
        ConfigWord memory config = _configWordAt(slot);
        ICommunityRegistry.Tariffs memory tariffs = ICommunityRegistry(market).tariffs();
        state = SlotWord({
            supplyWh: 0,
            demandWh: 0,
            readings: readings,
            phase: config.mode == Mode.Sharing ? Phase.Tallying : Phase.Paying,
            mode: config.mode,
            rule: config.rule,
            importPrice: tariffs.importPricePerKwh,
            exportPrice: tariffs.exportPricePerKwh
        });
        cursor = Cursor(uint224(uint256(chain)), readings);
        emit SettlementStarted(slot, config.mode, config.rule, readings);
        if (config.mode == Mode.Optimisation && !_schedules[slot].complete) emit ScheduleMissing(slot);
    }

    /// @dev A pass is done: the tally hands over to payments (from the last reading again), and
    /// payments settle the slot. Runs at most twice (a slot without readings).
    function _finishPass(uint32 slot, SlotWord memory state) private returns (SlotWord memory, Cursor memory cursor) {
        if (state.phase == Phase.Tallying) {
            state.phase = Phase.Paying;
            (bytes32 chain,) = oracle.slotCommitment(slot);
            cursor = Cursor(uint224(uint256(chain)), state.readings);
            Context memory ctx = _context(slot, state);
            emit SharingRates(
                slot, state.supplyWh, state.demandWh, ctx.buy.num, ctx.buy.den, ctx.sell.num, ctx.sell.den
            );
            if (state.readings != 0) return (state, cursor);
        }
        state.phase = Phase.Settled;
        ++_periods[slot / periodSlots].settledSlots;
        emit SlotSettled(slot, state.readings);
        return (state, cursor);
    }

    /// @dev Replays the oracle's hash chain over a chunk (see {IMeterOracle-slotCommitment}).
    function _replay(uint32 slot, uint224 fromChain, bytes calldata readings) private pure returns (uint224) {
        uint256 chain = fromChain;
        assembly ("memory-safe") {
            let ptr := mload(0x40) // scratch beyond the free memory pointer
            mstore(add(ptr, 0x40), slot)
            let end := add(readings.offset, readings.length)
            for { let p := readings.offset } lt(p, end) { p := add(p, 12) } {
                let word := shr(160, calldataload(p)) // memberId | importWh | exportWh
                mstore(ptr, chain)
                mstore(add(ptr, 0x20), shr(64, word))
                mstore(add(ptr, 0x60), and(shr(32, word), 0xffffffff))
                mstore(add(ptr, 0x80), and(word, 0xffffffff))
                chain := and(keccak256(ptr, 0xa0), 0xffffffffffffffffffffffffffffffffffffffffffffffffffffffff) // uint224
            }
        }
        return uint224(chain);
    }

    /// @dev Sharing mode, first pass: sums net exports (supply) and net imports (demand).
    function _tally(SlotWord memory state, bytes calldata readings) private pure {
        uint256 supply = state.supplyWh;
        uint256 demand = state.demandWh;
        for (uint256 offset = 0; offset < readings.length; offset += CHUNK_READING_BYTES) {
            (, uint256 importWh, uint256 exportWh) = _readingAt(readings, offset);
            if (exportWh > importWh) supply += exportWh - importWh;
            else demand += importWh - exportWh;
        }
        state.supplyWh = supply.toUint64();
        state.demandWh = demand.toUint64();
    }

    /// @dev Second (or only) pass: each member's result, applied in one ledger call.
    function _pay(uint32 slot, SlotWord memory state, bytes calldata readings) private {
        uint256 count = readings.length / CHUNK_READING_BYTES;
        Context memory ctx = _context(slot, state);
        bool cda = ctx.mode == Mode.Cda;
        bytes memory members = IMarketLedger(market).settlementPositions(slot, readings, CHUNK_READING_BYTES, cda);
        Output memory out = _output(count);
        Result memory result;
        bool sharing = ctx.mode == Mode.Sharing;
        // unchecked: readings are uint32 Wh and positions uint64, so every figure stays below
        // 2^120 (see {_record}); the loop index is below the chunk's length
        unchecked {
            for (uint256 i = 0; i < count; ++i) {
                (uint32 memberId, uint256 importWh, uint256 exportWh) = _readingAt(readings, i * CHUNK_READING_BYTES);
                (address account, uint256 position) = _memberAt(members, i);
                int256 meteredWh = int256(exportWh) - int256(importWh);
                if (sharing) {
                    _shared(ctx, result, meteredWh);
                } else {
                    if (cda) _contracted(ctx, result, position);
                    else _scheduled(ctx, result, ctx.hasSchedule ? _takeLane(slot, memberId) : int256(0));
                    result.imbalanceAmount = _tariffAmount(ctx, meteredWh - result.contractedWh);
                }
                _retainSavings(ctx, result, meteredWh);
                _record(ctx, out, account, result, _paidOf(position), cda);
                _addContribution(ctx, memberId, result.contributionWh);
            }
        }
        _apply(slot, out, ctx);
    }

    /// @dev Trades as contracted (`position` as {IMarketLedger-settlementPositions} packs it):
    /// paid at their prices, fees on the traded volume.
    function _contracted(Context memory ctx, Result memory result, uint256 position) private pure {
        uint256 boughtWh = uint64(position);
        uint256 soldWh = uint64(position >> 64);
        unchecked {
            // uint64 fields: differences and sums fit easily
            result.contractedWh = int256(soldWh) - int256(boughtWh);
            result.energyAmount = int256(position >> 192) - int256(_paidOf(position));
            _chargeFees(ctx, result, boughtWh + soldWh);
        }
        result.imbalanceAmount = 0;
        result.retained = 0;
        result.contributionWh = soldWh;
    }

    /// @dev A posted internal trade at the slot's posted price, fees on its volume.
    function _scheduled(Context memory ctx, Result memory result, int256 internalWh) private pure {
        uint256 volume = _abs(internalWh);
        uint256 value;
        unchecked {
            value = (volume * ctx.schedulePrice) / 1000; // int20 Wh x uint32 price
        }
        result.contractedWh = internalWh;
        result.energyAmount = internalWh >= 0 ? int256(value) : -int256(value);
        result.imbalanceAmount = 0;
        result.retained = 0;
        result.contributionWh = internalWh > 0 ? uint256(internalWh) : 0;
        _chargeFees(ctx, result, volume);
    }

    /// @dev Sharing mode: the rule's price for the member's net import or export.
    function _shared(Context memory ctx, Result memory result, int256 meteredWh) private pure {
        result.contractedWh = 0;
        result.imbalanceAmount = 0;
        result.gridFee = 0;
        result.managerFee = 0;
        result.retained = 0;
        result.contributionWh = 0;
        if (meteredWh >= 0) {
            uint256 supplied = uint256(meteredWh);
            result.energyAmount = int256(SharingPrices.valueAt(supplied, ctx.sell));
            // energy that reached other members: the exporters' pro-rata part of min(S, D)
            if (ctx.supplyWh != 0) {
                uint256 internalWh = ctx.supplyWh < ctx.demandWh ? ctx.supplyWh : ctx.demandWh;
                result.contributionWh = (supplied * internalWh) / ctx.supplyWh;
            }
        } else {
            result.energyAmount = -int256(SharingPrices.valueAt(uint256(-meteredWh), ctx.buy));
        }
    }

    function _chargeFees(Context memory ctx, Result memory result, uint256 volumeWh) private pure {
        unchecked {
            // below 2^65 Wh x uint32 fees
            result.gridFee = (volumeWh * ctx.gridFee) / 1000;
            result.managerFee = (volumeWh * ctx.managerFee) / 1000;
        }
    }

    /// @dev Energy at the tariffs: sold at the export price, bought at the import price.
    function _tariffAmount(Context memory ctx, int256 netExportWh) private pure returns (int256) {
        unchecked {
            // |netExportWh| below 2^66 (a reading less a position), uint32 tariffs
            if (netExportWh >= 0) return int256((uint256(netExportWh) * ctx.exportPrice) / 1000);
            return -int256((uint256(-netExportWh) * ctx.importPrice) / 1000);
        }
    }

    /// @dev Keeps `savingsBps` of the member's savings against its stand-alone bill (its metered
    /// flow at the tariffs) for the period's pot.
    function _retainSavings(Context memory ctx, Result memory result, int256 meteredWh) private pure {
        if (ctx.savingsBps == 0) return;
        unchecked {
            // amounts below 2^100, bps at most 10,000
            int256 net = result.energyAmount + result.imbalanceAmount - int256(result.gridFee + result.managerFee);
            int256 saving = net - _tariffAmount(ctx, meteredWh);
            if (saving > 0) result.retained = (uint256(saving) * ctx.savingsBps) / 10_000;
        }
    }

    /// @dev Appends the member's result and payment. `paid` (the trade payments held in its
    /// position) already left its balance: the ledger releases it when `close` closes the
    /// position. Every figure fits its field: Wh below 2^65, amounts and fees below 2^97.
    function _record(
        Context memory ctx,
        Output memory out,
        address account,
        Result memory result,
        uint256 paid,
        bool close
    ) private pure {
        uint256 fees;
        int256 net;
        unchecked {
            // per member below 2^100; a chunk's totals below 2^132
            fees = result.gridFee + result.managerFee;
            ctx.gridFeeTotal += result.gridFee;
            ctx.managerFeeTotal += result.managerFee;
            ctx.retainedTotal += result.retained;
            net = result.energyAmount + result.imbalanceAmount - int256(fees + result.retained) + int256(paid);
        }
        _appendPayment(out, account, net, close);
        uint256 head = (uint256(uint160(account)) << 96) | uint96(int96(result.contractedWh));
        uint256 amounts = (uint256(uint128(int128(result.energyAmount))) << 128)
            | uint128(int128(result.imbalanceAmount));
        uint256 charges = (fees << 128) | result.retained;
        bytes memory results = out.results;
        uint256 offset;
        unchecked {
            offset = out.resultCount++ * RESULT_BYTES; // within the buffer allocated for the chunk
        }
        assembly ("memory-safe") {
            let at := add(add(results, 0x20), offset)
            mstore(at, head)
            mstore(add(at, 0x20), amounts)
            mstore(add(at, 0x40), charges)
        }
    }

    /// @dev Buffers for `members` results and payments (plus the DSO, the manager and the pot).
    function _output(uint256 members) private pure returns (Output memory out) {
        out.payments = new bytes((members + 3) * LEDGER_PAYMENT_BYTES);
        out.results = new bytes(members * RESULT_BYTES);
    }

    /// @dev Appends a ledger payment record. Amounts stay far inside its int95: a member's net is
    /// below 2^90 (energy below 2^65, imbalance and fees below 2^88, retained below them) and
    /// shares are at most the pot, below 2^88 ({MAX_POT}).
    function _appendPayment(Output memory out, address account, int256 amount, bool close) private pure {
        uint256 record = (uint256(uint160(account)) << 96) | (uint256(amount << 1) & (2 ** 96 - 1));
        if (close) record |= LEDGER_CLOSE_POSITION;
        bytes memory payments = out.payments;
        uint256 offset;
        unchecked {
            offset = out.paymentCount++ * LEDGER_PAYMENT_BYTES; // within the buffer
        }
        assembly ("memory-safe") {
            mstore(add(add(payments, 0x20), offset), record)
        }
    }

    /// @dev Appends the fee and pot credits, emits the results and applies the payments; the
    /// ledger gives the supplier the residual.
    function _apply(uint32 slot, Output memory out, Context memory ctx) private {
        if (ctx.gridFeeTotal != 0) _appendPayment(out, dsoAccount, int256(ctx.gridFeeTotal), false);
        if (ctx.managerFeeTotal != 0) _appendPayment(out, managerAccount, int256(ctx.managerFeeTotal), false);
        if (ctx.retainedTotal != 0) {
            _appendPayment(out, address(this), int256(ctx.retainedTotal), false);
            _addToPot(slot / periodSlots, ctx.retainedTotal);
        }
        if (ctx.contributedWh != 0) {
            Contributions storage totals = _contributionTotals[slot / periodSlots];
            totals.totalWh += ctx.contributedWh.toUint128();
            totals.contributors += uint32(ctx.newContributors); // at most one per member id
        }
        bytes memory payments = out.payments;
        bytes memory results = out.results;
        uint256 paymentBytes = out.paymentCount * LEDGER_PAYMENT_BYTES;
        uint256 resultBytes = out.resultCount * RESULT_BYTES;
        assembly ("memory-safe") {
            mstore(payments, paymentBytes) // trim to the records written
            mstore(results, resultBytes)
        }
        if (resultBytes != 0) emit MembersSettled(slot, results);
        if (paymentBytes != 0) IMarketLedger(market).applySettlement(slot, payments);
    }

    function _context(uint32 slot, SlotWord memory state) private view returns (Context memory ctx) {
        ConfigWord memory config = _configWordAt(slot);
        ctx.slot = slot;
        ctx.mode = state.mode;
        ctx.importPrice = state.importPrice;
        ctx.exportPrice = state.exportPrice;
        ctx.gridFee = config.gridFeePerKwh;
        ctx.managerFee = config.managerFeePerKwh;
        ctx.savingsBps = config.savingsShareBps;
        ctx.countContributions = config.shareRule == ShareRule.Proportional;
        ctx.supplyWh = state.supplyWh;
        ctx.demandWh = state.demandWh;
        if (state.mode == Mode.Sharing) {
            (ctx.buy, ctx.sell) = SharingPrices.prices(
                uint8(state.rule), state.supplyWh, state.demandWh, state.importPrice, state.exportPrice
            );
        } else if (state.mode == Mode.Optimisation) {
            ScheduleWord memory schedule = _schedules[slot];
            ctx.hasSchedule = schedule.complete;
            ctx.schedulePrice = schedule.price;
        }
    }

    function _readingAt(bytes calldata readings, uint256 offset)
        private
        pure
        returns (uint32 memberId, uint256 importWh, uint256 exportWh)
    {
        uint256 word = _packedAt(readings, offset);
        return (uint32(word >> 64), (word >> 32) & 0xffffffff, word & 0xffffffff);
    }

    /// @dev The 12-byte record at `offset` of packed calldata (readings or schedule entries).
    function _packedAt(bytes calldata data, uint256 offset) private pure returns (uint256 word) {
        assembly ("memory-safe") {
            word := shr(160, calldataload(add(data.offset, offset)))
        }
    }

    /// @dev The account and packed position of the `i`-th member of a
    /// {IMarketLedger-settlementPositions} answer.
    function _memberAt(bytes memory members, uint256 i) private pure returns (address account, uint256 position) {
        assembly ("memory-safe") {
            let at := add(add(members, 0x20), mul(i, 0x40))
            account := mload(at)
            position := mload(add(at, 0x20))
        }
    }

    function _paidOf(uint256 position) private pure returns (uint256) {
        return uint64(position >> 128);
    }

    /// @dev Member ids as 4-byte big-endian records (what the ledger reads ids from); checks
    /// they ascend, so each member appears once.
    function _packIds(uint32[] calldata memberIds) private pure returns (bytes memory packed) {
        packed = new bytes(memberIds.length * 4 + 28); // room for the last 32-byte store
        uint32 previous = 0;
        for (uint256 i = 0; i < memberIds.length; ++i) {
            uint32 memberId = memberIds[i];
            if (memberId <= previous) revert SettlementMembersNotAscending(memberId, previous);
            previous = memberId;
            assembly ("memory-safe") {
                mstore(add(add(packed, 0x20), mul(i, 4)), shl(224, memberId))
            }
        }
        uint256 length = memberIds.length * 4;
        assembly ("memory-safe") {
            mstore(packed, length)
        }
    }

    /// @dev Adds to the member's contribution in the slot's period (proportional rule); seven
    /// members share a storage word, so a period's first write is a seventh of a fresh word.
    function _addContribution(Context memory ctx, uint32 memberId, uint256 contributionWh) private {
        if (!ctx.countContributions || contributionWh == 0) return;
        uint256 key = (uint256(ctx.slot / periodSlots) << 32) | (memberId / CONTRIBUTION_LANES);
        uint256 shift = (memberId % CONTRIBUTION_LANES) * CONTRIBUTION_BITS;
        uint256 word = _contributions[key];
        uint256 before = (word >> shift) & CONTRIBUTION_MAX;
        unchecked {
            // a member's contribution in a slot is below 2^65 Wh
            uint256 total = before + contributionWh;
            if (total > CONTRIBUTION_MAX) total = CONTRIBUTION_MAX;
            _contributions[key] = (word & ~(CONTRIBUTION_MAX << shift)) | (total << shift);
            ctx.contributedWh += total - before;
            if (before == 0) ++ctx.newContributors;
        }
    }

    function _contributionOf(uint32 periodIndex, uint32 memberId) private view returns (uint256) {
        uint256 word = _contributions[(uint256(periodIndex) << 32) | (memberId / CONTRIBUTION_LANES)];
        return (word >> ((memberId % CONTRIBUTION_LANES) * CONTRIBUTION_BITS)) & CONTRIBUTION_MAX;
    }

    // ----------------------------------------------------- clearing results

    /// @inheritdoc ICommunitySettlement
    function postSchedule(uint32 slot, uint32 pricePerKwh, bytes calldata entries, bool complete, bytes32 resultHash)
        external
    {
        if (!IAccessControl(market).hasRole(_managerRole, msg.sender)) revert SettlementNotManager(msg.sender);
        if (entries.length % SCHEDULE_ENTRY_BYTES != 0) revert SettlementMalformedChunk(entries.length);
        Mode mode = _configWordAt(slot).mode;
        if (mode != Mode.Optimisation) revert SettlementWrongMode(slot, mode);
        if (block.timestamp >= ICommunityRegistry(market).gateClosure(slot)) revert SettlementGateClosed(slot);
        ScheduleWord memory schedule = _schedules[slot];
        if (schedule.complete) revert SettlementScheduleComplete(slot);
        ICommunityRegistry.Tariffs memory tariffs = ICommunityRegistry(market).tariffs();
        if (schedule.members == 0 && schedule.lastMemberId == 0) {
            if (pricePerKwh < tariffs.exportPricePerKwh || pricePerKwh > tariffs.importPricePerKwh) {
                revert SettlementPriceOutOfBand(slot, pricePerKwh, tariffs.exportPricePerKwh, tariffs.importPricePerKwh);
            }
            schedule.price = pricePerKwh;
        } else if (pricePerKwh != schedule.price) {
            revert SettlementPriceChanged(slot, pricePerKwh, schedule.price);
        }
        ConfigWord memory config = _configWordAt(slot);
        Rationality memory rational = _rationality(pricePerKwh, config, tariffs);
        int256 sum = schedule.sumWh;
        uint32 previous = schedule.lastMemberId;
        (bool sellersGain, bool buyersGain) = (rational.sellersGain, rational.buyersGain);
        uint256 laneKey = type(uint256).max;
        uint256 laneWord = 0;
        // unchecked: int32 figures, fewer than 2^32 entries, offsets within `entries`
        unchecked {
            for (uint256 offset = 0; offset < entries.length; offset += SCHEDULE_ENTRY_BYTES) {
                uint256 entry = _packedAt(entries, offset); // memberId | netExportWh | internalWh
                uint32 memberId = uint32(entry >> 64);
                int256 netExportWh = int32(uint32(entry >> 32));
                int256 internalWh = int32(uint32(entry));
                if (memberId <= previous) revert SettlementMembersNotAscending(memberId, previous);
                previous = memberId;
                if (internalWh != 0) {
                    // the trade goes with the flow, is no larger, and the price makes the member
                    // no worse off than alone (see {_checkRational})
                    bool fits = internalWh > 0
                        ? internalWh <= netExportWh && internalWh <= INTERNAL_TRADE_MAX_WH && sellersGain
                        : internalWh >= netExportWh && internalWh >= -INTERNAL_TRADE_MAX_WH && buyersGain;
                    if (!fits) _checkRational(memberId, netExportWh, internalWh, rational);
                    sum += internalWh;
                }
                // internal trades packed twelve to a word, written once per word
                uint256 key = (uint256(slot) << 32) | (memberId / LANES);
                if (key != laneKey) {
                    if (laneKey != type(uint256).max) _lanes[laneKey] = laneWord;
                    laneKey = key;
                    laneWord = _lanes[key];
                }
                uint256 shift = (memberId % LANES) * LANE_BITS;
                laneWord = (laneWord & ~(LANE_MASK << shift)) | ((uint256(internalWh) & LANE_MASK) << shift);
            }
        }
        schedule.lastMemberId = previous;
        if (laneKey != type(uint256).max) _lanes[laneKey] = laneWord;
        // member ids are handed out 1, 2, ... and never freed: if the highest is registered, all are
        if (entries.length != 0 && ICommunityRegistry(market).memberAddress(schedule.lastMemberId) == address(0)) {
            revert SettlementUnknownMember(schedule.lastMemberId);
        }
        schedule.members += uint32(entries.length / SCHEDULE_ENTRY_BYTES);
        schedule.sumWh = int64(sum);
        emit SchedulePosted(slot, pricePerKwh, schedule.members, sum);
        if (complete) {
            if (sum != 0) revert SettlementTradesUnbalanced(slot, sum);
            schedule.complete = true;
            emit ScheduleCompleted(slot, schedule.price, schedule.members, resultHash);
        }
        _schedules[slot] = schedule;
    }

    /// @inheritdoc ICommunitySettlement
    function scheduledInternalWh(uint32 slot, uint32 memberId) external view returns (int256) {
        return _laneAt(_lanes[(uint256(slot) << 32) | (memberId / LANES)], memberId);
    }

    /// @dev What decides individual rationality at one posted price (see {_checkRational}).
    struct Rationality {
        uint256 price;
        uint256 fee;
        uint256 importPrice;
        uint256 exportPrice;
        bool sellersGain; // price - fee >= export tariff
        bool buyersGain; // price + fee <= import tariff
    }

    function _rationality(uint32 price, ConfigWord memory config, ICommunityRegistry.Tariffs memory tariffs)
        private
        pure
        returns (Rationality memory r)
    {
        r.price = price;
        r.fee = uint256(config.gridFeePerKwh) + config.managerFeePerKwh;
        r.importPrice = tariffs.importPricePerKwh;
        r.exportPrice = tariffs.exportPricePerKwh;
        r.sellersGain = r.price >= r.exportPrice + r.fee;
        r.buyersGain = r.price + r.fee <= r.importPrice;
    }

    /// @dev Individual rationality of one posted entry, exact (reverts where it fails; the
    /// posting loop checks the same conditions inline first): the trade goes with the member's
    /// flow and is no larger, and the member's cost at the posted schedule -- its trade at the
    /// internal price plus fees, the rest of its flow at the tariffs -- is no more than the same
    /// flow at the tariffs alone. Given the first condition the second reduces to the price:
    /// a seller (x >= q > 0) pays -(x - q)Pe - qp + qf <= -xPe iff p >= Pe + f, and a buyer
    /// (x <= q < 0, b = -q) pays (-x - b)Pi + bp + bf <= -xPi iff p + f <= Pi; so the costs
    /// (in Wh x base units per kWh) are computed only to report a violation.
    function _checkRational(uint32 memberId, int256 netExportWh, int256 internalWh, Rationality memory r)
        private
        pure
    {
        if (
            internalWh > INTERNAL_TRADE_MAX_WH || internalWh < -INTERNAL_TRADE_MAX_WH || (internalWh > 0 && internalWh > netExportWh)
                || (internalWh < 0 && internalWh < netExportWh)
        ) {
            revert SettlementTradeExceedsFlow(memberId, netExportWh, internalWh);
        }
        if ((internalWh > 0 && !r.sellersGain) || (internalWh < 0 && !r.buyersGain)) {
            int256 pi = int256(r.importPrice);
            int256 pe = int256(r.exportPrice);
            revert SettlementNotRational(
                memberId,
                _exactTariffCost(netExportWh - internalWh, pi, pe) - internalWh * int256(r.price)
                    + int256(_abs(internalWh) * r.fee),
                _exactTariffCost(netExportWh, pi, pe)
            );
        }
    }

    /// @dev Cost of a net export at the tariffs, unrounded (Wh x base units per kWh).
    function _exactTariffCost(int256 netExportWh, int256 importPrice, int256 exportPrice)
        private
        pure
        returns (int256)
    {
        return netExportWh >= 0 ? -netExportWh * exportPrice : -netExportWh * importPrice;
    }

    /// @dev Reads and clears a member's posted internal trade (so it is settled once).
    function _takeLane(uint32 slot, uint32 memberId) private returns (int256 internalWh) {
        uint256 key = (uint256(slot) << 32) | (memberId / LANES);
        uint256 word = _lanes[key];
        internalWh = _laneAt(word, memberId);
        if (internalWh != 0) _lanes[key] = word & ~(LANE_MASK << ((memberId % LANES) * LANE_BITS));
    }

    /// @dev The member's int20 lane of a lanes word, sign-extended.
    function _laneAt(uint256 word, uint32 memberId) private pure returns (int256) {
        uint256 lane = (word >> ((memberId % LANES) * LANE_BITS)) & LANE_MASK;
        return int256(lane << (256 - LANE_BITS)) >> (256 - LANE_BITS);
    }

    // ---------------------------------------------------------- profit shares

    /// @inheritdoc ICommunitySettlement
    function fundPot(uint32 periodIndex, uint256 amount) external {
        Period storage p = _periods[periodIndex];
        if (p.distributed || _shareProgress[periodIndex].posted != 0) revert SettlementSharesDistributed(periodIndex);
        _addToPot(periodIndex, amount);
        emit PotFunded(periodIndex, msg.sender, amount);
        IMarketLedger(market).fundAccount(msg.sender, address(this), amount);
    }

    /// @dev Pots stay below {MAX_POT}, so every share fits a ledger record.
    function _addToPot(uint32 periodIndex, uint256 amount) private {
        Period storage p = _periods[periodIndex];
        p.pot = uint256(p.pot + amount).toUint88();
    }

    /// @inheritdoc ICommunitySettlement
    function distributeShares(uint32 periodIndex, uint32[] calldata memberIds, uint256[] calldata shares) external {
        if (memberIds.length != shares.length) revert SettlementMalformedChunk(shares.length);
        Period memory p = _periods[periodIndex];
        if (p.settledSlots < periodSlots) revert SettlementPeriodOpen(periodIndex, p.settledSlots, periodSlots);
        if (p.distributed) revert SettlementSharesDistributed(periodIndex);
        uint32 firstSlot = periodIndex * periodSlots;
        ShareRule rule = _configWordAt(firstSlot).shareRule;
        if (rule == ShareRule.Shapley && !IAccessControl(market).hasRole(_managerRole, msg.sender)) {
            revert SettlementNotManager(msg.sender);
        }
        ShareProgress memory progress = _shareProgress[periodIndex];
        Contributions memory totals = _contributionTotals[periodIndex];
        if (progress.posted == 0) {
            if (periodIndex >= _shareFrontier) _shareFrontier = periodIndex + 1;
            progress.expected =
                rule == ShareRule.Proportional ? totals.contributors : ICommunityRegistry(market).memberCount();
        }
        bytes memory members = IMarketLedger(market).settlementPositions(firstSlot, _packIds(memberIds), 4, false);
        Output memory out = _output(memberIds.length);
        uint256 total = 0;
        for (uint256 i = 0; i < memberIds.length; ++i) {
            uint32 memberId = memberIds[i];
            if (memberId <= progress.lastMemberId) revert SettlementMembersNotAscending(memberId, progress.lastMemberId);
            progress.lastMemberId = memberId;
            (address account,) = _memberAt(members, i);
            uint256 expected = _expectedShare(rule, p.pot, progress, totals, periodIndex, memberId, account);
            if (rule != ShareRule.Shapley && shares[i] != expected) {
                revert SettlementShareMismatch(memberId, shares[i], expected);
            }
            if (shares[i] > p.pot) revert SettlementSharesExceedPot(periodIndex, shares[i], p.pot);
            ++progress.posted;
            total += shares[i];
            _appendPayment(out, account, int256(shares[i]), false); // below the pot, so below 2^88
            emit ShareDistributed(periodIndex, account, shares[i]);
        }
        uint256 distributed = progress.distributed + total;
        if (distributed > p.pot) revert SettlementSharesExceedPot(periodIndex, distributed, p.pot);
        progress.distributed = uint128(distributed);
        if (progress.posted > progress.expected) {
            revert SettlementSharesIncomplete(periodIndex, progress.posted, progress.expected);
        }
        if (progress.posted == progress.expected) _completeShares(periodIndex, rule, p.pot, distributed);
        _shareProgress[periodIndex] = progress;
        if (total != 0) {
            _appendPayment(out, address(this), -int256(total), false);
            bytes memory payments = out.payments;
            uint256 paymentBytes = out.paymentCount * LEDGER_PAYMENT_BYTES;
            assembly ("memory-safe") {
                mstore(payments, paymentBytes) // trim to the records written
            }
            IMarketLedger(market).applySettlement(firstSlot, payments);
        }
    }

    /// @dev Equal: pot / n, one more base unit for the first pot % n members (ascending ids);
    /// proportional: pot * c / C rounded down, for members with a contribution only; Shapley:
    /// posted (any member).
    function _expectedShare(
        ShareRule rule,
        uint256 pot,
        ShareProgress memory progress,
        Contributions memory totals,
        uint32 periodIndex,
        uint32 memberId,
        address account
    ) private view returns (uint256) {
        if (rule == ShareRule.Proportional) {
            uint256 contribution = _contributionOf(periodIndex, memberId);
            if (contribution == 0) revert SettlementShareMismatch(memberId, 0, 0);
            return (pot * contribution) / totals.totalWh;
        }
        (, bool active) = ICommunityRegistry(market).memberOf(account);
        if (!active) revert SettlementShareMismatch(memberId, 0, 0);
        if (rule == ShareRule.Shapley || progress.expected == 0) return 0;
        return pot / progress.expected + (progress.posted < pot % progress.expected ? 1 : 0);
    }

    /// @dev Equal and Shapley shares use the whole pot; proportional rounding leftovers (and a
    /// pot without contributors) roll over to the first period after every period whose
    /// distribution has begun (the next period, when periods are distributed in order).
    function _completeShares(uint32 periodIndex, ShareRule rule, uint256 pot, uint256 distributed) private {
        if (rule != ShareRule.Proportional && distributed != pot && (rule == ShareRule.Shapley || pot != 0)) {
            revert SettlementSharesIncomplete(periodIndex, distributed, pot);
        }
        _periods[periodIndex].distributed = true;
        if (distributed < pot) _periods[_shareFrontier].pot += uint128(pot - distributed);
        emit SharesCompleted(periodIndex, rule, pot, distributed);
    }

    // ------------------------------------------------------------------- views

    /// @inheritdoc ICommunitySettlement
    function slotState(uint32 slot) external view returns (SlotView memory) {
        SlotWord memory state = _slots[slot];
        return SlotView(
            state.phase,
            state.mode,
            state.rule,
            state.readings,
            _cursors[slot].remaining,
            state.supplyWh,
            state.demandWh
        );
    }

    /// @inheritdoc ICommunitySettlement
    function period(uint32 periodIndex) external view returns (Period memory) {
        return _periods[periodIndex];
    }

    /// @inheritdoc ICommunitySettlement
    function contributionOf(uint32 periodIndex, uint32 memberId) external view returns (uint64) {
        return uint64(_contributionOf(periodIndex, memberId));
    }

    /// @inheritdoc ICommunitySettlement
    function readingDeadline(uint32 slot) external view returns (uint64) {
        return _slotStart(slot + 1) + readingWindowSeconds;
    }

    function _slotStart(uint32 slot) private view returns (uint64) {
        return _epoch + uint64(slot) * _slotSeconds;
    }

    function _abs(int256 value) private pure returns (uint256) {
        return value >= 0 ? uint256(value) : uint256(-value);
    }
}

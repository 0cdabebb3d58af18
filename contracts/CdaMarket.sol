// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ICdaMarket} from "./interfaces/ICdaMarket.sol";
import {IMarketLedger, LEDGER_CLOSE_POSITION, LEDGER_PAYMENT_BYTES} from "./interfaces/IMarketLedger.sol";
import {CommunityRegistry} from "./CommunityRegistry.sol";
import {EnergyMath} from "./libraries/EnergyMath.sol";
import {OrderIds} from "./libraries/OrderIds.sol";
import {PriceBitmap} from "./libraries/PriceBitmap.sol";

/// @title Peerwatt community market: registry, deposits and one CDA order book per slot
/// @notice See {ICdaMarket} for the trading rules and {ICommunityRegistry} for the registry.
/// @dev Storage per book (slot, side): a bitmap of occupied prices and, per price, a level word
/// (head and tail of its FIFO queue, live orders), deleted when the level empties. An order's
/// id is its place in its level's queue ({OrderIds}), so the queue needs no links: resting an
/// order writes the order word and its level word, and cancelling one leaves a gap that
/// matching steps over (counted against the fill cap, so no loop runs unbounded). No operation
/// scans the book.
///
/// The best prices per slot are kept in one word. A cancellation that empties the best level
/// clears its price from the bitmap but leaves the best price as it is; whoever reads it next
/// finds that level empty and takes the next price from the bitmap (one search, see
/// {_resolveBest}).
///
/// Solvency: the token balance of this contract equals the sum of member balances, the escrow
/// of resting buy orders (`remainingWh * price / 1000 + escrowDust`) and the trade payments held
/// in positions (`sum of Position.paid`) until settlement ({IMarketLedger}).
contract CdaMarket is ICdaMarket, IMarketLedger, CommunityRegistry {
    using SafeERC20 for IERC20;
    using PriceBitmap for PriceBitmap.Bitmap;

    /// @notice Largest order quantity, 1.1 TWh. The bound makes every fill's value fit in uint64
    /// (2^40 Wh * 2^32 per kWh / 1000 < 2^64), so positions take it without a runtime cast check;
    /// their sums are still checked arithmetic.
    uint64 public constant MAX_QTY_WH = type(uint40).max;

    /// @notice The settlement token members deposit.
    IERC20 public immutable token;

    /// @dev One storage word; slot, side and price are in the order's id.
    struct Order {
        address owner;
        uint48 remainingWh;
        // Escrow rounding left over by partial fills of a resting buy order: each fill releases
        // floor(before) - floor(after) - payment, which is 0 or 1 base unit, paid back when the
        // order leaves the book instead of touching the owner's balance on every fill.
        uint24 escrowDust;
    }

    /// @dev FIFO queue of one price level: places head..tail, of which `live` hold orders (the
    /// rest are gaps left by cancellations). All zero while the level is empty.
    struct Level {
        uint64 head;
        uint64 tail;
        uint32 live;
    }

    /// @dev Best prices of a slot (0: that side is empty; a price whose level is empty: see the
    /// contract's notes) and the slot's id nonce ({OrderIds}).
    struct BookTop {
        uint32 bestBid;
        uint32 bestAsk;
        uint32 nonce;
    }

    /// @dev The caller of an order entry point, kept in memory while its orders are processed;
    /// its balance is written back once per transaction.
    struct Taker {
        address account;
        uint256 balance;
        MarketState params;
    }

    /// @dev An incoming order while it is matched.
    struct Incoming {
        uint256 orderId;
        uint32 slot;
        bool isBuy;
        uint32 limit;
        uint64 remainingWh;
        uint64 tradedWh;
        uint256 tradedValue;
        bool capped; // matching stopped at the fill cap while the book still crossed
    }

    mapping(uint256 orderId => Order) private _orders;
    mapping(uint256 levelKey => Level) private _levels;
    mapping(uint256 bookKey => PriceBitmap.Bitmap) private _prices;
    mapping(uint32 slot => BookTop) private _tops;
    mapping(uint32 slot => mapping(address member => Position)) private _positions;
    address private _supplier;

    /// @param admin receives DEFAULT_ADMIN_ROLE
    /// @param settlementToken ERC-20 with 6 decimals
    /// @param epoch start of slot 0 (unix seconds)
    /// @param slotSeconds slot length
    /// @param priceTick_ limit prices are multiples of it (base units per kWh)
    constructor(
        address admin,
        IERC20 settlementToken,
        uint64 epoch,
        uint32 slotSeconds,
        uint32 priceTick_,
        MarketParams memory params,
        Tariffs memory initialTariffs
    ) CommunityRegistry(admin, epoch, slotSeconds, priceTick_, params, initialTariffs) {
        token = settlementToken;
    }

    // ---------------------------------------------------------------- balances

    /// @inheritdoc ICdaMarket
    /// @dev The supplier deposits too: its balance covers what it pays for the community's
    /// exports. A member's deposit pays its debt first.
    function deposit(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        Account storage acc = _accounts[msg.sender];
        if (!acc.active && msg.sender != _supplier) revert MarketNotMember(msg.sender);
        uint256 credited = _repayDebt(msg.sender, acc, amount);
        uint256 balance = acc.balance + credited;
        acc.balance = SafeCast.toUint128(balance);
        emit Deposited(msg.sender, amount, balance);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc ICdaMarket
    function withdraw(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        Account storage acc = _accounts[msg.sender];
        uint256 balance = acc.balance;
        if (balance < amount) revert MarketInsufficientBalance(msg.sender, balance, amount);
        unchecked {
            balance -= amount; // checked just above
        }
        acc.balance = uint128(balance);
        emit Withdrawn(msg.sender, amount, balance);
        token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc ICdaMarket
    function balanceOf(address member) external view returns (uint256) {
        return _accounts[member].balance;
    }

    // ------------------------------------------------------------------ orders

    /// @inheritdoc ICdaMarket
    function placeOrder(uint32 slot, bool isBuy, uint32 pricePerKwh, uint64 qtyWh) external returns (uint256 orderId) {
        Taker memory taker = _loadTaker();
        orderId = _place(taker, slot, isBuy, pricePerKwh, qtyWh);
        _storeTaker(taker);
    }

    /// @inheritdoc ICdaMarket
    function placeOrders(OrderRequest[] calldata orders) external returns (uint256[] memory orderIds) {
        Taker memory taker = _loadTaker();
        orderIds = new uint256[](orders.length);
        for (uint256 i = 0; i < orders.length; ++i) {
            OrderRequest calldata order = orders[i];
            orderIds[i] = _place(taker, order.slot, order.isBuy, order.pricePerKwh, order.qtyWh);
        }
        _storeTaker(taker);
    }

    /// @inheritdoc ICdaMarket
    function cancelOrder(uint256 orderId) external {
        _cancel(orderId);
    }

    /// @inheritdoc ICdaMarket
    function cancelOrders(uint256[] calldata orderIds) external {
        for (uint256 i = 0; i < orderIds.length; ++i) {
            _cancel(orderIds[i]);
        }
    }

    /// @inheritdoc ICdaMarket
    /// @dev Orders already gone (filled, cancelled or expired) are skipped, so that keepers
    /// racing each other do not revert; an order whose gate has not closed reverts the call.
    function expireOrders(uint256[] calldata orderIds) external {
        for (uint256 i = 0; i < orderIds.length; ++i) {
            uint256 orderId = orderIds[i];
            Order memory order = _orders[orderId];
            if (order.owner == address(0)) continue;
            uint64 closure = gateClosure(OrderIds.slotOf(orderId));
            if (block.timestamp < closure) revert MarketOrderNotExpired(orderId, closure, uint64(block.timestamp));
            uint256 released = _removeOrder(orderId, order, CancelReason.Expired);
            if (released != 0) _accounts[order.owner].balance += uint128(released);
        }
    }

    // ------------------------------------------------------ settlement ledger

    /// @inheritdoc IMarketLedger
    function setSupplierAccount(address supplier) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (supplier == address(0)) revert RegistryZeroAddress();
        _supplier = supplier;
        emit SupplierAccountSet(supplier);
    }

    /// @inheritdoc IMarketLedger
    function supplierAccount() external view returns (address) {
        return _supplier;
    }

    /// @inheritdoc IMarketLedger
    function debtOf(address account) external view returns (uint256) {
        return _accounts[account].debt;
    }

    /// @inheritdoc IMarketLedger
    function settlementPositions(uint32 slot, bytes calldata records, uint256 recordBytes, bool withPositions)
        external
        view
        returns (bytes memory packed)
    {
        if (recordBytes < 4 || records.length % recordBytes != 0) {
            revert LedgerMalformedRecords(records.length, recordBytes);
        }
        uint256 count = records.length / recordBytes;
        packed = new bytes(count * 64);
        mapping(address member => Position) storage slotPositions = _positions[slot];
        for (uint256 i = 0; i < count; ) {
            uint32 memberId;
            assembly ("memory-safe") {
                memberId := shr(224, calldataload(add(records.offset, mul(i, recordBytes)))) // in bounds
            }
            address account = memberAddress(memberId);
            if (account == address(0)) revert LedgerNotMemberId(memberId);
            uint256 position = 0;
            if (withPositions) {
                Position storage p = slotPositions[account];
                position = uint256(p.boughtWh) | (uint256(p.soldWh) << 64) | (uint256(p.paid) << 128)
                    | (uint256(p.received) << 192);
            }
            assembly ("memory-safe") {
                let at := add(add(packed, 0x20), mul(i, 0x40))
                mstore(at, account)
                mstore(add(at, 0x20), position)
            }
            unchecked {
                ++i;
            }
        }
    }

    /// @inheritdoc IMarketLedger
    function applySettlement(uint32 slot, bytes calldata payments)
        external
        onlyRole(SETTLEMENT_ROLE)
        returns (int256 supplierAmount)
    {
        address supplier = _supplier;
        if (supplier == address(0)) revert LedgerNoSupplier();
        if (payments.length % LEDGER_PAYMENT_BYTES != 0) {
            revert LedgerMalformedRecords(payments.length, LEDGER_PAYMENT_BYTES);
        }
        mapping(address member => Position) storage slotPositions = _positions[slot];
        // residual = released - sum(amounts) - debts taken on + debts repaid
        uint256 released = 0;
        int256 applied = 0;
        for (uint256 offset = 0; offset < payments.length; ) {
            uint256 record;
            assembly ("memory-safe") {
                record := calldataload(add(payments.offset, offset)) // in bounds: whole records
            }
            address account = address(uint160(record >> 96));
            unchecked {
                // uint64 payments and int95 amounts, fewer than 2^32 records
                if (record & LEDGER_CLOSE_POSITION != 0) {
                    released += slotPositions[account].paid;
                    delete slotPositions[account];
                }
                applied += _applyPayment(account, int96(uint96(record)) >> 1); // the int95 amount
                offset += LEDGER_PAYMENT_BYTES;
            }
        }
        supplierAmount = SafeCast.toInt256(released) - applied;
        Account storage supplierAcc = _accounts[supplier];
        uint256 balance = supplierAcc.balance;
        if (supplierAmount >= 0) {
            supplierAcc.balance = SafeCast.toUint128(balance + uint256(supplierAmount));
        } else {
            uint256 needed = uint256(-supplierAmount);
            if (balance < needed) revert LedgerSupplierUnderfunded(supplier, balance, needed);
            unchecked {
                supplierAcc.balance = uint128(balance - needed); // checked just above
            }
        }
        emit SettlementApplied(slot, released, supplierAmount);
    }

    /// @inheritdoc IMarketLedger
    function fundAccount(address from, address account, uint256 amount) external onlyRole(SETTLEMENT_ROLE) {
        if (amount == 0) revert MarketZeroAmount();
        Account storage acc = _accounts[account];
        acc.balance = SafeCast.toUint128(acc.balance + amount);
        emit AccountFunded(from, account, amount);
        token.safeTransferFrom(from, address(this), amount);
    }

    /// @dev Credits or charges one account; returns what the supplier's residual gives up for
    /// it: the amount itself, except that a charge's shortfall (now debt) is never collected.
    /// Debt repaid from a credit goes to the supplier directly ({_repayDebt}).
    function _applyPayment(address account, int256 amount) private returns (int256 fromResidual) {
        Account storage acc = _accounts[account];
        uint256 balance = acc.balance;
        if (amount >= 0) {
            acc.balance = SafeCast.toUint128(balance + _repayDebt(account, acc, uint256(amount)));
            return amount;
        }
        uint256 charge = uint256(-amount);
        if (balance >= charge) {
            unchecked {
                acc.balance = uint128(balance - charge); // checked just above
            }
            return amount;
        }
        uint256 shortfall = charge - balance;
        uint256 debt = acc.debt + shortfall;
        acc.balance = 0;
        acc.debt = SafeCast.toUint80(debt);
        emit DebtIncurred(account, shortfall, debt);
        return -SafeCast.toInt256(balance);
    }

    /// @dev Pays the account's debt from an incoming `amount` (to the supplier, who covered it);
    /// returns what is left to credit.
    function _repayDebt(address account, Account storage acc, uint256 amount) private returns (uint256 left) {
        uint256 debt = acc.debt;
        if (debt == 0) return amount;
        uint256 repaid = debt < amount ? debt : amount;
        unchecked {
            debt -= repaid; // repaid <= debt
            left = amount - repaid; // repaid <= amount
        }
        acc.debt = uint80(debt);
        Account storage supplierAcc = _accounts[_supplier];
        supplierAcc.balance = SafeCast.toUint128(supplierAcc.balance + repaid);
        emit DebtRepaid(account, repaid, debt);
    }

    // ------------------------------------------------------------------- views

    /// @inheritdoc ICdaMarket
    function getOrder(uint256 orderId) public view returns (OrderView memory) {
        Order memory order = _orders[orderId];
        if (order.owner == address(0)) revert MarketOrderNotFound(orderId);
        return _view(orderId, order);
    }

    /// @inheritdoc ICdaMarket
    function bestPrices(uint32 slot) external view returns (uint32 bestBid, uint32 bestAsk) {
        BookTop memory top = _tops[slot];
        return (_resolveBest(slot, true, top.bestBid), _resolveBest(slot, false, top.bestAsk));
    }

    /// @inheritdoc ICdaMarket
    function bookSide(uint32 slot, bool isBuy, uint256 maxOrders) external view returns (OrderView[] memory orders) {
        orders = new OrderView[](maxOrders);
        uint256 bookKey = _bookKey(slot, isBuy);
        BookTop memory top = _tops[slot];
        uint32 price = _resolveBest(slot, isBuy, isBuy ? top.bestBid : top.bestAsk);
        uint256 count = 0;
        while (price != 0 && count < maxOrders) {
            uint256 levelKey = OrderIds.levelKey(slot, isBuy, price);
            Level memory level = _levels[levelKey];
            for (uint64 seq = level.head; seq <= level.tail && count < maxOrders; ++seq) {
                uint256 orderId = OrderIds.atLevel(levelKey, seq);
                Order memory order = _orders[orderId];
                if (order.owner != address(0)) orders[count++] = _view(orderId, order);
            }
            price = _bestFrom(bookKey, isBuy, isBuy ? price - _priceTick : uint256(price) + _priceTick);
        }
        assembly ("memory-safe") {
            mstore(orders, count) // trim to the orders found
        }
    }

    /// @inheritdoc ICdaMarket
    function positionOf(uint32 slot, address member) external view returns (Position memory) {
        return _positions[slot][member];
    }

    // ---------------------------------------------------------------- internal

    function _loadTaker() private view returns (Taker memory taker) {
        Account memory acc = _accounts[msg.sender];
        if (!acc.active) revert MarketNotMember(msg.sender);
        if (acc.debt != 0) revert MarketMemberInDebt(msg.sender, acc.debt);
        taker.account = msg.sender;
        taker.balance = acc.balance;
        taker.params = _market;
    }

    function _storeTaker(Taker memory taker) private {
        // self-trade releases may lift the in-memory balance above uint128: revert, never truncate
        _accounts[taker.account].balance = SafeCast.toUint128(taker.balance);
    }

    /// @dev Validates, matches and (if anything is left and the book no longer crosses) rests one
    /// incoming order. Balance changes of the taker go to `taker.balance`.
    ///
    /// The book never crosses, so an order that crosses the best opposite price finds its own
    /// price level empty: its id is then the first place of a fresh level at its limit price (a
    /// new slot nonce), where it rests if anything is left. An order that does not cross rests
    /// at once and takes its place in its level. Either way the id is known before matching.
    function _place(Taker memory taker, uint32 slot, bool isBuy, uint32 price, uint64 qtyWh)
        private
        returns (uint256 orderId)
    {
        _validate(taker, slot, isBuy, price, qtyWh);
        BookTop memory top = _tops[slot];
        uint32 best = _crossingBest(slot, isBuy, price, isBuy ? top.bestAsk : top.bestBid);
        if (best == 0) {
            orderId = _rest(slot, isBuy, price, qtyWh, taker.account, top, 0);
            _tops[slot] = top;
            emit OrderPlaced(slot, orderId, taker.account, isBuy, price, qtyWh);
            if (isBuy) taker.balance -= EnergyMath.value(qtyWh, price);
            return orderId;
        }

        uint32 nonce = ++top.nonce;
        orderId = OrderIds.atLevel(OrderIds.levelKey(slot, isBuy, price), OrderIds.firstSeq(nonce));
        emit OrderPlaced(slot, orderId, taker.account, isBuy, price, qtyWh);
        Incoming memory order = Incoming(orderId, slot, isBuy, price, qtyWh, 0, 0, false);
        _match(taker, order, top, best);
        if (order.remainingWh != 0) {
            if (order.capped) {
                uint256 refunded = isBuy ? EnergyMath.value(order.remainingWh, price) : 0;
                emit OrderCancelled(slot, orderId, taker.account, order.remainingWh, refunded, CancelReason.FillCap);
            } else {
                _rest(slot, isBuy, price, order.remainingWh, taker.account, top, nonce);
                if (isBuy) taker.balance -= EnergyMath.value(order.remainingWh, price);
            }
        }
        _tops[slot] = top;
        if (order.tradedWh != 0) _addTakerPosition(taker, order);
    }

    /// @dev The best opposite price if it crosses `limit`, else 0. The stored best is at least as
    /// good as the true one ({_resolveBest}): resolve it only if it crosses.
    function _crossingBest(uint32 slot, bool isBuy, uint32 limit, uint32 stored) private view returns (uint32 best) {
        if (stored == 0 || (isBuy ? stored > limit : stored < limit)) return 0;
        best = _resolveBest(slot, !isBuy, stored);
        if (best == 0 || (isBuy ? best > limit : best < limit)) return 0;
    }

    function _validate(Taker memory taker, uint32 slot, bool isBuy, uint32 price, uint64 qtyWh) private view {
        MarketState memory params = taker.params;
        if (price < params.minPricePerKwh || price > params.maxPricePerKwh) {
            revert MarketPriceOutOfBand(price, params.minPricePerKwh, params.maxPricePerKwh);
        }
        if (price % _priceTick != 0) revert MarketPriceOffTick(price, _priceTick);
        if (qtyWh < params.minQtyWh) revert MarketQuantityTooSmall(qtyWh, params.minQtyWh);
        if (qtyWh > MAX_QTY_WH) revert MarketQuantityTooLarge(qtyWh, MAX_QTY_WH);
        uint64 closure = _gateClosure(slot, params.gateSeconds);
        if (block.timestamp >= closure) revert MarketGateClosed(slot, closure, uint64(block.timestamp));
        if (isBuy) {
            uint256 escrow = EnergyMath.value(qtyWh, price);
            if (taker.balance < escrow) revert MarketInsufficientBalance(taker.account, taker.balance, escrow);
        }
    }

    /// @dev Books the taker's side of its fills: one position update per incoming order.
    function _addTakerPosition(Taker memory taker, Incoming memory order) private {
        Position storage position = _positions[order.slot][taker.account];
        // the fills of one order are worth at most qty * max price / 1000 < 2^64 (MAX_QTY_WH), so
        // the casts are exact; the sums revert on overflow (checked arithmetic)
        if (order.isBuy) {
            taker.balance -= order.tradedValue;
            position.boughtWh += order.tradedWh;
            position.paid += uint64(order.tradedValue);
        } else {
            position.soldWh += order.tradedWh;
            position.received += uint64(order.tradedValue);
        }
    }

    /// @dev Matches an incoming order against the other side of the book, best price first and
    /// FIFO within a price, at the resting order's price. Updates `order` and `top` in memory.
    /// Each step (a fill, a self-trade cancellation or a gap stepped over) is bounded by the
    /// fill cap: at most `fillCap` fills and `fillCap` other steps.
    function _match(Taker memory taker, Incoming memory order, BookTop memory top, uint32 best) private {
        bool isBuy = order.isBuy;
        uint256 bookKey = _bookKey(order.slot, !isBuy);
        uint256 cap = taker.params.fillCap;
        uint256 fills = 0;
        uint256 skips = 0;
        while (order.remainingWh != 0 && best != 0 && (isBuy ? best <= order.limit : best >= order.limit)) {
            uint256 levelKey = OrderIds.levelKey(order.slot, !isBuy, best);
            Level memory level = _levels[levelKey];
            while (order.remainingWh != 0 && level.live != 0) {
                if (fills == cap || skips == cap) {
                    order.capped = true;
                    break;
                }
                uint256 makerId = OrderIds.atLevel(levelKey, level.head);
                Order memory maker = _orders[makerId];
                // Queue arithmetic below cannot overflow: head stays within the level's places
                // (live != 0 means a live order at head or after), live counts its orders, and
                // fills and skips stop at the cap.
                if (maker.owner == address(0)) {
                    unchecked {
                        ++level.head; // a gap left by a cancellation
                        ++skips;
                    }
                } else if (maker.owner == taker.account) {
                    // self-trade prevention: the resting order goes, its escrow back to the taker
                    delete _orders[makerId];
                    unchecked {
                        ++level.head;
                        --level.live;
                        ++skips;
                    }
                    uint256 released = _escrowOf(makerId, maker);
                    taker.balance += released;
                    emit OrderCancelled(
                        order.slot, makerId, maker.owner, maker.remainingWh, released, CancelReason.SelfTrade
                    );
                } else {
                    uint64 fillWh = maker.remainingWh < order.remainingWh ? maker.remainingWh : order.remainingWh;
                    uint256 value = _fillMaker(makerId, maker, best, fillWh, order.orderId);
                    unchecked {
                        if (fillWh == maker.remainingWh) {
                            ++level.head;
                            --level.live;
                        }
                        order.remainingWh -= fillWh; // fillWh <= remainingWh
                        order.tradedWh += fillWh; // the fills add up to at most the order's quantity
                        order.tradedValue += value;
                        ++fills;
                    }
                }
            }
            if (level.live != 0) {
                _levels[levelKey] = level;
                break; // filled (or capped) inside this level
            }
            // the level is empty: drop it (with any gaps left) and find the next best price
            delete _levels[levelKey];
            _prices[bookKey].clear(best / _priceTick);
            best = _bestFrom(bookKey, !isBuy, best);
        }
        if (isBuy) top.bestAsk = best;
        else top.bestBid = best;
    }

    /// @dev The single path by which a resting order is filled: updates the maker's order,
    /// position and (for escrow dust) balance, and emits {TradeExecuted}. Returns the trade value.
    function _fillMaker(uint256 makerId, Order memory maker, uint32 price, uint64 fillWh, uint256 takerId)
        private
        returns (uint256 value)
    {
        value = EnergyMath.value(fillWh, price);
        uint48 makerLeft;
        unchecked {
            makerLeft = maker.remainingWh - uint48(fillWh); // fillWh <= remainingWh
        }

        Position storage position = _positions[OrderIds.slotOf(makerId)][maker.owner];
        uint256 dust = maker.escrowDust;
        if (OrderIds.isBuy(makerId)) {
            position.boughtWh += fillWh;
            position.paid += uint64(value); // exact: value < 2^64 (MAX_QTY_WH)
            // floor(a + b) - floor(a) - floor(b) is 0 or 1
            unchecked {
                dust += EnergyMath.value(maker.remainingWh, price) - EnergyMath.value(makerLeft, price) - value;
            }
        } else {
            position.soldWh += fillWh;
            position.received += uint64(value);
        }

        if (makerLeft == 0) {
            delete _orders[makerId];
        } else {
            Order storage stored = _orders[makerId];
            stored.remainingWh = makerLeft;
            if (dust <= type(uint24).max) {
                stored.escrowDust = uint24(dust);
                dust = 0;
            } else {
                stored.escrowDust = 0; // pay the dust out now rather than overflow the field
            }
        }
        if (dust != 0) _accounts[maker.owner].balance += uint128(dust);

        // every order entry point trades for msg.sender, so the taker is the caller
        uint32 slot = OrderIds.slotOf(makerId);
        if (OrderIds.isBuy(makerId)) {
            emit TradeExecuted(slot, maker.owner, msg.sender, makerId, takerId, price, fillWh, true);
        } else {
            emit TradeExecuted(slot, msg.sender, maker.owner, takerId, makerId, price, fillWh, false);
        }
    }

    /// @dev Appends `remainingWh` of an incoming order at the tail of its price level and returns
    /// its id. `nonce` is the slot nonce the order already took for its id (it crossed the book,
    /// so its level is empty), or 0 to take the level's next place.
    function _rest(
        uint32 slot,
        bool isBuy,
        uint32 price,
        uint64 remainingWh,
        address owner,
        BookTop memory top,
        uint32 nonce
    ) private returns (uint256 orderId) {
        uint256 levelKey = OrderIds.levelKey(slot, isBuy, price);
        Level memory level = _levels[levelKey];
        if (level.live == 0) {
            level.head = level.tail = OrderIds.firstSeq(nonce == 0 ? ++top.nonce : nonce);
            _prices[_bookKey(slot, isBuy)].set(price / _priceTick);
            if (isBuy) {
                if (price > top.bestBid) top.bestBid = price;
            } else if (top.bestAsk == 0 || price < top.bestAsk) {
                top.bestAsk = price;
            }
        } else {
            ++level.tail;
        }
        ++level.live;
        _levels[levelKey] = level;
        orderId = OrderIds.atLevel(levelKey, level.tail);
        _orders[orderId] = Order(owner, uint48(remainingWh), 0);
    }

    function _cancel(uint256 orderId) private {
        Order memory order = _orders[orderId];
        if (order.owner == address(0)) revert MarketOrderNotFound(orderId);
        if (order.owner != msg.sender) revert MarketNotOrderOwner(orderId, msg.sender, order.owner);
        uint32 slot = OrderIds.slotOf(orderId);
        uint64 closure = gateClosure(slot);
        if (block.timestamp >= closure) revert MarketGateClosed(slot, closure, uint64(block.timestamp));
        uint256 released = _removeOrder(orderId, order, CancelReason.ByMember);
        if (released != 0) _accounts[msg.sender].balance += uint128(released);
    }

    /// @dev Removes a resting order from anywhere in its level, leaving a gap unless it was the
    /// head; returns its escrow (the caller credits it to the owner).
    function _removeOrder(uint256 orderId, Order memory order, CancelReason reason) private returns (uint256 released) {
        uint32 slot = OrderIds.slotOf(orderId);
        bool isBuy = OrderIds.isBuy(orderId);
        uint32 price = OrderIds.priceOf(orderId);
        uint256 levelKey = OrderIds.levelOf(orderId);
        Level memory level = _levels[levelKey];
        if (level.live == 1) {
            // the level empties; the slot's best price may now name it (see the contract's notes)
            delete _levels[levelKey];
            _prices[_bookKey(slot, isBuy)].clear(price / _priceTick);
        } else {
            --level.live;
            if (OrderIds.seqOf(orderId) == level.head) ++level.head;
            _levels[levelKey] = level;
        }
        delete _orders[orderId];
        released = _escrowOf(orderId, order);
        emit OrderCancelled(slot, orderId, order.owner, order.remainingWh, released, reason);
    }

    /// @dev The best price of one side of `slot`, given the stored `best`: if the level at `best`
    /// has emptied by a cancellation, the next price in the bitmap (whose levels are never empty).
    function _resolveBest(uint32 slot, bool isBuy, uint32 best) private view returns (uint32) {
        if (best == 0 || _levels[OrderIds.levelKey(slot, isBuy, best)].live != 0) return best;
        return _bestFrom(_bookKey(slot, isBuy), isBuy, best);
    }

    /// @dev The best occupied price of a book side from `price` on, in priority order: the
    /// highest bid at or below it, or the lowest ask at or above it (0 if none). `price` is a
    /// multiple of the tick. The bitmap holds prices in ticks.
    function _bestFrom(uint256 bookKey, bool isBuy, uint256 price) private view returns (uint32) {
        uint256 tick = _priceTick;
        PriceBitmap.Bitmap storage prices = _prices[bookKey];
        return uint32(tick * (isBuy ? prices.highestAtOrBelow(price / tick) : prices.lowestAtOrAbove(price / tick)));
    }

    function _escrowOf(uint256 orderId, Order memory order) private pure returns (uint256) {
        return OrderIds.isBuy(orderId)
            ? EnergyMath.value(order.remainingWh, OrderIds.priceOf(orderId)) + order.escrowDust
            : 0;
    }

    function _view(uint256 orderId, Order memory order) private pure returns (OrderView memory) {
        return OrderView(
            orderId,
            order.owner,
            OrderIds.slotOf(orderId),
            OrderIds.isBuy(orderId),
            OrderIds.priceOf(orderId),
            order.remainingWh,
            _escrowOf(orderId, order)
        );
    }

    function _bookKey(uint32 slot, bool isBuy) private pure returns (uint256) {
        return (uint256(slot) << 1) | (isBuy ? 1 : 0);
    }
}

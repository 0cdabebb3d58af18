// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ICdaMarket} from "./interfaces/ICdaMarket.sol";
import {CommunityRegistry} from "./CommunityRegistry.sol";
import {EnergyMath} from "./libraries/EnergyMath.sol";
import {PriceBitmap} from "./libraries/PriceBitmap.sol";

/// @title Peerwatt community market: registry, deposits and one CDA order book per slot
/// @notice See {ICdaMarket} for the trading rules and {ICommunityRegistry} for the registry.
/// @dev Storage per book (slot, side): a bitmap of occupied prices, a FIFO queue per price
/// (head and tail order ids) and a doubly linked list through the orders. Every order lives in
/// one storage word. No operation scans the book: placing, filling and cancelling touch a
/// constant number of words, and a transaction fills at most `fillCap` orders per incoming one.
///
/// Solvency: the token balance of this contract equals the sum of member balances, the escrow
/// of resting buy orders (`remainingWh * price / 1000 + escrowDust`) and the trade payments held
/// in positions (`sum of Position.paid`) until settlement.
contract CdaMarket is ICdaMarket, CommunityRegistry {
    using SafeERC20 for IERC20;
    using PriceBitmap for PriceBitmap.Bitmap;

    /// @notice Largest order quantity, 1.1 TWh. The bound makes every fill's value fit in uint64
    /// (2^40 Wh * 2^32 per kWh / 1000 < 2^64), so positions take it without a runtime cast check;
    /// their sums are still checked arithmetic.
    uint64 public constant MAX_QTY_WH = type(uint40).max;

    /// @notice The settlement token members deposit.
    IERC20 public immutable token;

    /// @dev One storage word (248 bits).
    struct Order {
        uint32 memberId;
        uint48 remainingWh;
        uint40 prev; // older order at the same price (stale while this order is the head)
        uint40 next; // newer order at the same price
        uint32 pricePerKwh;
        uint32 slot;
        bool isBuy;
        // Escrow rounding left over by partial fills of a resting buy order: each fill releases
        // floor(before) - floor(after) - payment, which is 0 or 1 base unit, paid back when the
        // order leaves the book instead of touching the owner's balance on every fill.
        uint24 escrowDust;
    }

    /// @dev FIFO queue of the orders resting at one price.
    struct Level {
        uint40 head;
        uint40 tail;
    }

    struct BookTop {
        uint32 bestBid;
        uint32 bestAsk;
    }

    /// @dev The caller of an order entry point, kept in memory while its orders are processed;
    /// its balance and the order id counter are written back once per transaction.
    struct Taker {
        address account;
        uint32 memberId;
        uint256 balance;
        uint40 lastOrderId;
        uint16 fillCap;
    }

    mapping(uint40 orderId => Order) private _orders;
    mapping(uint256 bookKey => mapping(uint32 pricePerKwh => Level)) private _levels;
    mapping(uint256 bookKey => PriceBitmap.Bitmap) private _prices;
    mapping(uint32 slot => BookTop) private _tops;
    mapping(uint32 slot => mapping(uint32 memberId => Position)) private _positions;

    /// @param admin receives DEFAULT_ADMIN_ROLE
    /// @param settlementToken ERC-20 with 6 decimals
    /// @param epoch start of slot 0 (unix seconds)
    /// @param slotSeconds slot length
    constructor(
        address admin,
        IERC20 settlementToken,
        uint64 epoch,
        uint32 slotSeconds,
        MarketParams memory params,
        Tariffs memory initialTariffs
    ) CommunityRegistry(admin, epoch, slotSeconds, params, initialTariffs) {
        token = settlementToken;
    }

    // ---------------------------------------------------------------- balances

    /// @inheritdoc ICdaMarket
    function deposit(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        Account storage acc = _accounts[msg.sender];
        if (!acc.active) revert MarketNotMember(msg.sender);
        uint256 balance = acc.balance + amount;
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
    function placeOrder(uint32 slot, bool isBuy, uint32 pricePerKwh, uint64 qtyWh) external returns (uint40 orderId) {
        Taker memory taker = _loadTaker();
        orderId = _place(taker, slot, isBuy, pricePerKwh, qtyWh);
        _storeTaker(taker);
    }

    /// @inheritdoc ICdaMarket
    function placeOrders(OrderRequest[] calldata orders) external returns (uint40[] memory orderIds) {
        Taker memory taker = _loadTaker();
        orderIds = new uint40[](orders.length);
        for (uint256 i = 0; i < orders.length; ++i) {
            OrderRequest calldata order = orders[i];
            orderIds[i] = _place(taker, order.slot, order.isBuy, order.pricePerKwh, order.qtyWh);
        }
        _storeTaker(taker);
    }

    /// @inheritdoc ICdaMarket
    function cancelOrder(uint40 orderId) external {
        _cancel(orderId);
    }

    /// @inheritdoc ICdaMarket
    function cancelOrders(uint40[] calldata orderIds) external {
        for (uint256 i = 0; i < orderIds.length; ++i) {
            _cancel(orderIds[i]);
        }
    }

    /// @inheritdoc ICdaMarket
    /// @dev Orders already gone (filled, cancelled or expired) are skipped, so that keepers
    /// racing each other do not revert; an order whose gate has not closed reverts the call.
    function expireOrders(uint40[] calldata orderIds) external {
        for (uint256 i = 0; i < orderIds.length; ++i) {
            uint40 orderId = orderIds[i];
            Order memory order = _orders[orderId];
            if (order.memberId == 0) continue;
            uint64 closure = gateClosure(order.slot);
            if (block.timestamp < closure) revert MarketOrderNotExpired(orderId, closure, uint64(block.timestamp));
            address owner = memberAddress(order.memberId);
            uint256 released = _removeOrder(orderId, order, owner, CancelReason.Expired);
            if (released != 0) _accounts[owner].balance += uint128(released);
        }
    }

    // ------------------------------------------------------------------- views

    /// @inheritdoc ICdaMarket
    function getOrder(uint40 orderId) public view returns (OrderView memory) {
        Order memory order = _orders[orderId];
        if (order.memberId == 0) revert MarketOrderNotFound(orderId);
        return _view(orderId, order);
    }

    /// @inheritdoc ICdaMarket
    function lastOrderId() external view returns (uint40) {
        return _market.lastOrderId;
    }

    /// @inheritdoc ICdaMarket
    function bestPrices(uint32 slot) external view returns (uint32 bestBid, uint32 bestAsk) {
        BookTop memory top = _tops[slot];
        return (top.bestBid, top.bestAsk);
    }

    /// @inheritdoc ICdaMarket
    function bookSide(uint32 slot, bool isBuy, uint256 maxOrders) external view returns (OrderView[] memory orders) {
        orders = new OrderView[](maxOrders);
        uint256 bookKey = _bookKey(slot, isBuy);
        BookTop memory top = _tops[slot];
        uint32 price = isBuy ? top.bestBid : top.bestAsk;
        uint256 count = 0;
        while (price != 0 && count < maxOrders) {
            uint40 orderId = _levels[bookKey][price].head;
            while (orderId != 0 && count < maxOrders) {
                Order memory order = _orders[orderId];
                orders[count++] = _view(orderId, order);
                orderId = order.next;
            }
            price = isBuy ? _prices[bookKey].highestAtOrBelow(price - 1) : _prices[bookKey].lowestAtOrAbove(uint256(price) + 1);
        }
        assembly ("memory-safe") {
            mstore(orders, count) // trim to the orders found
        }
    }

    /// @inheritdoc ICdaMarket
    function positionOf(uint32 slot, address member) external view returns (Position memory) {
        return _positions[slot][_accounts[member].memberId];
    }

    // ---------------------------------------------------------------- internal

    function _loadTaker() private view returns (Taker memory taker) {
        Account memory acc = _accounts[msg.sender];
        if (!acc.active) revert MarketNotMember(msg.sender);
        MarketState memory state = _market;
        taker = Taker(msg.sender, acc.memberId, acc.balance, state.lastOrderId, state.fillCap);
    }

    function _storeTaker(Taker memory taker) private {
        // self-trade releases may lift the in-memory balance above uint128: revert, never truncate
        _accounts[taker.account].balance = SafeCast.toUint128(taker.balance);
        _market.lastOrderId = taker.lastOrderId;
    }

    /// @dev An incoming order while it is matched.
    struct Incoming {
        uint40 orderId;
        uint32 slot;
        bool isBuy;
        uint32 limit;
        uint64 remainingWh;
        uint64 tradedWh;
        uint256 tradedValue;
        bool capped; // matching stopped at the fill cap while the book still crossed
    }

    /// @dev Validates, matches and (if anything is left and the book no longer crosses) rests one
    /// incoming order. Balance changes of the taker go to `taker.balance`.
    function _place(Taker memory taker, uint32 slot, bool isBuy, uint32 price, uint64 qtyWh)
        private
        returns (uint40 orderId)
    {
        _validate(taker, slot, isBuy, price, qtyWh);
        orderId = ++taker.lastOrderId;
        emit OrderPlaced(slot, orderId, taker.account, isBuy, price, qtyWh);

        Incoming memory order = Incoming(orderId, slot, isBuy, price, qtyWh, 0, 0, false);
        BookTop memory top = _tops[slot];
        _match(taker, order, top);
        if (order.remainingWh != 0) {
            if (order.capped) {
                uint256 refunded = isBuy ? EnergyMath.value(order.remainingWh, price) : 0;
                emit OrderCancelled(slot, orderId, taker.account, order.remainingWh, refunded, CancelReason.FillCap);
            } else {
                _rest(order, taker.memberId, top);
                if (isBuy) taker.balance -= EnergyMath.value(order.remainingWh, price);
            }
        }
        _tops[slot] = top;
        if (order.tradedWh != 0) _addTakerPosition(taker, order);
    }

    function _validate(Taker memory taker, uint32 slot, bool isBuy, uint32 price, uint64 qtyWh) private view {
        MarketState memory state = _market;
        if (price < state.minPricePerKwh || price > state.maxPricePerKwh) {
            revert MarketPriceOutOfBand(price, state.minPricePerKwh, state.maxPricePerKwh);
        }
        if (qtyWh < state.minQtyWh) revert MarketQuantityTooSmall(qtyWh, state.minQtyWh);
        if (qtyWh > MAX_QTY_WH) revert MarketQuantityTooLarge(qtyWh, MAX_QTY_WH);
        uint64 closure = _gateClosure(slot, state.gateSeconds);
        if (block.timestamp >= closure) revert MarketGateClosed(slot, closure, uint64(block.timestamp));
        if (isBuy) {
            uint256 escrow = EnergyMath.value(qtyWh, price);
            if (taker.balance < escrow) revert MarketInsufficientBalance(taker.account, taker.balance, escrow);
        }
    }

    /// @dev Books the taker's side of its fills: one position update per incoming order.
    function _addTakerPosition(Taker memory taker, Incoming memory order) private {
        Position storage position = _positions[order.slot][taker.memberId];
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
    function _match(Taker memory taker, Incoming memory order, BookTop memory top) private {
        bool isBuy = order.isBuy;
        uint256 bookKey = _bookKey(order.slot, !isBuy);
        uint32 best = isBuy ? top.bestAsk : top.bestBid;
        uint256 fills = 0;
        uint256 selfCancels = 0;
        while (order.remainingWh != 0 && best != 0 && (isBuy ? best <= order.limit : best >= order.limit)) {
            if (fills == taker.fillCap || selfCancels == taker.fillCap) {
                order.capped = true;
                break;
            }
            Level storage level = _levels[bookKey][best];
            if (_matchHead(taker, order, level)) ++fills;
            else ++selfCancels;
            if (level.head == 0) {
                // the level is empty: drop it and find the next best price
                _prices[bookKey].clear(best);
                best = isBuy ? _prices[bookKey].lowestAtOrAbove(best) : _prices[bookKey].highestAtOrBelow(best);
            }
        }
        if (isBuy) top.bestAsk = best;
        else top.bestBid = best;
    }

    /// @dev Matches the incoming order with the head of `level`: fills it, or cancels it when it
    /// belongs to the taker (self-trade prevention). Returns true for a fill.
    function _matchHead(Taker memory taker, Incoming memory order, Level storage level) private returns (bool filled) {
        uint40 makerId = level.head;
        Order memory maker = _orders[makerId];
        if (maker.memberId == taker.memberId) {
            taker.balance += _releaseHead(level, makerId, maker, taker.account, CancelReason.SelfTrade);
            return false;
        }
        uint64 fillWh = maker.remainingWh < order.remainingWh ? maker.remainingWh : order.remainingWh;
        uint256 value = _fillMaker(level, makerId, maker, fillWh, order.orderId);
        unchecked {
            order.remainingWh -= fillWh; // fillWh <= remainingWh
            order.tradedWh += fillWh; // the fills add up to at most the order's quantity
            order.tradedValue += value;
        }
        return true;
    }

    /// @dev The single path by which a resting order is filled: updates the maker's order,
    /// position and (for escrow dust) balance, and emits {TradeExecuted}. Returns the trade value.
    function _fillMaker(Level storage level, uint40 makerId, Order memory maker, uint64 fillWh, uint40 takerId)
        private
        returns (uint256 value)
    {
        value = EnergyMath.value(fillWh, maker.pricePerKwh);
        uint48 makerLeft = maker.remainingWh - uint48(fillWh);

        Position storage position = _positions[maker.slot][maker.memberId];
        uint256 dust = maker.escrowDust;
        if (maker.isBuy) {
            position.boughtWh += fillWh;
            position.paid += uint64(value); // exact: value < 2^64 (MAX_QTY_WH)
            // floor(a + b) - floor(a) - floor(b) is 0 or 1
            dust += EnergyMath.value(maker.remainingWh, maker.pricePerKwh)
                - EnergyMath.value(makerLeft, maker.pricePerKwh) - value;
        } else {
            position.soldWh += fillWh;
            position.received += uint64(value);
        }

        if (makerLeft == 0) {
            _unlinkHead(level, maker.next);
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
        address makerAccount = memberAddress(maker.memberId);
        if (dust != 0) _accounts[makerAccount].balance += uint128(dust);

        // every order entry point trades for msg.sender, so the taker is the caller
        if (maker.isBuy) {
            emit TradeExecuted(
                maker.slot, makerAccount, msg.sender, makerId, takerId, maker.pricePerKwh, fillWh, true, makerLeft
            );
        } else {
            emit TradeExecuted(
                maker.slot, msg.sender, makerAccount, takerId, makerId, maker.pricePerKwh, fillWh, false, makerLeft
            );
        }
    }

    /// @dev Removes the head order of `level` and returns its escrow.
    function _releaseHead(Level storage level, uint40 orderId, Order memory order, address owner, CancelReason reason)
        private
        returns (uint256 released)
    {
        _unlinkHead(level, order.next);
        delete _orders[orderId];
        released = _escrowOf(order);
        emit OrderCancelled(order.slot, orderId, owner, order.remainingWh, released, reason);
    }

    function _unlinkHead(Level storage level, uint40 next) private {
        level.head = next;
        if (next == 0) level.tail = 0;
    }

    /// @dev Appends the rest of an incoming order at the tail of its price level.
    function _rest(Incoming memory order, uint32 memberId, BookTop memory top) private {
        uint32 price = order.limit;
        uint256 bookKey = _bookKey(order.slot, order.isBuy);
        Level storage level = _levels[bookKey][price];
        uint40 tail = level.tail;
        _orders[order.orderId] =
            Order(memberId, uint48(order.remainingWh), tail, 0, price, order.slot, order.isBuy, 0);
        if (tail == 0) {
            level.head = order.orderId;
            _prices[bookKey].set(price);
            if (order.isBuy) {
                if (price > top.bestBid) top.bestBid = price;
            } else if (top.bestAsk == 0 || price < top.bestAsk) {
                top.bestAsk = price;
            }
        } else {
            _orders[tail].next = order.orderId;
        }
        level.tail = order.orderId;
    }

    function _cancel(uint40 orderId) private {
        Order memory order = _orders[orderId];
        if (order.memberId == 0) revert MarketOrderNotFound(orderId);
        Account storage acc = _accounts[msg.sender];
        if (acc.memberId != order.memberId) {
            revert MarketNotOrderOwner(orderId, msg.sender, memberAddress(order.memberId));
        }
        uint64 closure = gateClosure(order.slot);
        if (block.timestamp >= closure) revert MarketGateClosed(order.slot, closure, uint64(block.timestamp));
        uint256 released = _removeOrder(orderId, order, msg.sender, CancelReason.ByMember);
        if (released != 0) acc.balance += uint128(released);
    }

    /// @dev Removes a resting order from anywhere in its level; returns its escrow (the caller
    /// credits it to the owner).
    function _removeOrder(uint40 orderId, Order memory order, address owner, CancelReason reason)
        private
        returns (uint256 released)
    {
        uint256 bookKey = _bookKey(order.slot, order.isBuy);
        Level storage level = _levels[bookKey][order.pricePerKwh];
        Level memory queue = level;
        if (queue.head == orderId) queue.head = order.next;
        else _orders[order.prev].next = order.next;
        if (queue.tail == orderId) queue.tail = order.prev;
        else _orders[order.next].prev = order.prev;
        if (queue.head == 0) {
            delete _levels[bookKey][order.pricePerKwh];
            PriceBitmap.Bitmap storage prices = _prices[bookKey];
            prices.clear(order.pricePerKwh);
            BookTop storage top = _tops[order.slot];
            if (order.isBuy) {
                if (top.bestBid == order.pricePerKwh) top.bestBid = prices.highestAtOrBelow(order.pricePerKwh);
            } else if (top.bestAsk == order.pricePerKwh) {
                top.bestAsk = prices.lowestAtOrAbove(order.pricePerKwh);
            }
        } else {
            level.head = queue.head;
            level.tail = queue.tail;
        }
        delete _orders[orderId];
        released = _escrowOf(order);
        emit OrderCancelled(order.slot, orderId, owner, order.remainingWh, released, reason);
    }

    function _escrowOf(Order memory order) private pure returns (uint256) {
        return order.isBuy ? EnergyMath.value(order.remainingWh, order.pricePerKwh) + order.escrowDust : 0;
    }

    function _view(uint40 orderId, Order memory order) private view returns (OrderView memory) {
        return OrderView(
            orderId,
            memberAddress(order.memberId),
            order.slot,
            order.isBuy,
            order.pricePerKwh,
            order.remainingWh,
            _escrowOf(order)
        );
    }

    function _bookKey(uint32 slot, bool isBuy) private pure returns (uint256) {
        return (uint256(slot) << 1) | (isBuy ? 1 : 0);
    }
}

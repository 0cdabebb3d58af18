// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Continuous double auction per delivery slot, with escrow (DESIGN.md section 4)
/// @notice Limit orders for a slot match on arrival against the best resting orders of the
/// other side (price-time priority) at the resting order's price. Buy orders escrow
/// `qtyWh * pricePerKwh / 1000` tokens from the member's deposited balance. The events are
/// enough to rebuild every book and balance from logs alone.
///
/// Order ids (see {OrderIds}) encode slot, side, limit price and place in the price level's
/// queue. A cancelled order leaves a gap in its queue
/// that matching steps over later; the fill cap bounds fills, and separately the other matching
/// steps (self-trade cancellations and gaps), per incoming order.
interface ICdaMarket {
    /// @notice Why an order left the book without filling completely.
    enum CancelReason {
        ByMember, // the owner cancelled it
        SelfTrade, // an incoming order of the same member reached it
        FillCap, // the incoming order hit the fill cap while still crossing the book
        Expired // its slot reached gate closure
    }

    struct OrderRequest {
        uint32 slot;
        bool isBuy;
        uint32 pricePerKwh;
        uint64 qtyWh;
    }

    struct OrderView {
        uint256 orderId;
        address member;
        uint32 slot;
        bool isBuy;
        uint32 pricePerKwh;
        uint64 remainingWh;
        uint256 escrow; // tokens held for this order (buy orders only)
    }

    /// @notice Traded energy and money of a member in a slot, settled after delivery.
    struct Position {
        uint64 boughtWh;
        uint64 soldWh;
        uint64 paid; // token base units owed for energy bought (held by the market)
        uint64 received; // token base units due for energy sold
    }

    error MarketZeroAmount();
    error MarketNotMember(address account);
    error MarketInsufficientBalance(address member, uint256 balance, uint256 needed);
    error MarketPriceOutOfBand(uint32 pricePerKwh, uint32 minPricePerKwh, uint32 maxPricePerKwh);
    error MarketPriceOffTick(uint32 pricePerKwh, uint32 priceTick);
    error MarketQuantityTooSmall(uint64 qtyWh, uint64 minQtyWh);
    error MarketQuantityTooLarge(uint64 qtyWh, uint64 maxQtyWh);
    error MarketGateClosed(uint32 slot, uint64 gateClosure, uint64 timestamp);
    error MarketOrderNotFound(uint256 orderId);
    error MarketNotOrderOwner(uint256 orderId, address caller, address owner);
    error MarketOrderNotExpired(uint256 orderId, uint64 gateClosure, uint64 timestamp);

    event Deposited(address indexed member, uint256 amount, uint256 balance);
    event Withdrawn(address indexed member, uint256 amount, uint256 balance);
    /// @notice An order arrived; fills, cancellation or resting follow in this transaction.
    event OrderPlaced(
        uint32 indexed slot, uint256 indexed orderId, address indexed member, bool isBuy, uint32 pricePerKwh, uint64 qtyWh
    );
    /// @notice `remainingWh` left the book (or the incoming order) and `escrowReleased` went back
    /// to the member's balance.
    event OrderCancelled(
        uint32 indexed slot,
        uint256 indexed orderId,
        address indexed member,
        uint64 remainingWh,
        uint256 escrowReleased,
        CancelReason reason
    );
    /// @notice A fill at the resting (maker) order's price; `makerIsBuy` tells which side rested.
    event TradeExecuted(
        uint32 indexed slot,
        address indexed buyer,
        address indexed seller,
        uint256 buyOrderId,
        uint256 sellOrderId,
        uint32 pricePerKwh,
        uint64 qtyWh,
        bool makerIsBuy
    );

    /// @notice Moves `amount` settlement tokens from the caller into its market balance.
    /// @dev Requirements: caller is an active member, `amount` > 0, allowance given.
    /// Emits a {Deposited} event.
    function deposit(uint256 amount) external;

    /// @notice Sends `amount` of the caller's market balance back to it.
    /// @dev Requirements: `amount` > 0 and at most the balance. Emits a {Withdrawn} event.
    function withdraw(uint256 amount) external;

    /// @notice Places a limit order for `slot` and matches it at once (DESIGN.md section 4).
    /// @dev Requirements: caller is an active member; price within the band and a multiple of the
    /// price tick; quantity at least the minimum; before the slot's gate closure; for a buy,
    /// balance covers the escrow.
    /// Emits {OrderPlaced}, then {TradeExecuted} per fill and {OrderCancelled} per self-trade
    /// cancellation or fill-cap remainder.
    /// @return orderId the new order's id (unique; it identifies the order in every event).
    function placeOrder(uint32 slot, bool isBuy, uint32 pricePerKwh, uint64 qtyWh) external returns (uint256 orderId);

    /// @notice Places several orders of the caller in one transaction, in array order; the result
    /// is the same as placing them one by one.
    /// @return orderIds the new orders' ids, in array order.
    function placeOrders(OrderRequest[] calldata orders) external returns (uint256[] memory orderIds);

    /// @notice Cancels the caller's resting order before its slot's gate closure and releases its
    /// escrow. Emits an {OrderCancelled} event.
    function cancelOrder(uint256 orderId) external;

    /// @notice Cancels several resting orders of the caller.
    function cancelOrders(uint256[] calldata orderIds) external;

    /// @notice Removes resting orders whose slot passed gate closure and releases their escrow
    /// to their owners; anyone may call it. Emits an {OrderCancelled} event (reason Expired) each.
    function expireOrders(uint256[] calldata orderIds) external;

    function balanceOf(address member) external view returns (uint256);

    function getOrder(uint256 orderId) external view returns (OrderView memory);

    /// @notice Best resting bid and ask of `slot` (0 when that side is empty).
    function bestPrices(uint32 slot) external view returns (uint32 bestBid, uint32 bestAsk);

    /// @notice Up to `maxOrders` resting orders of one side of a book, best first, FIFO within a
    /// price level.
    function bookSide(uint32 slot, bool isBuy, uint256 maxOrders) external view returns (OrderView[] memory);

    function positionOf(uint32 slot, address member) external view returns (Position memory);
}

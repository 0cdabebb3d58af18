// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Community registry: members, roles, slot clock, tariffs and market parameters
/// @notice Units (DESIGN.md section 2): energy in Wh, prices in token base units per kWh,
/// slots numbered `(timestamp - epoch) / slotSeconds`.
interface ICommunityRegistry {
    /// @notice Parameters of the continuous double auction, one storage word.
    struct MarketParams {
        uint32 minPricePerKwh; // lowest accepted limit price, >= 1; a multiple of the price tick
        uint32 maxPricePerKwh; // highest accepted limit price; a multiple of the price tick, at
        // most MAX_PRICE_TICKS ticks
        uint64 minQtyWh; // smallest accepted order quantity, >= 1
        uint32 gateSeconds; // trading for a slot closes this long before the slot starts
        uint16 fillCap; // most fills (and, separately, other matching steps) per incoming order, 1..256
    }

    /// @notice Supplier tariffs: members buy at `importPricePerKwh`, sell at `exportPricePerKwh`.
    struct Tariffs {
        uint32 importPricePerKwh;
        uint32 exportPricePerKwh;
    }

    error RegistryZeroAddress();
    error RegistryAlreadyMember(address account);
    error RegistryNotMember(address account);
    error RegistryInvalidClock(uint64 epoch, uint32 slotSeconds);
    error RegistryInvalidPriceTick(uint32 priceTick);
    error RegistryInvalidPriceBand(uint32 minPricePerKwh, uint32 maxPricePerKwh);
    error RegistryInvalidMinQty(uint64 minQtyWh);
    error RegistryInvalidFillCap(uint16 fillCap);
    error RegistryInvalidTariffs(uint32 importPricePerKwh, uint32 exportPricePerKwh);

    event MemberAdded(address indexed member, uint32 indexed memberId);
    event MemberRemoved(address indexed member, uint32 indexed memberId);
    event MarketParamsUpdated(
        uint32 minPricePerKwh, uint32 maxPricePerKwh, uint64 minQtyWh, uint32 gateSeconds, uint16 fillCap
    );
    event TariffsUpdated(uint32 importPricePerKwh, uint32 exportPricePerKwh);

    /// @notice Registers `account` as a member (or re-activates a removed one, keeping its id).
    /// @dev Requirements: caller has MANAGER_ROLE; `account` is not an active member.
    /// Emits a {MemberAdded} event.
    function addMember(address account) external returns (uint32 memberId);

    /// @notice Deactivates a member: it can no longer deposit or place orders, but keeps its
    /// balance (withdrawable) and its resting orders until they fill, are cancelled or expire.
    /// @dev Requirements: caller has MANAGER_ROLE; `account` is an active member.
    /// Emits a {MemberRemoved} event.
    function removeMember(address account) external;

    /// @notice Replaces the market parameters. Requirements: caller has DEFAULT_ADMIN_ROLE.
    /// Emits a {MarketParamsUpdated} event.
    function setMarketParams(MarketParams calldata params) external;

    /// @notice Replaces the supplier tariffs (export < import). Requirements: DEFAULT_ADMIN_ROLE.
    /// Emits a {TariffsUpdated} event.
    function setTariffs(Tariffs calldata tariffs) external;

    /// @notice Member id (0 if never registered) and whether it is active.
    function memberOf(address account) external view returns (uint32 memberId, bool active);

    /// @notice Address of the member with id `memberId` (zero address if none).
    function memberAddress(uint32 memberId) external view returns (address);

    /// @notice Number of active members.
    function memberCount() external view returns (uint32);

    function marketParams() external view returns (MarketParams memory);

    function tariffs() external view returns (Tariffs memory);

    /// @notice The slot clock: slot `s` starts at `epoch + s * slotSeconds`; its trading closes
    /// `gateSeconds` earlier.
    function slotClock() external view returns (uint64 epoch, uint32 slotSeconds, uint32 gateSeconds);

    /// @notice Limit prices are whole multiples of this many base units per kWh (fixed at
    /// deployment, like the slot clock).
    function priceTick() external view returns (uint32);

    /// @notice The slot in delivery now (0 before the epoch).
    function currentSlot() external view returns (uint32);

    /// @notice The first slot still open for trading.
    function nextOpenSlot() external view returns (uint32);

    /// @notice Timestamp at which trading for `slot` closes (0 if it closed before time began).
    function gateClosure(uint32 slot) external view returns (uint64);
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ICommunityRegistry} from "./interfaces/ICommunityRegistry.sol";

/// @title Community registry: members, roles, slot clock, tariffs, market parameters
/// @notice Roles: DEFAULT_ADMIN_ROLE (parameters, tariffs, role grants), MANAGER_ROLE (members,
/// meters and the community manager's clearing results), DSO_ROLE and SUPPLIER_ROLE (grid
/// operator and retailer), SETTLEMENT_ROLE (the settlement contract, which applies settlement
/// results to the market's accounts).
/// @dev Abstract: the market inherits it so that the order path reads membership, balance and
/// parameters from two storage words instead of calling another contract (DESIGN.md section 9:
/// gas per order is what limits scale).
abstract contract CommunityRegistry is ICommunityRegistry, AccessControl {
    bytes32 public constant MANAGER_ROLE = keccak256("MANAGER_ROLE");
    bytes32 public constant DSO_ROLE = keccak256("DSO_ROLE");
    bytes32 public constant SUPPLIER_ROLE = keccak256("SUPPLIER_ROLE");
    bytes32 public constant SETTLEMENT_ROLE = keccak256("SETTLEMENT_ROLE");

    /// @dev One storage word per account: membership and the market balance it trades from.
    struct Account {
        uint32 memberId; // 0: never a member
        bool active;
        uint128 balance; // token base units deposited in the market, free to use or withdraw
        uint80 debt; // settlement charges the balance could not cover (blocks new orders)
    }

    uint64 internal immutable _epoch;
    uint32 internal immutable _slotSeconds;
    uint32 internal immutable _priceTick;

    /// @notice Most price ticks a limit price may have: the market's price bitmap has three
    /// levels of 256-bit words (2^24 ticks).
    uint32 public constant MAX_PRICE_TICKS = 2 ** 24 - 1;

    /// @notice Largest fill cap: it bounds the gas of one incoming order (each fill or other
    /// matching step costs 2k-30k gas), and 256 steps already need several million.
    uint16 public constant MAX_FILL_CAP = 256;

    /// @dev The market parameters in one word: placing an order reads them with one cold read.
    struct MarketState {
        uint32 minPricePerKwh;
        uint32 maxPricePerKwh;
        uint64 minQtyWh;
        uint32 gateSeconds;
        uint16 fillCap;
    }

    mapping(address account => Account) internal _accounts;
    mapping(uint32 memberId => address account) private _memberAddresses;
    uint32 private _lastMemberId;
    uint32 private _memberCount;
    MarketState internal _market;
    Tariffs private _tariffs;

    constructor(
        address admin,
        uint64 epoch,
        uint32 slotSeconds,
        uint32 priceTick_,
        MarketParams memory params,
        Tariffs memory initialTariffs
    ) {
        if (admin == address(0)) revert RegistryZeroAddress();
        if (slotSeconds == 0) revert RegistryInvalidClock(epoch, slotSeconds);
        if (priceTick_ == 0) revert RegistryInvalidPriceTick(priceTick_);
        _epoch = epoch;
        _slotSeconds = slotSeconds;
        _priceTick = priceTick_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setMarketParams(params);
        _setTariffs(initialTariffs);
    }

    // ----------------------------------------------------------------- members

    /// @inheritdoc ICommunityRegistry
    function addMember(address account) external onlyRole(MANAGER_ROLE) returns (uint32 memberId) {
        if (account == address(0)) revert RegistryZeroAddress();
        Account storage acc = _accounts[account];
        if (acc.active) revert RegistryAlreadyMember(account);
        memberId = acc.memberId;
        if (memberId == 0) {
            memberId = ++_lastMemberId;
            acc.memberId = memberId;
            _memberAddresses[memberId] = account;
        }
        acc.active = true;
        ++_memberCount;
        emit MemberAdded(account, memberId);
    }

    /// @inheritdoc ICommunityRegistry
    function removeMember(address account) external onlyRole(MANAGER_ROLE) {
        Account storage acc = _accounts[account];
        if (!acc.active) revert RegistryNotMember(account);
        acc.active = false;
        --_memberCount;
        emit MemberRemoved(account, acc.memberId);
    }

    /// @inheritdoc ICommunityRegistry
    function memberOf(address account) external view returns (uint32 memberId, bool active) {
        Account storage acc = _accounts[account];
        return (acc.memberId, acc.active);
    }

    /// @inheritdoc ICommunityRegistry
    function memberAddress(uint32 memberId) public view returns (address) {
        return _memberAddresses[memberId];
    }

    /// @inheritdoc ICommunityRegistry
    function memberCount() external view returns (uint32) {
        return _memberCount;
    }

    // -------------------------------------------------------------- parameters

    /// @inheritdoc ICommunityRegistry
    function setMarketParams(MarketParams calldata params) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setMarketParams(params);
    }

    /// @inheritdoc ICommunityRegistry
    function setTariffs(Tariffs calldata newTariffs) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setTariffs(newTariffs);
    }

    /// @inheritdoc ICommunityRegistry
    function marketParams() external view returns (MarketParams memory) {
        MarketState memory state = _market;
        return MarketParams(
            state.minPricePerKwh, state.maxPricePerKwh, state.minQtyWh, state.gateSeconds, state.fillCap
        );
    }

    /// @inheritdoc ICommunityRegistry
    function tariffs() external view returns (Tariffs memory) {
        return _tariffs;
    }

    function _setMarketParams(MarketParams memory params) private {
        uint32 tick = _priceTick;
        if (
            params.minPricePerKwh == 0 || params.minPricePerKwh > params.maxPricePerKwh
                || params.minPricePerKwh % tick != 0 || params.maxPricePerKwh % tick != 0
                || params.maxPricePerKwh / tick > MAX_PRICE_TICKS
        ) {
            revert RegistryInvalidPriceBand(params.minPricePerKwh, params.maxPricePerKwh);
        }
        if (params.minQtyWh == 0) revert RegistryInvalidMinQty(params.minQtyWh);
        if (params.fillCap == 0 || params.fillCap > MAX_FILL_CAP) revert RegistryInvalidFillCap(params.fillCap);
        MarketState storage state = _market;
        state.minPricePerKwh = params.minPricePerKwh;
        state.maxPricePerKwh = params.maxPricePerKwh;
        state.minQtyWh = params.minQtyWh;
        state.gateSeconds = params.gateSeconds;
        state.fillCap = params.fillCap;
        emit MarketParamsUpdated(
            params.minPricePerKwh, params.maxPricePerKwh, params.minQtyWh, params.gateSeconds, params.fillCap
        );
    }

    function _setTariffs(Tariffs memory newTariffs) private {
        if (newTariffs.exportPricePerKwh >= newTariffs.importPricePerKwh) {
            revert RegistryInvalidTariffs(newTariffs.importPricePerKwh, newTariffs.exportPricePerKwh);
        }
        _tariffs = newTariffs;
        emit TariffsUpdated(newTariffs.importPricePerKwh, newTariffs.exportPricePerKwh);
    }

    // -------------------------------------------------------------- slot clock

    /// @inheritdoc ICommunityRegistry
    function slotClock() external view returns (uint64 epoch, uint32 slotSeconds, uint32 gateSeconds) {
        return (_epoch, _slotSeconds, _market.gateSeconds);
    }

    /// @inheritdoc ICommunityRegistry
    function priceTick() external view returns (uint32) {
        return _priceTick;
    }

    /// @inheritdoc ICommunityRegistry
    function currentSlot() external view returns (uint32) {
        if (block.timestamp < _epoch) return 0;
        return uint32((block.timestamp - _epoch) / _slotSeconds);
    }

    /// @inheritdoc ICommunityRegistry
    function nextOpenSlot() external view returns (uint32) {
        // smallest s with now < epoch + s * slotSeconds - gateSeconds
        uint256 shifted = block.timestamp + _market.gateSeconds;
        if (shifted < _epoch) return 0;
        return uint32((shifted - _epoch) / _slotSeconds + 1);
    }

    /// @inheritdoc ICommunityRegistry
    function gateClosure(uint32 slot) public view returns (uint64) {
        return _gateClosure(slot, _market.gateSeconds);
    }

    function _gateClosure(uint32 slot, uint32 gateSeconds) internal view returns (uint64) {
        uint256 start = uint256(_epoch) + uint256(slot) * _slotSeconds;
        return start > gateSeconds ? uint64(start - gateSeconds) : 0;
    }
}

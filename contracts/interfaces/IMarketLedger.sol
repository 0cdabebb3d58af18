// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @dev A settlement payment record is one 32-byte word: account (160 bits) | amount (int95;
/// positive credits the account, negative charges it) | this flag (the lowest bit), which closes
/// the account's position in the slot, releasing the trade payments it held.
uint256 constant LEDGER_CLOSE_POSITION = 1;
/// @dev Bytes per payment record.
uint256 constant LEDGER_PAYMENT_BYTES = 32;

/// @title The market's accounts as the settlement ledger (DESIGN.md section 6)
/// @notice Settlement results land in the same internal balances members trade from. The
/// settlement contract (SETTLEMENT_ROLE) releases the trade payments held in positions and
/// applies signed payments; the **supplier account** takes the residual of every application,
/// so each one is budget-balanced by construction (the supplier receives the rounding remainder,
/// DESIGN.md section 5).
///
/// A charge larger than the account's balance takes the balance and records the rest as the
/// account's **debt**; a member in debt cannot place orders. The supplier (the community's
/// retailer, who bills members anyway) stands behind debts: the shortfall is taken from its
/// residual at once, and whatever the member later repays (any deposit or credit pays its debt
/// first) goes to the supplier. So every balance is always backed by tokens:
/// `token balance = sum of balances + escrows + payments held in positions`.
interface IMarketLedger {
    error LedgerNoSupplier();
    error LedgerSupplierUnderfunded(address supplier, uint256 balance, uint256 needed);
    error LedgerNotMemberId(uint32 memberId);
    error LedgerMalformedRecords(uint256 length, uint256 recordBytes);
    error MarketMemberInDebt(address member, uint256 debt);

    event SupplierAccountSet(address indexed supplier);
    /// @notice A charge exceeded the account's balance by `amount`; `debt` is its debt now.
    event DebtIncurred(address indexed account, uint256 amount, uint256 debt);
    /// @notice `amount` of the account's debt was paid (to the supplier); `debt` is what is left.
    event DebtRepaid(address indexed account, uint256 amount, uint256 debt);
    /// @notice One application of settlement payments for `slot` (or a profit-share period):
    /// `released` trade payments left positions, and the supplier's residual was `supplierAmount`.
    event SettlementApplied(uint32 indexed slot, uint256 released, int256 supplierAmount);
    /// @notice `amount` tokens from `from` were credited to `account` (e.g. external revenue for
    /// the profit-share pot).
    event AccountFunded(address indexed from, address indexed account, uint256 amount);

    /// @notice Sets the supplier's account. Requirements: DEFAULT_ADMIN_ROLE; not the zero address.
    function setSupplierAccount(address supplier) external;

    function supplierAccount() external view returns (address);

    function debtOf(address account) external view returns (uint256);

    /// @notice Accounts and (if `withPositions`) positions in `slot` of the members whose ids
    /// start the `recordBytes`-byte records of `records` (a big-endian uint32 each; a settlement
    /// chunk of readings, or packed ids).
    /// @dev Packed so that settling a chunk costs one call and one copy: per record two words,
    /// the account (an address) and its position `boughtWh | soldWh << 64 | paid << 128 |
    /// received << 192` (0 without positions). Reverts with {LedgerNotMemberId} for an id never
    /// registered.
    function settlementPositions(uint32 slot, bytes calldata records, uint256 recordBytes, bool withPositions)
        external
        view
        returns (bytes memory accountsAndPositions);

    /// @notice Applies the packed `payments` of `slot` (records as {LEDGER_CLOSE_POSITION} describes): closes the positions
    /// flagged (releasing the trade payments they held), credits and charges the accounts, then
    /// gives the supplier the residual.
    /// @dev Requirements: SETTLEMENT_ROLE; if the residual is negative, the supplier's balance
    /// covers it. Emits {SettlementApplied}, and {DebtIncurred}/{DebtRepaid} where they happen.
    /// @return supplierAmount the supplier's residual (after debts taken on and repaid)
    function applySettlement(uint32 slot, bytes calldata payments) external returns (int256 supplierAmount);

    /// @notice Moves `amount` tokens from `from` (who approved the market) into `account`'s balance.
    /// @dev Requirements: SETTLEMENT_ROLE. Emits {AccountFunded}.
    function fundAccount(address from, address account, uint256 amount) external;
}

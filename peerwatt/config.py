"""Community parameters with their defaults: the one place deploy code (CLI, Brownie scripts,
tests, benchmarks) takes them from. Immutable; build one and pass it down."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MarketParams:
    """Mirrors ICommunityRegistry.MarketParams."""

    min_price_per_kwh: int = 1_000  # one price tick (CommunityConfig.price_tick)
    max_price_per_kwh: int = 1_000_000  # 1 token per kWh
    min_qty_wh: int = 10
    gate_seconds: int = 300  # trading for a slot closes 5 minutes before it starts
    fill_cap: int = 20

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        """ABI order of the Solidity struct."""
        return (self.min_price_per_kwh, self.max_price_per_kwh, self.min_qty_wh, self.gate_seconds, self.fill_cap)


@dataclass(frozen=True)
class Tariffs:
    """Mirrors ICommunityRegistry.Tariffs: members buy from the supplier at import, sell at export."""

    import_price_per_kwh: int = 250_000  # 0.25 token/kWh
    export_price_per_kwh: int = 60_000  # 0.06 token/kWh

    def as_tuple(self) -> tuple[int, int]:
        return (self.import_price_per_kwh, self.export_price_per_kwh)


SETTLEMENT_MODES = ("cda", "sharing", "optimisation")  # ICommunitySettlement.Mode
SHARING_RULES = ("mmr", "sdr", "bs")  # ICommunitySettlement.SharingRule
SHARE_RULES = ("equal", "proportional", "shapley")  # ICommunitySettlement.ShareRule


@dataclass(frozen=True)
class SettlementRules:
    """Mirrors ICommunitySettlement.Config: how slots are settled and profit shares paid."""

    mode: str = "cda"
    rule: str = "mmr"  # sharing mode's pricing rule
    share_rule: str = "equal"
    grid_fee_per_kwh: int = 0  # DSO fee per kWh traded inside the community, each side
    manager_fee_per_kwh: int = 0
    savings_share_bps: int = 0  # part of each member's savings kept for the profit-share pot

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.mode, SETTLEMENT_MODES, "mode"),
            (self.rule, SHARING_RULES, "rule"),
            (self.share_rule, SHARE_RULES, "share rule"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r} (choose from {', '.join(allowed)})")

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        """ABI order of the Solidity struct."""
        return (
            SETTLEMENT_MODES.index(self.mode),
            SHARING_RULES.index(self.rule),
            SHARE_RULES.index(self.share_rule),
            self.grid_fee_per_kwh,
            self.manager_fee_per_kwh,
            self.savings_share_bps,
        )

    @classmethod
    def from_tuple(cls, values: tuple[int, ...]) -> SettlementRules:
        mode, rule, share_rule, grid_fee, manager_fee, savings = (int(value) for value in values)
        return cls(SETTLEMENT_MODES[mode], SHARING_RULES[rule], SHARE_RULES[share_rule], grid_fee, manager_fee, savings)


@dataclass(frozen=True)
class CommunityConfig:
    slot_seconds: int = 900
    # limit prices are multiples of the tick, fixed at deployment: 0.001 token/kWh (0.1 cent/kWh
    # for a euro token), so that one 256-bit word of the market's price bitmap covers 0.256
    # token/kWh, the whole range between typical export and import tariffs
    price_tick: int = 1_000
    market: MarketParams = MarketParams()
    tariffs: Tariffs = Tariffs()
    settlement: SettlementRules = SettlementRules()
    period_slots: int = 96  # profit-share period: a day of 15-minute slots
    reading_window_seconds: int = 900  # a slot settles this long after it ends (or once all readings are in)
    # dev chains: tokens minted to, and deposited by, each member created by `deploy --members`
    member_funding_base_units: int = 1_000_000_000  # 1,000 tokens
    member_deposit_base_units: int = 500_000_000  # 500 tokens
    supplier_deposit_base_units: int = 5_000_000_000  # 5,000 tokens: the supplier pays for exports from it

    def epoch_for(self, timestamp: int) -> int:
        """Default epoch: the start of the slot containing ``timestamp``."""
        return timestamp - timestamp % self.slot_seconds

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


@dataclass(frozen=True)
class CommunityConfig:
    slot_seconds: int = 900
    # limit prices are multiples of the tick, fixed at deployment: 0.001 token/kWh (0.1 cent/kWh
    # for a euro token), so that one 256-bit word of the market's price bitmap covers 0.256
    # token/kWh, the whole range between typical export and import tariffs
    price_tick: int = 1_000
    market: MarketParams = MarketParams()
    tariffs: Tariffs = Tariffs()
    # dev chains: tokens minted to, and deposited by, each member created by `deploy --members`
    member_funding_base_units: int = 1_000_000_000  # 1,000 tokens
    member_deposit_base_units: int = 500_000_000  # 500 tokens

    def epoch_for(self, timestamp: int) -> int:
        """Default epoch: the start of the slot containing ``timestamp``."""
        return timestamp - timestamp % self.slot_seconds

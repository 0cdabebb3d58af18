"""Units and money arithmetic (DESIGN.md section 2): the one place Python code converts them.

Energy is an integer number of Wh, prices are token base units per kWh, and the token has 6
decimals. The value of q Wh at price p is ``q * p // 1000``, rounded down, the same figure for
payer and payee -- exactly what the contracts compute (contracts/libraries/EnergyMath.sol).
"""

from __future__ import annotations

from decimal import Decimal
from typing import NewType

Wh = NewType("Wh", int)
PricePerKwh = NewType("PricePerKwh", int)  # token base units per kWh
BaseUnits = NewType("BaseUnits", int)  # token base units (1e-6 token)
SlotId = NewType("SlotId", int)
OrderId = NewType("OrderId", int)

TOKEN_DECIMALS = 6
# CdaMarket.MAX_QTY_WH: 1.1 TWh per order; bounds every fill's value below 2^64 base units
MAX_QTY_WH = 2**40 - 1
BASE_UNITS_PER_TOKEN = 10**TOKEN_DECIMALS
WH_PER_KWH = 1000


def value_of(qty_wh: int, price_per_kwh: int) -> int:
    """Value in base units of ``qty_wh`` at ``price_per_kwh``, rounded down."""
    return qty_wh * price_per_kwh // WH_PER_KWH


def tokens_to_base_units(tokens: str | int | Decimal) -> int:
    """``"12.5"`` tokens -> 12_500_000 base units (exact; rejects finer than 1e-6)."""
    amount = Decimal(str(tokens)) * BASE_UNITS_PER_TOKEN
    if amount != amount.to_integral_value():
        raise ValueError(f"{tokens} has more than {TOKEN_DECIMALS} decimals")
    return int(amount)


def format_tokens(base_units: int) -> str:
    """12_500_000 -> ``"12.500000"``."""
    sign = "-" if base_units < 0 else ""
    whole, frac = divmod(abs(base_units), BASE_UNITS_PER_TOKEN)
    return f"{sign}{whole}.{frac:0{TOKEN_DECIMALS}d}"

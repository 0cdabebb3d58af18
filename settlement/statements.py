"""Member statements: one row per member and settled slot with the columns of
``peerwatt statements`` (amounts in base units, positive = the member receives). The one place
the row is built, whether its figures come from the node (``settlement.client``) or the ledger
(``settlement.ledger.queries``)."""

from __future__ import annotations

from typing import Any

STATEMENT_COLUMNS = (
    "member",
    "slot",
    "import_wh",
    "export_wh",
    "contracted_wh",
    "imbalance_wh",
    "energy_amount",
    "imbalance_amount",
    "fees",
    "share",
    "net_amount",
)


def statement_row(
    member: str,
    slot: int,
    reading: tuple[int, int] | None,
    sharing: bool,
    contracted_wh: int = 0,
    energy_amount: int = 0,
    imbalance_amount: int = 0,
    fees: int = 0,
    retained: int = 0,
    shares: int = 0,
) -> dict[str, Any]:
    """A statement row. ``reading`` is the member's (import, export) Wh or None; ``retained``
    the savings kept for the profit-share pot and ``shares`` the profit shares paid with this
    slot (a period's last): ``share = shares - retained``. The imbalance is metered minus
    contracted, and none in sharing mode (there is no contract)."""
    import_wh, export_wh = reading if reading is not None else (0, 0)
    share = shares - retained
    return {
        "member": member,
        "slot": slot,
        "import_wh": import_wh,
        "export_wh": export_wh,
        "contracted_wh": contracted_wh,
        "imbalance_wh": export_wh - import_wh - contracted_wh if reading is not None and not sharing else 0,
        "energy_amount": energy_amount,
        "imbalance_amount": imbalance_amount,
        "fees": fees,
        "share": share,
        "net_amount": energy_amount + imbalance_amount - fees + share,
    }

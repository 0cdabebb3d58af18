"""Ledger tables written as CSV or Parquet files (``peerwatt ledger export``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import IO

import pandas as pd

from peerwatt.errors import InputError
from settlement.ledger.queries import Ledger


class ExportTable(str, Enum):
    ORDERS = "orders"
    TRADES = "trades"
    READINGS = "readings"
    SETTLEMENTS = "settlements"
    SHARES = "shares"
    EVENTS = "events"
    DAILY = "daily"


class ExportFormat(str, Enum):
    CSV = "csv"
    PARQUET = "parquet"


def table_frame(
    ledger: Ledger,
    table: ExportTable,
    slot_from: int | None = None,
    slot_to: int | None = None,
    member: str | None = None,
) -> pd.DataFrame:
    """The DataFrame of ``table`` (events and daily take no filters)."""
    if table is ExportTable.SHARES:
        if slot_from is not None or slot_to is not None:
            raise InputError("the shares table takes no slot filter (shares are per period)")
        return ledger.shares(member)
    if table in (ExportTable.EVENTS, ExportTable.DAILY):
        if slot_from is not None or slot_to is not None or member is not None:
            raise InputError(f"the {table.value} table takes no slot or member filter")
        return ledger.events() if table is ExportTable.EVENTS else ledger.daily_summary()
    query = {
        ExportTable.ORDERS: ledger.orders,
        ExportTable.TRADES: ledger.trades,
        ExportTable.READINGS: ledger.readings,
        ExportTable.SETTLEMENTS: ledger.settlements,
    }
    return query[table](slot_from=slot_from, slot_to=slot_to, member=member)


def for_parquet(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet has no integers beyond 64 bits: an object column of Python ints (one exceeded
    int64) becomes decimal text, as order ids already are."""
    converted = frame.copy()
    for column in converted.columns:
        if converted[column].dtype == object and converted[column].map(lambda v: isinstance(v, int)).any():
            converted[column] = converted[column].map(lambda v: None if v is None else str(v))
    return converted


def write(frame: pd.DataFrame, fmt: ExportFormat, out: Path | IO[str]) -> None:
    """Writes ``frame`` to ``out``, a file or (CSV only) a text stream such as stdout."""
    if fmt is ExportFormat.PARQUET:
        if not isinstance(out, Path):
            raise InputError("--format parquet writes a binary file: pass --out FILE")
        for_parquet(frame).to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False, lineterminator="\n")

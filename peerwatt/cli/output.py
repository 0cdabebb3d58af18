"""Writing command results: CSV and JSON on stdout, notes on stderr."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

import typer


class TableFormat(str, Enum):
    CSV = "csv"
    JSON = "json"


class TextFormat(str, Enum):
    TEXT = "text"
    JSON = "json"


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def emit_rows(rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: TableFormat) -> None:
    """Rows as CSV with a header (also when empty) or as a JSON list of objects."""
    rows = list(rows)
    if fmt is TableFormat.JSON:
        emit_json([{column: row[column] for column in columns} for row in rows])
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row[column] for column in columns] for row in rows)


def note(message: str) -> None:
    """Progress for humans, on stderr so that stdout stays machine-readable."""
    typer.echo(message, err=True)

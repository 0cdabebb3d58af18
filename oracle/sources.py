"""Where meter readings come from before they are checked and signed: a CSV file.

The file has a header naming exactly the columns of :data:`COLUMNS` (in any order, case and
surrounding spaces ignored). Rows are returned as text; checking them is
:mod:`oracle.validation`'s job, so a row with too few or too many cells is kept (and noted)
rather than refused here: it is quarantined later with its line number. Blank lines carry no
reading and are skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from peerwatt.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from _csv import _reader

COLUMNS = ("meter", "slot", "import_wh", "export_wh", "import_register_wh", "export_register_wh")


@dataclass(frozen=True)
class RawReading:
    """One data row of a readings file, as text.

    ``fields`` holds the stripped text of every column of :data:`COLUMNS` ("" where a short row
    has no cell); ``line`` is the file line the row starts on (the header is line 1).
    ``missing_columns`` names the columns a short row had no cell for, ``extra_cells`` holds the
    cells of a long row beyond the header's.
    """

    line: int
    fields: dict[str, str]
    missing_columns: tuple[str, ...] = ()
    extra_cells: tuple[str, ...] = ()


def read_csv(path: Path) -> list[RawReading]:
    """The data rows of the readings file ``path``, in file order.

    Raises NotFoundError if there is no such file and InputError if it cannot be read as UTF-8
    CSV, is empty or its header does not name exactly the expected columns.
    """
    text = _read_text(path)
    if not text.strip():
        raise InputError(f"readings file {path} is empty; expected a header {','.join(COLUMNS)}")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = _header(path, next(reader))
        return _rows(reader, header)
    except csv.Error as exc:
        raise InputError(f"readings file {path}: line {reader.line_num}: {exc}") from None


def _read_text(path: Path) -> str:
    """The file's text; utf-8-sig because spreadsheets often write a byte-order mark."""
    if not path.exists():
        raise NotFoundError(f"no readings file {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotFoundError(f"no readings file {path}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"readings file {path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise InputError(f"cannot read readings file {path}: {exc.strerror or exc}") from None


def _header(path: Path, cells: Sequence[str]) -> tuple[str, ...]:
    """The header's column names, checked against :data:`COLUMNS`."""
    names = tuple(cell.strip().lower() for cell in cells)
    missing = [name for name in COLUMNS if name not in names]
    unknown = [repr(name) for name in names if name not in COLUMNS]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    problems = [
        f"{label} {', '.join(items)}"
        for label, items in (("missing", missing), ("unknown", unknown), ("duplicate", duplicated))
        if items
    ]
    if problems:
        raise InputError(
            f"readings file {path}: header must name the columns {','.join(COLUMNS)} ({'; '.join(problems)})"
        )
    return names


def _rows(reader: _reader, header: tuple[str, ...]) -> list[RawReading]:
    """The remaining records of ``reader`` as raw readings, blank lines skipped."""
    rows: list[RawReading] = []
    while True:
        start = reader.line_num + 1  # line_num counts lines consumed, so a record starts after it
        cells = next(reader, None)
        if cells is None:
            return rows
        if any(cell.strip() for cell in cells):
            rows.append(_raw_reading(start, header, cells))


def _raw_reading(line: int, header: tuple[str, ...], cells: Sequence[str]) -> RawReading:
    """A record as a raw reading: cells matched to the header by position."""
    values = [cell.strip() for cell in cells]
    by_column = dict(zip(header, values, strict=False))
    return RawReading(
        line=line,
        fields={column: by_column.get(column, "") for column in COLUMNS},
        missing_columns=header[len(values) :],
        extra_cells=tuple(values[len(header) :]),
    )

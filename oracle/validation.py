"""Checks raw meter readings before they are signed and sent, so that the MeterOracle contract
accepts them: every row ends up either valid or quarantined with a one-line reason.

Checks, in this order (a row fails at the first stage with problems; a stage reports all of
the row's problems it finds):

1. the row: its number of cells, empty values, integers in range of their on-chain types
   (uint32 slot and energies, uint48 registers) and a meter of the deployment, named by member
   name or meter address (any hex case);
2. the slot has ended (``slot < current_slot``);
3. one reading per meter and slot: the first row in the file stands, later ones are duplicates;
4. registers, per meter in slot order, as the contract checks them against the last accepted
   reading (IMeterOracle's notes): never backwards, exactly previous + interval for the next
   slot, at least previous + interval after a gap, at least the interval for the first reading.
   A quarantined row is not "accepted", so the next row is checked against the last valid one.

Only the file is known here: a meter's first reading in the file is checked as a first reading
even if the chain already holds earlier ones.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_utils import is_hex_address, to_checksum_address

from oracle.readings import Reading
from oracle.sources import COLUMNS, RawReading
from peerwatt.errors import InputError

UINT32_MAX = 2**32 - 1
UINT48_MAX = 2**48 - 1
INTEGER_TYPES = {  # column -> (on-chain type, largest value)
    "slot": ("uint32", UINT32_MAX),
    "import_wh": ("uint32", UINT32_MAX),
    "export_wh": ("uint32", UINT32_MAX),
    "import_register_wh": ("uint48", UINT48_MAX),
    "export_register_wh": ("uint48", UINT48_MAX),
}
QUARANTINE_COLUMNS = ("line", "reason", *COLUMNS)
_INTEGER = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() would also take "1_000" and "٣"
_MAX_DIGITS = len(str(UINT48_MAX))  # longer texts are out of range without converting them


@dataclass(frozen=True)
class Quarantined:
    """A row that will not be sent, with why (``fields``: the row's original texts)."""

    line: int
    fields: dict[str, str]
    reason: str


@dataclass(frozen=True)
class ValidReading:
    """A row that passed every check: the reading to sign and the member whose meter it is."""

    line: int
    member: str
    reading: Reading


@dataclass(frozen=True)
class ValidationResult:
    """Valid readings sorted by (slot, meter address), as batches are sent; quarantined rows
    sorted by line."""

    readings: list[ValidReading]
    quarantined: list[Quarantined]


@dataclass(frozen=True)
class _Meter:
    member: str
    address: str  # checksummed


@dataclass(frozen=True)
class _Candidate:
    """A row whose fields are valid, on its way through the later checks."""

    row: RawReading
    valid: ValidReading


def validate(rows: Sequence[RawReading], meters: Mapping[str, str], current_slot: int) -> ValidationResult:
    """Sorts ``rows`` into valid readings and quarantined rows (see the module docstring).

    ``meters`` maps member name -> meter address (``Deployment.meters``); ``current_slot`` is
    the slot in delivery now (readings of it and later slots are refused).
    """
    directory = _MeterDirectory(meters)
    quarantined: list[Quarantined] = []
    candidates: list[_Candidate] = []
    for row in rows:
        problems = _row_problems(row, directory, current_slot)
        if problems:
            quarantined.append(_quarantine(row, problems))
        else:
            candidates.append(_Candidate(row, _valid_reading(row, directory)))
    unique = _first_per_slot(candidates, quarantined)
    valid = _consistent_registers(unique, quarantined)
    valid.sort(key=lambda reading: (reading.reading.slot, int(reading.reading.meter, 16)))
    quarantined.sort(key=lambda row: row.line)
    return ValidationResult(valid, quarantined)


def write_quarantine(path: Path, quarantined: Sequence[Quarantined]) -> Path:
    """Writes ``quarantined`` as CSV (:data:`QUARANTINE_COLUMNS`, original texts) to ``path``,
    creating its directories; the header is written even when there is nothing to write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(QUARANTINE_COLUMNS)
        for row in quarantined:
            writer.writerow([row.line, row.reason, *(row.fields.get(column, "") for column in COLUMNS)])
    return path


# ------------------------------------------------------------------------- meters


class _MeterDirectory:
    """The deployment's meters by member name and by lower-case address."""

    def __init__(self, meters: Mapping[str, str]) -> None:
        self._by_name: dict[str, _Meter] = {}
        for member, address in meters.items():
            if not is_hex_address(address):
                raise InputError(f"the meter of member {member!r} is not an address: {address!r}")
            self._by_name[member] = _Meter(member, to_checksum_address(address))
        self._by_address = {meter.address.lower(): meter for meter in self._by_name.values()}

    def find(self, text: str) -> _Meter | None:
        """The meter ``text`` names (a member name, or a meter address in any hex case)."""
        return self._by_name.get(text) or self._by_address.get(text.lower())


# ------------------------------------------------------------------------- stage 1 and 2: one row


def _row_problems(row: RawReading, directory: _MeterDirectory, current_slot: int) -> list[str]:
    """Why ``row`` cannot be a reading on its own (empty if it can)."""
    shape = _shape_problem(row)
    if shape:
        return [shape]
    problems = [problem for column in COLUMNS if (problem := _field_problem(column, row, directory))]
    if problems:
        return problems
    slot = int(row.fields["slot"])
    if slot >= current_slot:
        return [f"slot {slot} has not ended (current slot {current_slot})"]
    return []


def _shape_problem(row: RawReading) -> str | None:
    """The wrong-number-of-cells reason, if the row was short or long."""
    if not row.missing_columns and not row.extra_cells:
        return None
    cells = len(COLUMNS) - len(row.missing_columns) + len(row.extra_cells)
    detail = (
        f"no {', '.join(row.missing_columns)}"
        if row.missing_columns
        else f"extra {', '.join(repr(cell) for cell in row.extra_cells)}"
    )
    return f"wrong number of cells: expected {len(COLUMNS)}, got {cells} ({detail})"


def _field_problem(column: str, row: RawReading, directory: _MeterDirectory) -> str | None:
    """What is wrong with one column's text (None if nothing)."""
    text = row.fields.get(column, "")
    if not text:
        return f"missing value for {column}"
    if column == "meter":
        if directory.find(text) is None:
            return f"unknown meter {text!r} (neither a member name nor a meter address of the deployment)"
        return None
    return _integer_problem(column, text)


def _integer_problem(column: str, text: str) -> str | None:
    """Why ``text`` is not a value of ``column``'s on-chain unsigned type (None if it is)."""
    if not _INTEGER.fullmatch(text):
        return f"{column} {text!r} is not an integer"
    if text.startswith("-") and text.strip("-0"):
        return f"{column} {text} is negative"
    type_name, largest = INTEGER_TYPES[column]
    if len(text.lstrip("+0")) > _MAX_DIGITS or int(text) > largest:
        return f"{column} {text} is too large for {type_name} (at most {largest})"
    return None


def _valid_reading(row: RawReading, directory: _MeterDirectory) -> ValidReading:
    """The reading of a row whose fields passed :func:`_field_problem`."""
    meter = directory.find(row.fields["meter"])
    assert meter is not None  # checked by _field_problem
    values = [int(row.fields[column]) for column in COLUMNS[1:]]
    return ValidReading(row.line, meter.member, Reading(meter.address, *values))


def _quarantine(row: RawReading, problems: Iterable[str]) -> Quarantined:
    return Quarantined(row.line, dict(row.fields), "; ".join(problems))


# ------------------------------------------------------------------------- stage 3: duplicates


def _first_per_slot(candidates: Sequence[_Candidate], quarantined: list[Quarantined]) -> list[_Candidate]:
    """The first row in the file per (meter, slot); later rows go to ``quarantined``."""
    first: dict[tuple[str, int], _Candidate] = {}
    kept: list[_Candidate] = []
    for candidate in sorted(candidates, key=lambda candidate: candidate.row.line):
        reading = candidate.valid.reading
        earlier = first.setdefault((reading.meter, reading.slot), candidate)
        if earlier is candidate:
            kept.append(candidate)
            continue
        same = "same values as" if earlier.valid.reading == reading else "different values from"
        reason = f"duplicate reading of {candidate.valid.member}'s meter for slot {reading.slot}"
        quarantined.append(_quarantine(candidate.row, [f"{reason}: {same} line {earlier.row.line}"]))
    return kept


# ------------------------------------------------------------------------- stage 4: registers


def _consistent_registers(candidates: Sequence[_Candidate], quarantined: list[Quarantined]) -> list[ValidReading]:
    """The candidates whose registers fit the meter's previous valid reading; the others go to
    ``quarantined``."""
    per_meter: defaultdict[str, list[_Candidate]] = defaultdict(list)
    for candidate in candidates:
        per_meter[candidate.valid.reading.meter].append(candidate)
    valid: list[ValidReading] = []
    for readings in per_meter.values():
        previous: ValidReading | None = None
        for candidate in sorted(readings, key=lambda candidate: candidate.valid.reading.slot):
            problems = [
                problem
                for kind in ("import", "export")
                if (problem := _register_problem(kind, candidate.valid, previous))
            ]
            if problems:
                quarantined.append(_quarantine(candidate.row, problems))
            else:
                valid.append(candidate.valid)
                previous = candidate.valid  # like the contract: only accepted readings count
    return valid


def _register_problem(kind: str, current: ValidReading, previous: ValidReading | None) -> str | None:
    """Why ``current``'s ``kind`` ("import" or "export") register does not follow ``previous``
    (the meter's last valid reading, None for its first)."""
    register, interval = _register_and_interval(kind, current.reading)
    if previous is None:
        if register < interval:
            return f"{kind} register {register} is below its own {kind}_wh {interval} (first reading of the meter)"
        return None
    last, _ = _register_and_interval(kind, previous.reading)
    if register < last:
        return f"{kind} register decreases from {last} (line {previous.line}) to {register}"
    if current.reading.slot == previous.reading.slot + 1:
        return _next_slot_problem(kind, register, interval, last, previous.line)
    if register - last < interval:
        return (
            f"{kind} register grew by {register - last} since slot {previous.reading.slot} (line {previous.line}),"
            f" less than {kind}_wh {interval}"
        )
    return None


def _next_slot_problem(kind: str, register: int, interval: int, last: int, last_line: int) -> str | None:
    """After the previous slot's reading the register must be exactly ``last + interval``."""
    if register == last + interval:
        return None
    return (
        f"{kind} register {register} is not the previous slot's {last} (line {last_line})"
        f" + {kind}_wh {interval} = {last + interval}"
    )


def _register_and_interval(kind: str, reading: Reading) -> tuple[int, int]:
    """A reading's ``kind`` ("import" or "export") register and the energy of its slot."""
    if kind == "import":
        return reading.import_register_wh, reading.import_wh
    return reading.export_register_wh, reading.export_wh

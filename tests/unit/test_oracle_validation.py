"""Meter readings from CSV to valid readings or quarantine (pure Python, real files, no chain)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.readings import Reading
from oracle.sources import COLUMNS, RawReading, read_csv
from oracle.validation import (
    QUARANTINE_COLUMNS,
    UINT32_MAX,
    UINT48_MAX,
    Quarantined,
    ValidationResult,
    validate,
    write_quarantine,
)
from peerwatt.errors import InputError, NotFoundError

ALICE = "0xc0ffee254729296a45a3885639AC7E10F9d54979"  # sorts after BOB's address
BOB = "0x1234567890AbcdEF1234567890aBcdef12345678"
STRANGER = "0x0DCd1Bf9A1b36cE34237eEaFef220932846BCD82"  # a meter of no member
METERS = {"alice": ALICE.lower(), "bob": BOB}  # a lower-case address in the deployment works too
HEADER = ",".join(COLUMNS)
NOW = 100  # the current slot


def write(tmp_path: Path, *lines: str, name: str = "readings.csv") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def check(tmp_path: Path, *rows: str, current_slot: int = NOW) -> ValidationResult:
    """Validates a readings file with ``rows`` under the standard header (line 1)."""
    return validate(read_csv(write(tmp_path, HEADER, *rows)), METERS, current_slot)


def reasons(result: ValidationResult) -> dict[int, str]:
    return {row.line: row.reason for row in result.quarantined}


def valid_lines(result: ValidationResult) -> list[int]:
    return [reading.line for reading in result.readings]


# ------------------------------------------------------------------------- the CSV source


def test_read_csv_rows_fields_and_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeff Slot ,meter,import_wh,export_wh,export_register_wh,import_register_wh",  # BOM, any order and case
        " 5 , alice ,1,2,20,10",
        "",  # blank lines carry nothing and are skipped ...
        ",,,,,",
        '6,"bo',  # ... but line numbers are those of the file, even after a quoted line break
        'b",3,4,24,13',
    )
    assert read_csv(path) == [
        RawReading(2, dict(zip(COLUMNS, ["alice", "5", "1", "2", "10", "20"], strict=True))),
        RawReading(5, dict(zip(COLUMNS, ["bo\nb", "6", "3", "4", "13", "24"], strict=True))),
    ]


def test_read_csv_keeps_short_and_long_rows(tmp_path: Path) -> None:
    short, long = read_csv(write(tmp_path, HEADER, "alice,5,1", "alice,6,1,2,10,20,x, y "))
    assert short == RawReading(
        2,
        {"meter": "alice", "slot": "5", "import_wh": "1"} | dict.fromkeys(COLUMNS[3:], ""),
        missing_columns=COLUMNS[3:],
    )
    assert long == RawReading(3, dict(zip(COLUMNS, ["alice", "6", "1", "2", "10", "20"], strict=True)), (), ("x", "y"))


def test_read_csv_header_only_has_no_rows(tmp_path: Path) -> None:
    assert read_csv(write(tmp_path, HEADER)) == []


def test_read_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no readings file .*nope.csv"):
        read_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize("text", ["", " \n\n"])
def test_read_csv_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=f"readings file {path} is empty; expected a header {HEADER}$"):
        read_csv(path)


def test_read_csv_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "binary.csv"
    binary.write_bytes(HEADER.encode() + b"\n\xff\xfe\n")
    with pytest.raises(InputError, match=f"readings file {binary} is not UTF-8 text"):
        read_csv(binary)
    with pytest.raises(InputError, match=f"cannot read readings file {tmp_path}"):
        read_csv(tmp_path)  # a directory


@pytest.mark.parametrize(
    "header, detail",
    [
        ("meter,slot,import_wh,export_wh,import_register_wh", "missing export_register_wh"),
        (HEADER + ",note", "unknown 'note'"),
        ("meter,slot,import_wh,export_wh,import_register_wh,export_register_wh,slot", "duplicate slot"),
        ("meter,slot,import,export_wh,import_register_wh", "missing import_wh, export_register_wh; unknown 'import'"),
        ("", "missing " + ", ".join(COLUMNS)),  # the header is line 1, even if blank
    ],
)
def test_read_csv_bad_header(tmp_path: Path, header: str, detail: str) -> None:
    path = write(tmp_path, header, "alice,5,1,2,10,20")
    with pytest.raises(InputError) as raised:
        read_csv(path)
    message = str(raised.value)
    assert message == f"readings file {path}: header must name the columns {HEADER} ({detail})"
    assert "\n" not in message


# ------------------------------------------------------------------------- valid readings


def test_valid_rows_become_readings(tmp_path: Path) -> None:
    result = check(tmp_path, "alice,5,1,2,10,20", "bob,5,0,7,0,7", "alice,6,3,0,13,20")
    assert result.quarantined == []
    assert [(reading.line, reading.member, reading.reading) for reading in result.readings] == [
        (3, "bob", Reading(BOB, 5, 0, 7, 0, 7)),
        (2, "alice", Reading(ALICE, 5, 1, 2, 10, 20)),  # checksummed, though the deployment has it in lower case
        (4, "alice", Reading(ALICE, 6, 3, 0, 13, 20)),
    ]


@pytest.mark.parametrize("meter", ["alice", ALICE, ALICE.lower(), ALICE.upper().replace("0X", "0x"), ALICE.upper()])
def test_meter_by_member_name_or_address_in_any_case(tmp_path: Path, meter: str) -> None:
    (reading,) = check(tmp_path, f"{meter},5,1,2,10,20").readings
    assert (reading.member, reading.reading.meter) == ("alice", ALICE)


def test_largest_values_of_the_on_chain_types_are_valid(tmp_path: Path) -> None:
    row = f"bob,{UINT32_MAX - 1},{UINT32_MAX},{UINT32_MAX},{UINT48_MAX},{UINT48_MAX}"
    (reading,) = check(tmp_path, row, current_slot=UINT32_MAX).readings
    assert reading.reading == Reading(BOB, UINT32_MAX - 1, UINT32_MAX, UINT32_MAX, UINT48_MAX, UINT48_MAX)


def test_leading_zeros_plus_sign_and_minus_zero_are_integers(tmp_path: Path) -> None:
    (reading,) = check(tmp_path, "bob,+005,-0,0,010,0").readings
    assert reading.reading == Reading(BOB, 5, 0, 0, 10, 0)


# ------------------------------------------------------------------------- one row's reasons

TOO_BIG_SLOT = f"slot {UINT32_MAX + 1} is too large for uint32 (at most {UINT32_MAX})"
NOT_OURS = "(neither a member name nor a meter address of the deployment)"
ALL_BUT_TWO = "import_wh, export_wh, import_register_wh, export_register_wh"


@pytest.mark.parametrize(
    "row, reason",
    [
        ("alice,5,1,2,10", "wrong number of cells: expected 6, got 5 (no export_register_wh)"),
        ("alice,5", f"wrong number of cells: expected 6, got 2 (no {ALL_BUT_TWO})"),
        ("alice,5,1,2,10,20,x,", "wrong number of cells: expected 6, got 8 (extra 'x', '')"),
        ("alice,,1,2,10,20", "missing value for slot"),
        (" ,5,1,2,10,20", "missing value for meter"),
        ("alice,5,1,2,,", "missing value for import_register_wh; missing value for export_register_wh"),
        ("alice,five,1,2,10,20", "slot 'five' is not an integer"),
        ("alice,5,nan,2,10,20", "import_wh 'nan' is not an integer"),
        ("alice,5,1,NaN,10,20", "export_wh 'NaN' is not an integer"),
        ("alice,5,1,2,inf,20", "import_register_wh 'inf' is not an integer"),
        ("alice,5,1.5,2,10,20", "import_wh '1.5' is not an integer"),
        ("alice,5,1.0,2,10,20", "import_wh '1.0' is not an integer"),
        ("alice,5,1,2,1e3,20", "import_register_wh '1e3' is not an integer"),
        ("alice,5,1,2,10,0x14", "export_register_wh '0x14' is not an integer"),
        ("alice,5,1,2,1_000,20", "import_register_wh '1_000' is not an integer"),
        ("alice,5,1,2,10,--20", "export_register_wh '--20' is not an integer"),
        ("alice,5,-1,2,10,20", "import_wh -1 is negative"),
        ("alice,-5,1,2,10,20", "slot -5 is negative"),
        (f"alice,{UINT32_MAX + 1},1,2,10,20", TOO_BIG_SLOT),
        (f"alice,5,{UINT32_MAX + 1},2,10,20",
         f"import_wh {UINT32_MAX + 1} is too large for uint32 (at most {UINT32_MAX})"),
        (f"alice,5,1,2,10,{UINT48_MAX + 1}",
         f"export_register_wh {UINT48_MAX + 1} is too large for uint48 (at most {UINT48_MAX})"),
        ("alice,5,1,2," + "9" * 5000 + ",20",  # too long for int(), still "too large"
         "import_register_wh " + "9" * 5000 + f" is too large for uint48 (at most {UINT48_MAX})"),
        ("carol,5,1,2,10,20", f"unknown meter 'carol' {NOT_OURS}"),
        (f"{STRANGER},5,1,2,10,20", f"unknown meter '{STRANGER}' {NOT_OURS}"),
        ("Alice,5,1,2,10,20", f"unknown meter 'Alice' {NOT_OURS}"),  # member names are case-sensitive
        (f"carol,{UINT32_MAX + 1},x,-1,10,20",  # every problem of the row's fields, in column order
         "; ".join([f"unknown meter 'carol' {NOT_OURS}", TOO_BIG_SLOT, "import_wh 'x' is not an integer",
                    "export_wh -1 is negative"])),
        (f"alice,{NOW},1,2,10,20", f"slot {NOW} has not ended (current slot {NOW})"),
        (f"alice,{NOW + 7},1,2,10,20", f"slot {NOW + 7} has not ended (current slot {NOW})"),
    ],
)  # fmt: skip
def test_row_reasons(tmp_path: Path, row: str, reason: str) -> None:
    result = check(tmp_path, "bob,5,1,2,10,20", row)
    assert valid_lines(result) == [2]
    assert result.quarantined == [Quarantined(3, read_csv(tmp_path / "readings.csv")[1].fields, reason)]
    assert "\n" not in reason


def test_quarantined_rows_keep_their_original_texts(tmp_path: Path) -> None:
    (row,) = check(tmp_path, " ALICE , 1.5 ,x").quarantined
    assert row.fields == {"meter": "ALICE", "slot": "1.5", "import_wh": "x"} | dict.fromkeys(COLUMNS[3:], "")


def test_bad_meter_address_in_the_deployment(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="the meter of member 'carol' is not an address: '0x12'"):
        validate([], {"carol": "0x12"}, NOW)


# ------------------------------------------------------------------------- duplicates


def test_duplicates_keep_the_first_row(tmp_path: Path) -> None:
    result = check(
        tmp_path,
        "alice,5,1,2,10,20",
        "alice,5,1,2,10,20",
        f"{ALICE.lower()},5,1,2,10,20",  # the same meter by address
        "alice,5,9,2,18,20",
        "bob,5,1,2,10,20",  # another meter: no duplicate
    )
    assert valid_lines(result) == [6, 2]
    assert reasons(result) == {
        3: "duplicate reading of alice's meter for slot 5: same values as line 2",
        4: "duplicate reading of alice's meter for slot 5: same values as line 2",
        5: "duplicate reading of alice's meter for slot 5: different values from line 2",
    }


def test_a_row_refused_for_its_fields_is_no_earlier_row(tmp_path: Path) -> None:
    result = check(tmp_path, "alice,5,x,2,10,20", "alice,5,1,2,10,20")
    assert valid_lines(result) == [3]
    assert reasons(result) == {2: "import_wh 'x' is not an integer"}


def test_the_first_row_of_a_slot_stands_even_with_bad_registers(tmp_path: Path) -> None:
    result = check(tmp_path, "alice,5,1,2,10,20", "alice,6,1,2,99,22", "alice,6,1,2,11,22")
    assert valid_lines(result) == [2]
    assert reasons(result) == {
        3: "import register 99 is not the previous slot's 10 (line 2) + import_wh 1 = 11",
        4: "duplicate reading of alice's meter for slot 6: different values from line 3",
    }


# ------------------------------------------------------------------------- registers


@pytest.mark.parametrize(
    "rows, reason",
    [
        (["alice,5,1,2,10,20", "alice,6,0,0,9,20"], "import register decreases from 10 (line 2) to 9"),
        (["alice,5,1,2,10,20", "alice,9,0,0,10,19"], "export register decreases from 20 (line 2) to 19"),
        (["alice,5,1,2,10,20", "alice,6,1,2,12,22"],
         "import register 12 is not the previous slot's 10 (line 2) + import_wh 1 = 11"),
        (["alice,5,1,2,10,20", "alice,6,1,2,11,21"],
         "export register 21 is not the previous slot's 20 (line 2) + export_wh 2 = 22"),
        (["alice,5,1,2,10,20", "alice,8,5,2,14,40"],
         "import register grew by 4 since slot 5 (line 2), less than import_wh 5"),
        (["alice,5,1,2,10,20", "alice,8,1,9,11,21"],
         "export register grew by 1 since slot 5 (line 2), less than export_wh 9"),
        (["alice,5,11,2,10,20"], "import register 10 is below its own import_wh 11 (first reading of the meter)"),
        (["alice,5,1,21,10,20"], "export register 20 is below its own export_wh 21 (first reading of the meter)"),
        (["alice,5,1,2,10,20", "alice,6,0,0,9,19"],
         "import register decreases from 10 (line 2) to 9; export register decreases from 20 (line 2) to 19"),
    ],
)  # fmt: skip
def test_register_reasons(tmp_path: Path, rows: list[str], reason: str) -> None:
    result = check(tmp_path, *rows)
    assert reasons(result) == {len(rows) + 1: reason}
    assert valid_lines(result) == list(range(2, len(rows) + 1))


def test_registers_after_a_gap_may_grow_more_than_the_interval(tmp_path: Path) -> None:
    result = check(tmp_path, "alice,5,1,2,10,20", "alice,8,1,2,15,22", "alice,9,0,0,15,22")
    assert result.quarantined == []


def test_a_quarantined_row_is_not_the_previous_reading(tmp_path: Path) -> None:
    # like the contract: slot 6 is refused, so slot 7 follows slot 5 after a gap
    result = check(tmp_path, "alice,5,1,2,10,20", "alice,6,1,2,99,22", "alice,7,1,2,12,24", "alice,8,1,2,14,26")
    assert valid_lines(result) == [2, 4]
    assert reasons(result) == {
        3: "import register 99 is not the previous slot's 10 (line 2) + import_wh 1 = 11",
        5: "import register 14 is not the previous slot's 12 (line 4) + import_wh 1 = 13",
    }


def test_rows_out_of_file_order_are_checked_in_slot_order_and_sent_slot_major(tmp_path: Path) -> None:
    result = check(
        tmp_path,
        "alice,7,1,1,12,22",  # line 2
        "bob,6,5,0,105,0",  # line 3
        "alice,5,1,1,10,20",  # line 4
        "bob,5,5,0,100,0",  # line 5
        "alice,6,1,1,11,21",  # line 6
        "bob,7,5,0,109,0",  # line 7: bob's slot 7 should be 110
    )
    assert [(reading.reading.slot, reading.member) for reading in result.readings] == [
        (5, "bob"),  # BOB's address sorts before ALICE's
        (5, "alice"),
        (6, "bob"),
        (6, "alice"),
        (7, "alice"),
    ]
    assert reasons(result) == {7: "import register 109 is not the previous slot's 105 (line 3) + import_wh 5 = 110"}


def test_quarantine_is_sorted_by_line(tmp_path: Path) -> None:
    result = check(tmp_path, "alice,6,0,0,5,5", "alice,5,1,1,10,10", "alice,x,1,1,1,1", "alice,5,1,1,10,10")
    assert [row.line for row in result.quarantined] == [2, 4, 5]


# ------------------------------------------------------------------------- nothing dropped silently

CELLS = st.one_of(
    st.sampled_from(["alice", "bob", "carol", ALICE, BOB.lower(), STRANGER, "", " ", "nan", "1.5", "-1", "x"]),
    st.integers(min_value=0, max_value=12).map(str),
    st.sampled_from([str(UINT32_MAX + 1), str(UINT48_MAX + 1), str(NOW), "009"]),
    st.text(max_size=4),
)
PLAUSIBLE = st.fixed_dictionaries(  # rows that are often valid, so that register checks and duplicates happen
    {
        "meter": st.sampled_from(["alice", "bob", ALICE.upper().replace("0X", "0x"), BOB.lower()]),
        "slot": st.integers(min_value=0, max_value=6).map(str),
        "import_wh": st.integers(min_value=0, max_value=2).map(str),
        "export_wh": st.integers(min_value=0, max_value=2).map(str),
        "import_register_wh": st.integers(min_value=0, max_value=8).map(str),
        "export_register_wh": st.integers(min_value=0, max_value=8).map(str),
    }
)


@st.composite
def readings_files(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A header in any column order and records: plausible rows in its order, or any cells."""
    header = draw(st.permutations(COLUMNS))
    in_order = PLAUSIBLE.map(lambda fields: [fields[column] for column in header])
    records = draw(st.lists(st.one_of(in_order, st.lists(CELLS, max_size=8)), max_size=25))
    return header, records


@settings(max_examples=300, deadline=None)
@given(file=readings_files(), current_slot=st.integers(min_value=0, max_value=8))
def test_every_row_is_either_valid_or_quarantined(
    tmp_path_factory: pytest.TempPathFactory, file: tuple[list[str], list[list[str]]], current_slot: int
) -> None:
    header, records = file
    path = tmp_path_factory.getbasetemp() / "property-readings.csv"  # session-wide: hypothesis reruns the test
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *records])
    rows = read_csv(path)
    assert len(rows) == sum(any(cell.strip() for cell in record) for record in records)

    result = validate(rows, METERS, current_slot)
    assert len(result.readings) + len(result.quarantined) == len(rows)
    assert sorted(valid_lines(result) + [row.line for row in result.quarantined]) == [row.line for row in rows]
    assert all(row.reason and "\n" not in row.reason for row in result.quarantined)
    # what passed is consistent on its own: validating it again quarantines nothing
    passed = set(valid_lines(result))
    again = validate([row for row in rows if row.line in passed], METERS, current_slot)
    assert again.quarantined == [] and again.readings == result.readings


# ------------------------------------------------------------------------- the quarantine file


def test_write_quarantine_round_trip(tmp_path: Path) -> None:
    result = check(tmp_path, 'alice,5,1,2,"1,0",20', "carol,5,1,2,10,20,extra", "alice,5,1.5", "bob,5,1,2,10,20")
    path = write_quarantine(tmp_path / "out" / "nested" / "quarantine.csv", result.quarantined)
    assert path == tmp_path / "out" / "nested" / "quarantine.csv"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == QUARANTINE_COLUMNS
        back = [
            Quarantined(int(row["line"]), {column: row[column] for column in COLUMNS}, row["reason"]) for row in reader
        ]
    assert back == result.quarantined
    assert [row.line for row in back] == [2, 3, 4]


def test_write_quarantine_writes_the_header_when_empty(tmp_path: Path) -> None:
    path = write_quarantine(tmp_path / "q" / "empty.csv", [])
    assert path.read_text() == ",".join(QUARANTINE_COLUMNS) + "\n"

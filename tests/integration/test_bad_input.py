"""Every bad input of the issue gets one ``error:`` line on stderr, a non-zero exit code and
changes nothing on chain (no block is mined: the chains automine, so any sent transaction would
add one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from peerwatt_cli import Cli, write_csv

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL = 64, 65, 66, 75


@pytest.fixture(scope="module")
def slot(community: Cli) -> int:
    """A slot open for trading for the whole module."""
    return int(community.ok("slot", "--format", "json").json()["next_open_slot"]) + 1


@pytest.fixture(scope="module")
def resting_order(community: Cli, slot: int) -> int:
    """A resting sell order of member0."""
    placed = community.ok(*place(slot, "member0", "sell", 300_000))
    return int(placed.stdout.split(":")[0].removeprefix("order "))


def refused(cli: Cli, args: list[object], code: int, match: str) -> None:
    """``args`` fail with ``code`` and a one-line error containing ``match``; no block mined."""
    before = cli.block_number()
    cli.fails(*args, code=code, match=match)
    assert cli.block_number() == before, "a refused command changed the chain"


def place(slot: int, member: str = "member1", side: str = "buy", price: int = 250_000, qty: int = 1000) -> list[object]:
    return ["order", "place", "--member", member, "--slot", slot, "--side", side, "--price", price, "--qty", qty]


def cancel(member: str, order_id: int) -> list[object]:
    return ["order", "cancel", "--member", member, "--order", order_id]


def test_price_outside_the_band(community: Cli, slot: int) -> None:
    band = "minPricePerKwh=1000, maxPricePerKwh=1000000"
    refused(community, place(slot, price=1_001_000), EX_DATAERR, f"MarketPriceOutOfBand(pricePerKwh=1001000, {band})")
    refused(community, place(slot, side="sell", price=0), EX_DATAERR, f"MarketPriceOutOfBand(pricePerKwh=0, {band})")


def test_price_off_the_tick(community: Cli, slot: int) -> None:
    expected = "MarketPriceOffTick(pricePerKwh=250500, priceTick=1000)"
    refused(community, place(slot, price=250_500), EX_DATAERR, expected)


@pytest.mark.parametrize("qty", [0, 9])
def test_zero_or_too_small_quantity(community: Cli, slot: int, qty: int) -> None:
    refused(community, place(slot, qty=qty), EX_DATAERR, f"MarketQuantityTooSmall(qtyWh={qty}, minQtyWh=10)")


def test_slot_past_gate_closure(community: Cli) -> None:
    current = community.ok("slot", "--format", "json").json()["current_slot"]
    refused(community, place(current), EX_DATAERR, f"MarketGateClosed(slot={current}")


def test_unknown_member(community: Cli, slot: int) -> None:
    known = "(members: member0, member1, member2, member3)"
    refused(community, place(slot, member="mallory"), EX_NOINPUT, f"unknown member 'mallory' {known}")
    refused(community, cancel("mallory", 1), EX_NOINPUT, "unknown member 'mallory'")


def test_insufficient_balance_for_escrow(community: Cli, slot: int) -> None:
    # 600 kWh at 1 token/kWh needs 600 tokens of escrow; members deposited 500
    expected = "MarketInsufficientBalance(member=member1, balance=500000000, needed=600000000)"
    refused(community, place(slot, price=1_000_000, qty=600_000), EX_DATAERR, expected)


def test_cancelling_someone_elses_order(community: Cli, resting_order: int) -> None:
    expected = f"MarketNotOrderOwner(orderId={resting_order}, caller=member1, owner=member0)"
    refused(community, cancel("member1", resting_order), EX_DATAERR, expected)


def test_cancelling_an_unknown_order(community: Cli) -> None:
    refused(community, cancel("member0", 999_999), EX_DATAERR, "MarketOrderNotFound(orderId=999999)")


def test_withdrawing_more_than_the_balance(community: Cli) -> None:
    expected = "MarketInsufficientBalance(member=member2, balance=500000000, needed=500000001)"
    refused(community, ["withdraw", "--member", "member2", "--amount", 500_000_001], EX_DATAERR, expected)


def test_malformed_csv_rows_are_reported_with_line_numbers(community: Cli, slot: int, tmp_path: Path) -> None:
    orders = write_csv(
        tmp_path / "bad.csv",
        [
            f"place,a,member0,{slot},sell,240000,1000",  # line 2: fine
            f"place,b,member0,{slot},sideways,240000,1000",  # line 3
            f"place,c,member1,{slot},buy,12.5,1000",  # line 4
            f"place,d,nobody,{slot},buy,240000,1000",  # line 5
            "cancel,zzz,member0,,,,",  # line 6
            f"place,e,member1,{slot},buy,2000000,1000",  # line 7: outside the band
            f"place,f,member1,{slot},buy,240000",  # line 8: short row
            f"place,g,member1,{slot},buy,240500,1000",  # line 9: off the price tick
        ],
    )
    result = community.fails("orders", "replay", orders, code=EX_USAGE)
    message = result.stderr
    assert "7 bad rows, nothing sent" in message
    assert "line 9: price 240500 not a multiple of the price tick 1000" in message
    for line in (3, 4, 5, 6, 7, 8):
        assert f"line {line}:" in message
    assert "line 2:" not in message
    before = community.block_number()
    community.fails("orders", "replay", orders)
    assert community.block_number() == before


def test_malformed_csv_header(community: Cli, tmp_path: Path) -> None:
    orders = write_csv(tmp_path / "h.csv", ["place,a,member0,1,sell,1,10"], header="action,ref,member,slot,side,price")
    refused(community, ["orders", "replay", orders], EX_USAGE, "line 1: header must name the columns")


def test_missing_csv_file(community: Cli, tmp_path: Path) -> None:
    refused(community, ["orders", "replay", tmp_path / "nope.csv"], EX_NOINPUT, "no such file")


def test_rpc_not_running(new_cli: Callable[[], Cli]) -> None:
    cli = new_cli()  # a free port: nothing listens there
    for args in (["slot"], ["members"], place(5), ["deploy"], ["chain", "advance", "--seconds", 10]):
        result = cli.fails(*args, code=EX_TEMPFAIL)
        assert f"no chain answers at {cli.rpc_url}" in result.stderr


def test_invalid_deploy_parameters(community: Cli) -> None:
    band = "RegistryInvalidPriceBand(minPricePerKwh=5, maxPricePerKwh=4)"
    refused(community, ["deploy", "--min-price", 5, "--max-price", 4], EX_DATAERR, band)
    refused(community, ["deploy", "--fill-cap", 0], EX_DATAERR, "RegistryInvalidFillCap(fillCap=0)")
    refused(community, ["deploy", "--fill-cap", 257], EX_DATAERR, "RegistryInvalidFillCap(fillCap=257)")
    off_tick = "RegistryInvalidPriceBand(minPricePerKwh=1000, maxPricePerKwh=1000000)"
    refused(community, ["deploy", "--price-tick", 7], EX_DATAERR, off_tick)
    refused(community, ["deploy", "--members", 60], EX_USAGE, "needs 63 unlocked accounts")


@pytest.mark.parametrize(
    "args, match",
    [
        (place(1, side="up"), "'--side'"),
        (place(1, price=-1), "'--price'"),
        (place(1, price=2**32), "'--price'"),
        (place(1)[:4] + place(1)[6:], "Missing option '--slot'"),
        (cancel("member0", -3), "'--order'"),
        (["trades", "--slot", 1, "--format", "xml"], "'--format'"),
        (["chain", "start", "--engine", "geth"], "'--engine'"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_options(community: Cli, args: list[object], match: str) -> None:
    refused(community, args, EX_USAGE, match)


def test_missing_or_stale_deployment_file(community: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    refused(community, ["--deployment", missing, "members"], EX_NOINPUT, f"no deployment file {missing}")
    stale = json.loads(community.deployment.read_text())
    stale["deploy_block_hash"] = "0x" + "ab" * 32  # as if written for an earlier instance of the chain
    stale_file = tmp_path / "stale.json"
    stale_file.write_text(json.dumps(stale))
    refused(community, ["--deployment", stale_file, "members"], EX_NOINPUT, "are not on this chain")


def test_rows_refused_on_chain_are_reported_with_line_numbers(community: Cli, tmp_path: Path) -> None:
    """What only the chain can tell (a balance spent by earlier rows, an order already filled)
    is reported per row after the replay; the other rows are applied, as one by one."""
    slot = int(community.ok("slot", "--format", "json").json()["next_open_slot"]) + 2  # a book of its own
    orders = write_csv(
        tmp_path / "refused.csv",
        [
            f"place,s1,member2,{slot},sell,200000,100",  # line 2
            f"place,b1,member3,{slot},buy,200000,100",  # line 3: fills s1 completely, pays 0.02 token
            "cancel,s1,member2,,,,",  # line 4: nothing left to cancel
            f"place,b2,member3,{slot},buy,1000000,499000",  # line 5: 499 tokens of escrow, 499.98 left
            f"place,b3,member3,{slot},buy,1000000,1000",  # line 6: 1 more token: not enough
            f"place,b4,member0,{slot},buy,100000,100",  # line 7: fine
        ],
    )
    ids_out = tmp_path / "ids.csv"
    result = community.fails(
        "orders", "replay", orders, "--ids-out", ids_out, code=EX_DATAERR, match="2 of 6 rows were refused on chain"
    )
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2
    assert failed[0].startswith("failed: line 4:") and "MarketOrderNotFound" in failed[0]
    assert failed[1] == "failed: line 6: MarketInsufficientBalance(member=member3, balance=980000, needed=1000000)"
    assert [line.split(",")[0] for line in ids_out.read_text().splitlines()] == ["ref", "s1", "b1", "b2", "b4"]
    trades = community.ok("trades", "--slot", slot, "--format", "json").json()
    assert [(t["price"], t["qty_wh"]) for t in trades] == [(200_000, 100)]
    book = community.ok("book", "--slot", slot, "--format", "json").json()
    assert [(o["member"], o["price"], o["remaining_wh"]) for o in book["bids"]] == [
        ("member3", 1_000_000, 499_000),
        ("member0", 100_000, 100),
    ]


# --------------------------------------------------------------------------------- meter oracle

READINGS_HEADER = "meter,slot,import_wh,export_wh,import_register_wh,export_register_wh"


def test_bad_oracle_commands(community: Cli, tmp_path: Path) -> None:
    """Each is refused with one line, a reason and nothing sent."""
    readings = write_csv(tmp_path / "r.csv", ["member0,0,10,0,10,0"], header=READINGS_HEADER)
    bad_header = write_csv(tmp_path / "h.csv", ["member0,0,10,0,10"], header="meter,slot,import_wh,export_wh,register")
    not_a_key = tmp_path / "not-a-key.txt"
    not_a_key.write_text("hello\n")
    cases = [
        (["readings", "push", tmp_path / "nope.csv"], EX_NOINPUT, "no readings file"),
        (["readings", "push", bad_header], EX_USAGE, "header must name the columns"),
        (["readings", "push", readings, "--batch", 0], EX_USAGE, "'--batch'"),
        (["readings"], EX_USAGE, "give --slot S"),
        (["oracle", "run", "--source", "wind"], EX_USAGE, "'--source'"),
        (["meter", "add", "--member", "member0"], EX_DATAERR, "member0 has meter"),
        (["meter", "add", "--member", "nobody"], EX_NOINPUT, "unknown member 'nobody'"),
        (["meter", "rotate", "--member", "member0", "--key-file", tmp_path / "none.key"], EX_NOINPUT, "no key file"),
        (["meter", "rotate", "--member", "member0", "--key-file", not_a_key], EX_USAGE, "does not hold a private key"),
    ]
    meters = json.loads(community.deployment.read_text())["meters"]
    for args, code, match in cases:
        refused(community, args, code, match)
    assert json.loads(community.deployment.read_text())["meters"] == meters  # no key was replaced

"""The command line's one place for errors: one ``error:`` line and the error's exit code."""

from __future__ import annotations

import pytest
import requests

from peerwatt.cli import main, report
from peerwatt.errors import ContractRevertError, InputError, NotFoundError, RpcUnavailableError


@pytest.mark.parametrize(
    "exc, code, line",
    [
        (InputError("bad\nthing"), 64, "error: bad thing"),
        (NotFoundError("no such member"), 66, "error: no such member"),
        (RpcUnavailableError("no chain"), 75, "error: no chain"),
        (ContractRevertError("MarketZeroAmount"), 65, "error: the contract refused it: MarketZeroAmount"),
        (requests.ConnectionError("refused"), 75, "error: the chain stopped answering (ConnectionError)"),
        (FileNotFoundError(2, "No such file or directory", "x.csv"), 74, "error: No such file or directory: x.csv"),
        (KeyError("boom"), 70, "error: internal error: KeyError: 'boom' (PEERWATT_DEBUG=1 shows a traceback)"),
    ],
)
def test_report(
    exc: BaseException, code: int, line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PEERWATT_DEBUG", raising=False)
    assert report(exc) == code
    assert capsys.readouterr().err == line + "\n"


def test_usage_errors_exit_64_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["order", "place", "--member", "member0"])
    assert exited.value.code == 64
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: Missing option")


def test_help_and_no_arguments_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["--help"], ["chain"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
    assert "orders" in capsys.readouterr().out

"""End-to-end fixtures: the real ``peerwatt`` executable, run as a subprocess, against real local
chains that it starts itself with ``peerwatt chain start`` on free ports in 8600-8699 (Brownie's
tests own 8545). Needs no Brownie fixture:

    .venv/bin/python -m pytest -p no:pytest-brownie tests/integration

Every chain a test starts is stopped by a finalizer, also when the test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peerwatt_cli import Cli, free_port, start_community, stop_quietly


@pytest.fixture
def new_cli(tmp_path: Path) -> Iterator[Callable[[], Cli]]:
    """``new_cli()``: a Cli on a fresh free port and work directory; any chain started on its
    port is stopped at teardown."""
    clis: list[Cli] = []

    def make() -> Cli:
        workdir = tmp_path / f"work{len(clis)}"
        workdir.mkdir()
        cli = Cli(workdir, free_port())
        clis.append(cli)
        return cli

    yield make
    for cli in clis:
        stop_quietly(cli.port)


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A 4-member community on an anvil chain, shared by a module's tests (that leave the
    chain as they found it, or use slots of their own)."""
    workdir = tmp_path_factory.mktemp("community")
    cli = Cli(workdir, free_port())
    try:
        start_community(cli, "anvil")
        yield cli
    finally:
        stop_quietly(cli.port)

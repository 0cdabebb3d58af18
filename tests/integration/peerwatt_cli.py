"""Helpers of the end-to-end tests: run the real ``peerwatt`` executable and check its output."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from peerwatt import localchain
from peerwatt.errors import NotFoundError
from peerwatt.toolchain import toolchain_env

PEERWATT = Path(sys.executable).with_name("peerwatt")
PORTS = range(8600, 8700)
ENGINES = ("anvil", "ganache")
COMMAND_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self) -> list[str]:
        return self.stdout.splitlines()


class Cli:
    """Runs ``peerwatt`` in ``workdir`` with PEERWATT_RPC and PEERWATT_DEPLOYMENT set."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.rpc_url = f"http://127.0.0.1:{port}"
        self.deployment = workdir / "deployment.json"
        self.env = toolchain_env()
        self.env.update(PEERWATT_RPC=self.rpc_url, PEERWATT_DEPLOYMENT=str(self.deployment))
        self.env.pop("PEERWATT_DEBUG", None)

    def run(self, *args: object, env: dict[str, str] | None = None) -> Result:
        argv = tuple(str(arg) for arg in args)
        process = subprocess.run(
            [str(PEERWATT), *argv],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env={**self.env, **(env or {})},
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        return Result(argv, process.returncode, process.stdout, process.stderr)

    def ok(self, *args: object, **kwargs: Any) -> Result:
        """Runs a command that must succeed."""
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"peerwatt {' '.join(result.args)} failed ({result.returncode}): {result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    def fails(self, *args: object, code: int | None = None, match: str | None = None, **kwargs: Any) -> Result:
        """Runs a command that must fail with exactly one ``error:`` line on stderr."""
        result = self.run(*args, **kwargs)
        assert result.returncode != 0, f"peerwatt {' '.join(result.args)} succeeded: {result.stdout}"
        assert_one_error_line(result)
        if code is not None:
            assert result.returncode == code, result.stderr
        if match is not None:
            assert match in result.stderr, result.stderr
        return result

    def block_number(self) -> int:
        return int(rpc(self.rpc_url, "eth_blockNumber"), 16)


def assert_one_error_line(result: Result) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr


def rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    """One JSON-RPC call, independent of the code under test."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, answer
    return answer["result"]


def _bindable(port: int) -> bool:
    """False also for a port still in TIME_WAIT after a chain that used it stopped."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port in 8600-8699 that nothing listens on, can be bound at once, and no peerwatt chain
    record claims."""
    candidates = list(PORTS)
    random.shuffle(candidates)  # parallel runs on one machine rarely pick the same port
    for port in candidates:
        if not localchain.port_in_use(port) and _bindable(port) and not localchain.record_path(port).exists():
            return port
    raise RuntimeError("no free port in 8600-8699")


def stop_quietly(port: int) -> None:
    try:
        localchain.stop(port)
    except NotFoundError:
        pass  # the test stopped it itself


def start_community(cli: Cli, engine: str, members: int = 4) -> None:
    cli.ok("chain", "start", "--engine", engine, "--port", cli.port)
    cli.ok("deploy", "--members", members)


def write_csv(path: Path, rows: list[str], header: str = "action,ref,member,slot,side,price,qty_wh") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@contextmanager
def serving(cli: Cli, db: Path, env: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    """``peerwatt ledger serve`` of ``db`` on a free port (a real uvicorn server), and an httpx
    client for it once it answers; the server is stopped afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [str(PEERWATT), "ledger", "serve", "--port", str(port), "--db", str(db)],
        cwd=cli.workdir,
        env={**cli.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/status").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=15)

"""Local dev chains in the background: ``peerwatt chain start|stop|status``.

A chain runs detached (its own session and process group, so it outlives the command that
started it) with its pid, settings and log under ``.peerwatt/`` in the project root, keyed by
port. ganache runs through ``npx`` (the project's pinned npm package, offline), anvil from the
npm ``@foundry-rs/anvil`` binary. Both get deterministic, unlocked, funded accounts, so a chain
restarted from ``--state`` still holds the keys of the members registered on it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from peerwatt.chain import DevEngine
from peerwatt.errors import ConflictError, InputError, NotFoundError, PeerwattError
from peerwatt.toolchain import PROJECT_ROOT, toolchain_env

RUN_DIR = PROJECT_ROOT / ".peerwatt"
HOST = "127.0.0.1"
ACCOUNTS = 60  # deployer + members: `deploy --members N` needs N + 1
ACCOUNT_BALANCE_ETH = 10_000
CHAIN_IDS = {DevEngine.GANACHE: 1337, DevEngine.ANVIL: 31337}
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
ANVIL_STATE_FILE = "anvil-state.json"
ANVIL_STATE_INTERVAL_SECONDS = 2  # anvil also dumps its state on a clean shutdown
# States of past blocks anvil keeps in memory. By default it moves older ones to disk, which
# makes each automined block markedly slower (~180 vs ~250 single-order transactions per second
# here); calls against blocks older than this fail instead. Peerwatt reads history from events.
ANVIL_STATES_IN_MEMORY = 512
STATE_MARKER = "peerwatt-chain.json"  # which engine wrote a --state directory


@dataclass(frozen=True)
class LocalChain:
    """A chain started by ``peerwatt chain start``."""

    engine: DevEngine
    port: int
    pid: int  # also its process group id
    chain_id: int
    state_dir: str | None
    log_file: str
    started_at: float

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["engine"] = self.engine.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LocalChain:
        return cls(**{**data, "engine": DevEngine(data["engine"])})  # type: ignore[arg-type]


def record_path(port: int) -> Path:
    return RUN_DIR / f"chain-{port}.json"


def log_path(port: int) -> Path:
    return RUN_DIR / f"chain-{port}.log"


def pid_path(port: int) -> Path:
    return RUN_DIR / f"chain-{port}.pid"


def engine_command(engine: DevEngine, port: int, state_dir: Path | None) -> list[str]:
    """The command line that runs ``engine`` on ``port``."""
    if engine is DevEngine.GANACHE:
        command = [
            "npx", "--no-install", "ganache",  # never fetch: the pinned package only
            "--chain.hardfork", "shanghai",  # ganache 7.9.2's newest; contracts target it
            "--chain.chainId", str(CHAIN_IDS[engine]),
            "--server.host", HOST,
            "--server.port", str(port),
            "--wallet.deterministic",
            "--wallet.totalAccounts", str(ACCOUNTS),
            "--wallet.defaultBalance", str(ACCOUNT_BALANCE_ETH),
        ]  # fmt: skip
        if state_dir is not None:
            command += ["--database.dbPath", str(state_dir)]
        return command
    command = [
        "anvil",
        "--host", HOST,
        "--port", str(port),
        "--chain-id", str(CHAIN_IDS[engine]),
        "--accounts", str(ACCOUNTS),
        "--balance", str(ACCOUNT_BALANCE_ETH),
        "--prune-history", str(ANVIL_STATES_IN_MEMORY),
    ]  # fmt: skip
    if state_dir is not None:
        command += [
            "--state", str(state_dir / ANVIL_STATE_FILE),
            "--state-interval", str(ANVIL_STATE_INTERVAL_SECONDS),
        ]  # fmt: skip
    return command


def port_in_use(port: int) -> bool:
    """Whether something accepts connections on ``HOST:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def _rpc(url: str, method: str, params: list[object], timeout: float = 2.0) -> object:
    """One JSON-RPC call with the standard library (the launcher needs no Web3); None if the
    node does not answer or answers with an error."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return json.loads(response.read()).get("result")
    except (OSError, ValueError, urllib.error.URLError):
        return None


def rpc_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a JSON-RPC node answers ``eth_chainId`` at ``url``."""
    return _rpc(url, "eth_chainId", [], timeout) is not None


def _resume_clock(url: str) -> None:
    """A chain restored from --state stamps new blocks with the wall clock again, losing what
    `chain advance` added: move its clock on to just after its latest block, so time on the
    chain never goes back (slots that had ended stay ended)."""
    latest = _rpc(url, "eth_getBlockByNumber", ["latest", False])
    if isinstance(latest, dict):
        ahead = int(latest["timestamp"], 16) - int(time.time())
        if ahead > 0:
            _rpc(url, "evm_increaseTime", [ahead + 1])


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies count as gone: a detached
    chain's processes are reaped by init, which may take a moment)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel about the group
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


def _read_record(port: int) -> LocalChain | None:
    path = record_path(port)
    if not path.exists():
        return None
    try:
        return LocalChain.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None


def _forget(port: int) -> None:
    for path in (record_path(port), pid_path(port)):
        path.unlink(missing_ok=True)


def _prepare_state_dir(engine: DevEngine, state_dir: Path) -> None:
    """Creates the state directory and refuses one written by the other engine."""
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / STATE_MARKER
    if marker.exists():
        recorded = json.loads(marker.read_text()).get("engine")
        if recorded != engine.value:
            raise InputError(f"--state {state_dir} was written by {recorded}; start it with --engine {recorded}")
    else:
        marker.write_text(json.dumps({"engine": engine.value}) + "\n")


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def start(
    engine: DevEngine, port: int, state_dir: Path | None = None, timeout: float = START_TIMEOUT_SECONDS
) -> LocalChain:
    """Starts ``engine`` on ``port`` in the background and waits until its RPC answers."""
    running = _read_record(port)
    if running is not None and group_alive(running.pid):
        raise ConflictError(
            f"port {port} is busy: peerwatt already runs {running.engine.value} there (pid {running.pid})"
        )
    if port_in_use(port):
        raise ConflictError(f"port {port} is busy: something else listens on {HOST}:{port}")
    if state_dir is not None:
        state_dir = state_dir.resolve()
        _prepare_state_dir(engine, state_dir)

    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log = log_path(port)
    with log.open("wb") as log_handle:
        try:
            process = subprocess.Popen(
                engine_command(engine, port, state_dir),
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                cwd=PROJECT_ROOT,  # npx resolves ganache from the project's node_modules
                env=toolchain_env(),
                start_new_session=True,  # detached: own session and process group
            )
        except FileNotFoundError as exc:
            raise NotFoundError(f"cannot run {engine.value}: {exc.filename} not found; run tools/setup.sh") from None
    chain = LocalChain(
        engine, port, process.pid, CHAIN_IDS[engine], str(state_dir) if state_dir else None, str(log), time.time()
    )
    record_path(port).write_text(json.dumps(chain.to_json(), indent=2) + "\n")
    pid_path(port).write_text(f"{process.pid}\n")

    deadline = time.monotonic() + timeout
    while not rpc_answers(chain.rpc_url):
        if process.poll() is not None:
            _forget(port)
            raise PeerwattError(f"{engine.value} exited with code {process.returncode}: {_log_tail(log)} (log: {log})")
        if time.monotonic() > deadline:
            _terminate(process.pid)
            _forget(port)
            raise PeerwattError(f"{engine.value} did not answer on port {port} within {timeout:.0f} s (log: {log})")
        time.sleep(0.2)
    if state_dir is not None:
        _resume_clock(chain.rpc_url)
    return chain


def _terminate(pgid: int, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM to the chain's process group (npx and node wrappers included), SIGKILL if it
    lingers. SIGTERM lets anvil dump its --state file."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.1)


def stop(port: int) -> LocalChain:
    """Stops the chain peerwatt started on ``port``."""
    chain = _read_record(port)
    if chain is None:
        raise NotFoundError(f"no chain started by peerwatt on port {port} (see `peerwatt chain status`)")
    if group_alive(chain.pid):
        _terminate(chain.pid)
    _forget(port)
    return chain


def started_chains() -> list[tuple[LocalChain, bool]]:
    """Chains recorded under .peerwatt/ with whether their processes still run."""
    if not RUN_DIR.is_dir():
        return []
    chains = []
    for path in sorted(RUN_DIR.glob("chain-*.json")):
        port = path.stem.split("-", 1)[1]
        chain = _read_record(int(port)) if port.isdigit() else None
        if chain is not None:
            chains.append((chain, group_alive(chain.pid)))
    return chains

"""The ledger service fuzzed against its own OpenAPI schema: a settled history on anvil (trades,
readings, settlements), synced and served by ``peerwatt ledger serve`` with an auditor key, then
the schemathesis CLI (from ``.venv-schemathesis``, which ``tools/setup.sh`` creates: schemathesis
needs a far newer hypothesis than Brownie's) runs every operation with a fixed seed and a bounded
number of examples, valid and invalid, two workers at a time, and must find nothing: no server
error, and the status codes, content types, headers and bodies the schema documents.

All checks but ``positive_data_acceptance``: requests valid by the schema alone may still be
refused with 422, because what a parameter must satisfy in relation to another (``slot_from``
after ``slot_to``) cannot be written in OpenAPI, and a member must be an address (EIP-55 when in
mixed case), which the schema documents in words.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from peerwatt_cli import Cli, serving
from test_audit_cli import settled_history

SCHEMATHESIS = Path(__file__).resolve().parents[2] / ".venv-schemathesis" / "bin" / "schemathesis"
KEY = "auditor-secret"
SEED = 5
MAX_EXAMPLES = 100
RUN_TIMEOUT_SECONDS = 300


def test_schemathesis_finds_nothing_wrong_with_the_ledger_service(new_cli: Callable[[], Cli], tmp_path: Path) -> None:
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is missing: run tools/setup.sh"
    cli = new_cli()
    settled_history(cli)
    db = cli.workdir / "ledger.sqlite"
    cli.ok("ledger", "sync", "--db", db)
    workdir = tmp_path / "schemathesis"  # hypothesis and schemathesis write nothing into the repo
    workdir.mkdir()

    with serving(cli, db, {"PEERWATT_AUDITOR_KEY": KEY}) as client:
        auditor = {"X-API-Key": KEY}
        assert len(client.get("/trades").json()["items"]) == 2  # the fuzzing meets real rows
        assert len(client.get("/settlements", headers=auditor).json()["items"]) == 6  # 3 + 3 member results
        command = [
            str(SCHEMATHESIS), "run", str(client.base_url.join("/openapi.json")),
            "--header", f"X-API-Key: {KEY}",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",
            "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--workers", "2",
            "--generation-database", str(workdir / "examples"),
            "--no-color",
        ]  # fmt: skip
        env = {**os.environ, "HOME": str(workdir)}
        run = subprocess.run(
            command, check=False, capture_output=True, text=True, cwd=workdir, env=env, timeout=RUN_TIMEOUT_SECONDS
        )
        assert client.get("/status").status_code == 200  # still serving
    assert run.returncode == 0, f"schemathesis failed ({run.returncode}):\n{run.stdout[-20_000:]}\n{run.stderr}"
    assert "passed" in run.stdout and "Server error" not in run.stdout

"""Runs the `peerwatt` executable of this virtual environment for the throughput benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def peerwatt(*args: str, env: dict[str, str]) -> str:
    """stdout of ``peerwatt ARGS`` run in ``env["PW_CWD"]``; exits with its error if it fails."""
    exe = Path(sys.executable).with_name("peerwatt")
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=env["PW_CWD"], check=False)
    if result.returncode != 0:
        raise SystemExit(f"peerwatt {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout

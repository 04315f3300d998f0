"""Running `meter demo --headless` in a subprocess and reading its final JSON line (the e2e tests' one way in)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_demo(*flags: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The finished process and the demo's result (its last ``{"emitted": ...}`` line); fails the test, with the
    process's output, when there is none."""
    proc = subprocess.run(
        [sys.executable, "-m", "tenantmeter_cli.main", "demo", "--headless", *flags],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"emitted"')]
    assert lines, f"no JSON result line\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc, json.loads(lines[-1])

"""`meter demo --headless` end to end: the whole local pipeline for ~15 s, then its own reconciliation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.support import run_demo

pytestmark = pytest.mark.e2e


def test_headless_demo_reconciles_cuts_off_the_overspender_and_pages() -> None:
    # GIVEN the whole stack on this machine, WHEN the demo runs ~15 s of traffic through both producer paths
    proc, result = run_demo("--duration", "15", "--tenants", "8", "--rate", "30", "--seed", "3", timeout=240)
    # THEN every emitted event was metered once, every poison record quarantined, and money matches to the nano
    assert result["problems"] == [], result
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["emitted"] == result["metered"] + result["not_counted"]
    assert result["metered"] > 100
    assert result["quarantined"] == result["poison_sent"] > 0
    assert result["ledger_cost_usd"] == result["store_cost_usd"]
    # AND the gateway tenant racing at its hard quota was refused (429s) by reserved admission, while the SDK
    # tenant that ran past its quota was cut off by a block record and paged critical
    assert result["denied_by_tenant"].get("overspend-ltd", 0) > 0
    assert "runaway-app" in result["blocked_tenants"]
    assert result["denied_by_tenant"].get("runaway-app", 0) > 0
    assert result["critical_alerts"] >= 1


def test_bad_flags_get_a_clear_error_not_a_traceback() -> None:
    for args, needle in (
        (["--duration", "-3"], "must be positive"),
        (["--tenants", "2"], "--tenants must be"),
        (["--rate", "abc"], "not a number"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "tenantmeter_cli.main", "demo", "--headless", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr

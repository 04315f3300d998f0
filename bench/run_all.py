"""`make bench`: run every benchmark in bench/, one after another, and write BENCHMARKS.md.

Each benchmark is a script that prints its figures and ends with one JSON line; this runner keeps that line,
records the machine and date, and renders one table per benchmark. Benchmarks are never timing assertions:
a target is reported as met or not, and the run still succeeds, unless a benchmark itself crashed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# (script, title, targets: key -> (comparison, value, meaning))
BENCHMARKS: list[tuple[str, str, dict[str, tuple[str, float, str]]]] = [
    (
        "consumer.py",
        "Metering consumer (10,000-record batches, 1,000 tenants, real Redis)",
        {
            "events_per_s": (">=", 50_000, "events/s per process"),
            "ratio": (">=", 20, "x the naive one-round-trip-per-event baseline"),
        },
    ),
    (
        "producer.py",
        "Usage producer (KPL aggregation, PutRecords)",
        {
            "events_per_record": (">=", 100, "events per Kinesis record"),
            "emit_us": ("<=", 5, "microseconds per emit() on the caller's thread"),
        },
    ),
    (
        "gateway.py",
        "Gateway (simulated model, one worker)",
        {
            "added_p99_ms": ("<=", 1, "ms added at p99 by metering"),
            "throughput_ratio": (">=", 0.9, "throughput with metering / without"),
            "p50_ms_c1": ("<", 1, "ms p50 at concurrency 1"),
            "rps_c32": (">=", 1000, "requests/s at concurrency 32"),
        },
    ),
]
EXTRA = [
    ("enforcement.py", "Enforcement: a tenant driven over its hard quota at concurrency 32 (local pipeline)"),
    ("alert_latency.py", "Alert latency: usage event emitted to SNS message received (local pipeline)"),
    ("scale.py", "Scale: Redis and DynamoDB bytes per tenant and per dedupe entry (100,000 tenants)"),
]


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def run(script: str) -> tuple[dict[str, Any] | None, str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
        check=False,
    )
    elapsed = time.monotonic() - start
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr[-4000:])
    json_lines = [line for line in proc.stdout.splitlines() if line.strip().startswith("{")]
    if proc.returncode != 0 or not json_lines:
        return None, proc.stdout[-2000:] + proc.stderr[-2000:], elapsed
    return json.loads(json_lines[-1]), proc.stdout, elapsed


def verdict(value: Any, op: str, target: float) -> str:
    if not isinstance(value, int | float):
        return "n/a"
    met = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
    return "met" if met else "NOT met"


def main() -> int:
    info = machine()
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if v),
        "",
        "Each figure and its baseline were measured side by side in the same run. This machine is shared and",
        "noisy: read the figures as orders of magnitude and ratios, not as exact values.",
        "",
    ]
    failed = []
    for script, title, targets in BENCHMARKS + [(s, t, {}) for s, t in EXTRA]:
        if not (ROOT / "bench" / script).exists():
            continue
        print(f"==> bench/{script}", flush=True)
        result, output, elapsed = run(script)
        lines += [f"## {title}", "", f"`python bench/{script}` ({elapsed:.0f} s)", ""]
        if result is None:
            failed.append(script)
            lines += ["The benchmark failed:", "", "```", output.strip()[-1500:], "```", ""]
            continue
        lines += ["| figure | value | target |", "|---|---|---|"]
        for key, value in result.items():
            if isinstance(value, list | dict):
                continue  # (per-round detail: in the output below)
            target = ""
            if key in targets:
                op, goal, meaning = targets[key]
                target = f"{op} {goal:g} {meaning}: **{verdict(value, op, goal)}**"
            shown = f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
            lines.append(f"| `{key}` | {shown} | {target} |")
        lines += [
            "",
            "<details><summary>output</summary>",
            "",
            "```",
            output.strip()[-3000:],
            "```",
            "",
            "</details>",
            "",
        ]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))
    print(f"wrote BENCHMARKS.md ({'failed: ' + ', '.join(failed) if failed else 'all benchmarks ran'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

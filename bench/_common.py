"""Shared pieces of the pipeline benchmarks (enforcement.py, alert_latency.py, scale.py).

The pipeline itself is ``tenantmeter_cli.local.pipeline.LocalPipeline`` (what `make demo` starts too); here are
the one percentile rule and the one-JSON-line ending every benchmark shares.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tenantmeter_cli.local.pipeline import LocalPipeline, NullMetrics

__all__ = ["LocalPipeline", "NullMetrics", "final_line", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def final_line(figures: Mapping[str, Any]) -> None:
    """Print the one JSON line bench/run_all.py keeps: a flat object of numbers and strings."""
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
    print(json.dumps(rounded, separators=(",", ":")), flush=True)

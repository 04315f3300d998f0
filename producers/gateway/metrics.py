"""Gateway metrics in CloudWatch Embedded Metric Format (EMF), like the seed's cost sentry.

Per request: Requests, Admitted, Denied, ModelFailures, InputTokens, OutputTokens, CostUSD, with dimensions
model, costCenter, applicationId and environment. ``tenant_id`` and ``request_id`` travel as metadata (plain
properties of the EMF document), never as dimensions: one metric series per tenant would be unbounded.
Client-supplied tag values feed three of the dimensions, so ``CardinalityGuard`` caps the distinct values
kept per dimension and folds the rest into ``_other``.

We render EMF ourselves rather than through Powertools ``Metrics``: Powertools keeps its metric set in
class-level state shared by every instance, which the threaded local server would corrupt, and the document
is small and specified (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
Cost is written as an exact decimal literal, never through a float.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol, TextIO

from shared.money import nanos_to_usd

NAMESPACE: Final = "tenantmeter/gateway"
DIMENSIONS: Final = ("model", "costCenter", "applicationId", "environment")
MISSING: Final = "none"
OVERFLOW: Final = "_other"
COUNTERS: Final = ("Requests", "Admitted", "Denied", "ModelFailures", "InputTokens", "OutputTokens")
_UNITS: Final = {
    "Requests": "Count",
    "Admitted": "Count",
    "Denied": "Count",
    "ModelFailures": "Count",
    "InputTokens": "Count",
    "OutputTokens": "Count",
    "CostUSD": "None",
}


@dataclass(frozen=True, slots=True)
class RequestMetrics:
    """The metric facts of one model request (after authentication and validation)."""

    at: datetime
    tenant_id: str
    request_id: str
    model: str
    tags: Mapping[str, str] = field(default_factory=dict)
    admitted: bool = False
    denied: bool = False
    model_failed: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0

    def counters(self) -> dict[str, int]:
        return {
            "Requests": 1,
            "Admitted": int(self.admitted),
            "Denied": int(self.denied),
            "ModelFailures": int(self.model_failed),
            "InputTokens": self.input_tokens,
            "OutputTokens": self.output_tokens,
        }


class MetricsSink(Protocol):
    def record(self, metrics: RequestMetrics) -> None: ...


class CardinalityGuard:
    """Keeps at most ``max_values`` distinct values per dimension for the life of the process; later new
    values become ``_other``. The model dimension is bounded by the router already but is guarded the same."""

    def __init__(self, max_values: int = 50) -> None:
        self._max = max_values
        self._seen: dict[str, set[str]] = defaultdict(set)
        self._lock = threading.Lock()

    def dimensions(self, metrics: RequestMetrics) -> dict[str, str]:
        raw = {"model": metrics.model, **{k: metrics.tags.get(k, "") for k in DIMENSIONS[1:]}}
        out: dict[str, str] = {}
        for name in DIMENSIONS:
            value = raw[name] or MISSING
            seen = self._seen[name]
            if value not in seen:
                with self._lock:
                    if len(seen) < self._max:
                        seen.add(value)
                    else:
                        value = OVERFLOW
            out[name] = value
        return out


def render_emf(metrics: RequestMetrics, dimensions: Mapping[str, str], namespace: str = NAMESPACE) -> str:
    """One EMF JSON document (one line) for one request."""
    doc: dict[str, object] = {
        "_aws": {
            "Timestamp": int(metrics.at.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(DIMENSIONS)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in _UNITS.items()],
                }
            ],
        },
        **dimensions,
        **metrics.counters(),
        "tenant_id": metrics.tenant_id,
        "request_id": metrics.request_id,
    }
    text = json.dumps(doc, separators=(",", ":"))
    # Splice the cost in as an exact decimal literal (a valid JSON number), never via float.
    return f'{text[:-1]},"CostUSD":{nanos_to_usd(metrics.cost_nanos).normalize():f}}}'


class EmfStdoutSink:
    """Writes one EMF line per request to stdout; in Lambda, CloudWatch Logs turns them into metrics."""

    def __init__(self, stream: TextIO | None = None, *, namespace: str = NAMESPACE, max_values: int = 50) -> None:
        self._stream = stream
        self._namespace = namespace
        self._guard = CardinalityGuard(max_values)
        self._lock = threading.Lock()

    def record(self, metrics: RequestMetrics) -> None:
        line = render_emf(metrics, self._guard.dimensions(metrics), self._namespace) + "\n"
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()


class InMemoryMetrics:
    """Sums the same counters per dimension set in memory: for tests, the local server and the demo."""

    def __init__(self, max_values: int = 50) -> None:
        self._guard = CardinalityGuard(max_values)
        self._lock = threading.Lock()
        self.series: dict[tuple[tuple[str, str], ...], dict[str, int]] = {}

    def record(self, metrics: RequestMetrics) -> None:
        key = tuple(self._guard.dimensions(metrics).items())
        with self._lock:
            series = self.series.setdefault(key, dict.fromkeys((*COUNTERS, "CostNanos"), 0))
            for name, value in metrics.counters().items():
                series[name] += value
            series["CostNanos"] += metrics.cost_nanos

    def totals(self) -> dict[str, int]:
        with self._lock:
            out = dict.fromkeys((*COUNTERS, "CostNanos"), 0)
            for series in self.series.values():
                for name, value in series.items():
                    out[name] += value
            return out


class NullMetrics:
    def record(self, metrics: RequestMetrics) -> None:
        return None

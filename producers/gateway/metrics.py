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
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring
from typing import Final, Protocol, TextIO

from producers.gateway.render import usd

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


def _directive(namespace: str) -> str:
    return json.dumps(
        [
            {
                "Namespace": namespace,
                "Dimensions": [list(DIMENSIONS)],
                "Metrics": [{"Name": name, "Unit": unit} for name, unit in _UNITS.items()],
            }
        ],
        separators=(",", ":"),
    )


_DEFAULT_DIRECTIVE: Final = _directive(NAMESPACE)
# The json module's own (C) string escaper: a JSON string literal without json.dumps' per-call overhead.
_json_str: Final[Callable[[str], str]] = encode_basestring


@dataclass(slots=True)
class _Sums:
    """Counters summed over the requests of one (dimension set, tenant) group."""

    timestamp_ms: int
    request_id: str  # kept only while the group holds a single request
    counters: list[int]
    cost_nanos: int = 0


def _render(dimensions: Mapping[str, str], tenant_id: str, sums: _Sums, directive: str) -> str:
    dims = ",".join(f'"{name}":{_json_str(dimensions[name])}' for name in DIMENSIONS)
    counters = ",".join(f'"{name}":{value}' for name, value in zip(COUNTERS, sums.counters, strict=True))
    request = f',"request_id":{_json_str(sums.request_id)}' if sums.request_id else ""
    return (
        f'{{"_aws":{{"Timestamp":{sums.timestamp_ms},"CloudWatchMetrics":{directive}}},{dims},{counters},'
        f'"tenant_id":{_json_str(tenant_id)}{request},"CostUSD":{usd(sums.cost_nanos)}}}'
    )


def render_emf(metrics: RequestMetrics, dimensions: Mapping[str, str], namespace: str = NAMESPACE) -> str:
    """One EMF JSON document (one line) for one request. The metric directive is the same for every document,
    so it is rendered once; strings are JSON-escaped, and cost is written as an exact decimal literal (a valid
    JSON number), never via float."""
    directive = _DEFAULT_DIRECTIVE if namespace == NAMESPACE else _directive(namespace)
    sums = _Sums(int(metrics.at.timestamp() * 1000), metrics.request_id, list(metrics.counters().values()))
    sums.cost_nanos = metrics.cost_nanos
    return _render(dimensions, metrics.tenant_id, sums, directive)


class EmfStdoutSink:
    """EMF documents on stdout, which CloudWatch Logs turns into metrics in Lambda.

    Records are summed per (dimension set, tenant) and written at ``flush()``: the Lambda handler flushes after
    every invocation (so each document is one request, with its request_id), and a long-running process
    flushes whenever a record arrives ``flush_interval_s`` after the previous flush (one document per group
    per interval instead of one per request; every metric here is a count or a sum, so sums are exact)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        namespace: str = NAMESPACE,
        max_values: int = 50,
        flush_interval_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._directive = _DEFAULT_DIRECTIVE if namespace == NAMESPACE else _directive(namespace)
        self._guard = CardinalityGuard(max_values)
        self._interval = flush_interval_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: dict[tuple[tuple[str, ...], str], tuple[dict[str, str], _Sums]] = {}
        self._last_flush = monotonic()

    def record(self, metrics: RequestMetrics) -> None:
        dims = self._guard.dimensions(metrics)
        key = (tuple(dims.values()), metrics.tenant_id)
        values = metrics.counters()
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                stamp = int(metrics.at.timestamp() * 1000)
                self._pending[key] = (dims, _Sums(stamp, metrics.request_id, list(values.values()), metrics.cost_nanos))
            else:
                sums = entry[1]
                sums.request_id = ""
                sums.counters = [a + b for a, b in zip(sums.counters, values.values(), strict=True)]
                sums.cost_nanos += metrics.cost_nanos
            due = self._monotonic() - self._last_flush >= self._interval
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = self._monotonic()
        if not pending:
            return
        text = "".join(_render(dims, key[1], sums, self._directive) + "\n" for key, (dims, sums) in pending.items())
        stream = self._stream or sys.stdout
        with self._write_lock:
            stream.write(text)
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

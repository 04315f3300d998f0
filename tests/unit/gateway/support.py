"""Shared wiring for gateway tests (unit and integration): tenants, a fixed clock, a list-backed sink, the
in-memory store, the simulated model, and a fake consumer that meters events into a store."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from producers.gateway.app import GatewayApp
from producers.gateway.metrics import InMemoryMetrics
from producers.gateway.protocol import HttpRequest, HttpResponse
from shared.adapters.memory_store import InMemoryStore
from shared.ports import MeteredEvent, StreamPosition, TenantBatch, WindowStore
from shared.pricing import PriceCatalog, TokenUsage
from shared.schema import Outcome, UsageEvent
from shared.tenants import TenantRegistry, hash_api_key
from shared.windows import MONTH

NOW = datetime(2026, 11, 23, 15, 30, 0, tzinfo=UTC)
ACME_KEY = "tm_acme_0123456789abcdef"
GLOBEX_KEY = "tm_globex_0123456789abcdef"
TIGHT_KEY = "tm_tight_0123456789abcdef"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"


def registry() -> TenantRegistry:
    return TenantRegistry.from_dict(
        {
            "tenants": [
                {
                    "id": "acme",
                    "tier": "premium",
                    "api_key_sha256": [hash_api_key(ACME_KEY)],
                    "tags": {"costCenter": "cc-42", "applicationId": "support-bot", "environment": "prod"},
                    "inference_profiles": {"claude-3-5-haiku": PROFILE_ARN},
                },
                {"id": "globex", "tier": "free", "api_key_sha256": [hash_api_key(GLOBEX_KEY)]},
                {
                    "id": "tight",
                    "tier": "standard",
                    "api_key_sha256": [hash_api_key(TIGHT_KEY)],
                    "quotas": [{"window": "month", "metric": "cost_usd", "limit": "1.00", "hard": True}],
                },
            ]
        },
        "test-tenants",
    )


class ListSink:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@dataclass
class Gateway:
    app: GatewayApp
    store: InMemoryStore
    sink: ListSink
    model: Any  # the backend: usually a SimulatedModel
    metrics: InMemoryMetrics
    ticker: Ticker
    clock: list[datetime] = field(default_factory=lambda: [NOW])

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = ACME_KEY,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        all_headers = {"content-type": "application/json"}
        if key is not None:
            all_headers["authorization"] = f"Bearer {key}"
        all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        return self.app.handle(HttpRequest(method, path, all_headers, raw))

    def post(self, path: str, body: Any, **kwargs: Any) -> HttpResponse:
        return self.request("POST", path, body, **kwargs)


def body_of(response: HttpResponse) -> Any:
    return json.loads(response.body)


MakeGateway = Callable[..., "Gateway"]


def converse_body(text: str = "Explain S3 in 100 words.", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-3-5-haiku",
        "prompt": {"messages": [{"role": "user", "content": text}], "parameters": {"max_tokens": 200}},
        "tags": {"applicationId": "docs-helper"},
    }
    body.update(overrides)
    return body


class FakeConsumer:
    """Meters usage events into a store the way the metering consumer does (priced, one stream position each,
    reservations settled in the same atomic apply), so tests can drive a tenant's windows."""

    def __init__(self, store: WindowStore, catalog: PriceCatalog | None = None) -> None:
        self.store = store
        self.catalog = catalog or PriceCatalog.load()
        self._seq = 0
        self.metered_nanos: dict[str, int] = {}

    def meter(self, events: list[UsageEvent], now: datetime) -> None:
        by_tenant: dict[str, list[MeteredEvent]] = {}
        for event in events:
            self._seq += 1
            cost = self.catalog.price_usage(
                TokenUsage(event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens),
                event.model_id,
                alias=event.model,
                region=event.region,
                at=event.occurred_at,
            ).cost_nanos
            self.metered_nanos[event.tenant_id] = self.metered_nanos.get(event.tenant_id, 0) + cost
            by_tenant.setdefault(event.tenant_id, []).append(
                MeteredEvent(
                    tenant_id=event.tenant_id,
                    event_id=event.event_id,
                    occurred_at=event.occurred_at,
                    position=StreamPosition("shard-0", event.tenant_id, str(self._seq)),
                    model=event.model,
                    cost_center=event.tags.get("costCenter", ""),
                    application_id=event.tags.get("applicationId", ""),
                    input_tokens=event.input_tokens,
                    output_tokens=event.output_tokens,
                    cache_read_tokens=event.cache_read_tokens,
                    cache_write_tokens=event.cache_write_tokens,
                    cost_nanos=cost,
                    reservation_id=event.reservation_id,
                    requests=1 if event.outcome in (Outcome.SUCCESS, Outcome.MODEL_ERROR) else 0,
                )
            )
        batches = [TenantBatch(tenant, tuple(items)) for tenant, items in by_tenant.items()]
        outcomes = self.store.apply_usage(batches, now=now, dedupe_horizon=timedelta(hours=1))
        assert all(o.ok for o in outcomes), outcomes

    def add_cost(self, tenant_id: str, cost_nanos: int, now: datetime) -> None:
        """Meter a synthetic event worth exactly ``cost_nanos``, as if earlier traffic had been metered."""
        self._seq += 1
        event = MeteredEvent(
            tenant_id=tenant_id,
            event_id=f"seed{self._seq}",
            occurred_at=now,
            position=StreamPosition("shard-0", tenant_id, str(self._seq)),
            model="claude-3-5-haiku",
            cost_nanos=cost_nanos,
        )
        outcomes = self.store.apply_usage(
            [TenantBatch(tenant_id, (event,))], now=now, dedupe_horizon=timedelta(hours=1)
        )
        assert all(o.ok for o in outcomes), outcomes


class LockedSink:
    """A thread-safe list sink that a concurrent consumer can drain."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[UsageEvent] = []
        self._taken = 0

    def emit(self, event: UsageEvent) -> None:
        with self._lock:
            self._events.append(event)

    def take_new(self) -> list[UsageEvent]:
        with self._lock:
            new = self._events[self._taken :]
            self._taken = len(self._events)
            return new

    @property
    def events(self) -> list[UsageEvent]:
        with self._lock:
            return list(self._events)


@dataclass
class OvershootRun:
    limit_nanos: int
    max_cost_nanos: int
    instances: int
    statuses: list[int]
    metered_nanos: int
    outstanding_nanos: int


def overshoot_run(
    store: Any,
    *,
    tenants: TenantRegistry,
    api_key: str,
    tenant_id: str,
    limit_nanos: int,
    already_used_nanos: int,
    instances: int = 2,
    requests: int = 400,
    workers: int = 32,
    concurrent_consumer: bool = True,
    model_latency_ms: float = 1.0,
) -> OvershootRun:
    """Drive one tenant from ``instances`` gateway instances sharing ``store`` with ``requests`` concurrent
    converse calls (``workers`` threads), while a consumer meters the events as they arrive (or, with
    ``concurrent_consumer=False``, only at the end: the worst case for async metering). Returns what was
    metered once everything has been consumed."""
    from producers.gateway.app import GatewayConfig, build_app
    from producers.gateway.backends.simulated import SimulatedModel

    consumer = FakeConsumer(store)
    consumer.add_cost(tenant_id, already_used_nanos, NOW)
    sinks = [LockedSink() for _ in range(instances)]
    apps = [
        build_app(
            tenants=tenants,
            quota_state=store,
            usage_reader=store,
            sink=sink,
            backend=SimulatedModel(output_tokens=50, latency_ms=model_latency_ms),
            clock=lambda: NOW,
            config=GatewayConfig(quota_cache_ms=1000),
        )
        for sink in sinks
    ]
    body = json_bytes(converse_body())
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    done = threading.Event()

    def consume() -> None:
        while not done.is_set():
            for sink in sinks:
                new = sink.take_new()
                if new:
                    consumer.meter(new, NOW)
            done.wait(0.001)

    def call(i: int) -> int:
        return apps[i % instances].handle(HttpRequest("POST", "/v1/converse", headers, body)).status

    thread = threading.Thread(target=consume, daemon=True)
    if concurrent_consumer:
        thread.start()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        statuses = list(pool.map(call, range(requests)))
    done.set()
    if concurrent_consumer:
        thread.join()
    for sink in sinks:  # whatever is still in flight to the consumer
        new = sink.take_new()
        if new:
            consumer.meter(new, NOW)
    outstanding = store.outstanding_reservations(tenant_id, NOW) if hasattr(store, "outstanding_reservations") else {}
    return OvershootRun(
        limit_nanos=limit_nanos,
        max_cost_nanos=MAX_COST_NANOS,
        instances=instances,
        statuses=statuses,
        metered_nanos=store.window_totals(tenant_id, [MONTH], NOW)["month"].cost_nanos,
        outstanding_nanos=sum(outstanding.values()),
    )


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# converse_body() on Claude 3.5 Haiku: input bound 24 bytes + 8 per message + 64 = 96 tokens, priced at the
# dearer cache-write rate ($1.00 per 1M) -> 96 * 1.00 + 200 max output * 4.00 = 896 micro-dollars.
MAX_COST_NANOS = 896_000

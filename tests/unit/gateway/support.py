"""Shared wiring for gateway tests (unit and integration): tenants, a fixed clock, a list-backed sink, the
in-memory store, the simulated model, and a fake consumer that meters events into a store."""

from __future__ import annotations

import json
from collections.abc import Callable
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

"""Fixtures for gateway unit tests (the wiring itself lives in support.py, shared with integration tests)."""

from __future__ import annotations

from typing import Any

import pytest

from producers.gateway.app import GatewayConfig, build_app
from producers.gateway.backends.simulated import SimulatedModel
from producers.gateway.metrics import InMemoryMetrics
from shared.adapters.memory_store import InMemoryStore
from tests.unit.gateway.support import NOW, Gateway, ListSink, MakeGateway, Ticker, registry


@pytest.fixture
def make_gateway() -> MakeGateway:
    def make(
        *,
        model: Any = None,
        config: GatewayConfig | None = None,
        store: InMemoryStore | None = None,
        **kwargs: Any,
    ) -> Gateway:
        store = store or InMemoryStore()
        sink = ListSink()
        model = model or SimulatedModel(output_tokens=50)
        metrics = InMemoryMetrics()
        ticker = Ticker()
        clock = [NOW]
        app = build_app(
            tenants=registry(),
            quota_state=store,
            usage_reader=store,
            sink=sink,
            backend=model,
            clock=lambda: clock[0],
            metrics=metrics,
            config=config or GatewayConfig(quota_cache_ms=0),
            monotonic=ticker,
            **kwargs,
        )
        return Gateway(app, store, sink, model, metrics, ticker, clock)

    return make


@pytest.fixture
def gw(make_gateway: MakeGateway) -> Gateway:
    return make_gateway()

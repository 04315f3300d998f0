"""Exactly-once effect on at-least-once delivery, against InMemoryStore (the same harness runs on Redis and
DynamoDB in tests/integration/test_consumer_replay.py)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from shared.adapters.memory_store import InMemoryStore
from shared.ports import Totals
from shared.windows import MONTH
from tests.unit.consumer.fakes import metering_service
from tests.unit.consumer.kinesis import NOW, registry
from tests.unit.consumer.replay import FlakyStore, deliver, expected_totals, make_workload

TENANTS = [f"t{i}" for i in range(7)]


@pytest.mark.parametrize("seed", range(8))
def test_every_event_counts_exactly_once_whatever_the_redelivery(seed: int) -> None:
    # GIVEN 300 events (some written twice by producers, some KPL-aggregated) on 3 shards
    rng = random.Random(seed)
    workload = make_workload(rng, NOW, 300, TENANTS)
    store = FlakyStore(InMemoryStore(), rng, fail_rate=0.15)
    reg = registry(*TENANTS, tier="enterprise")
    service = metering_service(store, reg)
    # WHEN delivered with retries, bisections, partial failures and lost replies
    deliver(lambda records, now: service.process(records, now).response(), workload, rng, NOW)
    # THEN every tenant's totals are exactly the distinct events' (and faults really were injected)
    want = expected_totals(workload.events)
    for tenant in TENANTS:
        assert store.inner.window_totals(tenant, [MONTH], NOW)["month"] == want.get(tenant, Totals())
    assert store.injected + store.lost_replies > 0


@pytest.mark.parametrize("seed", range(4))
def test_redeliveries_after_the_event_id_horizon_are_caught_by_the_high_water_marks(seed: int) -> None:
    # GIVEN a one-minute horizon and a clock moving two minutes per invocation: event ids are always forgotten
    rng = random.Random(100 + seed)
    workload = make_workload(rng, NOW, 200, TENANTS, producer_retries=0.0)
    store = FlakyStore(InMemoryStore(), rng, fail_rate=0.15)
    reg = registry(*TENANTS, tier="enterprise")
    service = metering_service(store, reg, dedupe_horizon=timedelta(minutes=1))
    # WHEN delivered with retries and partial failures
    deliver(
        lambda records, now: service.process(records, now).response(), workload, rng, NOW, tick=timedelta(minutes=2)
    )
    # THEN the per-(shard, partition key) high-water marks alone keep every count exact
    want = expected_totals(workload.events)
    late = NOW + timedelta(days=1)
    for tenant in TENANTS:
        assert store.inner.window_totals(tenant, [MONTH], late)["month"] == want.get(tenant, Totals())

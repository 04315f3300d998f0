"""Redis crashes mid-stream: the consumer must report failures (never success for usage it did not store), the
event-source mapping redelivers, and once Redis is back every tenant's totals are exact.

What is simulated: the Redis primary is killed with SIGKILL while the runner is delivering, connections are
refused for a while, then the endpoint answers again (same socket) with every write it acknowledged (AOF,
fsync always): an ElastiCache failover whose promoted replica had caught up. Not simulated: a failover that
loses acknowledged writes (asynchronous replication lag); see the README's Reliability section.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from consumers.metering.handler import lambda_handler
from shared.ports import Totals
from tests.fault.oracle import expected_totals
from tests.fault.support import Stack, away_from_midnight, bulk_registry, make_events, tenant_ids

pytestmark = pytest.mark.fault

TENANTS = tenant_ids(20)


@dataclass(frozen=True)
class Invocation:
    started: float
    ended: float
    records: int
    failed: int | None  # items reported in batchItemFailures; None when the invocation raised


class Recorder:
    """Wraps the real handler and notes what each invocation answered, and when."""

    def __init__(self) -> None:
        self.calls: list[Invocation] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        started = time.monotonic()
        failed: int | None = None
        try:
            response = lambda_handler(event, context)
            failed = len(response["batchItemFailures"])
            return response
        finally:
            with self._lock:
                self.calls.append(Invocation(started, time.monotonic(), len(event["Records"]), failed))


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_redis_killed_mid_stream_then_restarted_loses_and_doubles_nothing(stack: Stack) -> None:
    # GIVEN the whole pipeline running (producer -> Kinesis -> runner -> lambda_handler -> Redis), with a retry
    # budget longer than the outage, and a first third of the traffic already flowing
    at = away_from_midnight()
    stack.use_tenants(bulk_registry(TENANTS))
    rng = random.Random(11)
    phases = [make_events(rng, TENANTS, 700, at) for _ in range(3)]
    producer = stack.producer()
    recorder = Recorder()
    runner = stack.runner(recorder, batch_size=25, batching_window_s=0.05, max_retry_attempts=10_000)
    runner.start()
    try:
        for event in phases[0]:
            producer.emit(event)
        wait_for(lambda: runner.stats.records_done > 0, "the consumer to checkpoint something")

        # WHEN Redis is killed while records are being delivered, more traffic arrives during the outage...
        stack.redis.kill()
        killed_at = time.monotonic()
        failures_before = runner.stats.partial_failures
        for event in phases[1]:
            producer.emit(event)
        assert producer.flush(timeout=30)
        wait_for(lambda: runner.stats.partial_failures >= failures_before + 6, "failed deliveries during the outage")
        # ...and Redis comes back on the same socket with its data, while the rest of the traffic arrives
        restarted_at = time.monotonic()
        stack.redis.start()
        for event in phases[2]:
            producer.emit(event)
        assert producer.flush(timeout=60)
    finally:
        runner.stop(drain=True, timeout=120)

    # THEN every tenant's tokens, requests and cost are exactly those of the distinct events sent
    want = expected_totals([e for phase in phases for e in phase])
    assert stack.totals(TENANTS, at) == {t: want.get(t, Totals()) for t in TENANTS}
    # AND invocations that ran wholly inside the outage reported every one of their records failed
    outage = [c for c in recorder.calls if c.started > killed_at and c.ended < restarted_at]
    assert outage, "no invocation ran during the outage"
    assert all(c.failed == c.records for c in outage), outage
    # AND the mapping redelivered rather than giving up: nothing went to the on-failure destination
    assert runner.stats.errors == 0
    assert runner.stats.sent_to_failure_destination == 0 and stack.failure_batches() == []


def test_batches_skipped_in_a_long_outage_are_metered_when_replayed_from_the_failure_destination(
    stack: Stack,
) -> None:
    # GIVEN plain records (partition key = tenant) metered normally, and a mapping with a bounded retry budget
    # (Terraform's default is 5 retries; 2 here to keep the test short)
    at = away_from_midnight()
    stack.use_tenants(bulk_registry(TENANTS))
    rng = random.Random(12)
    before, during, after = (make_events(rng, TENANTS, 300, at) for _ in range(3))
    runner = stack.runner(batch_size=50, max_retry_attempts=2)
    stack.put_events(before)
    runner.drain()

    # WHEN Redis is down for longer than the retry budget: the mapping sends those batches' metadata to the
    # on-failure destination and moves on
    stack.redis.kill()
    stack.put_events(during)
    runner.drain()
    stack.redis.start()
    skipped = stack.failure_batches()
    assert skipped and sum(b["KinesisBatchInfo"]["batchSize"] for b in skipped) == len(during)
    assert stack.totals(TENANTS, at) == {t: expected_totals(before).get(t, Totals()) for t in TENANTS}
    # ...later traffic is metered as usual once Redis is back...
    stack.put_events(after)
    runner.drain()
    assert stack.totals(TENANTS, at) == {t: expected_totals(before + after).get(t, Totals()) for t in TENANTS}
    # ...and then an operator replays the recorded sequence ranges through the consumer
    responses = stack.replay(skipped)

    # THEN the replay is accepted and the skipped usage is counted, once
    assert all(r == {"batchItemFailures": []} for r in responses)
    want = expected_totals(before + during + after)
    got = stack.totals(TENANTS, at)
    missing = {t: (want[t].requests - got[t].requests) for t in want if got[t] != want[t]}
    assert got == {t: want.get(t, Totals()) for t in TENANTS}, (
        f"replayed events were not counted (requests missing per tenant: {missing}): positions below the "
        "tenant's high-water mark are taken for duplicates even though they were never applied"
    )

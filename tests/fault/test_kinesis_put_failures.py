"""Kinesis PutRecords failing a fifth of its entries (and now and then timing out after it wrote them): the
UsageProducer must lose no event and stay within its memory bounds; the consumer must count each event once.

moto's Kinesis never throttles (FACTS.md), so a wrapper around a real moto client fails entries the way
Kinesis does: HTTP 200, ``FailedRecordCount``, and ``ProvisionedThroughputExceededException`` on each failed
entry, which is NOT written. Every 15th call that wrote something then raises a read timeout: the records are
in the stream but the producer cannot know, resends them, and the stream holds duplicates (new sequence
numbers, same event_id) for the consumer's dedupe.
"""

from __future__ import annotations

import base64
import random
import threading
from collections import Counter
from typing import Any

import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from botocore.exceptions import ReadTimeoutError

from producers.sdk import ProducerConfig
from shared.ports import Totals
from shared.schema import MAX_EVENT_BYTES, decode_event
from tests.fault.oracle import expected_totals
from tests.fault.support import Stack, away_from_midnight, bulk_registry, make_events, tenant_ids

pytestmark = pytest.mark.fault

TENANTS = tenant_ids(30)


class ThrottlingKinesis:
    """A real Kinesis client whose PutRecords fails ``fail_fraction`` of the entries of every call."""

    def __init__(self, real: Any, rng: random.Random, fail_fraction: float = 0.2, timeout_every: int = 15) -> None:
        self.real = real
        self.rng = rng
        self.fail_fraction = fail_fraction
        self.timeout_every = timeout_every
        self.calls = 0
        self.entries = 0
        self.failed_entries = 0
        self.timeouts = 0

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        records = kwargs["Records"]
        self.calls += 1
        self.entries += len(records)
        fail = [self.rng.random() < self.fail_fraction for _ in records]
        keep = [r for r, f in zip(records, fail, strict=True) if not f]
        written = iter(self.real.put_records(StreamName=kwargs["StreamName"], Records=keep)["Records"] if keep else [])
        results: list[dict[str, Any]] = []
        for failed in fail:
            if failed:
                self.failed_entries += 1
                results.append(
                    {
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "Rate exceeded for shard shardId-000000000000",
                    }
                )
            else:
                results.append(next(written))
        if keep and self.calls % self.timeout_every == 0:
            self.timeouts += 1
            raise ReadTimeoutError(endpoint_url="https://kinesis.us-east-1.amazonaws.com/")
        return {"FailedRecordCount": sum(fail), "Records": results}

    def list_shards(self, **kwargs: Any) -> Any:
        return self.real.list_shards(**kwargs)


def read_stream(stack: Stack) -> Counter[str]:
    """event_id -> how many times it is in the stream (deaggregated with aws-kinesis-agg, nothing skipped)."""
    kinesis = stack.client("kinesis")
    found: Counter[str] = Counter()
    for shard in kinesis.list_shards(StreamName=stack.resources.stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stack.resources.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                break
            for record in page["Records"]:
                users = list(iter_deaggregate_records([record], data_format="Boto3"))
                assert users, "a record deaggregated to nothing"
                for user in users:
                    found[decode_event(base64.b64decode(user["kinesis"]["data"])).event_id] += 1
            iterator = page.get("NextShardIterator")
    return found


def test_a_fifth_of_put_entries_failing_loses_nothing_and_stays_within_the_memory_bounds(stack: Stack) -> None:
    # GIVEN a producer with tight memory bounds (backpressure: emit() waits for room rather than dropping),
    # writing through a Kinesis that fails 20% of the entries of every PutRecords call
    at = away_from_midnight()
    stack.use_tenants(bulk_registry(TENANTS))
    rng = random.Random(21)
    events = make_events(rng, TENANTS, 3000, at)
    kinesis = ThrottlingKinesis(stack.client("kinesis"), random.Random(22))
    config = ProducerConfig(
        linger_s=0.02,
        max_buffered_events=100,
        max_buffered_bytes=2 * MAX_EVENT_BYTES,  # the smallest the config allows: 16 KiB
        block_timeout_s=30,
        backoff_base_s=0.02,
        backoff_cap_s=0.5,
    )
    producer = stack.producer(config, kinesis_client=kinesis)
    peaks = {"queued": 0, "buffered_bytes": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            stats = producer.stats()
            peaks["queued"] = max(peaks["queued"], stats.queued)
            peaks["buffered_bytes"] = max(peaks["buffered_bytes"], stats.buffered_bytes)
            done.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    # WHEN four application threads emit 3,000 events as fast as they can
    def emit(chunk: list[Any]) -> None:
        for event in chunk:
            producer.emit(event)

    emitters = [threading.Thread(target=emit, args=(events[i::4],)) for i in range(4)]
    for thread in emitters:
        thread.start()
    for thread in emitters:
        thread.join()
    assert producer.close(timeout=120)
    done.set()
    sampler.join()

    # THEN the producer delivered every event, dropped none, and retried the failed entries
    stats = producer.stats()
    assert (stats.sent, stats.dropped, stats.buffered) == (len(events), 0, 0)
    assert kinesis.failed_entries > 0 and kinesis.timeouts > 0 and stats.retried > 0
    # AND its memory stayed within its bounds: the event queue within max_buffered_events, the bytes the sender
    # holds within max_buffered_bytes plus one event (it stops taking events once the budget is reached) and a
    # KPL frame per open aggregate
    assert peaks["queued"] <= config.max_buffered_events
    assert peaks["buffered_bytes"] <= config.max_buffered_bytes + MAX_EVENT_BYTES + 1024
    print(
        f"\nproducer peaks {peaks}; PutRecords calls {kinesis.calls}, entries {kinesis.entries}, failed entries "
        f"{kinesis.failed_entries}, timed out after writing {kinesis.timeouts}; {stats}"
    )
    # AND the stream holds every event, some of them twice (written, then resent after a timed-out reply)
    in_stream = read_stream(stack)
    assert set(in_stream) == {e.event_id for e in events}
    assert any(n > 1 for n in in_stream.values())

    # WHEN the consumer reads the whole stream
    runner = stack.runner(batch_size=100)
    runner.drain()

    # THEN each event counted exactly once: per-tenant tokens, requests and cost are exact
    want = expected_totals(events)
    assert stack.totals(TENANTS, at) == {t: want.get(t, Totals()) for t in TENANTS}
    assert runner.stats.sent_to_failure_destination == 0

"""UsageProducer against a fake Kinesis: delivery exactly once, resending only failed entries, bounded memory,
both overflow policies, flush/close (also at interpreter exit) and configuration errors."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from producers.sdk import AggregationScope, OverflowPolicy, ProducerConfig, UsageProducer
from shared.errors import ConfigError, ProducerClosedError
from shared.schema import MAX_EVENT_BYTES
from tests.unit.sdk.fakes import FakeKinesis, ShardedFakeKinesis, deaggregate, even_shards, make_event

ROOT = Path(__file__).resolve().parents[3]
FAST = {"linger_s": 0.01, "backoff_base_s": 0.001, "backoff_cap_s": 0.01}


def _producer(fake: FakeKinesis, **config: Any) -> UsageProducer:
    return UsageProducer("usage", kinesis_client=fake, config=ProducerConfig(**{**FAST, **config}))


def _assert_exactly_once(fake: FakeKinesis, events: list[Any]) -> None:
    users = deaggregate(fake.stored)
    assert Counter(u.event.event_id for u in users) == Counter(e.event_id for e in events)
    assert all(u.user_key == u.record_key for u in users), "each aggregate holds one partition key"


def test_every_event_arrives_once_keyed_by_tenant() -> None:
    # GIVEN a producer and events of three tenants
    fake = FakeKinesis()
    producer = _producer(fake)
    events = [make_event(("acme", "globex", "initech")[i % 3]) for i in range(900)]

    # WHEN they are emitted and flushed
    for event in events:
        producer.emit(event)
    assert producer.flush(timeout=30)

    # THEN each arrived exactly once, under its tenant's partition key, and the counters agree
    _assert_exactly_once(fake, events)
    assert all(u.record_key == u.event.tenant_id for u in deaggregate(fake.stored))
    stats = producer.stats()
    assert (stats.sent, stats.dropped, stats.buffered, stats.buffered_bytes) == (900, 0, 0, 0)
    assert stats.records_sent == len(fake.stored)
    assert producer.close(timeout=10)


def test_only_failed_entries_are_resent_and_nothing_is_lost() -> None:
    # GIVEN a Kinesis that fails 30% of entries (throttling or internal failure) and small aggregates,
    # so that a call carries many records
    fake = FakeKinesis(fail_fraction=0.3)
    producer = _producer(fake, max_record_bytes=20_000)
    events = [make_event(f"t{i % 7}") for i in range(3000)]

    # WHEN the events are emitted and flushed
    for event in events:
        producer.emit(event)
    assert producer.flush(timeout=30)

    # THEN every event arrived exactly once
    _assert_exactly_once(fake, events)
    # AND each record was put once plus once per failure: nothing that succeeded was sent again
    sent = Counter(data for call in fake.calls for _, data in call)
    stored = Counter(data for _, data in fake.stored)
    assert fake.failed_entries > 0
    assert all(count == 1 for count in stored.values())
    assert sum(sent.values()) == len(fake.stored) + fake.failed_entries
    stats = producer.stats()
    assert stats.records_retried == fake.failed_entries
    assert stats.sent == 3000 and stats.retried > 0 and stats.dropped == 0
    producer.close(timeout=10)


def test_a_call_that_raises_is_retried_whole() -> None:
    # GIVEN a network that fails the first two calls outright
    fake = FakeKinesis(raise_calls=2)
    producer = _producer(fake)
    events = [make_event() for _ in range(50)]

    # WHEN events are emitted and flushed
    for event in events:
        producer.emit(event)
    assert producer.flush(timeout=30)

    # THEN they arrive once, and the failures are counted
    _assert_exactly_once(fake, events)
    stats = producer.stats()
    assert stats.failed_calls == 2 and stats.retried == 100 and stats.sent == 50
    producer.close(timeout=10)


def test_a_request_botocore_rejects_is_dropped_and_counted_not_retried_forever() -> None:
    fake = FakeKinesis(raise_calls=1, raise_with=lambda: ParamValidationError(report="bad"))
    producer = _producer(fake)
    producer.emit(make_event())
    assert producer.flush(timeout=30)
    stats = producer.stats()
    assert (stats.dropped_invalid, stats.sent, stats.buffered, len(fake.calls)) == (1, 0, 0, 1)
    producer.close(timeout=10)


def test_drop_policy_bounds_the_queue_and_counts_what_it_drops() -> None:
    # GIVEN a Kinesis call stuck on the network, and room for 100 queued events
    fake = FakeKinesis(gate=threading.Event())
    producer = _producer(fake, max_buffered_events=100, overflow=OverflowPolicy.DROP)
    first = make_event()
    producer.emit(first)
    assert producer.flush(timeout=0.001) is False  # nudges the sender into the stuck call
    assert fake.entered.wait(10)

    # WHEN 1,000 more events are emitted
    events = [make_event() for _ in range(1000)]
    for event in events:
        producer.emit(event)

    # THEN the queue holds 100, 900 were dropped and counted, and emit() never blocked or grew the buffer
    stats = producer.stats()
    assert (stats.queued, stats.dropped_overflow) == (100, 900)
    # AND once the network recovers the 101 accepted events arrive exactly once
    fake.gate.set()  # type: ignore[union-attr]
    assert producer.flush(timeout=30)
    _assert_exactly_once(fake, [first, *events[:100]])
    assert producer.stats().sent == 101
    producer.close(timeout=10)


def test_the_byte_budget_stops_intake_while_kinesis_keeps_failing() -> None:
    # GIVEN a Kinesis failing every entry, a 64 KiB byte budget and room for 50 queued events
    fake = FakeKinesis(fail_fraction=1.0)
    budget = 64 * 1024
    producer = _producer(fake, max_buffered_events=50, max_buffered_bytes=budget, overflow=OverflowPolicy.DROP)

    # WHEN far more events than fit are emitted
    for _ in range(2000):
        producer.emit(make_event())
    producer.flush(timeout=0.2)

    # THEN the sender holds at most the budget (plus the one event that crossed it), the queue at most 50,
    # and everything else was dropped and counted: nothing grows without bound
    stats = producer.stats()
    assert stats.buffered_bytes <= budget + MAX_EVENT_BYTES
    assert stats.queued <= 50
    assert stats.dropped_overflow >= 2000 - 50 - budget // 400
    assert stats.buffered + stats.dropped_overflow + stats.sent == 2000
    # AND close() gives up after its timeout, counting the rest as unsent
    assert producer.close(timeout=0.05) is False
    after = producer.stats()
    assert after.buffered == 0
    assert after.dropped_overflow + after.dropped_unsent == 2000


def test_block_policy_waits_for_room_then_delivers() -> None:
    # GIVEN a full queue (10 events) behind a stuck Kinesis call, and the BLOCK policy with a long timeout
    fake = FakeKinesis(gate=threading.Event())
    producer = _producer(fake, max_buffered_events=10, overflow=OverflowPolicy.BLOCK, block_timeout_s=30.0)
    producer.emit(make_event())
    producer.flush(timeout=0.001)
    assert fake.entered.wait(10)
    events = [make_event() for _ in range(10)]
    for event in events:
        producer.emit(event)
    late = make_event()

    # WHEN another thread emits one more
    emitter = threading.Thread(target=producer.emit, args=(late,))
    emitter.start()
    emitter.join(0.1)

    # THEN it waits rather than drop
    assert emitter.is_alive()
    assert producer.stats().dropped_overflow == 0
    # AND when the network recovers, it is accepted and delivered
    fake.gate.set()  # type: ignore[union-attr]
    emitter.join(30)
    assert not emitter.is_alive()
    assert producer.flush(timeout=30)
    assert late.event_id in {u.event.event_id for u in deaggregate(fake.stored)}
    assert producer.stats().dropped == 0
    producer.close(timeout=10)


def test_block_policy_drops_and_counts_after_its_timeout() -> None:
    fake = FakeKinesis(gate=threading.Event())
    producer = _producer(fake, max_buffered_events=5, overflow=OverflowPolicy.BLOCK, block_timeout_s=0.01)
    producer.emit(make_event())
    producer.flush(timeout=0.001)
    assert fake.entered.wait(10)
    for _ in range(6):
        producer.emit(make_event())
    assert producer.stats().dropped_overflow == 1
    fake.gate.set()  # type: ignore[union-attr]
    assert producer.close(timeout=10)
    assert producer.stats().sent == 6


def test_close_delivers_what_lingers_and_then_refuses_events() -> None:
    # GIVEN events that would linger for a minute
    fake = FakeKinesis()
    producer = _producer(fake, linger_s=60.0)
    events = [make_event() for _ in range(20)]
    for event in events:
        producer.emit(event)

    # WHEN the producer is closed
    assert producer.close(timeout=10)

    # THEN they were delivered, further emits raise, and closing again is harmless
    _assert_exactly_once(fake, events)
    with pytest.raises(ProducerClosedError):
        producer.emit(make_event())
    assert producer.close(timeout=1)


def test_concurrent_emitters_lose_nothing() -> None:
    fake = FakeKinesis(fail_fraction=0.1)
    producer = _producer(fake)
    batches = [[make_event(f"t{t}") for _ in range(500)] for t in range(8)]
    threads = [threading.Thread(target=lambda b=b: [producer.emit(e) for e in b]) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert producer.close(timeout=30)
    _assert_exactly_once(fake, [e for b in batches for e in b])


def test_a_hot_tenant_is_spread_over_its_keys() -> None:
    # GIVEN a tenant spread over 4 partition keys
    fake = FakeKinesis()
    producer = _producer(fake, key_spread={"hot": 4})
    events = [make_event("hot") for _ in range(400)] + [make_event("calm") for _ in range(10)]

    # WHEN its events are sent
    for event in events:
        producer.emit(event)
    assert producer.close(timeout=10)

    # THEN they use hot#0..hot#3, each aggregate still holds one key, and other tenants keep their own key
    _assert_exactly_once(fake, events)
    users = deaggregate(fake.stored)
    assert {u.record_key for u in users if u.event.tenant_id == "hot"} == {"hot#0", "hot#1", "hot#2", "hot#3"}
    assert {u.record_key for u in users if u.event.tenant_id == "calm"} == {"calm"}


def test_an_event_too_large_to_encode_is_dropped_and_counted() -> None:
    fake = FakeKinesis()
    producer = _producer(fake)
    # 16 tags of 256 three-byte characters encode to well over 8 KiB.
    huge = make_event(tags={f"k{i}": "€" * 256 for i in range(16)})
    fine = make_event()
    producer.emit(huge)
    producer.emit(fine)
    assert producer.close(timeout=10)
    assert producer.stats().dropped_invalid == 1
    _assert_exactly_once(fake, [fine])


def test_emit_refuses_what_is_not_an_event() -> None:
    producer = _producer(FakeKinesis())
    with pytest.raises(TypeError, match="UsageEvent"):
        producer.emit({"tenant_id": "acme"})  # type: ignore[arg-type]


def test_nothing_starts_until_the_first_event() -> None:
    producer = _producer(FakeKinesis())
    assert producer._thread is None
    assert producer.flush(timeout=1)
    assert producer.close(timeout=1)


def test_buffered_events_are_delivered_at_interpreter_exit() -> None:
    # GIVEN a script that emits with a long linger and exits without closing
    script = textwrap.dedent(
        """
        import atexit
        from producers.sdk import ProducerConfig, UsageProducer
        from tests.unit.sdk.fakes import FakeKinesis, ShardedFakeKinesis, deaggregate, even_shards, make_event

        fake = FakeKinesis()
        # atexit runs handlers last-in first-out: this one runs after the producer's (registered on emit).
        atexit.register(lambda: print("delivered", len(deaggregate(fake.stored))))
        producer = UsageProducer("usage", kinesis_client=fake, config=ProducerConfig(linger_s=60.0))
        for _ in range(25):
            producer.emit(make_event())
        """
    )
    # WHEN it runs
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)

    # THEN the exit handler delivered everything
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "delivered 25"


def test_a_forked_child_starts_afresh_and_the_parent_keeps_its_events() -> None:
    # GIVEN a script whose parent emits (starting the sender), forks while 5 events linger, and then both
    # processes emit and close
    script = textwrap.dedent(
        """
        import os
        from producers.sdk import ProducerConfig, UsageProducer
        from tests.unit.sdk.fakes import FakeKinesis, deaggregate, make_event

        fake = FakeKinesis()
        producer = UsageProducer("usage", kinesis_client=fake, config=ProducerConfig(linger_s=60.0))
        for _ in range(5):
            producer.emit(make_event("parent"))
        pid = os.fork()
        tenant = "child" if pid == 0 else "parent"
        for _ in range(3):
            producer.emit(make_event(tenant))
        producer.close(timeout=10)
        tenants = sorted(u.event.tenant_id for u in deaggregate(fake.stored))
        line = f"{tenant} {tenants.count('parent')} {tenants.count('child')} {producer.stats().sent}\\n"
        os.write(1, line.encode())  # one write(): the two processes' lines cannot interleave
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        """
    )
    # WHEN it runs
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)

    # THEN the child sent only its own 3 events (the 5 buffered before the fork are the parent's to send),
    # and the parent sent its 8
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split("\n")[:2]) == ["child 0 3 3", "parent 8 0 8"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"linger_s": 0}, "linger_s"),
        ({"max_buffered_events": 0}, "max_buffered_events"),
        ({"max_buffered_bytes": 100}, "max_buffered_bytes"),
        ({"max_record_bytes": 2 * 1024 * 1024}, "max_record_bytes"),
        ({"max_call_records": 501}, "max_call_records"),
        ({"overflow": "explode"}, "overflow"),
        ({"backoff_base_s": 1.0, "backoff_cap_s": 0.5}, "backoff_cap_s"),
        ({"key_spread": {"acme": 0}}, "key_spread[acme]"),
        ({"key_spread": {"bad tenant": 2}}, "key_spread"),
        ({"aggregate_by": "tenant"}, "aggregate_by"),
        ({"shard_map_refresh_s": 0}, "shard_map_refresh_s"),
    ],
)
def test_bad_configuration_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProducerConfig(**overrides)
    assert info.value.field == field


# --- aggregation by shard ----------------------------------------------------------------------------------------


def test_records_bound_for_one_shard_share_an_aggregate() -> None:
    # GIVEN a 4-shard stream and 100 tenants with 3 events each
    fake = ShardedFakeKinesis()
    producer = _producer(fake)
    events = [make_event(f"tenant-{i % 100:03d}") for i in range(300)]

    # WHEN they are sent
    for event in events:
        producer.emit(event)
    assert producer.close(timeout=10)

    # THEN each Kinesis record carries several tenants, but only tenants whose key maps to the shard it went to
    _assert_exactly_once_anywhere(fake, events)
    assert fake.list_calls == 1
    assert len(fake.stored) <= 8  # about one per shard, not one per tenant
    placed_by_record = dict(zip((data for _, data in fake.stored), fake.placed, strict=True))
    for (_, data), users in _users_by_record(fake):
        assert len({u.user_key for u in users}) > 1
        assert all(fake.shard_of(u.user_key) == placed_by_record[data] for u in users)
    # AND each tenant's events keep their order
    users = deaggregate(fake.stored)
    for tenant in ("tenant-007", "tenant-042"):
        assert [u.event.event_id for u in users if u.event.tenant_id == tenant] == [
            e.event_id for e in events if e.tenant_id == tenant
        ]


def test_a_reshard_is_noticed_and_the_shard_map_read_again() -> None:
    # GIVEN a one-shard stream, read once
    fake = ShardedFakeKinesis(shards=even_shards(1, prefix="shardId-A"))
    producer = _producer(fake, shard_map_refresh_s=3600.0, shard_map_min_interval_s=0)
    producer.emit(make_event("acme"))
    assert producer.flush(timeout=10)
    assert fake.list_calls == 1

    # WHEN the stream is resharded into 4 and records land on shards the old map did not predict
    fake.shards = even_shards(4, prefix="shardId-B")
    for i in range(20):
        producer.emit(make_event(f"tenant-{i}"))
    assert producer.flush(timeout=10)
    later = [make_event(f"tenant-{i}") for i in range(20)]
    for event in later:
        producer.emit(event)
    assert producer.close(timeout=10)

    # THEN the map was read again, and later aggregates hold only keys of the shard they landed on
    assert fake.list_calls == 2
    later_ids = {e.event_id for e in later}
    for (_, data), users in _users_by_record(fake):
        if any(u.event.event_id in later_ids for u in users):
            (shard,) = {fake.shard_of(u.user_key) for u in users}
            assert shard == fake.placed[[d for _, d in fake.stored].index(data)]


def test_without_a_shard_map_it_aggregates_per_key(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a role without kinesis:ListShards
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListShards")
    fake = ShardedFakeKinesis(list_error=denied)
    producer = _producer(fake)
    events = [make_event(f"t{i % 5}") for i in range(50)]
    with caplog.at_level(logging.WARNING):
        for event in events:
            producer.emit(event)
        assert producer.close(timeout=10)

    # THEN delivery still works, each aggregate holds one key, and the fallback was logged
    _assert_exactly_once(fake, events)
    assert "aggregating per partition key" in caplog.text


def test_aggregation_by_key_can_be_chosen() -> None:
    fake = ShardedFakeKinesis()
    producer = _producer(fake, aggregate_by=AggregationScope.KEY)
    events = [make_event(f"t{i % 5}") for i in range(50)]
    for event in events:
        producer.emit(event)
    assert producer.close(timeout=10)
    _assert_exactly_once(fake, events)
    assert fake.list_calls == 0


def _assert_exactly_once_anywhere(fake: FakeKinesis, events: list[Any]) -> None:
    users = deaggregate(fake.stored)
    assert Counter(u.event.event_id for u in users) == Counter(e.event_id for e in events)


def _users_by_record(fake: FakeKinesis) -> list[tuple[tuple[str, bytes], list[Any]]]:
    return [(record, deaggregate([record])) for record in fake.stored]

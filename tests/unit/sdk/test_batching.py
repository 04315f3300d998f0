"""RecordBatcher: per-key KPL aggregation and PutRecords packing, without threads."""

from __future__ import annotations

import pytest

# messages_pb2 only imports after the aggregator module has put its folder on sys.path (a library quirk).
from aws_kinesis_agg import aggregator

from producers.sdk.batching import RecordBatcher
from shared.schema import encode_event
from tests.unit.sdk.fakes import MIB, deaggregate, make_event


def _batcher(**overrides: int) -> RecordBatcher:
    limits = {"max_record_bytes": MIB, "max_call_records": 500, "max_call_bytes": 5 * MIB}
    limits.update(overrides)
    return RecordBatcher(**limits)


def _partition_keys(data: bytes) -> list[str]:
    record = aggregator.messages_pb2.AggregatedRecord()
    record.ParseFromString(data[4:-16])
    return list(record.partition_key_table)


def test_each_aggregate_holds_one_partition_key_and_keeps_event_order() -> None:
    # GIVEN events of two tenants, interleaved
    batcher = _batcher()
    events = [make_event("acme" if i % 2 else "globex") for i in range(40)]
    for event in events:
        batcher.add(event.tenant_id, encode_event(event))

    # WHEN the open aggregates are closed
    batcher.close_open()
    call = batcher.next_call(now=0.0)

    # THEN there is one record per tenant, its key table holds only that tenant, and order within it is kept
    assert sorted(r.partition_key for r in call) == ["acme", "globex"]
    for record in call:
        assert _partition_keys(record.data) == [record.partition_key]
        assert record.events == 20
    users = deaggregate((r.partition_key, r.data) for r in call)
    for tenant in ("acme", "globex"):
        got = [u.event.event_id for u in users if u.event.tenant_id == tenant]
        assert got == [e.event_id for e in events if e.tenant_id == tenant]


def test_aggregates_never_exceed_the_record_limit_counting_the_key() -> None:
    # GIVEN a small record limit so that a few hundred events need several aggregates
    limit = 20_000
    batcher = _batcher(max_record_bytes=limit)
    events = [make_event("acme") for _ in range(300)]

    # WHEN they are added
    for event in events:
        batcher.add("acme", encode_event(event))
    batcher.close_open()

    # THEN every record is within the limit (key + data), reasonably full, and nothing is lost or repeated
    records = list(batcher.outstanding())
    assert len(records) > 1
    assert all(r.size == len(r.partition_key) + len(r.data) <= limit for r in records)
    assert all(r.size > limit * 0.9 for r in records[:-1])
    assert [u.event.event_id for u in deaggregate((r.partition_key, r.data) for r in records)] == [
        e.event_id for e in events
    ]
    assert sum(r.events for r in records) == batcher.held_events == 300


def test_a_call_respects_record_and_byte_limits_and_skips_records_in_backoff() -> None:
    # GIVEN 12 single-tenant records (one per tenant)
    batcher = _batcher(max_call_records=5)
    for i in range(12):
        event = make_event(f"t{i:02d}")
        batcher.add(event.tenant_id, encode_event(event))
    batcher.close_open()
    records = list(batcher.outstanding())

    # WHEN two of them wait out a backoff
    records[0].not_before = 10.0
    records[3].not_before = 10.0
    call = batcher.next_call(now=1.0)

    # THEN the call takes the first five due records, oldest first
    assert [r.seq for r in call] == [records[i].seq for i in (1, 2, 4, 5, 6)]
    # AND a byte limit of two records' worth stops the call at two
    small = _batcher(max_call_bytes=2 * records[1].size + 1)
    for i in range(3):
        event = make_event(f"t{i:02d}")
        small.add(event.tenant_id, encode_event(event))
    small.close_open()
    assert len(small.next_call(now=0.0)) == 2


def test_settling_returns_the_byte_and_event_budget() -> None:
    batcher = _batcher()
    for _ in range(10):
        batcher.add("acme", encode_event(make_event("acme")))
    assert batcher.pending_bytes > 0 and batcher.held_events == 10
    batcher.close_open()
    (record,) = batcher.next_call(now=0.0)
    assert batcher.pending_bytes == record.size
    batcher.settle(record)
    batcher.settle(record)  # idempotent
    assert (batcher.pending_bytes, batcher.held_events, batcher.oldest_outstanding_seq()) == (0, 0, None)


def test_an_event_larger_than_a_record_is_refused() -> None:
    batcher = _batcher(max_record_bytes=17_408)
    with pytest.raises(ValueError, match="too big"):
        batcher.add("acme", b"x" * 20_000)
    assert batcher.held_events == 0


def test_records_grouped_by_shard_mix_keys_and_are_routed_by_the_first() -> None:
    # GIVEN events of three tenants, two of them bound for the same shard
    batcher = _batcher(max_record_bytes=20_000)
    shard_of = {"acme": "shard-1", "globex": "shard-1", "initech": "shard-2"}
    events = [make_event(("acme", "globex", "initech")[i % 3]) for i in range(90)]
    for event in events:
        batcher.add(event.tenant_id, encode_event(event), shard_of[event.tenant_id])
    batcher.close_open()

    # THEN the shard-1 aggregates hold both tenants' keys, each record is keyed by its first user record and
    # stays within the limit counting that key, and the predicted shard travels with the record
    records = list(batcher.outstanding())
    for record in records:
        keys = _partition_keys(record.data)
        assert record.partition_key == keys[0]
        assert {shard_of[k] for k in keys} == {record.shard}
        assert record.size == len(record.partition_key) + len(record.data) <= 20_000
    assert any(set(_partition_keys(r.data)) == {"acme", "globex"} for r in records)
    users = deaggregate((r.partition_key, r.data) for r in records)
    assert sorted(u.event.event_id for u in users) == sorted(e.event_id for e in events)

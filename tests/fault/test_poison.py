"""1% poison records of every kind mixed into a real stream: each is quarantined (SQS, on moto) with its reason,
none blocks its shard, and every good record around and inside them is metered exactly.

Kinds: not JSON, unknown schema version, unknown tenant, negative tokens, oversized, bad timestamp (the
demo's ``poison_record``), and four KPL cases: an aggregate whose MD5 is wrong (by the KPL's rules that is a
plain record, so ``not_json``: the events inside it are NOT counted, they cannot be trusted), one whose
protobuf is truncated (valid MD5), one with a sub-record pointing past the partition-key table, and an
aggregate with one bad sub-record among good ones (the good ones count, the bad one alone is quarantined).
"""

from __future__ import annotations

import random

import pytest

from shared.ports import Totals
from tests.fault.oracle import expected_totals
from tests.fault.support import (
    POISON_REASONS,
    Poison,
    Stack,
    away_from_midnight,
    b64,
    bulk_registry,
    make_events,
    make_poison,
    tenant_ids,
)

pytestmark = pytest.mark.fault

TENANTS = tenant_ids(20)


def test_one_percent_poison_of_every_kind_is_quarantined_with_its_reason_and_blocks_no_shard(stack: Stack) -> None:
    # GIVEN 1,980 good events through the producer and, mixed in as a buggy producer would write them, two
    # poison records of each of the ten kinds (1% of the user records)
    at = away_from_midnight()
    stack.use_tenants(bulk_registry(TENANTS))
    rng = random.Random(41)
    good = make_events(rng, TENANTS, 1980, at)
    poison: list[Poison] = [
        make_poison(kind, n, make_events(rng, TENANTS, 3, at)) for n in range(2) for kind in POISON_REASONS
    ]
    rng.shuffle(poison)
    producer = stack.producer()
    positions: dict[int, str] = {}  # poison index -> its Kinesis sequence number
    step = len(good) // len(poison)
    for i, p in enumerate(poison):
        for event in good[i * step : (i + 1) * step]:
            producer.emit(event)
        assert producer.flush(timeout=30)
        (positions[i],) = stack.put_raw([(p.partition_key, p.record)])
    for event in good[len(poison) * step :]:
        producer.emit(event)
    assert producer.close(timeout=30)

    # WHEN the mapping delivers the stream to the consumer (default: no retries needed, bisect on error)
    runner = stack.runner(batch_size=100)
    runner.drain()

    # THEN every good event is metered exactly, including the good sub-records of partly bad aggregates
    metered = good + [e for p in poison for e in p.metered]
    want = expected_totals(metered)
    assert stack.totals(TENANTS, at) == {t: want.get(t, Totals()) for t in TENANTS}
    # AND each poison record is in the quarantine queue once, with its reason, position and raw bytes
    quarantined = stack.quarantined()
    assert len(quarantined) == len(poison)
    by_data = {m["body"]["data_base64"]: m for m in quarantined}
    for i, p in enumerate(poison):
        message = by_data[b64(p.bad)]
        body = message["body"]
        assert (p.kind, body["reason"], message["attributes"]["reason"]) == (p.kind, p.reason, p.reason)
        assert body["sequence_number"] == positions[i], p.kind
        assert body["length"] == len(p.bad) and not body.get("truncated")
    reasons = {p.kind: by_data[b64(p.bad)]["body"] for p in poison}
    assert reasons["bad-timestamp"]["detail"]["field"] == "occurred_at"
    assert reasons["negative-tokens"]["detail"]["field"] == "input_tokens"
    # the bad sub-record is named by its place in its aggregate (the second of three in both cases)
    assert reasons["kpl-bad-sub-record"]["sub_sequence_number"] == reasons["kpl-bad-index"]["sub_sequence_number"] == 1
    # AND no poison record blocked a shard: no failed invocation, no partial failure, nothing sent to the
    # on-failure destination
    assert (runner.stats.errors, runner.stats.partial_failures, runner.stats.sent_to_failure_destination) == (0, 0, 0)
    assert stack.failure_batches() == []

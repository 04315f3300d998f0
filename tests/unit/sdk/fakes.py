"""Fakes at the SDK's ports: a Kinesis client that checks PutRecords limits and fails what it is told to, an
event sink, a quota store, and helpers to build events and read aggregates back.

moto never throttles (FACTS.md), so retries are tested against FakeKinesis, which fails a chosen fraction of
entries the way Kinesis does: HTTP 200, ``FailedRecordCount``, and an ``ErrorCode`` on each failed entry.
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from shared.ports import QuotaStatus
from shared.schema import Source, UsageEvent, decode_event, new_event_id

MIB = 1024 * 1024
T0 = datetime(2026, 11, 23, 15, 39, 27, tzinfo=UTC)


def make_event(tenant_id: str = "acme", **overrides: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "event_id": new_event_id(),
        "occurred_at": T0,
        "tenant_id": tenant_id,
        "source": Source.SDK,
        "model": "claude-3-5-haiku",
        "model_id": "anthropic.claude-3-5-haiku-20241022-v1:0",
        "region": "us-east-1",
        "input_tokens": 1200,
        "output_tokens": 340,
        "latency_ms": 812,
        "request_id": "5b1f0c2e-1d2a-4c4e-9b7a-0d2f3e4a5b6c",
        "tags": {"costCenter": "cc-42"},
    }
    fields.update(overrides)
    return UsageEvent(**fields)


@dataclass
class UserRecord:
    """One deaggregated user record: the Kinesis record's key and the sub-record's key and event."""

    record_key: str
    user_key: str
    event: UsageEvent


def deaggregate(stored: Iterable[tuple[str, bytes]]) -> list[UserRecord]:
    """Deaggregate (partition key, data) records with aws_kinesis_agg, as the consumer will. The library prints
    and skips a record it cannot parse (FACTS.md), so the caller should also compare counts."""
    out: list[UserRecord] = []
    for seq, (key, data) in enumerate(stored):
        boto3_shaped = {
            "SequenceNumber": str(seq),
            "PartitionKey": key,
            "ApproximateArrivalTimestamp": T0,
            "Data": data,
        }
        for user in iter_deaggregate_records([boto3_shaped], data_format="Boto3"):
            kinesis = user["kinesis"]
            assert kinesis.get("aggregated") is True, "every record the producer writes is a KPL aggregate"
            out.append(UserRecord(key, kinesis["partitionKey"], decode_event(base64.b64decode(kinesis["data"]))))
    return out


def even_shards(count: int, prefix: str = "shardId-") -> list[dict[str, Any]]:
    """ListShards entries splitting the 128-bit hash space evenly, as CreateStream does."""
    top = 2**128
    return [
        {
            "ShardId": f"{prefix}{i:012d}",
            "HashKeyRange": {
                "StartingHashKey": str(top * i // count),
                "EndingHashKey": str(top * (i + 1) // count - 1),
            },
            "SequenceNumberRange": {"StartingSequenceNumber": "1"},
        }
        for i in range(count)
    ]


@dataclass
class FakeKinesis:
    """A Kinesis client for PutRecords. Enforces the API limits (raising like a validation error would),
    fails ``fail_fraction`` of entries with Kinesis's error codes, can raise on whole calls (``raise_calls``),
    and can hold calls at a gate to simulate a stalled network. It has no ListShards (so the producer aggregates
    per key) unless made with ``FakeKinesis.with_shards``."""

    fail_fraction: float = 0.0
    seed: int = 7
    raise_calls: int = 0
    raise_with: Callable[[], Exception] = lambda: ConnectionError("network down")
    gate: threading.Event | None = None
    calls: list[list[tuple[str, bytes]]] = field(default_factory=list)
    stored: list[tuple[str, bytes]] = field(default_factory=list)
    placed: list[str] = field(default_factory=list)  # the shard of each stored record
    failed_entries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.entered = threading.Event()

    def shard_of(self, key: str) -> str:
        return "shardId-000000000000"

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        assert set(kwargs) == {"StreamName", "Records"}, kwargs.keys()
        records = kwargs["Records"]
        assert 1 <= len(records) <= 500, len(records)
        total = 0
        for entry in records:
            assert set(entry) == {"PartitionKey", "Data"}, "no ExplicitHashKey (never None)"
            key, data = entry["PartitionKey"], entry["Data"]
            assert isinstance(key, str) and 1 <= len(key) <= 256
            assert isinstance(data, bytes)
            size = len(key.encode()) + len(data)
            assert size <= MIB, size
            total += size
        assert total <= 5 * MIB, total
        self.entered.set()
        if self.gate is not None:
            self.gate.wait()
        with self.lock:
            self.calls.append([(e["PartitionKey"], e["Data"]) for e in records])
            if self.raise_calls > 0:
                self.raise_calls -= 1
                raise self.raise_with()
            results: list[dict[str, str]] = []
            for i, entry in enumerate(records):
                if self._rng.random() < self.fail_fraction:
                    self.failed_entries += 1
                    code = "ProvisionedThroughputExceededException" if i % 2 else "InternalFailure"
                    results.append({"ErrorCode": code, "ErrorMessage": "Rate exceeded for shard"})
                else:
                    self.stored.append((entry["PartitionKey"], entry["Data"]))
                    shard = self.shard_of(entry["PartitionKey"])
                    self.placed.append(shard)
                    results.append({"SequenceNumber": str(len(self.stored)), "ShardId": shard})
            failed = sum(1 for r in results if "ErrorCode" in r)
            return {"FailedRecordCount": failed, "Records": results}


@dataclass
class ShardedFakeKinesis(FakeKinesis):
    """FakeKinesis with ListShards: routes each record by the MD5 of its key over ``shards`` (replaceable, to
    simulate a reshard), and counts ListShards calls. ``list_error`` makes ListShards fail."""

    shards: list[dict[str, Any]] = field(default_factory=lambda: even_shards(4))
    list_calls: int = 0
    list_error: Exception | None = None

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {"StreamName": "usage"}, kwargs
        self.list_calls += 1
        if self.list_error is not None:
            raise self.list_error
        return {"Shards": self.shards}

    def shard_of(self, key: str) -> str:
        h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
        for shard in self.shards:
            if int(shard["HashKeyRange"]["StartingHashKey"]) <= h <= int(shard["HashKeyRange"]["EndingHashKey"]):
                return str(shard["ShardId"])
        raise AssertionError("hash space not covered")


class ListSink:
    """An EventSink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)


class FakeQuotaStore:
    """The one QuotaState method producers read. Counts round trips; can be made to fail."""

    def __init__(self) -> None:
        self.status: dict[str, QuotaStatus] = {}
        self.calls: list[tuple[str, datetime]] = []
        self.error: Exception | None = None

    def quota_status(self, tenant_id: str, now: datetime) -> QuotaStatus:
        self.calls.append((tenant_id, now))
        if self.error is not None:
            raise self.error
        return self.status.get(tenant_id, QuotaStatus())


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

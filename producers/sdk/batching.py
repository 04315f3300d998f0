"""RecordBatcher: KPL aggregation and PutRecords packing, with no threads and no I/O.

The producer's sender thread owns one RecordBatcher (aws-kinesis-agg's aggregates are not thread-safe), so the
rules that decide what goes on the wire are testable on their own:

- Kinesis routes an aggregate by its first partition key (FACTS.md). So user records share an aggregate only
  when they would land on the same shard anyway: grouped by the shard their key maps to when the shard map is
  known (what the KPL does), else by partition key. Either way every user record sits on the shard of its own
  key, each tenant's events stay on one shard in order, and the consumer sees each user record's key in the
  aggregate's partition_key_table. Grouping by shard packs low-volume tenants together; grouping by key (the
  fallback) gives each tenant its own aggregates, smaller at low rates, bounded in time by ``linger_s``.
- An aggregate is at most ``max_record_bytes`` including its (first) partition key: Kinesis's 1 MiB counts
  both. Keys are passed to aws-kinesis-agg as bytes: given a str it re-counts the key on every user record and
  so overestimates the size (by len(key)+3 bytes per record, measured).
- aws-kinesis-agg's ``AggRecord`` is used directly rather than its ``RecordAggregator`` wrapper, which holds a
  single open aggregate and deep-copies it whenever it fills; we need one open aggregate per group.
- A PutRecords call carries at most ``max_call_records`` records and ``max_call_bytes`` bytes, in the order
  records were closed; a record waiting out its retry backoff is skipped until it is due.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aws_kinesis_agg.aggregator import AggRecord


@dataclass(slots=True, eq=False)
class OutRecord:
    """One Kinesis record (a KPL aggregate) waiting to be sent or resent."""

    seq: int
    partition_key: str  # the aggregate's first user record's key: Kinesis routes the record by it
    data: bytes
    events: int
    size: int  # partition key bytes + data bytes, as Kinesis counts them
    shard: str | None = None  # the shard predicted from the shard map, when grouped by shard
    attempts: int = 0
    not_before: float = 0.0


@dataclass(slots=True)
class _OpenAggregate:
    record: AggRecord
    first_key: str
    first_key_bytes: bytes
    shard: str | None
    events: int = 0
    size: int = 0


_Group = tuple[str, str]  # ("shard", shard id) or ("key", partition key): a tenant may be named like a shard


class RecordBatcher:
    """Aggregates encoded events per partition key and hands out PutRecords-sized groups of records."""

    def __init__(self, *, max_record_bytes: int, max_call_records: int, max_call_bytes: int) -> None:
        self._max_record_bytes = max_record_bytes
        self._max_call_records = max_call_records
        self._max_call_bytes = max_call_bytes
        self._open: dict[_Group, _OpenAggregate] = {}
        # Insertion order is seq order, so the first key is the oldest outstanding record.
        self._outstanding: dict[int, OutRecord] = {}
        self._next_seq = 1
        self.pending_bytes = 0
        self.held_events = 0

    @property
    def open_aggregates(self) -> int:
        return len(self._open)

    @property
    def outstanding_records(self) -> int:
        return len(self._outstanding)

    @property
    def last_seq(self) -> int:
        """The seq of the most recently closed record (0 if none)."""
        return self._next_seq - 1

    def add(self, partition_key: str, data: bytes, shard: str | None = None) -> None:
        """Add one encoded event to the open aggregate of its shard (if given) or else of its key; closes that
        aggregate first if the event does not fit."""
        group: _Group = ("shard", shard) if shard is not None else ("key", partition_key)
        key_bytes = partition_key.encode()
        agg = self._open.get(group)
        if agg is None:
            agg = self._new_aggregate(group, partition_key, key_bytes, shard)
        before = agg.record.get_size_bytes() if agg.events else 0
        if not agg.record.add_user_record(key_bytes, data):
            self._close(group, agg)
            agg = self._new_aggregate(group, partition_key, key_bytes, shard)
            before = 0
            # Cannot fail for lack of room in an empty aggregate: config keeps max_record_bytes well above the
            # largest event; an oversized one raises ValueError, which the caller treats as a bad event.
            if not agg.record.add_user_record(key_bytes, data):  # pragma: no cover - defensive
                raise ValueError("event does not fit in an empty aggregate")
        after = agg.record.get_size_bytes()
        agg.events += 1
        agg.size = after
        self.pending_bytes += after - before
        self.held_events += 1

    def close_open(self) -> None:
        """Close every open aggregate (linger expired, flush, close)."""
        for group, agg in list(self._open.items()):
            self._close(group, agg)

    def next_call(self, now: float) -> list[OutRecord]:
        """The due records for one PutRecords call, oldest first, within the call limits."""
        batch: list[OutRecord] = []
        size = 0
        for record in self._outstanding.values():
            if record.not_before > now:
                continue
            if size + record.size > self._max_call_bytes:
                break
            batch.append(record)
            size += record.size
            if len(batch) >= self._max_call_records:
                break
        return batch

    def settle(self, record: OutRecord) -> None:
        """The record was delivered (or given up): forget it."""
        if self._outstanding.pop(record.seq, None) is not None:
            self.pending_bytes -= record.size
            self.held_events -= record.events

    def oldest_outstanding_seq(self) -> int | None:
        return next(iter(self._outstanding), None)

    def next_due(self) -> float | None:
        """The earliest time a record becomes due (0.0 when one already is), None when nothing is outstanding."""
        return min((r.not_before for r in self._outstanding.values()), default=None)

    def discard_all(self) -> int:
        """Forget everything held (at close, when delivery gave up); returns how many events that was."""
        self.close_open()
        dropped = self.held_events
        for record in list(self._outstanding.values()):
            self.settle(record)
        return dropped

    def outstanding(self) -> Iterator[OutRecord]:
        return iter(list(self._outstanding.values()))

    def _new_aggregate(self, group: _Group, first_key: str, key_bytes: bytes, shard: str | None) -> _OpenAggregate:
        # The first key becomes the Kinesis record's key, so it counts against the record's size.
        agg = _OpenAggregate(AggRecord(self._max_record_bytes - len(key_bytes)), first_key, key_bytes, shard)
        self._open[group] = agg
        return agg

    def _close(self, group: _Group, agg: _OpenAggregate) -> None:
        del self._open[group]
        if agg.events == 0:  # pragma: no cover - aggregates are created only to receive an event
            return
        _, _, data = agg.record.get_contents()
        size = len(agg.first_key_bytes) + len(data)
        record = OutRecord(self._next_seq, agg.first_key, data, agg.events, size, agg.shard)
        self._next_seq += 1
        self._outstanding[record.seq] = record
        self.pending_bytes += size - agg.size

"""UsageProducer: puts UsageEvents on Kinesis, KPL-aggregated, from one background sender thread.

Why it is built this way:

- ``emit()`` runs on the application's request thread, so it does the least that is safe: a type check and,
  under a lock, a bounded deque append (plus a condition notify when the sender is idle or the queue is
  filling). Encoding, aggregation and network I/O all happen on the sender thread. ``bench/producer.py``
  measures the cost.
- The sender's encoding and aggregation (~6 us per event) hold the interpreter lock. It takes queued events
  every ``TAKE_INTERVAL_S`` while an aggregate lingers, so the work comes in small slices rather than one burst
  per linger window. Under CPython's default 5 ms switch interval a longer stretch of sender work (a backlog,
  a large PutRecords) can still hold up a request thread of the same process for up to 5 ms; latency-sensitive
  servers should lower it (``sys.setswitchinterval(0.0005)``), as the gateway's local server does.
- The partition key is the tenant id. User records share a Kinesis record only when bound for the same shard
  (the shard map comes from ListShards and is refreshed every ``shard_map_refresh_s`` and whenever Kinesis
  puts a record elsewhere than predicted; without it, e.g. no ``kinesis:ListShards`` permission, they share
  only per key). So each tenant's events stay on one shard, in order, as if sent one by one; see
  producers.sdk.batching. Order is best effort on retries: when one record of a call fails and a later one
  with the same tenant succeeds, the resend lands after it. The consumer counts commutatively and dedupes by
  event_id, so order never changes a total. With Lambda's ParallelizationFactor > 1, order is kept per
  Kinesis record key, which for a shared aggregate is its first user record's key, not each tenant's.
- A hot tenant may be spread over N keys ``tenant#0..N-1`` (``ProducerConfig.key_spread``; the key is chosen
  from a hash of the event id). That multiplies the tenant's write ceiling by up to N shards (1 MB/s and 1,000
  records/s each) but gives up per-tenant order across those keys, and, when aggregating per key, each key
  fills its own aggregates (about 1/N as many events per record at the same rate). The consumer reads the
  tenant from the event, never from the key, so its totals are unaffected.
- PutRecords answers 200 with per-entry failures; only the failed entries are resent, each after exponential
  backoff with full jitter. Whole-call errors (throttling, network) retry the whole call the same way. A
  request that botocore rejects before sending (ParamValidationError) is a bug, not a transient fault: its
  records are dropped, counted and logged rather than retried forever. A retry after an ambiguous failure may
  write an event twice; every event carries its own event_id for the consumer's dedupe.
- Memory is bounded (see ProducerConfig): nothing here grows without limit while Kinesis is unreachable.
- ``flush()`` and ``close()`` deliver what is buffered; ``close()`` also runs at interpreter exit (atexit),
  bounded by ``close_timeout_s``. The sender thread is a daemon so a dead network cannot hang shutdown.

Nothing happens at construction: no client is created and no thread started until the first ``emit()`` (or
``start()``). Never logs event contents: only event ids and counts.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec
from botocore.exceptions import ParamValidationError

from producers.sdk.batching import OutRecord, RecordBatcher
from producers.sdk.config import AggregationScope, OverflowPolicy, ProducerConfig
from producers.sdk.shards import ShardMap
from shared.errors import ProducerClosedError
from shared.schema import UsageEvent, encode_event

if TYPE_CHECKING:
    from typing import Unpack

    from mypy_boto3_kinesis.type_defs import (
        PutRecordsInputTypeDef,
        PutRecordsOutputTypeDef,
        PutRecordsRequestEntryTypeDef,
    )

logger = logging.getLogger(__name__)

# The wire JSON encoder: msgspec's is ~10x the standard library's, and the sender encodes every event while
# holding the GIL the application's threads need (shared.schema.encode_event).
_dumps = msgspec.json.encode

# While an aggregate lingers, queued events are moved into it this often.
TAKE_INTERVAL_S = 0.01

# close(timeout) waits up to timeout for delivery, then this much longer for the sender to leave a call.
_STOP_GRACE_S = 1.0


class KinesisPutClient(Protocol):
    """The one Kinesis call the producer makes (a boto3 ``kinesis`` client satisfies it)."""

    def put_records(self, **kwargs: Unpack[PutRecordsInputTypeDef]) -> PutRecordsOutputTypeDef: ...


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """Counters since the producer was created. Events, not Kinesis records, unless the name says records."""

    sent: int  # events Kinesis acknowledged
    retried: int  # event resends (an event in a record resent twice counts twice)
    dropped_overflow: int  # refused by emit() because the buffer was full (after the BLOCK timeout, if any)
    dropped_invalid: int  # could not be encoded (over 8 KiB) or rejected by botocore before sending
    dropped_unsent: int  # still buffered when close() gave up
    buffered: int  # accepted and neither delivered nor dropped yet (queued + held by the sender)
    queued: int  # waiting for the sender (bounded by max_buffered_events)
    buffered_bytes: int  # encoded bytes the sender holds (open aggregates and records awaiting (re)send)
    records_sent: int  # Kinesis records (aggregates) acknowledged
    records_retried: int
    put_calls: int
    failed_calls: int  # PutRecords calls that raised (each also counts its records as retried)

    @property
    def dropped(self) -> int:
        return self.dropped_overflow + self.dropped_invalid + self.dropped_unsent


class _FlushMarker:
    """Queued behind everything emitted before a flush(); set once all of that is delivered or dropped."""

    __slots__ = ("done", "target_seq")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.target_seq = 0


class UsageProducer:
    """An ``EventSink`` that ships events to a Kinesis stream. Thread-safe; one per process is plenty."""

    def __init__(
        self,
        stream_name: str,
        *,
        kinesis_client: KinesisPutClient | None = None,
        region_name: str | None = None,
        config: ProducerConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not stream_name:
            raise ValueError("stream_name is required")
        self._stream_name = stream_name
        self._client = kinesis_client
        self._owns_client = kinesis_client is None
        self._region_name = region_name
        self._config = config or ProducerConfig()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        cfg = self._config
        self._max_events = cfg.max_buffered_events
        # Wake the sender early when a quarter of the queue is used, so a burst does not hit the limit.
        self._wake_at = max(1, cfg.max_buffered_events // 4)
        self._spread = dict(cfg.key_spread)
        self._fork_hook = False
        self._init_state()

    def _init_state(self) -> None:
        cfg = self._config
        # Shared between callers and the sender; guarded by _lock (an RLock: a finaliser that emits may run
        # on a thread that already holds it, e.g. a garbage-collected stream wrapper).
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)  # the sender waits here
        self._room = threading.Condition(self._lock)  # BLOCK-policy emitters wait here
        self._queue: deque[UsageEvent | _FlushMarker] = deque()
        self._closed = False
        self._stop = False
        self._sender_idle = False
        self._flush_requested = False
        self._room_waiters = 0
        self._thread: threading.Thread | None = None
        self._dropped_overflow = 0

        # Sender-thread state (read without the lock by stats(), which tolerates a racy snapshot).
        self._batcher = RecordBatcher(
            max_record_bytes=cfg.max_record_bytes,
            max_call_records=cfg.max_call_records,
            max_call_bytes=cfg.max_call_bytes,
        )
        self._markers: list[_FlushMarker] = []
        self._linger_deadline: float | None = None
        self._shard_map: ShardMap | None = None
        self._shard_map_due = 0.0  # monotonic time of the next planned read
        self._shard_map_read_at = float("-inf")
        self._shard_map_stale = False
        self._sent = 0
        self._retried = 0
        self._dropped_invalid = 0
        self._dropped_unsent = 0
        self._records_sent = 0
        self._records_retried = 0
        self._put_calls = 0
        self._failed_calls = 0

    # --- caller side ---------------------------------------------------------------------------------------

    def emit(self, event: UsageEvent) -> None:
        """Hand one event to the sender. Costs microseconds; never does I/O. Raises ProducerClosedError after
        close(). When the buffer is full, the overflow policy decides (the event is then counted as dropped)."""
        if not isinstance(event, UsageEvent):
            raise TypeError(f"emit() takes a UsageEvent, got {type(event).__name__}")
        with self._lock:
            if self._closed:
                raise ProducerClosedError("emit() after close(): the event was not accepted")
            queue = self._queue
            if len(queue) >= self._max_events and not self._wait_for_room():
                if self._closed:
                    raise ProducerClosedError("closed while emit() waited for room: the event was not accepted")
                self._count_overflow()
                return
            queue.append(event)
            if self._thread is None:
                self._start_locked()
            if self._sender_idle or len(queue) == self._wake_at:
                self._sender_idle = False
                self._wakeup.notify()

    def start(self) -> None:
        """Start the sender thread now rather than on the first emit()."""
        with self._lock:
            if self._closed:
                raise ProducerClosedError("start() after close()")
            if self._thread is None:
                self._start_locked()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything emitted before this call, without waiting for ``linger_s``. True when all of it was
        delivered (or dropped as invalid) within ``timeout`` seconds (None: wait as long as it takes)."""
        marker = _FlushMarker()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                # Never started: nothing was emitted. Started but dead: report what is left.
                return not self._queue and self._batcher.held_events == 0
            self._queue.append(marker)
            self._flush_requested = True
            self._sender_idle = False
            self._wakeup.notify()
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the sender and refuse further events. Idempotent. Waits up to ``timeout`` seconds for
        delivery (None: as long as it takes), plus up to a second for an in-flight call. True when nothing was
        left undelivered; otherwise what was left is counted in ``dropped_unsent`` and logged."""
        with self._lock:
            already = self._closed
            self._closed = True
            thread = self._thread
            self._room.notify_all()
        if already:
            return self.stats().buffered == 0
        atexit.unregister(self._close_at_exit)
        deadline = None if timeout is None else time.monotonic() + timeout
        delivered = self.flush(timeout)
        with self._lock:
            self._stop = True
            self._wakeup.notify()
        if thread is not None:
            # The sender stops between calls; give an in-flight PutRecords a moment to finish.
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()) + _STOP_GRACE_S)
            if thread.is_alive():
                logger.error("usage producer sender did not stop within the close timeout")
        if thread is None or not thread.is_alive():
            left = self._discard_remaining()
            if left:
                logger.error("usage producer closed with %d events undelivered (counted as dropped_unsent)", left)
            delivered = delivered and left == 0
        return delivered

    def stats(self) -> ProducerStats:
        batcher = self._batcher
        queued = sum(1 for item in list(self._queue) if not isinstance(item, _FlushMarker))
        return ProducerStats(
            sent=self._sent,
            retried=self._retried,
            dropped_overflow=self._dropped_overflow,
            dropped_invalid=self._dropped_invalid,
            dropped_unsent=self._dropped_unsent,
            buffered=queued + batcher.held_events,
            queued=queued,
            buffered_bytes=batcher.pending_bytes,
            records_sent=self._records_sent,
            records_retried=self._records_retried,
            put_calls=self._put_calls,
            failed_calls=self._failed_calls,
        )

    def __enter__(self) -> UsageProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(self._config.close_timeout_s)

    def _wait_for_room(self) -> bool:
        """Called with the lock held and the queue full. True when room was made."""
        cfg = self._config
        if cfg.overflow is OverflowPolicy.DROP or cfg.block_timeout_s == 0:
            return False
        self._room_waiters += 1
        try:
            # wait_for returns the predicate's last value: True if room, False on timeout.
            return (
                self._room.wait_for(
                    lambda: self._closed or len(self._queue) < self._max_events, timeout=cfg.block_timeout_s
                )
                and not self._closed
            )
        finally:
            self._room_waiters -= 1

    def _count_overflow(self) -> None:
        self._dropped_overflow += 1
        count = self._dropped_overflow
        # Log the 1st, 10th, 100th, ... drop: loud enough to notice, quiet enough not to flood.
        if str(count).rstrip("0") == "1":
            logger.warning(
                "usage producer buffer full (%d events): %d events dropped so far (policy %s)",
                self._max_events,
                count,
                self._config.overflow.value,
            )

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tenantmeter-usage-producer", daemon=True)
        self._thread.start()
        atexit.register(self._close_at_exit)
        if not self._fork_hook:
            self._fork_hook = True
            me = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _reset_in_child(me))

    def _reset_after_fork(self) -> None:
        """In a forked child (e.g. a pre-forking web server that imported the app after emitting): the sender
        thread did not survive the fork, its lock may be held, and the events buffered belong to the parent,
        which still sends them. Start afresh: empty buffer, zeroed counters, a new client if we made the old."""
        if self._owns_client:
            self._client = None  # boto3 clients hold connection pools: not shared across a fork
        closed = self._closed
        self._init_state()
        self._closed = closed

    def _close_at_exit(self) -> None:
        self.close(self._config.close_timeout_s)

    def _discard_remaining(self) -> int:
        """After the sender stopped: count whatever is still buffered as dropped_unsent."""
        with self._lock:
            left = [item for item in self._queue if not isinstance(item, _FlushMarker)]
            markers = [item for item in self._queue if isinstance(item, _FlushMarker)]
            self._queue.clear()
        count = len(left) + self._batcher.discard_all()
        self._dropped_unsent += count
        for marker in [*markers, *self._markers]:
            marker.done.set()
        self._markers.clear()
        return count

    # --- sender thread -------------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while self._client is None and not self._stop:
            try:
                self._client = self._make_client()
            except Exception:
                # No region, no credentials yet...: keep events buffered (the overflow policy bounds them) and
                # try again, so a transient fault does not silence metering for the life of the process.
                if failures == 0:
                    logger.exception("usage producer could not create its Kinesis client; retrying")
                failures += 1
                with self._lock:
                    self._wakeup.wait(self._config.backoff_cap_s)
        while True:
            try:
                if self._cycle():
                    return
            except Exception:
                # Never die silently with events buffered: log, pause briefly, carry on.
                logger.exception("usage producer sender cycle failed")
                time.sleep(self._config.backoff_base_s)

    def _make_client(self) -> KinesisPutClient:
        import boto3  # here, not at import: a client is created only when a producer first sends

        # One session per producer: boto3's default session is not safe to share across threads.
        client: KinesisPutClient = boto3.session.Session().client("kinesis", region_name=self._region_name)
        return client

    def _cycle(self) -> bool:
        """One round: wait for work, take events, close lingering aggregates, send what is due.
        Returns True when the sender should exit."""
        cfg = self._config
        batcher = self._batcher
        with self._lock:
            timeout = self._wait_timeout(time.monotonic())
            if timeout is None:
                self._sender_idle = True
                self._wakeup.wait()
                self._sender_idle = False
            elif timeout > 0:
                self._wakeup.wait(timeout)
            if self._stop:
                return True
            self._flush_requested = False
        self._refresh_shard_map()
        flush_now = self._take_events()
        now = time.monotonic()
        if batcher.open_aggregates and self._linger_deadline is None:
            self._linger_deadline = now + cfg.linger_s
        if flush_now or (self._linger_deadline is not None and now >= self._linger_deadline):
            batcher.close_open()
            self._linger_deadline = None
            for marker in flush_now:
                marker.target_seq = batcher.last_seq
                self._markers.append(marker)
        self._send_due()
        self._settle_markers()
        return False

    def _wait_timeout(self, now: float) -> float | None:
        """Seconds to sleep (0: work is waiting now), or None to sleep until notified. Called with the lock held.

        Queued events are taken at once when no aggregate is open (that starts a linger window); while one is
        open they wait for its deadline, unless the queue is filling up or a flush asked for them."""
        batcher = self._batcher
        if self._stop or self._flush_requested:
            return 0.0
        queued = len(self._queue)
        if (
            queued
            and batcher.pending_bytes < self._config.max_buffered_bytes
            and (self._linger_deadline is None or queued >= self._wake_at)
        ):
            return 0.0
        deadlines = []
        if self._linger_deadline is not None:
            deadlines.append(self._linger_deadline)
            if queued:
                # Take what arrived every few ms rather than all of it at the deadline: the same work, in small
                # slices that hold the interpreter lock briefly instead of one burst that holds up the
                # application's threads (see the module docstring).
                deadlines.append(now + TAKE_INTERVAL_S)
        due = batcher.next_due()
        if due is not None:
            deadlines.append(due)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _take_events(self) -> list[_FlushMarker]:
        """Move queued events into aggregates while the byte budget allows. Events are peeked, aggregated and
        only then popped, so the queue length (which emit() checks) counts them until they are in the budget."""
        queue = self._queue
        batcher = self._batcher
        max_bytes = self._config.max_buffered_bytes
        markers: list[_FlushMarker] = []
        taken = 0
        while queue and batcher.pending_bytes < max_bytes:
            item = queue[0]
            if isinstance(item, _FlushMarker):
                markers.append(item)
            else:
                self._aggregate(item)
            queue.popleft()
            taken += 1
            if taken % 64 == 0:
                # Encoding holds the interpreter lock and a linger window may leave hundreds of events waiting:
                # release it between chunks, a chance for a waiting request thread to take it (the sure bound
                # is the switch interval: see the module docstring).
                time.sleep(0)
            if taken % 256 == 0:
                self._make_room()
        if taken:
            self._make_room()
        return markers

    def _make_room(self) -> None:
        if self._room_waiters:
            with self._lock:
                self._room.notify_all()

    def _aggregate(self, event: UsageEvent) -> None:
        try:
            data = encode_event(event, _dumps)
            key = self._partition_key(event)
            shard_map = self._shard_map
            self._batcher.add(key, data, shard_map.shard_for(key) if shard_map is not None else None)
        except Exception as exc:
            # SchemaError (over 8 KiB encoded) or anything unforeseen: never let one event wedge the queue.
            self._dropped_invalid += 1
            logger.error("usage event %s dropped (%s): %s", event.event_id, type(exc).__name__, exc)

    def _partition_key(self, event: UsageEvent) -> str:
        spread = self._spread.get(event.tenant_id, 1)
        if spread == 1:
            return event.tenant_id
        return f"{event.tenant_id}#{zlib.crc32(event.event_id.encode()) % spread}"

    def _send_due(self) -> None:
        batcher = self._batcher
        while not self._stop:
            batch = batcher.next_call(time.monotonic())
            if not batch:
                return
            self._put(batch)

    def _put(self, batch: Sequence[OutRecord]) -> None:
        assert self._client is not None
        entries: list[PutRecordsRequestEntryTypeDef] = [
            # No ExplicitHashKey: the key alone routes the record (and boto3 rejects ExplicitHashKey=None).
            {"PartitionKey": r.partition_key, "Data": r.data}
            for r in batch
        ]
        self._put_calls += 1
        try:
            response = self._client.put_records(StreamName=self._stream_name, Records=entries)
        except ParamValidationError as exc:
            self._failed_calls += 1
            for record in batch:
                self._dropped_invalid += record.events
                self._batcher.settle(record)
            logger.error("PutRecords rejected before sending, %d records dropped: %s", len(batch), exc)
            return
        except Exception as exc:
            self._failed_calls += 1
            logger.warning("PutRecords failed (%s), retrying %d records", type(exc).__name__, len(batch))
            for record in batch:
                self._reschedule(record)
            return
        results = response.get("Records", [])
        failed_codes: dict[str, int] = {}
        for i, record in enumerate(batch):
            result = results[i] if i < len(results) else {"ErrorCode": "MissingResult"}
            code = result.get("ErrorCode")
            if code:
                failed_codes[code] = failed_codes.get(code, 0) + 1
                self._reschedule(record)
            else:
                self._sent += record.events
                self._records_sent += 1
                self._batcher.settle(record)
                if record.shard is not None and result.get("ShardId", record.shard) != record.shard:
                    self._shard_map_stale = True
        if failed_codes:
            logger.info("PutRecords partial failure, resending %s", failed_codes)

    def _refresh_shard_map(self) -> None:
        """Read the shard map when due, or soon after a record landed on an unexpected shard (a reshard)."""
        if self._config.aggregate_by is not AggregationScope.SHARD:
            return
        now = time.monotonic()
        forced = self._shard_map_stale and now - self._shard_map_read_at >= self._config.shard_map_min_interval_s
        if now < self._shard_map_due and not forced:
            return
        self._shard_map_due = now + self._config.shard_map_refresh_s
        self._shard_map_read_at = now
        self._shard_map_stale = False
        list_shards = getattr(self._client, "list_shards", None)
        if list_shards is None:
            return  # a client without ListShards (a test fake, a custom sink): aggregate per key
        try:
            self._shard_map = ShardMap.load(list_shards, self._stream_name)
        except Exception as exc:
            if self._shard_map is None:
                logger.warning("no shard map (%s): aggregating per partition key until it can be read", exc)
            else:
                logger.warning("shard map refresh failed (%s): keeping the previous map", exc)

    def _reschedule(self, record: OutRecord) -> None:
        record.attempts += 1
        cfg = self._config
        ceiling = min(cfg.backoff_cap_s, cfg.backoff_base_s * (2 ** min(record.attempts - 1, 30)))
        record.not_before = time.monotonic() + self._rng.uniform(0.0, ceiling)
        self._retried += record.events
        self._records_retried += 1

    def _settle_markers(self) -> None:
        if not self._markers:
            return
        oldest = self._batcher.oldest_outstanding_seq()
        waiting = []
        for marker in self._markers:
            if oldest is None or oldest > marker.target_seq:
                marker.done.set()
            else:
                waiting.append(marker)
        self._markers = waiting


def _reset_in_child(ref: weakref.ReferenceType[UsageProducer]) -> None:
    producer = ref()
    if producer is not None:
        producer._reset_after_fork()

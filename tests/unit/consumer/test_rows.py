"""Events as rows (the consumer's hot path): the same facts as MeteredEvents, and the same results either way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.metering.records import Reason, split_records
from consumers.metering.validate import Meter
from shared.adapters.memory_store import InMemoryStore
from shared.ports import ApplyOutcome, MeteredEvent, StreamPosition, TenantBatch
from shared.pricing import CachedPricer, PriceCatalog
from shared.store_layout import TenantRows, batch_from_rows, event_from_row, row_from_event, rows_from_batch
from shared.windows import MONTH
from tests.unit.consumer.fakes import FakeQuarantine, metering_service
from tests.unit.consumer.kinesis import NOW, Shard, registry, usage

CATALOG = PriceCatalog.load()

texts = st.text(alphabet="abc-._:019", min_size=1, max_size=12)
counts = st.integers(min_value=0, max_value=10**7)


@st.composite
def metered(draw: Any) -> MeteredEvent:
    return MeteredEvent(
        tenant_id=draw(texts),
        event_id=draw(texts),
        occurred_at=NOW - timedelta(seconds=draw(st.integers(min_value=0, max_value=10**6))),
        position=StreamPosition(
            draw(texts), draw(texts), str(draw(st.integers(min_value=0, max_value=10**56))), draw(counts)
        ),
        model=draw(texts),
        cost_center=draw(st.sampled_from(["", "cc-1"])),
        application_id=draw(st.sampled_from(["", "bot"])),
        input_tokens=draw(counts),
        output_tokens=draw(counts),
        cache_read_tokens=draw(counts),
        cache_write_tokens=draw(counts),
        cost_nanos=draw(st.integers(min_value=0, max_value=10**15)),
        reservation_id=draw(st.sampled_from(["", "r-1"])),
        requests=draw(st.sampled_from([0, 1])),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(metered(), max_size=5))
def test_rows_and_events_convert_both_ways_without_loss(events: list[MeteredEvent]) -> None:
    batch = TenantBatch("acme", tuple(events), (MONTH,), ())
    rows = rows_from_batch(batch)
    assert batch_from_rows(rows) == batch
    for event, row in zip(events, rows.rows, strict=True):
        assert event_from_row(row) == event
        assert (row.minute, row.stream_key, row.position) == (
            event.minute,
            event.position.stream_key,
            event.position.padded,
        )
    assert row_from_event(event_from_row(rows.rows[0])) == rows.rows[0] if events else True


def test_a_row_is_the_metered_event_meter_makes() -> None:
    shard = Shard()
    plain = shard.plain(usage("acme", reservation_id="r-9"))
    records = split_records([plain, *shard.aggregate([usage("acme") for _ in range(3)])])
    meter = Meter(registry("acme"), CachedPricer(CATALOG))
    for record in records.records:
        row = meter.row(record)
        event, fallback = meter.meter(record)  # type: ignore[misc]
        assert event_from_row(row) == event  # type: ignore[arg-type]
        assert row.fallback_priced == fallback  # type: ignore[union-attr]


class RowStore(InMemoryStore):
    """The memory store, taking rows as well (as RedisStore does): records which path the consumer used."""

    def __init__(self) -> None:
        super().__init__()
        self.row_calls = 0
        self.event_calls = 0

    def apply_rows(
        self, batches: Sequence[TenantRows], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        self.row_calls += 1
        return super().apply_usage([batch_from_rows(b) for b in batches], now=now, dedupe_horizon=dedupe_horizon)

    def apply_usage(
        self, batches: Sequence[TenantBatch], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        self.event_calls += 1
        return super().apply_usage(batches, now=now, dedupe_horizon=dedupe_horizon)


class Forwarding:
    """A wrapper that forwards every attribute to the store it wraps (as the fault and replay harnesses do)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def apply_usage(self, batches: Any, *, now: datetime, dedupe_horizon: timedelta) -> list[ApplyOutcome]:
        return self.inner.apply_usage(batches, now=now, dedupe_horizon=dedupe_horizon)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run(store: Any) -> tuple[Any, list[dict[str, str]]]:
    reg = registry("acme", "globex")
    service = metering_service(store, reg)
    shard = Shard()
    events = [usage(t, tokens=(7, 8, 9, 10)) for t in ("acme", "globex") * 3]
    records = [shard.plain(e) for e in events] + shard.aggregate([usage("acme") for _ in range(4)])
    first = service.process(records, NOW)
    again = service.process(records, NOW)  # redelivered: all duplicates
    assert (first.applied, again.applied, again.duplicates) == (10, 0, 10)
    return first, first.response()["batchItemFailures"]


def test_a_store_taking_rows_gets_rows_and_a_forwarding_wrapper_gets_events() -> None:
    # GIVEN the same store class, bare and behind a wrapper that forwards attribute lookups
    bare, wrapped = RowStore(), RowStore()
    # WHEN the consumer meters the same records through each
    run(bare)
    run(Forwarding(wrapped))
    # THEN the bare store was handed rows, the wrapped one events (the wrapper's apply_usage is not bypassed)
    assert (bare.row_calls, bare.event_calls) == (2, 0)
    assert (wrapped.row_calls, wrapped.event_calls) == (0, 2)
    # and both hold the same totals
    for tenant in ("acme", "globex"):
        assert bare.window_totals(tenant, [MONTH], NOW) == wrapped.window_totals(tenant, [MONTH], NOW)


def test_records_are_grouped_by_partition_key_yet_each_tenant_is_sent_together() -> None:
    # GIVEN a store that answers later (as RedisStore does), groups of two partition keys, and records whose
    # keys are not their tenants' (a KPL aggregate of several tenants, a salted key, a key of no tenant)
    store = StreamingStore()
    reg = registry(*[f"t{i}" for i in range(6)])
    quarantine = FakeQuarantine()
    service = metering_service(store, reg, quarantine=quarantine)
    service.stream_tenants = 2
    shard = Shard()
    events = [usage(f"t{i % 6}") for i in range(30)]
    records = [shard.plain(e) for e in events[:20]]
    records += shard.aggregate(events[20:26])  # keyed by t2 (its first event's tenant), holds t2..t5 and t0..t1
    records += [shard.plain(events[26], "t3#7"), shard.plain(events[27], "nobody"), {"not": "a record"}]
    records += [shard.plain(e) for e in events[28:]]
    # WHEN processed
    result = service.process(records, NOW)
    # THEN every event counts once and the malformed record is quarantined
    assert (result.applied, result.duplicates, result.failures) == (30, 0, [])
    assert [q.reason for q in quarantine.records] == [Reason.BAD_LAMBDA_RECORD]
    for i in range(6):
        assert store.window_totals(f"t{i}", [MONTH], NOW)["month"].requests == 5
    # and the groups went out in turn: the aggregate's user records joined their own tenants' groups (it was
    # split first), the salted key its tenant's; a row met after its tenant's group went out in one last group
    # (t3's, under the key "nobody")
    sends = Counter(b.tenant_id for call in store.calls for b in call)
    assert len(store.calls) == 4
    assert sends == {"t0": 1, "t1": 1, "t2": 1, "t3": 2, "t4": 1, "t5": 1}


def test_aggregates_keyed_by_other_tenants_still_send_each_tenant_once_in_turn() -> None:
    # GIVEN only KPL aggregates, as the producers send them (grouped by shard: each keyed by its first tenant)
    store = StreamingStore()
    reg = registry(*[f"t{i}" for i in range(8)])
    service = metering_service(store, reg)
    service.stream_tenants = 2
    shard = Shard()
    events = [usage(f"t{(i * 3) % 8}") for i in range(40)]
    records = [rec for start in range(0, 40, 10) for rec in shard.aggregate(events[start : start + 10])]
    # WHEN processed
    result = service.process(records, NOW)
    # THEN every event counts once, each tenant in one script, and the scripts went out in several groups (so
    # the store works while later groups are metered)
    assert (result.applied, result.duplicates, result.failures) == (40, 0, [])
    sends = Counter(b.tenant_id for call in store.calls for b in call)
    assert sends == {f"t{i}": 1 for i in range(8)}
    assert len(store.calls) == 4
    assert sum(store.window_totals(f"t{i}", [MONTH], NOW)["month"].requests for i in range(8)) == 40


class StreamingStore(InMemoryStore):
    """The memory store behind ``send_rows``: each call's outcomes are handed back later, as RedisStore does."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[TenantRows]] = []

    def send_rows(self, batches: Sequence[TenantRows], *, now: datetime, dedupe_horizon: timedelta) -> Any:
        self.calls.append(list(batches))
        outcomes = self.apply_usage([batch_from_rows(b) for b in batches], now=now, dedupe_horizon=dedupe_horizon)

        class Later:
            def result(self) -> list[ApplyOutcome]:
                return outcomes

        return Later()

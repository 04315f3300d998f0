"""Events as rows (the consumer's hot path): the same facts as MeteredEvents, and the same results either way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.metering.records import split_records
from consumers.metering.service import MeteringService
from consumers.metering.validate import CachedPricer, Meter
from shared.adapters.memory_store import InMemoryStore
from shared.ports import ApplyOutcome, MeteredEvent, StreamPosition, TenantBatch
from shared.pricing import PriceCatalog
from shared.store_layout import TenantRows, batch_from_rows, event_from_row, row_from_event, rows_from_batch
from shared.windows import MONTH
from tests.unit.consumer.fakes import FakeAlerts, FakeQuarantine
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
    service = MeteringService(
        store=store,
        alerts=FakeAlerts(),
        quarantine=FakeQuarantine(),
        tenants=reg,
        meter=Meter(reg, CachedPricer(CATALOG)),
        dedupe_horizon=timedelta(hours=24),
    )
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

"""InMemoryStore: a complete in-memory implementation of every store port, for unit tests of every component.

It follows the same layout and dedupe rule as the Redis and DynamoDB adapters (shared.store_layout) and passes
the same contract test suite, so a test that passes against it means something. Thread-safe (one lock), never
does I/O. Tests can make it unavailable (``unavailable = True``, or per tenant via ``unavailable_tenants``) to
exercise partial batch failures and fail-open paths.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.decisions import BlockRecord, Metric
from shared.errors import StoreUnavailableError
from shared.ports import (
    AlertMark,
    ApplyOutcome,
    MeteredEvent,
    QuotaStatus,
    ReserveFlag,
    RollupRow,
    TenantBatch,
    Totals,
    previous_name,
)
from shared.store_layout import (
    HWM_RETENTION,
    Dim,
    aggregate,
    dedupe_bucket,
    dimension_sums,
    month_days,
    parse_dim_prefix,
    previous_period,
    rank_tenants,
    split_duplicates,
    window_days,
)
from shared.windows import (
    Granularity,
    Window,
    bucket_expiry,
    bucket_id,
    parse_bucket_id,
    window_buckets,
)


@dataclass(slots=True)
class _Bucket:
    expires: datetime
    counts: dict[str, Totals] = field(default_factory=dict)


class InMemoryStore:
    """UsageReader, QuotaState, WindowStore, AlertMarks and UsageIndex over dicts."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._buckets: dict[tuple[str, Granularity, str], _Bucket] = {}
        self._high_water: dict[tuple[str, str], tuple[tuple[int, int], datetime]] = {}
        self._seen: dict[tuple[str, str], tuple[set[str], datetime]] = {}
        self._marks: dict[tuple[str, str, str], tuple[int, datetime]] = {}
        self._blocks: dict[str, dict[str, BlockRecord]] = {}
        self._flags: dict[str, dict[str, ReserveFlag]] = {}
        self._reservations: dict[str, dict[str, tuple[int, datetime]]] = {}
        self._active: dict[str, set[str]] = {}
        self.unavailable = False
        self.unavailable_tenants: set[str] = set()
        self.apply_calls = 0

    # --- helpers -----------------------------------------------------------------------------------------

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailableError("in-memory store set unavailable")

    def _bucket_counts(self, tenant_id: str, granularity: Granularity, ident: str, now: datetime) -> dict[str, Totals]:
        bucket = self._buckets.get((tenant_id, granularity, ident))
        if bucket is None or bucket.expires <= now:
            return {}
        return bucket.counts

    def _total(self, tenant_id: str, window: Window, now: datetime) -> Totals:
        total = Totals()
        for ident in window_buckets(window, now):
            total = total + self._bucket_counts(tenant_id, window.granularity, ident, now).get(Dim.TOTAL, Totals())
        return total

    # --- WindowStore -------------------------------------------------------------------------------------

    def apply_usage(
        self, batches: Sequence[TenantBatch], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        with self._lock:
            self.apply_calls += 1
            return [self._apply_one(batch, now, dedupe_horizon) for batch in batches]

    def _apply_one(self, batch: TenantBatch, now: datetime, horizon: timedelta) -> ApplyOutcome:
        tenant = batch.tenant_id
        if self.unavailable or tenant in self.unavailable_tenants:
            return ApplyOutcome(tenant, ok=False, error="store unavailable")
        marks: dict[str, tuple[int, int]] = {}
        for key, (order, expires) in self._high_water.items():
            if key[0] == tenant and expires > now:
                marks[key[1]] = order

        def seen(event: MeteredEvent) -> bool:
            entry = self._seen.get((tenant, dedupe_bucket(event)))
            return entry is not None and entry[1] > now and event.event_id in entry[0]

        split = split_duplicates(batch.events, marks, seen, now=now, horizon=horizon)
        for (granularity, ident), counts in aggregate(split.new).items():
            bkey = (tenant, granularity, ident)
            bucket = self._buckets.get(bkey)
            if bucket is None or bucket.expires <= now:
                bucket = _Bucket(bucket_expiry(granularity, parse_bucket_id(granularity, ident)))
                self._buckets[bkey] = bucket
            for prefix, delta in counts.items():
                bucket.counts[prefix] = bucket.counts.get(prefix, Totals()) + delta
        for event in split.new:
            hour = dedupe_bucket(event)
            ids, _ = self._seen.get((tenant, hour), (set(), now))
            ids.add(event.event_id)
            self._seen[(tenant, hour)] = (ids, now + horizon)
            self._active.setdefault(bucket_id(Granularity.DAY, event.occurred_at), set()).add(tenant)
        for stream_key, order in split.high_water.items():
            self._high_water[(tenant, stream_key)] = (order, now + HWM_RETENTION)
        settled = [e.reservation_id for e in batch.events if e.reservation_id]
        if settled:
            self._settle(tenant, settled)
        totals = {w.name: self._total(tenant, w, now) for w in batch.read_windows}
        for w in batch.read_previous:
            totals[previous_name(w)] = self._total(tenant, w, previous_period(w, now))
        return ApplyOutcome(
            tenant,
            ok=True,
            applied=len(split.new),
            duplicates=len(split.duplicates),
            duplicate_ids=frozenset(e.event_id for e in split.duplicates),
            totals=totals,
        )

    # --- UsageReader -------------------------------------------------------------------------------------

    def window_totals(self, tenant_id: str, windows: Sequence[Window], now: datetime) -> dict[str, Totals]:
        with self._lock:
            self._check()
            return {w.name: self._total(tenant_id, w, now) for w in windows}

    # --- QuotaState --------------------------------------------------------------------------------------

    def quota_status(self, tenant_id: str, now: datetime) -> QuotaStatus:
        with self._lock:
            self._check()
            blocks = tuple(b for b in self._blocks.get(tenant_id, {}).values() if b.active(now))
            flags = tuple(f for f in self._flags.get(tenant_id, {}).values() if now < f.until)
            return QuotaStatus(blocks=blocks, reserve=flags)

    def set_block(self, record: BlockRecord) -> None:
        with self._lock:
            self._check()
            self._blocks.setdefault(record.tenant_id, {})[record.window] = record

    def lift_blocks(self, tenant_id: str, window: str | None = None) -> int:
        with self._lock:
            self._check()
            blocks = self._blocks.get(tenant_id, {})
            if window is None:
                count = len(blocks)
                blocks.clear()
                return count
            return 1 if blocks.pop(window, None) is not None else 0

    def set_reserve_flag(self, flag: ReserveFlag) -> None:
        with self._lock:
            self._check()
            self._flags.setdefault(flag.tenant_id, {})[flag.window] = flag

    def reserve(
        self,
        tenant_id: str,
        reservation_id: str,
        amount_nanos: int,
        *,
        window: Window,
        limit_nanos: int,
        now: datetime,
        ttl: timedelta,
    ) -> bool:
        with self._lock:
            self._check()
            held = self._reservations.setdefault(tenant_id, {})
            for rid in [r for r, (_, exp) in held.items() if exp <= now]:
                del held[rid]
            outstanding = sum(amount for rid, (amount, _) in held.items() if rid != reservation_id)
            metered = self._total(tenant_id, window, now).cost_nanos
            if metered + outstanding + amount_nanos > limit_nanos:
                return False
            held[reservation_id] = (amount_nanos, now + ttl)
            return True

    def settle(self, tenant_id: str, reservation_ids: Iterable[str]) -> None:
        with self._lock:
            self._check()
            self._settle(tenant_id, reservation_ids)

    def _settle(self, tenant_id: str, reservation_ids: Iterable[str]) -> None:
        held = self._reservations.get(tenant_id, {})
        for rid in reservation_ids:
            held.pop(rid, None)

    def outstanding_reservations(self, tenant_id: str, now: datetime) -> dict[str, int]:
        """Unexpired reservations of a tenant (for tests and the CLI)."""
        with self._lock:
            return {r: a for r, (a, exp) in self._reservations.get(tenant_id, {}).items() if exp > now}

    # --- AlertMarks --------------------------------------------------------------------------------------

    def raise_marks(self, marks: Sequence[AlertMark]) -> list[int]:
        with self._lock:
            self._check()
            previous: list[int] = []
            for mark in marks:
                key = (mark.tenant_id, mark.rule, mark.period)
                level, _ = self._marks.get(key, (0, mark.expires))
                previous.append(level)
                if level < mark.level:
                    self._marks[key] = (mark.level, mark.expires)
            return previous

    def restore_mark(self, mark: AlertMark, previous: int) -> None:
        with self._lock:
            self._check()
            key = (mark.tenant_id, mark.rule, mark.period)
            current = self._marks.get(key)
            if current is not None and current[0] == mark.level:
                if previous:
                    self._marks[key] = (previous, current[1])
                else:
                    del self._marks[key]

    # --- UsageIndex --------------------------------------------------------------------------------------

    def active_tenants(self, start: datetime, end: datetime) -> list[str]:
        with self._lock:
            self._check()
            found: set[str] = set()
            day = start
            while bucket_id(Granularity.DAY, day) <= bucket_id(Granularity.DAY, end):
                found |= self._active.get(bucket_id(Granularity.DAY, day), set())
                day += timedelta(days=1)
            return sorted(found)

    def dimension_totals(self, tenant_id: str, window: Window, now: datetime) -> dict[str, dict[str, Totals]]:
        if window.sliding or window.granularity not in (Granularity.DAY, Granularity.MONTH):
            raise ValueError(f"dimension totals are kept for day and month windows, not {window.name}")
        with self._lock:
            self._check()
            days = [bucket_id(Granularity.DAY, now)] if window.granularity is Granularity.DAY else month_days(now)
            return dimension_sums(self._bucket_counts(tenant_id, Granularity.DAY, d, now) for d in days)

    def daily_rollup(self, tenant_id: str, day: datetime) -> list[RollupRow]:
        with self._lock:
            self._check()
            counts = self._bucket_counts(tenant_id, Granularity.DAY, bucket_id(Granularity.DAY, day), day)
            rows = []
            for prefix, totals in counts.items():
                dim, values = parse_dim_prefix(prefix)
                if dim is Dim.COMBO:
                    rows.append(RollupRow(tenant_id, values[0], values[1], values[2], totals))
            return sorted(rows, key=lambda r: (r.model, r.cost_center, r.application_id))

    def top_tenants(self, window: Window, metric: Metric, now: datetime, limit: int = 10) -> list[tuple[str, Totals]]:
        with self._lock:
            self._check()
            candidates: set[str] = set()
            for day in window_days(window, now):
                candidates |= self._active.get(day, set())
            totals = {t: self._total(t, window, now) for t in candidates}
            return [(t, totals[t]) for t in rank_tenants(totals, lambda x: x.value(metric), limit)]

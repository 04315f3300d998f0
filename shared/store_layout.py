"""The logical layout every usage store shares (memory, Redis, DynamoDB), so that the adapters agree.

Usage is counted in fixed UTC buckets (shared.windows) under *dimension prefixes*:

| what | prefix | kept in buckets |
|---|---|---|
| tenant total | ``t`` | minute, hour, day, month |
| tenant x model x costCenter x applicationId | ``x<SEP>model<SEP>cc<SEP>app`` | day |

Per-dimension totals (tenant x model, x costCenter, x applicationId) are sums of the day combinations: for a
day, of that day's bucket; for a month, of the month's day buckets. Writing one combination per event instead
of four dimensions keeps the store's work per batch small; the reads that need them (the CLI, the daily
report) are rare.

Each prefix holds six integer counters (``COUNTERS``): input, output, cache-read, cache-write tokens, requests,
cost in nano-dollars. A batch is aggregated here, in Python, per tenant and bucket before it reaches a store,
so store work grows with tenants and dimensions, not events.

Dedupe (the exactly-once part) is defined here once too: an event is a duplicate if its event id was remembered
(keyed by the event's occurred-at hour, for ``dedupe_horizon`` after it was last written), or it repeats an event
id earlier in the same batch, or (only for events whose occurred-at hour is not well inside the horizon, see
``hwm_applies``) its stream position is at or below the tenant's high-water mark for its (shard, partition key).
Inside the horizon the event-id sets are authoritative, so a range the mapping gave up on can be replayed after
later records moved the mark past it; beyond it, where the sets have expired, the mark still catches Lambda's
redeliveries. Standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, NamedTuple, Protocol

from shared.ports import ApplyOutcome, MeteredEvent, StreamPosition, TenantBatch, Totals
from shared.windows import Granularity, Window, bucket_id, bucket_start, window_bucket_starts

SEP: Final = "\x1f"  # unit separator: never in a tag value (printable only) and stripped from model names


class Dim(StrEnum):
    TOTAL = "t"
    MODEL = "m"
    COST_CENTER = "c"
    APPLICATION = "a"
    COMBO = "x"


DIM_NAMES: Final = {Dim.MODEL: "model", Dim.COST_CENTER: "cost_center", Dim.APPLICATION: "application_id"}

DIMS_BY_GRANULARITY: Final[dict[Granularity, tuple[Dim, ...]]] = {
    Granularity.MINUTE: (Dim.TOTAL,),
    Granularity.HOUR: (Dim.TOTAL,),
    Granularity.DAY: (Dim.TOTAL, Dim.COMBO),
    Granularity.MONTH: (Dim.TOTAL,),
}

# Counter codes, in Totals field order.
COUNTERS: Final = ("i", "o", "r", "w", "n", "c")

# The tag keys that carry the report dimensions (tenant default tags fill them when an event has none).
COST_CENTER_TAG: Final = "costCenter"
APPLICATION_TAG: Final = "applicationId"

# How long the redelivery high-water marks are kept: longer than the event source mapping's largest
# MaximumRecordAgeInSeconds (7 days), so any record Lambda can still redeliver meets its mark.
HWM_RETENTION: Final = timedelta(days=8)

EVENT_DIGEST_BYTES: Final = 12

# Producer clocks may run ahead of the consumer's: an event-id set is trusted only for occurred-at hours at least
# this far inside the horizon.
CLOCK_SKEW_MARGIN: Final = timedelta(hours=1)


def hwm_applies(occurred_hour_start_s: int, now_s: int, horizon_s: int) -> bool:
    """Whether the high-water mark must be checked for events of the occurred-at hour starting at
    ``occurred_hour_start_s`` (unix seconds): unless the whole hour is inside the horizon by the skew margin,
    its event-id set may have expired, and only the mark can recognise a redelivery."""
    return occurred_hour_start_s < now_s - horizon_s + int(CLOCK_SKEW_MARGIN.total_seconds())


def clean_dimension(value: str) -> str:
    """Dimension values go into hash fields and CSV: drop control characters (and so the separator)."""
    return value if value.isprintable() else "".join(ch for ch in value if ch.isprintable())


def dim_prefix(dim: Dim, *values: str) -> str:
    return SEP.join((dim.value, *values)) if values else dim.value


def parse_dim_prefix(prefix: str) -> tuple[Dim, tuple[str, ...]]:
    head, *rest = prefix.split(SEP)
    return Dim(head), tuple(rest)


def combo_prefix(event: MeteredEvent) -> str:
    return SEP.join((Dim.COMBO.value, event.model, event.cost_center, event.application_id))


def event_prefixes(event: MeteredEvent, granularity: Granularity) -> list[str]:
    if Dim.COMBO in DIMS_BY_GRANULARITY[granularity]:
        return [Dim.TOTAL.value, combo_prefix(event)]
    return [Dim.TOTAL.value]


BucketKey = tuple[Granularity, str]

_TOTAL: Final = Dim.TOTAL.value
_COMBO: Final = Dim.COMBO.value
_BUCKET_IDS: dict[int, tuple[str, str, str, str]] = {}


def bucket_ids(t: datetime) -> tuple[str, str, str, str]:
    """(minute, hour, day, month) bucket ids of t, memoised per minute (strftime is the slow part)."""
    return minute_ids(int(t.timestamp()) // 60)


def minute_ids(minute: int) -> tuple[str, str, str, str]:
    """(minute, hour, day, month) bucket ids of a unix minute."""
    ids = _BUCKET_IDS.get(minute)
    if ids is None:
        if len(_BUCKET_IDS) > 100_000:
            _BUCKET_IDS.clear()
        m = bucket_id(Granularity.MINUTE, datetime.fromtimestamp(minute * 60, UTC))
        ids = _BUCKET_IDS[minute] = (m, m[:10], m[:8], m[:6])
    return ids


def _rollup(events: Iterable[MeteredEvent]) -> tuple[dict[BucketKey, dict[str, list[int]]], dict[str, int]]:
    """The events' counters per (granularity, bucket id) and dimension prefix (see DIMS_BY_GRANULARITY), and the
    unix minute of each minute bucket id. Events are first summed per (minute, combination), which a batch has far
    fewer of than events, then rolled up to minute, hour, day and month."""
    groups: dict[tuple[int, str], list[int]] = {}
    for event in events:
        key = (event.minute, combo_prefix(event))
        cur = groups.get(key)
        if cur is None:
            groups[key] = [
                event.input_tokens,
                event.output_tokens,
                event.cache_read_tokens,
                event.cache_write_tokens,
                event.requests,
                event.cost_nanos,
            ]
        else:
            cur[0] += event.input_tokens
            cur[1] += event.output_tokens
            cur[2] += event.cache_read_tokens
            cur[3] += event.cache_write_tokens
            cur[4] += event.requests
            cur[5] += event.cost_nanos
    acc: dict[BucketKey, dict[str, list[int]]] = {}
    minutes: dict[str, int] = {}
    for (minute, combo), counts in groups.items():
        m, h, d, mo = minute_ids(minute)
        minutes[m] = minute
        for bkey, prefix in (
            ((Granularity.MINUTE, m), _TOTAL),
            ((Granularity.HOUR, h), _TOTAL),
            ((Granularity.DAY, d), _TOTAL),
            ((Granularity.DAY, d), combo),
            ((Granularity.MONTH, mo), _TOTAL),
        ):
            bucket = acc.get(bkey)
            if bucket is None:
                bucket = acc[bkey] = {}
            cur = bucket.get(prefix)
            if cur is None:
                bucket[prefix] = list(counts)
            else:
                for i in range(6):
                    cur[i] += counts[i]
    return acc, minutes


def aggregate(events: Iterable[MeteredEvent]) -> dict[BucketKey, dict[str, Totals]]:
    """Sum events per (granularity, bucket id) and dimension prefix (see DIMS_BY_GRANULARITY)."""
    acc, _ = _rollup(events)
    return {key: {p: Totals(*c) for p, c in bucket.items()} for key, bucket in acc.items()}


@dataclass(frozen=True, slots=True)
class BucketFields:
    """Non-zero ``prefix|code`` counters of one bucket; ``minute`` is the unix minute for minute buckets."""

    granularity: Granularity
    ident: str
    fields: dict[str, int]
    minute: int = 0


def aggregate_fields(events: Iterable[MeteredEvent]) -> list[BucketFields]:
    """``aggregate``, flattened to what hash stores write."""
    acc, minutes = _rollup(events)
    out: list[BucketFields] = []
    for (granularity, ident), bucket in acc.items():
        fields: dict[str, int] = {}
        for prefix, c in bucket.items():
            fields.update(totals_to_fields(prefix, Totals(*c)))
        out.append(BucketFields(granularity, ident, fields, minutes.get(ident, 0)))
    return out


def dimension_sums(buckets: Iterable[Mapping[str, Totals]]) -> dict[str, dict[str, Totals]]:
    """Per-dimension totals ({"model"|"cost_center"|"application_id": {value: Totals}}) summed from the
    combinations of one or more day buckets."""
    out: dict[str, dict[str, Totals]] = {name: {} for name in DIM_NAMES.values()}
    for counts in buckets:
        for prefix, totals in counts.items():
            dim, values = parse_dim_prefix(prefix)
            if dim is not Dim.COMBO:
                continue
            for name, value in zip(DIM_NAMES.values(), values, strict=True):
                out[name][value] = out[name].get(value, Totals()) + totals
    return out


def month_days(now: datetime) -> list[str]:
    """Day bucket ids of the month containing ``now``, up to and including now's day."""
    return [bucket_id(Granularity.DAY, now.replace(day=d)) for d in range(1, now.day + 1)]


def totals_to_fields(prefix: str, totals: Totals) -> dict[str, int]:
    """Non-zero counters as ``prefix|code`` fields (zero increments are skipped: fewer store calls)."""
    values = (
        totals.input_tokens,
        totals.output_tokens,
        totals.cache_read_tokens,
        totals.cache_write_tokens,
        totals.requests,
        totals.cost_nanos,
    )
    return {f"{prefix}|{code}": v for code, v in zip(COUNTERS, values, strict=True) if v}


def fields_to_totals(fields: Mapping[str, int]) -> dict[str, Totals]:
    """Inverse of ``totals_to_fields`` over a whole bucket: prefix -> Totals."""
    acc: dict[str, list[int]] = {}
    for name, value in fields.items():
        prefix, _, code = name.rpartition("|")
        if code not in COUNTERS:
            continue
        acc.setdefault(prefix, [0] * 6)[COUNTERS.index(code)] += int(value)
    return {p: Totals(*c) for p, c in acc.items()}


def event_digest(event_id: str) -> bytes:
    """12 bytes (96 bits) of BLAKE2b: what the Redis event-id memory keeps (a 16-byte allocation per member
    either way, and a collision among even 10^9 ids of one tenant-hour has odds below 10^-11)."""
    return hashlib.blake2b(event_id.encode(), digest_size=EVENT_DIGEST_BYTES).digest()


_BLAKE: Final = hashlib.blake2b(digest_size=EVENT_DIGEST_BYTES)  # copied: a third faster than a new one


def event_digests(event_ids: Iterable[str]) -> bytes:
    """``event_digest`` of each id, concatenated."""
    out = []
    copy = _BLAKE.copy
    for event_id in event_ids:
        h = copy()
        h.update(event_id.encode())
        out.append(h.digest())
    return b"".join(out)


def dedupe_bucket(event: MeteredEvent) -> str:
    """Event ids are remembered per occurred-at hour: a producer retry resends the same bytes, so the same
    occurred_at, so one set lookup finds it."""
    return bucket_id(Granularity.HOUR, event.occurred_at)


@dataclass(frozen=True, slots=True)
class DedupeSplit:
    new: tuple[MeteredEvent, ...]
    duplicates: tuple[MeteredEvent, ...]
    high_water: dict[str, tuple[int, int]]  # stream key -> highest position in the batch (new or not)


def split_duplicates(
    events: Sequence[MeteredEvent],
    high_water: Mapping[str, tuple[int, int]],
    seen: Callable[[MeteredEvent], bool],
    *,
    now: datetime,
    horizon: timedelta,
) -> DedupeSplit:
    """The one dedupe rule (see module docstring). ``high_water`` is the stored mark per stream key before
    this batch; ``seen`` says whether an event id is remembered."""
    now_s, horizon_s = int(now.timestamp()), int(horizon.total_seconds())
    new: list[MeteredEvent] = []
    dups: list[MeteredEvent] = []
    batch_ids: set[str] = set()
    marks: dict[str, tuple[int, int]] = {}
    for event in events:
        key = event.position.stream_key
        order = event.position.order
        stored = high_water.get(key)
        if key not in marks or order > marks[key]:
            marks[key] = order
        hour_start_s = int(event.occurred_at.timestamp()) // 3600 * 3600
        below_mark = stored is not None and order <= stored and hwm_applies(hour_start_s, now_s, horizon_s)
        if below_mark or event.event_id in batch_ids or seen(event):
            dups.append(event)
        else:
            new.append(event)
        batch_ids.add(event.event_id)
    for key, stored in high_water.items():
        if key in marks and stored > marks[key]:
            marks[key] = stored
    return DedupeSplit(tuple(new), tuple(dups), marks)


def window_days(window: Window, now: datetime) -> list[str]:
    """Day bucket ids a window at ``now`` overlaps (for the active-tenant index)."""
    if window.granularity is Granularity.MONTH:
        start = window_bucket_starts(window, now)[0]
        days = (now - start).days + 1
        return [bucket_id(Granularity.DAY, start + timedelta(days=i)) for i in range(days)]
    starts = window_bucket_starts(window, now)
    ids = {bucket_id(Granularity.DAY, s) for s in starts}
    ids.add(bucket_id(Granularity.DAY, now))
    return sorted(ids)


def rank_tenants(totals: Mapping[str, Totals], metric_value: Callable[[Totals], int], limit: int) -> list[str]:
    """Highest first; ties broken by tenant id so the order is stable."""
    ranked = sorted(totals, key=lambda t: (-metric_value(totals[t]), t))
    return [t for t in ranked if metric_value(totals[t]) > 0][:limit]


def previous_period(window: Window, now: datetime) -> datetime:
    """An instant in the calendar window's previous period (for ``TenantBatch.read_previous``)."""
    if window.sliding:
        raise ValueError(f"only calendar windows have a previous period, not {window.name}")
    return bucket_start(window.granularity, now) - timedelta(seconds=1)


# --- the consumer's hot path: events as flat rows ---------------------------------------------------------
#
# A Kinesis batch is ten thousand events: building two frozen dataclasses per event (MeteredEvent and its
# StreamPosition) costs more than decoding it. The consumer builds one EventRow (a tuple) per event instead,
# and hands stores that can take them (``RowWindowStore``) TenantRows; any other store gets the same events as
# MeteredEvents through ``batch_from_rows``. Both forms carry the same facts, and the two conversions are
# inverse (tests/unit/consumer/test_rows.py).


class EventRow(NamedTuple):
    """One validated, priced event: a MeteredEvent's facts, flat. Cost in nano-dollars."""

    tenant_id: str
    event_id: str
    occurred_at: datetime
    minute: int  # unix minute of occurred_at
    shard_id: str
    partition_key: str  # the Kinesis record's (for a KPL aggregate, the aggregate's): the ordering unit
    sequence_number: str
    sub_sequence_number: int
    stream_key: str  # StreamPosition.stream_key
    position: str  # StreamPosition.padded: fixed width, sorts like the stream order
    model: str
    cost_center: str
    application_id: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    requests: int
    cost_nanos: int
    reservation_id: str
    fallback_priced: bool  # how it was priced (logged and counted by the consumer; stores ignore it)


@dataclass(frozen=True, slots=True)
class TenantRows:
    """TenantBatch with its events as rows, in stream order."""

    tenant_id: str
    rows: Sequence[EventRow]
    read_windows: tuple[Window, ...] = ()
    read_previous: tuple[Window, ...] = ()


def event_from_row(row: EventRow) -> MeteredEvent:
    return MeteredEvent(
        row.tenant_id,
        row.event_id,
        row.occurred_at,
        StreamPosition(row.shard_id, row.partition_key, row.sequence_number, row.sub_sequence_number),
        row.model,
        row.cost_center,
        row.application_id,
        row.input_tokens,
        row.output_tokens,
        row.cache_read_tokens,
        row.cache_write_tokens,
        row.cost_nanos,
        row.reservation_id,
        row.requests,
    )


def row_from_event(event: MeteredEvent, fallback_priced: bool = False) -> EventRow:
    position = event.position
    return EventRow(
        event.tenant_id,
        event.event_id,
        event.occurred_at,
        event.minute,
        position.shard_id,
        position.partition_key,
        position.sequence_number,
        position.sub_sequence_number,
        position.stream_key,
        position.padded,
        event.model,
        event.cost_center,
        event.application_id,
        event.input_tokens,
        event.output_tokens,
        event.cache_read_tokens,
        event.cache_write_tokens,
        event.requests,
        event.cost_nanos,
        event.reservation_id,
        fallback_priced,
    )


def batch_from_rows(batch: TenantRows) -> TenantBatch:
    return TenantBatch(
        batch.tenant_id, tuple(event_from_row(r) for r in batch.rows), batch.read_windows, batch.read_previous
    )


def rows_from_batch(batch: TenantBatch) -> TenantRows:
    return TenantRows(
        batch.tenant_id, [row_from_event(e) for e in batch.events], batch.read_windows, batch.read_previous
    )


class RowWindowStore(Protocol):
    """A WindowStore that also takes rows (RedisStore): same contract as ``WindowStore.apply_usage``."""

    def apply_rows(
        self, batches: Sequence[TenantRows], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]: ...

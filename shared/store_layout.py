"""The logical layout every usage store shares (memory, Redis, DynamoDB), so that the adapters agree.

Usage is counted in fixed UTC buckets (shared.windows) under *dimension prefixes*:

| dimension | prefix | kept in buckets |
|---|---|---|
| tenant total | ``t`` | minute, hour, day, month |
| tenant x model | ``m<SEP>model`` | day, month |
| tenant x costCenter | ``c<SEP>cost_center`` | day, month |
| tenant x applicationId | ``a<SEP>application_id`` | day, month |
| tenant x model x costCenter x applicationId | ``x<SEP>model<SEP>cc<SEP>app`` | day (the daily report) |

Each prefix holds six integer counters (``COUNTERS``): input, output, cache-read, cache-write tokens, requests,
cost in nano-dollars. A batch is aggregated here, in Python, per tenant and bucket before it reaches a store,
so store work grows with tenants and dimensions, not events.

Dedupe (the exactly-once part) is defined here once too: an event is a duplicate if its stream position is at
or below the tenant's high-water mark for its (shard, partition key), or its event id was remembered (keyed by
the event's occurred-at hour, for ``dedupe_horizon`` after it was last written), or it repeats an event id
earlier in the same batch. Standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from shared.ports import MeteredEvent, Totals
from shared.windows import Granularity, Window, bucket_id, window_bucket_starts

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
    Granularity.DAY: (Dim.TOTAL, Dim.MODEL, Dim.COST_CENTER, Dim.APPLICATION, Dim.COMBO),
    Granularity.MONTH: (Dim.TOTAL, Dim.MODEL, Dim.COST_CENTER, Dim.APPLICATION),
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


def clean_dimension(value: str) -> str:
    """Dimension values go into hash fields and CSV: drop control characters (and so the separator)."""
    return value if value.isprintable() else "".join(ch for ch in value if ch.isprintable())


def dim_prefix(dim: Dim, *values: str) -> str:
    return SEP.join((dim.value, *values)) if values else dim.value


def parse_dim_prefix(prefix: str) -> tuple[Dim, tuple[str, ...]]:
    head, *rest = prefix.split(SEP)
    return Dim(head), tuple(rest)


def event_prefixes(event: MeteredEvent, granularity: Granularity) -> list[str]:
    out: list[str] = []
    for dim in DIMS_BY_GRANULARITY[granularity]:
        if dim is Dim.TOTAL:
            out.append(Dim.TOTAL.value)
        elif dim is Dim.MODEL:
            out.append(dim_prefix(dim, event.model))
        elif dim is Dim.COST_CENTER:
            out.append(dim_prefix(dim, event.cost_center))
        elif dim is Dim.APPLICATION:
            out.append(dim_prefix(dim, event.application_id))
        else:
            out.append(dim_prefix(dim, event.model, event.cost_center, event.application_id))
    return out


BucketKey = tuple[Granularity, str]


def aggregate(events: Iterable[MeteredEvent]) -> dict[BucketKey, dict[str, Totals]]:
    """Sum events per (granularity, bucket id) and dimension prefix."""
    acc: dict[BucketKey, dict[str, list[int]]] = {}
    for event in events:
        counts = (
            event.input_tokens,
            event.output_tokens,
            event.cache_read_tokens,
            event.cache_write_tokens,
            event.requests,
            event.cost_nanos,
        )
        for granularity in Granularity:
            key = (granularity, bucket_id(granularity, event.occurred_at))
            bucket = acc.setdefault(key, {})
            for prefix in event_prefixes(event, granularity):
                cur = bucket.get(prefix)
                if cur is None:
                    bucket[prefix] = list(counts)
                else:
                    for i in range(6):
                        cur[i] += counts[i]
    return {key: {p: Totals(*c) for p, c in bucket.items()} for key, bucket in acc.items()}


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
) -> DedupeSplit:
    """The one dedupe rule (see module docstring). ``high_water`` is the stored mark per stream key before
    this batch; ``seen`` says whether an event id is remembered."""
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
        if (stored is not None and order <= stored) or event.event_id in batch_ids or seen(event):
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

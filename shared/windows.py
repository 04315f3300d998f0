"""Window math: fixed UTC buckets, and the windows composed from them.

Usage is counted in fixed buckets (minute, hour, day, month). A *sliding* window (1m, 5m, 60m) at time t is
the last N minute buckets ending with the minute containing t; a *calendar* window (hour, day, month) is the
single bucket containing t. Every instant falls in exactly one bucket of each granularity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final


class Granularity(StrEnum):
    MINUTE = "m"
    HOUR = "h"
    DAY = "d"
    MONTH = "mo"


# How long a bucket must be kept: the longest window it serves plus slack, and for day/month buckets the
# reporting horizon (the daily report reads yesterday's day buckets; `meter usage` reads past months).
BUCKET_RETENTION: Final = {
    Granularity.MINUTE: timedelta(hours=2),
    Granularity.HOUR: timedelta(days=2),
    Granularity.DAY: timedelta(days=40),
    Granularity.MONTH: timedelta(days=400),
}

_ID_FORMAT: Final = {
    Granularity.MINUTE: "%Y%m%d%H%M",
    Granularity.HOUR: "%Y%m%d%H",
    Granularity.DAY: "%Y%m%d",
    Granularity.MONTH: "%Y%m",
}


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("window math needs timezone-aware UTC datetimes")
    return t.astimezone(UTC)


def bucket_start(granularity: Granularity, t: datetime) -> datetime:
    t = _utc(t)
    if granularity is Granularity.MINUTE:
        return t.replace(second=0, microsecond=0)
    if granularity is Granularity.HOUR:
        return t.replace(minute=0, second=0, microsecond=0)
    if granularity is Granularity.DAY:
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_bucket_start(granularity: Granularity, t: datetime) -> datetime:
    start = bucket_start(granularity, t)
    if granularity is Granularity.MINUTE:
        return start + timedelta(minutes=1)
    if granularity is Granularity.HOUR:
        return start + timedelta(hours=1)
    if granularity is Granularity.DAY:
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def bucket_id(granularity: Granularity, t: datetime) -> str:
    """Sortable id of the bucket containing t, e.g. minute ``202611231539``, month ``202611``."""
    return _utc(t).strftime(_ID_FORMAT[granularity])


def parse_bucket_id(granularity: Granularity, ident: str) -> datetime:
    return datetime.strptime(ident, _ID_FORMAT[granularity]).replace(tzinfo=UTC)


def bucket_expiry(granularity: Granularity, t: datetime) -> datetime:
    """When the bucket containing t may be deleted (its end plus its retention)."""
    return next_bucket_start(granularity, t) + BUCKET_RETENTION[granularity]


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    granularity: Granularity
    length: int  # buckets
    sliding: bool

    @property
    def duration(self) -> timedelta:
        """Nominal length (a calendar month is taken as 30 days only for rate projections)."""
        unit = {
            Granularity.MINUTE: timedelta(minutes=1),
            Granularity.HOUR: timedelta(hours=1),
            Granularity.DAY: timedelta(days=1),
            Granularity.MONTH: timedelta(days=30),
        }[self.granularity]
        return unit * self.length


MINUTE_1: Final = Window("1m", Granularity.MINUTE, 1, sliding=True)
MINUTE_5: Final = Window("5m", Granularity.MINUTE, 5, sliding=True)
MINUTE_60: Final = Window("60m", Granularity.MINUTE, 60, sliding=True)
HOUR: Final = Window("hour", Granularity.HOUR, 1, sliding=False)
DAY: Final = Window("day", Granularity.DAY, 1, sliding=False)
MONTH: Final = Window("month", Granularity.MONTH, 1, sliding=False)

WINDOWS: Final = {w.name: w for w in (MINUTE_1, MINUTE_5, MINUTE_60, HOUR, DAY, MONTH)}
GRANULARITIES: Final = tuple(Granularity)


def window_named(name: str) -> Window:
    try:
        return WINDOWS[name]
    except KeyError:
        raise ValueError(f"unknown window {name!r}; known: {', '.join(WINDOWS)}") from None


def window_bucket_starts(window: Window, t: datetime) -> list[datetime]:
    """Start times of the buckets composing ``window`` at t, oldest first."""
    last = bucket_start(window.granularity, t)
    if not window.sliding:
        return [last]
    return [last - timedelta(minutes=i) for i in range(window.length - 1, -1, -1)]


def window_buckets(window: Window, t: datetime) -> list[str]:
    """Bucket ids composing ``window`` at t, oldest first."""
    return [bucket_id(window.granularity, s) for s in window_bucket_starts(window, t)]


def window_start(window: Window, t: datetime) -> datetime:
    return window_bucket_starts(window, t)[0]


def window_reset(window: Window, t: datetime) -> datetime:
    """When everything counted in the window at t has left it: the next calendar boundary, or for a sliding
    window the end of its newest bucket plus its length minus one bucket (i.e. when the newest bucket ages out)."""
    end = next_bucket_start(window.granularity, t)
    if not window.sliding:
        return end
    return end + timedelta(minutes=window.length - 1)


def window_period_id(window: Window, t: datetime) -> str:
    """Identifies one period of a window, for 'alert once per level per period'. Calendar windows: the bucket.
    Sliding windows: the clock hour for 1m/5m windows and the day for 60m, so a tenant hovering at a level
    is told once per hour (or day), not every minute."""
    if not window.sliding:
        return bucket_id(window.granularity, t)
    if window.length >= 60:
        return bucket_id(Granularity.DAY, t)
    return bucket_id(Granularity.HOUR, t)


def sliding_release_time(window: Window, bucket_values: Sequence[int], limit: int, t: datetime) -> datetime:
    """For a sliding window over ``bucket_values`` (oldest first, as ``window_buckets``) the earliest time
    its sum drops below ``limit`` if nothing more is added: the moment enough old buckets have aged out."""
    if len(bucket_values) != window.length:
        raise ValueError(f"window {window.name} has {window.length} buckets, got {len(bucket_values)} values")
    starts = window_bucket_starts(window, t)
    remaining = sum(bucket_values)
    if remaining < limit:
        return _utc(t)
    for start, value in zip(starts, bucket_values, strict=True):
        remaining -= value
        if remaining < limit:
            # The bucket starting at `start` leaves the window `length` minutes after it began.
            return start + timedelta(minutes=window.length)
    return window_reset(window, t)


def elapsed_fraction(window: Window, t: datetime) -> float:
    """How far through its current period a calendar window is, in [0, 1). Used only for rate projection
    (not money), so a float is fine here."""
    start = bucket_start(window.granularity, t)
    end = next_bucket_start(window.granularity, t)
    return (_utc(t) - start) / (end - start)

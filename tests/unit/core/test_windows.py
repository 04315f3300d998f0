from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.windows import (
    DAY,
    GRANULARITIES,
    HOUR,
    MINUTE_1,
    MINUTE_5,
    MINUTE_60,
    MONTH,
    Granularity,
    bucket_expiry,
    bucket_id,
    bucket_start,
    next_bucket_start,
    parse_bucket_id,
    sliding_release_time,
    window_buckets,
    window_named,
    window_period_id,
    window_reset,
)

T = datetime(2026, 11, 23, 15, 39, 27, tzinfo=UTC)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC))


@given(t=instants)
def test_every_instant_falls_in_exactly_one_bucket(t: datetime) -> None:
    for g in GRANULARITIES:
        start, end = bucket_start(g, t), next_bucket_start(g, t)
        assert start <= t < end
        # the neighbours do not contain it
        assert not (next_bucket_start(g, start - timedelta(microseconds=1)) > t)
        assert bucket_start(g, end) == end
        assert bucket_id(g, t) == bucket_id(g, start) != bucket_id(g, end)
        assert parse_bucket_id(g, bucket_id(g, t)) == start


def test_bucket_ids() -> None:
    assert bucket_id(Granularity.MINUTE, T) == "202611231539"
    assert bucket_id(Granularity.HOUR, T) == "2026112315"
    assert bucket_id(Granularity.DAY, T) == "20261123"
    assert bucket_id(Granularity.MONTH, T) == "202611"


def test_sliding_windows_are_the_last_n_minutes() -> None:
    assert window_buckets(MINUTE_1, T) == ["202611231539"]
    assert window_buckets(MINUTE_5, T) == [
        "202611231535",
        "202611231536",
        "202611231537",
        "202611231538",
        "202611231539",
    ]
    sixty = window_buckets(MINUTE_60, T)
    assert len(sixty) == 60 and sixty[0] == "202611231440" and sixty[-1] == "202611231539"


def test_calendar_windows_and_their_resets() -> None:
    assert window_buckets(MONTH, T) == ["202611"]
    assert window_reset(HOUR, T) == datetime(2026, 11, 23, 16, tzinfo=UTC)
    assert window_reset(DAY, T) == datetime(2026, 11, 24, tzinfo=UTC)
    assert window_reset(MONTH, T) == datetime(2026, 12, 1, tzinfo=UTC)
    assert window_reset(MONTH, datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert window_reset(MINUTE_1, T) == datetime(2026, 11, 23, 15, 40, tzinfo=UTC)
    assert window_reset(MINUTE_5, T) == datetime(2026, 11, 23, 15, 44, tzinfo=UTC)


def test_sliding_release_time_is_when_enough_old_usage_ages_out() -> None:
    # 5-minute window, buckets 15:35..15:39 holding 10, 0, 30, 0, 5 against a limit of 40
    values = [10, 0, 30, 0, 5]
    # dropping 15:35 (10) leaves 35 < 40: released when 15:35 leaves the window, at 15:40
    assert sliding_release_time(MINUTE_5, values, 40, T) == datetime(2026, 11, 23, 15, 40, tzinfo=UTC)
    # against 20 we must also lose 15:37's 30: released at 15:42
    assert sliding_release_time(MINUTE_5, values, 20, T) == datetime(2026, 11, 23, 15, 42, tzinfo=UTC)
    assert sliding_release_time(MINUTE_5, values, 100, T) == T
    with pytest.raises(ValueError, match="5 buckets"):
        sliding_release_time(MINUTE_5, [1], 1, T)


def test_period_ids_and_expiry() -> None:
    assert window_period_id(MONTH, T) == "202611"
    assert window_period_id(MINUTE_5, T) == "2026112315"
    assert window_period_id(MINUTE_60, T) == "20261123"
    assert bucket_expiry(Granularity.MINUTE, T) == datetime(2026, 11, 23, 17, 40, tzinfo=UTC)


def test_naive_times_and_unknown_windows_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        bucket_id(Granularity.DAY, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="known: 1m"):
        window_named("week")

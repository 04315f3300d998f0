"""RedisStore's script arguments, pure: the one-hour fast path builds exactly the buckets the general path does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.redis_store import _BatchPlan, _buckets, _KeyList, _one_hour_buckets

NOW = datetime(2026, 11, 23, 15, 30, 20, tzinfo=UTC)
HOUR = int(NOW.timestamp()) // 3600

counters = st.lists(st.integers(min_value=0, max_value=2**60), min_size=6, max_size=6)
combos = st.tuples(st.sampled_from(["m1", "m2"]), st.sampled_from(["", "cc"]), st.sampled_from(["", "app-1"]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(combos, counters, min_size=1, max_size=6), st.integers(min_value=-24 * 45, max_value=2))
def test_the_one_hour_buckets_are_the_general_ones(sums: dict[tuple[str, str, str], list[int]], hours_ago: int) -> None:
    # GIVEN new events' counters per combination, all in one hour (recent, or past a bucket's retention)
    hour = HOUR - hours_ago
    keyed = {(hour, *combo): list(c) for combo, c in sums.items()}
    plan = _BatchPlan(NOW, timedelta(hours=24))
    # WHEN both paths build the bucket section
    fast_keys, general_keys = _KeyList("a", "b", "c"), _KeyList("a", "b", "c")
    fast = _one_hour_buckets("tm:{acme}", fast_keys, {k: list(v) for k, v in keyed.items()}, plan.hour(hour))
    general = _buckets("tm:{acme}", general_keys, {k: list(v) for k, v in keyed.items()}, plan)
    # THEN they name the same keys and carry the same increments (and encode the same)
    assert fast_keys.keys == general_keys.keys
    assert fast == general
    assert msgspec.msgpack.encode(fast) == msgspec.msgpack.encode(general)

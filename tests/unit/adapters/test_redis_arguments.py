"""RedisStore's script arguments, pure: the one-hour fast path builds exactly the buckets the general path does."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.redis_store import (
    RedisStore,
    _BatchPlan,
    _buckets,
    _KeyList,
    _one_hour_buckets,
    _Reads,
    _totals,
)
from shared.ports import TenantBatch, Totals
from shared.store_layout import rows_from_batch
from shared.windows import HOUR as HOUR_WINDOW
from shared.windows import MINUTE_5
from tests.unit.adapters.store_contract import ev

NOW = datetime(2026, 11, 23, 15, 30, 20, tzinfo=UTC)
HOUR = int(NOW.timestamp()) // 3600

counters = st.lists(st.integers(min_value=0, max_value=2**60), min_size=6, max_size=6)
combos = st.tuples(st.sampled_from(["m1", "m2"]), st.sampled_from(["", "cc"]), st.sampled_from(["", "app-1"]))


def _named(buckets: list[Any], keys: list[str]) -> list[Any]:
    """The bucket section with KEYS indexes (1-based) replaced by the key names."""
    out = list(buckets)
    for b in range(0, len(out), 3):
        out[b] = keys[out[b] - 1]
    return out


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(combos, counters, min_size=1, max_size=6), st.integers(min_value=-24 * 45, max_value=2))
def test_the_one_hour_buckets_are_the_general_ones(sums: dict[tuple[str, str, str], list[int]], hours_ago: int) -> None:
    # GIVEN new events' counters per combination, all in one hour (recent, or past a bucket's retention)
    hour = HOUR - hours_ago
    plan = _BatchPlan(NOW, timedelta(hours=24))
    hour_plan = plan.hour(hour)
    fast_keys = ["tm:{acme}:" + suffix for suffix in (hour_plan.hour_key, hour_plan.day_key, hour_plan.month_key)]
    # WHEN both paths build the bucket section
    fast = _one_hour_buckets((1, 2, 3), {k: list(v) for k, v in sums.items()}, hour_plan)
    general_keys = _KeyList("a", "b", "c")
    general = _buckets("tm:{acme}", general_keys, {(hour, *k): list(v) for k, v in sums.items()}, plan)
    # THEN they name the same keys and carry the same increments
    assert _named(fast, fast_keys) == _named(general, general_keys.keys)


@given(st.lists(st.integers(min_value=0, max_value=2**80), min_size=6, max_size=6))
def test_totals_built_through_the_slots_are_the_constructor_s(values: list[int]) -> None:
    built = _totals([0, *values, 0], 1)
    assert built == Totals(*values)
    assert [getattr(built, f.name) for f in fields(Totals)] == values
    assert not hasattr(Totals, "__post_init__")  # (a check there would be skipped by _totals)


@given(
    st.lists(st.integers(min_value=0, max_value=2**90), min_size=12, max_size=12),
    st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_the_script_s_counters_read_as_int_would(values: list[int], padded: list[bool]) -> None:
    # The answer is read as a JSON array; what JSON would not read (a leading zero) falls back to int().
    text = ",".join(f"0{v}" if pad else str(v) for v, pad in zip(values, padded, strict=True))
    reads = _Reads([], [], 0, ["hour", "day"])
    expected = {"hour": Totals(*values[:6]), "day": Totals(*values[6:])}
    assert reads.decode_text(text.encode()) == expected
    assert reads.decode_text(text) == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=59), st.sampled_from(["m1", "m2"]), st.sampled_from(["", "r1"])),
        min_size=1,
        max_size=12,
    ),
    st.one_of(st.none(), st.lists(st.booleans(), min_size=12, max_size=12)),
    st.booleans(),
)
def test_the_usual_tenant_s_arguments_are_the_general_ones(
    events: list[tuple[int, str, str]], flags: list[bool] | None, known_mark: bool
) -> None:
    # GIVEN a tenant's events of one hour in one stream (some repeated ids, some reservations)
    at = NOW.replace(minute=0, second=0)
    made = [
        ev("acme", at=at + timedelta(minutes=m), model=model, reservation_id=res, event_id=f"e{k % 9}")
        for k, (m, model, res) in enumerate(events)
    ]
    batch = rows_from_batch(TenantBatch("acme", tuple(made), (MINUTE_5, HOUR_WINDOW), (HOUR_WINDOW,)))
    dups = None if flags is None else flags[: len(made)]
    store = RedisStore(redis.Redis())  # (nothing is sent: the arguments are only built)
    if known_mark:
        store._known_hwm[("acme", batch.rows[0].stream_key)] = batch.rows[len(made) // 2].position
    plan = _BatchPlan(NOW, timedelta(hours=24))
    # WHEN the usual path and the general one build its script's arguments
    fast = store._apply_args(batch, dups, plan, 3)
    general = store._apply_args_any(batch, dups, plan, 3)
    # THEN they are the same
    assert fast.keys == general.keys
    assert msgspec.msgpack.decode(fast.args) == msgspec.msgpack.decode(general.args)
    assert (fast.digests, fast.order, fast.dups, fast.best, fast.index) == (
        general.digests,
        general.order,
        general.dups,
        general.best,
        general.index,
    )

"""The one contract every usage store passes (memory here; Redis and DynamoDB in tests/integration).

A subclass provides the ``store`` fixture (a fresh, empty store) and, where the backend expires keys by its
own clock, ``let_expire`` (sleep past a short TTL). Expected totals are computed here from the events
themselves, never by the code under test.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.decisions import AlertLevel, BlockRecord, Metric
from shared.ports import AlertMark, MeteredEvent, ReserveFlag, StreamPosition, TenantBatch, Totals
from shared.windows import DAY, HOUR, MINUTE_1, MINUTE_5, MINUTE_60, MONTH, WINDOWS, Window, window_buckets

NOW = datetime(2026, 11, 23, 15, 30, 20, tzinfo=UTC)
HORIZON = timedelta(hours=24)
ALL = tuple(WINDOWS.values())

_seq = [10_000]


def ev(
    tenant: str = "acme",
    *,
    at: datetime = NOW,
    event_id: str | None = None,
    shard: str = "shardId-000000000000",
    pk: str | None = None,
    seq: int | None = None,
    sub: int = 0,
    tokens: tuple[int, int, int, int] = (100, 50, 10, 5),
    cost: int = 1_000,
    model: str = "anthropic.claude-3-5-haiku-20241022-v1:0",
    cc: str = "cc-1",
    app: str = "bot",
    reservation_id: str = "",
) -> MeteredEvent:
    _seq[0] += 1
    n = _seq[0] if seq is None else seq
    return MeteredEvent(
        tenant_id=tenant,
        event_id=event_id or f"e{_seq[0]}",
        occurred_at=at,
        position=StreamPosition(shard, pk or tenant, str(49_000_000_000_000_000_000 + n), sub),
        model=model,
        cost_center=cc,
        application_id=app,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_write_tokens=tokens[3],
        cost_nanos=cost,
        reservation_id=reservation_id,
    )


def expected(events: Iterable[MeteredEvent], window: Window, now: datetime) -> Totals:
    """Independent oracle: sum the events whose occurred_at falls in the window's buckets."""
    from shared.windows import bucket_id

    buckets = set(window_buckets(window, now))
    total = Totals()
    for e in events:
        if bucket_id(window.granularity, e.occurred_at) in buckets:
            total = total + Totals(
                e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_tokens, e.requests, e.cost_nanos
            )
    return total


class StoreContract:
    @pytest.fixture
    def store(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def let_expire(self, ttl: timedelta) -> None:
        """Backends that expire by wall clock sleep here; logical-clock backends need nothing."""

    def apply(self, store: Any, *batches: tuple[str, list[MeteredEvent]], now: datetime = NOW) -> list[Any]:
        return list(
            store.apply_usage([TenantBatch(t, tuple(evs), ALL) for t, evs in batches], now=now, dedupe_horizon=HORIZON)
        )

    # --- counting ----------------------------------------------------------------------------------------

    def test_totals_over_every_window_match_the_events(self, store: Any) -> None:
        # GIVEN events spread over the last two hours, yesterday and last month
        events = [
            ev(at=NOW),
            ev(at=NOW - timedelta(seconds=15)),
            ev(at=NOW - timedelta(minutes=3)),
            ev(at=NOW - timedelta(minutes=40)),
            ev(at=NOW - timedelta(minutes=70), tokens=(7, 0, 0, 0), cost=3),
            ev(at=NOW - timedelta(days=1)),
            ev(at=NOW - timedelta(days=30), cost=123_456_789_012),
        ]
        # WHEN they are applied in one batch
        (out,) = self.apply(store, ("acme", events))
        # THEN every window reads what an independent sum says, both from the outcome and from a read
        assert out.ok and out.applied == len(events) and out.duplicates == 0
        read = store.window_totals("acme", ALL, NOW)
        for window in ALL:
            want = expected(events, window, NOW)
            assert read[window.name] == want, window.name
            assert out.totals[window.name] == want, window.name

    def test_tenants_are_independent(self, store: Any) -> None:
        self.apply(store, ("acme", [ev("acme")]), ("globex", [ev("globex", cost=7), ev("globex", cost=8)]))
        assert store.window_totals("acme", [MONTH], NOW)["month"].requests == 1
        assert store.window_totals("globex", [MONTH], NOW)["month"].cost_nanos == 15
        assert store.window_totals("initech", [MONTH], NOW)["month"] == Totals()

    def test_sliding_windows_move_with_now(self, store: Any) -> None:
        events = [ev(at=NOW - timedelta(minutes=m)) for m in (0, 2, 4, 6, 59, 61)]
        self.apply(store, ("acme", events))
        later = NOW + timedelta(minutes=3)
        read = store.window_totals("acme", [MINUTE_1, MINUTE_5, MINUTE_60], later)
        for window in (MINUTE_1, MINUTE_5, MINUTE_60):
            assert read[window.name] == expected(events, window, later)

    # --- exactly once ------------------------------------------------------------------------------------

    def test_redelivering_a_batch_changes_nothing(self, store: Any) -> None:
        events = [ev(), ev(), ev(tenant="acme", cost=5)]
        self.apply(store, ("acme", events))
        before = store.window_totals("acme", ALL, NOW)
        for _ in range(3):
            (out,) = self.apply(store, ("acme", events))
            assert out.ok and out.applied == 0 and out.duplicates == 3
        assert store.window_totals("acme", ALL, NOW) == before

    def test_a_producer_retry_with_a_new_sequence_number_is_skipped(self, store: Any) -> None:
        first = ev(event_id="retry-me")
        again = ev(event_id="retry-me", shard="shardId-000000000001")  # written twice: new shard and sequence
        self.apply(store, ("acme", [first]))
        (out,) = self.apply(store, ("acme", [again, ev()]))
        assert out.applied == 1 and out.duplicate_ids == frozenset({"retry-me"})
        assert store.window_totals("acme", [DAY], NOW)["day"].requests == 2

    def test_the_same_event_id_twice_in_one_batch_counts_once(self, store: Any) -> None:
        (out,) = self.apply(store, ("acme", [ev(event_id="x1"), ev(event_id="x1")]))
        assert (out.applied, out.duplicates) == (1, 1)
        assert store.window_totals("acme", [DAY], NOW)["day"].requests == 1

    def test_a_redelivered_batch_with_new_records_appended_counts_only_the_new(self, store: Any) -> None:
        # GIVEN a batch applied, then redelivered from its middle with newer records after it
        old = [ev(seq=100), ev(seq=101), ev(seq=102)]
        self.apply(store, ("acme", old))
        newer = [ev(seq=103), ev(seq=104)]
        # WHEN the redelivery arrives
        (out,) = self.apply(store, ("acme", old[1:] + newer))
        # THEN only the two newer records count
        assert (out.applied, out.duplicates) == (2, 2)
        assert store.window_totals("acme", [DAY], NOW)["day"].requests == 5

    def test_sub_records_of_one_aggregate_are_ordered_by_sub_sequence(self, store: Any) -> None:
        parts = [ev(seq=500, sub=i) for i in range(4)]
        self.apply(store, ("acme", parts[:2]))
        (out,) = self.apply(store, ("acme", parts))
        assert (out.applied, out.duplicates) == (2, 2)

    def test_high_water_marks_are_per_shard_and_partition_key(self, store: Any) -> None:
        # Lower sequence numbers on another partition key (ParallelizationFactor > 1) are not duplicates.
        self.apply(store, ("acme", [ev(seq=900, pk="acme#1")]))
        (out,) = self.apply(store, ("acme", [ev(seq=800, pk="acme#2"), ev(seq=850, shard="shardId-000000000009")]))
        assert (out.applied, out.duplicates) == (2, 0)

    def test_a_skipped_range_replayed_within_the_horizon_is_metered_once(self, store: Any) -> None:
        # GIVEN records 100-101 skipped to the failure destination while later records moved the mark past them
        skipped = [ev(seq=100), ev(seq=101)]
        self.apply(store, ("acme", [ev(seq=102), ev(seq=103)]))
        # WHEN the skipped range is replayed, twice
        (out,) = self.apply(store, ("acme", skipped))
        (again,) = self.apply(store, ("acme", skipped))
        # THEN it counts once: inside the horizon the event ids decide, not the high-water mark
        assert (out.applied, out.duplicates) == (2, 0)
        assert (again.applied, again.duplicates) == (0, 2)
        assert store.window_totals("acme", [DAY], NOW)["day"].requests == 4

    def test_the_high_water_mark_still_guards_events_older_than_the_horizon(self, store: Any) -> None:
        # An event two days old, redelivered after its id set expired: only the mark recognises it.
        old_at = NOW - timedelta(days=2)
        self.apply(store, ("acme", [ev(at=old_at, seq=300, event_id="old-1"), ev(seq=301)]))
        (out,) = self.apply(store, ("acme", [ev(at=old_at, seq=299, event_id="old-0")]))
        assert (out.applied, out.duplicates) == (0, 1)

    def test_event_ids_are_forgotten_after_the_horizon(self, store: Any) -> None:
        horizon = timedelta(seconds=1)
        store.apply_usage([TenantBatch("acme", (ev(event_id="late"),))], now=NOW, dedupe_horizon=horizon)
        self.let_expire(horizon)
        later = NOW + timedelta(seconds=2)
        (out,) = store.apply_usage(
            [TenantBatch("acme", (ev(event_id="late", shard="shardId-000000000002"),))],
            now=later,
            dedupe_horizon=horizon,
        )
        # Documented limit: a producer duplicate arriving after the horizon is counted again.
        assert out.applied == 1

    # --- reservations ------------------------------------------------------------------------------------

    def test_reserve_admits_up_to_the_limit_counting_metered_cost_and_outstanding(self, store: Any) -> None:
        self.apply(store, ("acme", [ev(cost=600)]))
        kw: dict[str, Any] = {"window": MONTH, "limit_nanos": 1_000, "now": NOW, "ttl": timedelta(minutes=5)}
        assert store.reserve("acme", "r1", 300, **kw)
        assert not store.reserve("acme", "r2", 101, **kw)  # 600 + 300 + 101 > 1000
        assert store.reserve("acme", "r2", 100, **kw)  # exactly at the limit
        assert not store.reserve("acme", "r3", 1, **kw)

    def test_applying_an_event_settles_its_reservation(self, store: Any) -> None:
        kw: dict[str, Any] = {"window": MONTH, "limit_nanos": 1_000, "now": NOW, "ttl": timedelta(minutes=5)}
        assert store.reserve("acme", "r1", 900, **kw)
        assert not store.reserve("acme", "r2", 200, **kw)
        # The call behind r1 cost 50 and was metered: its reservation is released.
        self.apply(store, ("acme", [ev(cost=50, reservation_id="r1")]))
        assert store.reserve("acme", "r2", 900, **kw)
        store.settle("acme", ["r2", "unknown"])
        assert store.reserve("acme", "r3", 950, **kw)

    def test_expired_reservations_no_longer_count(self, store: Any) -> None:
        ttl = timedelta(seconds=1)
        assert store.reserve("acme", "r1", 900, window=DAY, limit_nanos=1_000, now=NOW, ttl=ttl)
        self.let_expire(ttl)
        later = NOW + timedelta(seconds=2)
        assert store.reserve("acme", "r2", 900, window=DAY, limit_nanos=1_000, now=later, ttl=ttl)

    # --- blocks and reserve flags ------------------------------------------------------------------------

    def test_blocks_are_read_until_they_end_and_can_be_lifted(self, store: Any) -> None:
        until = NOW + timedelta(hours=1)
        store.set_block(BlockRecord("acme", "month", "monthly cost quota exhausted", until))
        store.set_block(BlockRecord("acme", "1m", "token rate", NOW + timedelta(seconds=30), set_by="operator"))
        status = store.quota_status("acme", NOW)
        assert {b.window for b in status.blocks} == {"month", "1m"}
        assert next(b for b in status.blocks if b.window == "month") == BlockRecord(
            "acme", "month", "monthly cost quota exhausted", until
        )
        assert {b.window for b in store.quota_status("acme", NOW + timedelta(minutes=1)).blocks} == {"month"}
        assert store.quota_status("globex", NOW).blocks == ()
        assert store.lift_blocks("acme", "month") == 1
        assert store.lift_blocks("acme", "month") == 0
        assert store.lift_blocks("acme") == 1
        assert store.quota_status("acme", NOW).blocks == ()

    def test_reserve_flags_are_read_until_they_end(self, store: Any) -> None:
        flag = ReserveFlag("acme", "month", AlertLevel.WARNING, 500_000_000_000, NOW + timedelta(days=3))
        store.set_reserve_flag(flag)
        assert store.quota_status("acme", NOW).reserve == (flag,)
        assert store.quota_status("acme", NOW + timedelta(days=4)).reserve == ()

    # --- alert marks -------------------------------------------------------------------------------------

    def test_alert_marks_rise_once_and_never_fall(self, store: Any) -> None:
        exp = NOW + timedelta(days=1)
        warn = AlertMark("acme", "month|cost_usd", "202611", int(AlertLevel.WARNING), exp)
        notice = AlertMark("acme", "month|cost_usd", "202611", int(AlertLevel.NOTICE), exp)
        other = AlertMark("acme", "month|cost_usd", "202612", int(AlertLevel.NOTICE), exp)
        assert store.raise_marks([warn, other]) == [0, 0]
        assert store.raise_marks([warn, notice, other]) == [2, 2, 1]
        crit = AlertMark("acme", "month|cost_usd", "202611", int(AlertLevel.CRITICAL), exp)
        assert store.raise_marks([crit]) == [2]
        store.restore_mark(crit, 2)
        assert store.raise_marks([crit]) == [2]

    # --- the index the CLI and the report read -----------------------------------------------------------

    def test_dimension_totals_daily_rollup_and_active_tenants(self, store: Any) -> None:
        events = [
            ev(model="m-a", cc="cc-1", app="bot", cost=10),
            ev(model="m-a", cc="cc-1", app="bot", cost=20),
            ev(model="m-b", cc="cc-2", app="bot", cost=40),
            ev(model="m-a", cc="", app="", cost=80),
        ]
        self.apply(store, ("acme", events), ("globex", [ev("globex", at=NOW - timedelta(days=2))]))
        dims = store.dimension_totals("acme", DAY, NOW)
        assert {k: v.cost_nanos for k, v in dims["model"].items()} == {"m-a": 110, "m-b": 40}
        assert {k: v.cost_nanos for k, v in dims["cost_center"].items()} == {"cc-1": 30, "cc-2": 40, "": 80}
        assert {k: v.requests for k, v in dims["application_id"].items()} == {"bot": 3, "": 1}
        month = store.dimension_totals("acme", MONTH, NOW)
        assert month["model"]["m-a"].cost_nanos == 110
        rows = store.daily_rollup("acme", NOW)
        assert [(r.model, r.cost_center, r.application_id, r.totals.cost_nanos, r.totals.requests) for r in rows] == [
            ("m-a", "", "", 80, 1),
            ("m-a", "cc-1", "bot", 30, 2),
            ("m-b", "cc-2", "bot", 40, 1),
        ]
        assert store.active_tenants(NOW, NOW) == ["acme"]
        assert store.active_tenants(NOW - timedelta(days=2), NOW) == ["acme", "globex"]

    def test_top_tenants_by_cost_and_tokens(self, store: Any) -> None:
        self.apply(
            store,
            ("a", [ev("a", cost=5, tokens=(1000, 0, 0, 0))]),
            ("b", [ev("b", cost=50, tokens=(10, 0, 0, 0))]),
            ("c", [ev("c", cost=20, tokens=(100, 0, 0, 0)), ev("c", cost=20)]),
        )
        top = store.top_tenants(MONTH, Metric.COST, NOW, limit=2)
        assert [(t, v.cost_nanos) for t, v in top] == [("b", 50), ("c", 40)]
        assert [t for t, _ in store.top_tenants(DAY, Metric.TOKENS, NOW)] == ["a", "c", "b"]
        assert [t for t, _ in store.top_tenants(HOUR, Metric.REQUESTS, NOW, limit=1)] == ["c"]
        assert store.top_tenants(MINUTE_5, Metric.COST, NOW + timedelta(hours=3)) == []

    def test_read_windows_are_only_those_asked_for(self, store: Any) -> None:
        (out,) = store.apply_usage(
            [TenantBatch("acme", (ev(),), (MINUTE_1, MINUTE_60))], now=NOW, dedupe_horizon=HORIZON
        )
        assert set(out.totals) == {"1m", "60m"}

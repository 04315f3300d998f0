"""Benchmark: how well UsageProducer packs events (per Kinesis record, per PutRecords call) and what emit()
costs the application's thread. Run: ``python bench/producer.py``; the last line is JSON.

What runs where, said plainly:

1. Burst, recording fake client (no network): 5 bursts of 40,000 events over 100 tenants at the DEFAULT
   ProducerConfig, flushed between bursts (flush not timed). Gives ``events_per_record`` and
   ``events_per_put_call`` (the put-call shape), and ``emit_us`` = CPU time of the caller's thread per emit()
   (``time.thread_time_ns``, so time spent waiting for the GIL while the sender thread encodes is excluded;
   the wall-clock figure is reported next to it). Baselines measured in the same run: a bare locked
   deque append (the least a thread-safe hand-off can cost) and encoding + aggregating on the caller's thread
   (what emit() would cost without a sender thread).
2. Paced, recording fake client: 1,000 and 10,000 events/s over 100 tenants for 3 s each at the default
   settings: events per record at those rates (aggregation is per tenant, so a record holds about
   rate-per-tenant x linger_s events) and wall-clock emit() latency percentiles with the sender running.
3. Delivery check on moto's ThreadedMotoServer (loopback HTTP): 50,000 events, default settings, read back and
   deaggregated with aws_kinesis_agg: every event exactly once, events per record as stored, end-to-end rate.
"""

from __future__ import annotations

import base64
import json
import logging
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any, cast

import boto3
from aws_kinesis_agg.aggregator import AggRecord
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from producers.sdk import AggregationScope, ProducerConfig, UsageProducer
from producers.sdk.producer import KinesisPutClient
from shared.schema import Source, UsageEvent, decode_event, encode_event, new_event_id

TENANTS = [f"tenant-{i:03d}" for i in range(100)]
T0 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def make_events(n: int) -> list[UsageEvent]:
    return [
        UsageEvent(
            event_id=new_event_id(),
            occurred_at=T0,
            tenant_id=TENANTS[i % len(TENANTS)],
            source=Source.SDK,
            model="claude-3-5-haiku",
            model_id="anthropic.claude-3-5-haiku-20241022-v1:0",
            region="us-east-1",
            input_tokens=1200 + i % 500,
            output_tokens=340 + i % 97,
            cache_read_tokens=i % 3 * 1000,
            latency_ms=812,
            request_id="5b1f0c2e-1d2a-4c4e-9b7a-0d2f3e4a5b6c",
            tags={"costCenter": "cc-42", "applicationId": "chatbot"},
        )
        for i in range(n)
    ]


SHARDS = 4


class RecordingKinesis:
    """Accepts every PutRecords call and remembers its shape (records and bytes). ListShards answers with
    SHARDS open shards splitting the hash space evenly, as CreateStream(ShardCount=SHARDS) does."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        top = 2**128
        return {
            "Shards": [
                {
                    "ShardId": f"shardId-{i:012d}",
                    "HashKeyRange": {
                        "StartingHashKey": str(top * i // SHARDS),
                        "EndingHashKey": str(top * (i + 1) // SHARDS - 1),
                    },
                    "SequenceNumberRange": {"StartingSequenceNumber": "1"},
                }
                for i in range(SHARDS)
            ]
        }

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        records = kwargs["Records"]
        self.calls.append((len(records), sum(len(r["PartitionKey"]) + len(r["Data"]) for r in records)))
        return {
            "FailedRecordCount": 0,
            "Records": [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"} for _ in records],
        }


def burst() -> dict[str, Any]:
    fake = RecordingKinesis()
    producer = UsageProducer("bench", kinesis_client=cast(KinesisPutClient, fake), config=ProducerConfig())
    producer.start()
    bursts, size = 5, 40_000
    cpu_ns = wall_ns = 0
    for _ in range(bursts):
        events = make_events(size)
        emit = producer.emit
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        for event in events:
            emit(event)
        cpu_ns += time.thread_time_ns() - c0
        wall_ns += time.perf_counter_ns() - w0
        assert producer.flush(timeout=120), "flush timed out"
    producer.close(timeout=60)
    stats = producer.stats()
    n = bursts * size
    assert stats.sent == n and stats.dropped == 0, stats
    return {
        "events": n,
        "events_per_record": stats.sent / stats.records_sent,
        "events_per_put_call": stats.sent / stats.put_calls,
        "records_per_put_call": stats.records_sent / stats.put_calls,
        "mib_per_put_call": statistics.mean(b for _, b in fake.calls) / 2**20,
        "max_records_in_a_call": max(r for r, _ in fake.calls),
        "max_mib_in_a_call": max(b for _, b in fake.calls) / 2**20,
        "emit_cpu_us": cpu_ns / n / 1000,
        "emit_wall_us": wall_ns / n / 1000,
    }


def baselines() -> dict[str, float]:
    events = make_events(40_000)
    lock = threading.Lock()
    queue: deque[UsageEvent] = deque()
    c0 = time.thread_time_ns()
    for event in events:
        with lock:
            queue.append(event)
    locked_append = (time.thread_time_ns() - c0) / len(events) / 1000
    agg = AggRecord()
    c0 = time.thread_time_ns()
    for event in events:
        if not agg.add_user_record(event.tenant_id.encode(), encode_event(event)):
            agg = AggRecord()
    inline = (time.thread_time_ns() - c0) / len(events) / 1000
    return {"baseline_locked_append_us": locked_append, "baseline_encode_on_caller_us": inline}


def paced(rate: int, seconds: float = 3.0, config: ProducerConfig | None = None) -> dict[str, Any]:
    fake = RecordingKinesis()
    producer = UsageProducer("bench", kinesis_client=cast(KinesisPutClient, fake), config=config or ProducerConfig())
    producer.start()
    events = make_events(int(rate * seconds))
    latencies: list[int] = []
    tick = 0.002  # emit in 2 ms slots, sleeping in between (sleep releases the GIL, as real request work does)
    per_tick = max(1, int(rate * tick))
    start = time.perf_counter()
    for i in range(0, len(events), per_tick):
        for event in events[i : i + per_tick]:
            t = time.perf_counter_ns()
            producer.emit(event)
            latencies.append(time.perf_counter_ns() - t)
        delay = start + (i + per_tick) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    producer.close(timeout=60)
    stats = producer.stats()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1000

    return {
        "events_per_record": stats.sent / stats.records_sent,
        "events_per_put_call": stats.sent / stats.put_calls,
        "emit_p50_us": pct(0.50),
        "emit_p99_us": pct(0.99),
        "emit_p999_us": pct(0.999),
    }


def moto_check(n: int = 50_000) -> dict[str, Any]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10):
            pass
        client = boto3.session.Session().client(
            "kinesis",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_stream(StreamName="bench", ShardCount=SHARDS)
        events = make_events(n)
        producer = UsageProducer("bench", kinesis_client=client, config=ProducerConfig())
        t0 = time.perf_counter()
        for event in events:
            producer.emit(event)
        delivered = producer.close(timeout=300)
        elapsed = time.perf_counter() - t0
        stats = producer.stats()
        kinesis_records = 0
        seen: Counter[str] = Counter()
        for shard in client.list_shards(StreamName="bench")["Shards"]:
            iterator = client.get_shard_iterator(
                StreamName="bench", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = client.get_records(ShardIterator=iterator, Limit=10_000)
                if not page["Records"]:
                    break
                kinesis_records += len(page["Records"])
                for user in iter_deaggregate_records(page["Records"], data_format="Boto3"):
                    seen[decode_event(base64.b64decode(user["kinesis"]["data"])).event_id] += 1
                iterator = page.get("NextShardIterator")
        exactly_once = seen == Counter(e.event_id for e in events)
        return {
            "delivered": delivered,
            "exactly_once": exactly_once,
            "events_per_record": sum(seen.values()) / max(1, kinesis_records),
            "events_per_put_call": stats.sent / max(1, stats.put_calls),
            "dropped": stats.dropped,
            "events_per_s_end_to_end": n / elapsed,
        }
    finally:
        server.stop()


def main() -> int:
    print("usage producer benchmark (default ProducerConfig unless stated)", flush=True)
    b = burst()
    print(
        f"burst, recording fake client: {b['events']:,} events over {len(TENANTS)} tenants, {SHARDS} shards, "
        f"in bursts of 40,000\n"
        f"  events per Kinesis record   {b['events_per_record']:,.0f}\n"
        f"  events per PutRecords call  {b['events_per_put_call']:,.0f} "
        f"({b['records_per_put_call']:.0f} records, {b['mib_per_put_call']:.2f} MiB on average; "
        f"largest call {b['max_records_in_a_call']} records, {b['max_mib_in_a_call']:.2f} MiB)\n"
        f"  emit() caller-thread CPU    {b['emit_cpu_us']:.2f} us   (wall {b['emit_wall_us']:.2f} us, includes "
        f"GIL waits while the sender encodes)",
        flush=True,
    )
    base = baselines()
    print(
        f"baselines on the caller's thread: locked deque append {base['baseline_locked_append_us']:.2f} us; "
        f"encode + aggregate inline {base['baseline_encode_on_caller_us']:.2f} us "
        f"(emit() is {base['baseline_encode_on_caller_us'] / b['emit_cpu_us']:.1f}x cheaper)",
        flush=True,
    )
    paced_figures = {}
    for rate in (1_000, 10_000):
        p = paced(rate)
        paced_figures[rate] = p
        print(
            f"paced {rate:,} events/s over {len(TENANTS)} tenants, {SHARDS} shards: "
            f"{p['events_per_record']:.1f} events per record, "
            f"{p['events_per_put_call']:.0f} per call; emit() wall p50 {p['emit_p50_us']:.2f} us, "
            f"p99 {p['emit_p99_us']:.2f} us, p99.9 {p['emit_p999_us']:.2f} us",
            flush=True,
        )
    by_key = paced(1_000, config=ProducerConfig(aggregate_by=AggregationScope.KEY))
    print(
        f"  baseline, aggregating per key instead of per shard, 1,000 events/s: "
        f"{by_key['events_per_record']:.1f} events per record "
        f"(per shard packs {paced_figures[1_000]['events_per_record'] / by_key['events_per_record']:.0f}x more)",
        flush=True,
    )
    m = moto_check()
    print(
        f"moto ThreadedMotoServer (loopback HTTP), 50,000 events: delivered {m['delivered']}, "
        f"exactly once {m['exactly_once']}, {m['events_per_record']:.0f} events per stored record, "
        f"{m['events_per_put_call']:.0f} per call, {m['events_per_s_end_to_end']:,.0f} events/s end to end",
        flush=True,
    )
    result = {
        "events_per_record": round(b["events_per_record"], 1),
        "events_per_put_call": round(b["events_per_put_call"], 1),
        "emit_us": round(b["emit_cpu_us"], 3),
        "emit_wall_us": round(b["emit_wall_us"], 3),
        "baseline_locked_append_us": round(base["baseline_locked_append_us"], 3),
        "baseline_encode_on_caller_us": round(base["baseline_encode_on_caller_us"], 3),
        "paced_1k_events_per_record": round(paced_figures[1_000]["events_per_record"], 1),
        "paced_10k_events_per_record": round(paced_figures[10_000]["events_per_record"], 1),
        "paced_1k_events_per_record_by_key": round(by_key["events_per_record"], 1),
        "paced_10k_emit_p50_us": round(paced_figures[10_000]["emit_p50_us"], 3),
        "paced_10k_emit_p99_us": round(paced_figures[10_000]["emit_p99_us"], 3),
        "moto_exactly_once": m["exactly_once"],
        "moto_events_per_record": round(m["events_per_record"], 1),
        "moto_events_per_s": round(m["events_per_s_end_to_end"]),
        "put_calls_measured_with": "recording fake client; delivery checked on moto ThreadedMotoServer (loopback)",
    }
    print(json.dumps(result))
    return 0 if m["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())

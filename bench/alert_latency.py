"""Alert-latency benchmark: a usage event emitted (the SDK path: ``UsageProducer.emit``) to its alert received in
the on-call feed (the SQS queue subscribed to the alert's SNS severity topic), on the local stack.

Each of 200 tenants (a hard monthly cost quota of $0.001) gets one event worth 60% of it, one tenant every
100 ms: that event alone takes the tenant to the notice level, so each yields one quota alert (on the info
topic) whose latency is measured from the moment ``emit`` was called. (Each also yields a projection alert on
the warning topic: 60% of a monthly quota in minutes runs out long before the month ends. Those are not timed,
but the consumer publishes them too: 20 SNS publishes per second in all.) Meanwhile 100 background tenants far
from their quotas send 200 events/s, so the consumer works on mixed batches rather than on an idle stream.
Three threads poll the three feed queues without waiting (ReceiveMessage with WaitTimeSeconds=0, back to back).

Measured twice, with fresh tenants and a fresh producer and consumer runner each time:

- ``default``: the settings as shipped: the producer's default linger (0.5 s, ``ProducerConfig``) and
  Terraform's event-source mapping (batches of up to 500, MaximumBatchingWindowInSeconds 1);
- ``low_latency``: a 20 ms linger and no batching window (0 s).

The local runner polls an idle shard every 0.2 s in both (Lambda's own base rate is about once per second per
shard). Per alert, the time from emit to the message's SentTimestamp in the SQS queue (when SNS delivered it)
is the headline; it is split into producer (emit -> the Kinesis record's ApproximateArrivalTimestamp: the
linger and PutRecords), event-source mapping (arrival -> the handler invoked: batching window and polling),
and consumer + SNS->SQS (handler invoked -> SentTimestamp: decode, store, alert rules, SNS publish and moto's
delivery to SQS), by wrapping the consumer's ``lambda_handler`` to note when each batch started. The feed
poller's own delay (SentTimestamp -> received) is reported apart. All timestamps are wall-clock (time.time()),
one process, one clock. For scale, one SNS publish to moto (delivered to an SQS subscription) is timed on its
own first: the consumer publishes alerts one after another, so a batch's publishes add up. Ends with one JSON
line; nothing is asserted.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from _common import LocalPipeline, final_line, percentile

ALERT_TENANTS = 200  # per setting
EMIT_EVERY_S = 0.1  # 10 tenants crossing a level per second
BACKGROUND_TENANTS = 100
BACKGROUND_RATE = 200.0  # events/s
WAIT_AFTER_S = 8.0  # after the last emit, how long to wait for the last alerts at most
MODEL = "claude-3-5-haiku"
MODEL_ID = "anthropic.claude-3-5-haiku-20241022-v1:0"
# 100 input + 130 output tokens of Claude 3.5 Haiku ($0.80 / $4.00 per 1M): $0.0006, 60% of a $0.001 quota.
INPUT_TOKENS, OUTPUT_TOKENS = 100, 130
QUOTA_USD = "0.001"
SETTINGS = {
    # name: (producer linger s, batching window s)
    "default": (0.5, 1.0),
    "low_latency": (0.02, 0.0),
}


def registry() -> dict[str, Any]:
    tenants = [
        {"id": f"al-{name.replace('_', '-')}-{i}", "tier": "alerting"}
        for name in SETTINGS
        for i in range(ALERT_TENANTS)
    ]
    tenants += [{"id": f"al-bg-{i}", "tier": "background"} for i in range(BACKGROUND_TENANTS)]
    return {
        "tiers": {
            # Only the monthly cost quota: one quota alert per tenant (the built-in actions: notice -> info topic).
            "alerting": {"quotas": [{"window": "month", "metric": "cost_usd", "limit": QUOTA_USD, "hard": True}]},
            "background": {"quotas": [{"window": "month", "metric": "cost_usd", "limit": "100000", "hard": True}]},
        },
        "tenants": tenants,
    }


def usage_event(tenant_id: str) -> Any:
    from shared.schema import Source, UsageEvent, new_event_id

    return UsageEvent(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        tenant_id=tenant_id,
        source=Source.SDK,
        model=MODEL,
        model_id=MODEL_ID,
        region="us-east-1",
        input_tokens=INPUT_TOKENS,
        output_tokens=OUTPUT_TOKENS,
        latency_ms=420,
        tags={"applicationId": "bench", "costCenter": "alerts"},
    )


@dataclass
class Invocation:
    started: float
    finished: float
    records: list[dict[str, Any]]


@dataclass
class Recorder:
    """Wraps the consumer's handler: notes when each batch was handed over and what it held."""

    handler: Callable[[dict[str, Any], Any], Any]
    invocations: list[Invocation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        started = time.time()
        response = self.handler(event, context)
        finished = time.time()
        with self.lock:
            self.invocations.append(Invocation(started, finished, event.get("Records") or []))
        return response

    def first_seen(self) -> dict[str, tuple[float, float]]:
        """tenant id -> (Kinesis arrival, handler started) of the first batch carrying one of its events."""
        from consumers.metering.records import split_records

        out: dict[str, tuple[float, float]] = {}
        with self.lock:
            invocations = sorted(self.invocations, key=lambda i: i.started)
        for inv in invocations:
            for record in split_records(inv.records).records:
                tenant = json.loads(record.data)["tenant_id"]
                if tenant not in out:
                    out[tenant] = (record.arrived_at, inv.started)
        return out


@dataclass
class FeedPoller:
    """Receives from the three on-call feed queues back to back; notes each alert's SentTimestamp and receipt."""

    sqs_factory: Callable[[], Any]
    queue_urls: dict[str, str]
    arrivals: dict[tuple[str, str], tuple[float, float, str]] = field(default_factory=dict)  # (tenant, level)
    other: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for severity, url in self.queue_urls.items():
            thread = threading.Thread(target=self._poll, args=(severity, url), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _poll(self, severity: str, url: str) -> None:
        sqs = self.sqs_factory()
        while not self.stop.is_set():
            resp = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["SentTimestamp"]
            )
            received = time.time()
            messages = resp.get("Messages", [])
            if not messages:
                time.sleep(0.002)
                continue
            for message in messages:
                sent = int(message["Attributes"]["SentTimestamp"]) / 1000
                alert = json.loads(json.loads(message["Body"])["Message"])
                key = (alert["tenant_id"], alert["level"])
                with self.lock:
                    if key in self.arrivals:
                        self.other += 1
                    else:
                        self.arrivals[key] = (sent, received, severity)
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
            )

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)


def background(producer: Any, stop: threading.Event) -> None:
    n = 0
    interval = 1 / BACKGROUND_RATE
    next_at = time.monotonic()
    while not stop.is_set():
        producer.emit(usage_event(f"al-bg-{n % BACKGROUND_TENANTS}"))
        n += 1
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)


def measure(pipeline: LocalPipeline, name: str, linger_s: float, window_s: float) -> dict[str, float]:
    from producers.sdk.config import ProducerConfig
    from tenantmeter_cli.local.esm import MappingConfig

    tenants = [f"al-{name.replace('_', '-')}-{i}" for i in range(ALERT_TENANTS)]
    producer_config = ProducerConfig(linger_s=linger_s)
    esm = MappingConfig(batch_size=500, batching_window_s=window_s, max_retry_attempts=5, starting_position="LATEST")
    from consumers.metering.handler import lambda_handler

    recorder = Recorder(lambda_handler)
    runner = pipeline.start_consumer(esm, recorder)
    producer = pipeline.producer(producer_config)
    feed = FeedPoller(lambda: pipeline.client("sqs"), pipeline.resources.feed_queue_urls)
    feed.start()
    stop_bg = threading.Event()
    bg = threading.Thread(target=background, args=(producer, stop_bg), daemon=True)
    time.sleep(1.0)  # the runner has taken its LATEST iterators
    bg.start()
    time.sleep(1.0)
    emitted: dict[str, float] = {}
    next_at = time.monotonic()
    for tenant in tenants:
        event = usage_event(tenant)
        emitted[tenant] = time.time()
        producer.emit(event)
        next_at += EMIT_EVERY_S
        time.sleep(max(0.0, next_at - time.monotonic()))
    deadline = time.monotonic() + WAIT_AFTER_S
    while time.monotonic() < deadline:
        with feed.lock:
            done = sum(1 for t in tenants if (t, "notice") in feed.arrivals)
        if done == len(tenants):
            break
        time.sleep(0.05)
    time.sleep(0.5)  # let the tenants' other alerts (projections) arrive too, to count them
    stop_bg.set()
    bg.join()
    feed.close()
    runner.stop(drain=False, timeout=5)
    producer.close(5)

    seen = recorder.first_seen()
    total, received, producer_s, esm_s, consumer_s, poller_s = [], [], [], [], [], []
    for tenant in tenants:
        arrival = feed.arrivals.get((tenant, "notice"))
        if arrival is None:
            continue
        sent, got, _severity = arrival
        total.append(sent - emitted[tenant])
        received.append(got - emitted[tenant])
        poller_s.append(got - sent)
        if tenant in seen:
            kinesis_arrival, invoked = seen[tenant]
            producer_s.append(kinesis_arrival - emitted[tenant])
            esm_s.append(invoked - kinesis_arrival)
            consumer_s.append(sent - invoked)
    with feed.lock:
        other_alerts = len(feed.arrivals) - len(total) + feed.other
    batch_sizes = [len(inv.records) for inv in recorder.invocations]
    handler_ms = [(inv.finished - inv.started) * 1000 for inv in recorder.invocations]
    figures = {
        "alerts": len(total),
        "missing": len(tenants) - len(total),
        "p50_ms": percentile(total, 0.50) * 1000 if total else -1.0,
        "p99_ms": percentile(total, 0.99) * 1000 if total else -1.0,
        "max_ms": max(total) * 1000 if total else -1.0,
        "received_p50_ms": percentile(received, 0.50) * 1000 if received else -1.0,
        "received_p99_ms": percentile(received, 0.99) * 1000 if received else -1.0,
        "producer_p50_ms": statistics.median(producer_s) * 1000 if producer_s else -1.0,
        "esm_p50_ms": statistics.median(esm_s) * 1000 if esm_s else -1.0,
        "consumer_sns_p50_ms": statistics.median(consumer_s) * 1000 if consumer_s else -1.0,
        "producer_p99_ms": percentile(producer_s, 0.99) * 1000 if producer_s else -1.0,
        "esm_p99_ms": percentile(esm_s, 0.99) * 1000 if esm_s else -1.0,
        "consumer_sns_p99_ms": percentile(consumer_s, 0.99) * 1000 if consumer_s else -1.0,
        "poller_p50_ms": statistics.median(poller_s) * 1000 if poller_s else -1.0,
        "invocations": len(batch_sizes),
        "records_per_batch": statistics.mean(batch_sizes) if batch_sizes else 0.0,
        "handler_p50_ms": statistics.median(handler_ms) if handler_ms else 0.0,
        "other_alerts": other_alerts,
        "linger_ms": linger_s * 1000,
        "batching_window_s": window_s,
        "poll_interval_s": esm.poll_interval_s,
    }
    return figures


def publish_ms(pipeline: LocalPipeline, count: int = 100) -> float:
    """Median time of one SNS publish to a topic with an SQS subscription, like the alert topics (on a topic
    of its own, so the feed queues stay clean)."""
    sns, sqs = pipeline.client("sns"), pipeline.client("sqs")
    arn = sns.create_topic(Name="tm-bench-publish-probe")["TopicArn"]
    url = sqs.create_queue(QueueName="tm-bench-publish-probe")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    attributes = {"tenant_id": {"DataType": "String", "StringValue": "probe"}}
    times = []
    for _ in range(count):
        start = time.perf_counter()
        sns.publish(TopicArn=arn, Message='{"summary":"probe"}', Subject="probe", MessageAttributes=attributes)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    out: dict[str, Any] = {}
    with LocalPipeline(registry()) as pipeline:
        out["sns_publish_p50_ms"] = publish_ms(pipeline)
        print(f"one SNS publish to moto (with an SQS subscription), alone: p50 {out['sns_publish_p50_ms']:.1f} ms")
        for name, (linger_s, window_s) in SETTINGS.items():
            f = measure(pipeline, name, linger_s, window_s)
            print(
                f"{name}: producer linger {f['linger_ms']:g} ms, batching window {f['batching_window_s']:g} s, "
                f"idle poll {f['poll_interval_s']:g} s; {ALERT_TENANTS} tenants crossing the notice level, "
                f"background {BACKGROUND_RATE:g} events/s"
            )
            print(
                f"   emit -> in the SQS feed queue: p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms, max "
                f"{f['max_ms']:.0f} ms over {f['alerts']} alerts ({f['missing']} missing; {f['other_alerts']} other "
                f"alerts, e.g. projections, not counted)"
            )
            print(
                f"   of which (p50 / p99): producer {f['producer_p50_ms']:.0f} / {f['producer_p99_ms']:.0f} ms, "
                f"event-source mapping {f['esm_p50_ms']:.0f} / {f['esm_p99_ms']:.0f} ms, consumer + SNS->SQS "
                f"{f['consumer_sns_p50_ms']:.0f} / {f['consumer_sns_p99_ms']:.0f} ms"
            )
            print(
                f"   received by the poller: p50 {f['received_p50_ms']:.0f} ms, p99 {f['received_p99_ms']:.0f} ms "
                f"(poller delay p50 {f['poller_p50_ms']:.1f} ms); {f['invocations']} invocations, "
                f"{f['records_per_batch']:.1f} Kinesis records per batch, handler p50 {f['handler_p50_ms']:.1f} ms"
            )
            for key in (
                "p50_ms",
                "p99_ms",
                "producer_p50_ms",
                "esm_p50_ms",
                "consumer_sns_p50_ms",
                "alerts",
                "linger_ms",
                "batching_window_s",
            ):
                out[f"{name}_{key}"] = f[key]
        out["esm_idle_poll_s"] = f["poll_interval_s"]
    final_line(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

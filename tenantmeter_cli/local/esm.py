"""A local Kinesis event-source-mapping runner: polls a stream the way Lambda does and calls a handler.

moto's own Lambda event-source mapping invokes per record with no batching, retries or partial failures
(FACTS.md), so it is no stand-in. This runner reproduces the behaviours the metering consumer relies on:

- one poller per shard, one batch in flight per shard (ParallelizationFactor 1): per-shard order is kept; the
  pollers share one warm container, so their invocations run one at a time, as a Lambda container's do;
- a batch closes at ``batch_size`` records or after ``batching_window_s`` (MaximumBatchingWindowInSeconds);
- the event is Lambda-shaped (``Records[].kinesis.data`` base64, ``kinesisSchemaVersion``, ``eventID`` ...);
- ``{"batchItemFailures": [...]}``: checkpoint just before the LOWEST failed sequence number and redeliver
  everything after it; an empty list is success; a malformed response fails the whole batch;
- a raised error fails the whole batch; with ``bisect_on_error`` the batch is split in two and each half
  retried; after ``max_retry_attempts`` retries (or when a record is older than ``max_record_age_s``) the batch's
  metadata goes to the on-failure destination (an SQS queue) and the shard moves on.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from shared.schema import format_timestamp

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True, slots=True)
class MappingConfig:
    batch_size: int = 100
    batching_window_s: float = 0.5
    bisect_on_error: bool = True
    max_retry_attempts: int = 3
    max_record_age_s: float = 3600.0
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    poll_interval_s: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"batch_size must be 1..10000, got {self.batch_size}")
        if not 0 <= self.batching_window_s <= 300:
            raise ValueError(f"batching_window_s must be 0..300, got {self.batching_window_s}")
        if not 0 <= self.max_retry_attempts <= 10_000:
            raise ValueError(f"max_retry_attempts must be 0..10000, got {self.max_retry_attempts}")


@dataclass
class RunnerStats:
    invocations: int = 0
    records_delivered: int = 0
    partial_failures: int = 0
    errors: int = 0
    bisections: int = 0
    sent_to_failure_destination: int = 0
    records_done: int = 0
    oldest_arrival_lag_s: float = 0.0
    per_shard_done: dict[str, int] = field(default_factory=dict)


class LambdaContext:
    """Enough of the Lambda context object for Powertools' inject_lambda_context."""

    def __init__(self, function_name: str, timeout_ms: int = 60_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_record(raw: Mapping[str, Any], shard_id: str, stream_arn: str, region: str) -> dict[str, Any]:
    """A Kinesis GetRecords record in the shape Lambda delivers it."""
    arrival = raw["ApproximateArrivalTimestamp"]
    arrival_s = arrival.timestamp() if isinstance(arrival, datetime) else float(arrival)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": raw["PartitionKey"],
            "sequenceNumber": raw["SequenceNumber"],
            "data": base64.b64encode(raw["Data"]).decode(),
            "approximateArrivalTimestamp": arrival_s,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{raw['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/tenantmeter-metering",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def _arrival(record: Mapping[str, Any]) -> str:
    return format_timestamp(datetime.fromtimestamp(record["kinesis"]["approximateArrivalTimestamp"], UTC))


def failed_sequence_numbers(response: object, batch: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """Parse a handler response. [] = success; a list of failed sequence numbers; None = malformed (the whole
    batch failed, as Lambda treats it)."""
    if response is None:
        return []
    if not isinstance(response, Mapping):
        return None
    failures = response.get("batchItemFailures", [])
    if not isinstance(failures, list):
        return None
    known = {r["kinesis"]["sequenceNumber"] for r in batch}
    out: list[str] = []
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(ident, str) or ident not in known:
            return None
        out.append(ident)
    return out


class ShardPoller:
    """Delivers one shard's records to the handler, batch by batch, with Lambda's failure semantics."""

    def __init__(
        self,
        runner: EventSourceMappingRunner,
        shard_id: str,
    ) -> None:
        self.runner = runner
        self.shard_id = shard_id
        self.pending: list[dict[str, Any]] = []
        self.iterator: str | None = None

    def fill(self) -> None:
        cfg = self.runner.config
        kinesis = self.runner.kinesis
        if self.iterator is None:
            self.iterator = kinesis.get_shard_iterator(
                StreamName=self.runner.stream_name, ShardId=self.shard_id, ShardIteratorType=cfg.starting_position
            )["ShardIterator"]
        deadline = time.monotonic() + cfg.batching_window_s
        while len(self.pending) < cfg.batch_size:
            resp = kinesis.get_records(ShardIterator=self.iterator, Limit=cfg.batch_size - len(self.pending))
            self.iterator = resp["NextShardIterator"]
            for raw in resp["Records"]:
                self.pending.append(lambda_record(raw, self.shard_id, self.runner.stream_arn, self.runner.region))
            if len(self.pending) >= cfg.batch_size or time.monotonic() >= deadline or self.runner.stopping:
                break
            if not resp["Records"]:
                time.sleep(min(cfg.poll_interval_s, max(0.0, deadline - time.monotonic())))

    def step(self) -> int:
        """Fill a batch and deliver it; returns how many records were completed (checkpointed)."""
        self.fill()
        if not self.pending:
            return 0
        batch = self.pending[: self.runner.config.batch_size]
        done = self.runner.deliver(self.shard_id, batch)
        del self.pending[:done]
        return done


class EventSourceMappingRunner:
    def __init__(
        self,
        handler: Handler,
        *,
        kinesis: KinesisClient,
        stream_name: str,
        config: MappingConfig | None = None,
        sqs: SQSClient | None = None,
        failure_queue_url: str | None = None,
        function_name: str = "tenantmeter-metering",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.handler = handler
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.config = config or MappingConfig()
        self.sqs = sqs
        self.failure_queue_url = failure_queue_url
        self.function_name = function_name
        self.clock = clock
        desc = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
        self.stream_arn = desc["StreamARN"]
        self.region = kinesis.meta.region_name
        self.shards = [ShardPoller(self, s["ShardId"]) for s in desc["Shards"]]
        self.stats = RunnerStats()
        self.stopping = False
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._invoke_lock = threading.Lock()

    # --- delivery with Lambda's semantics -------------------------------------------------------------

    def invoke(self, batch: Sequence[dict[str, Any]]) -> list[str] | None:
        """Invoke once. Returns failed sequence numbers ([] = success), or None if the whole batch failed."""
        with self._lock:
            self.stats.invocations += 1
            self.stats.records_delivered += len(batch)
        try:
            # One container, one invocation at a time, as in Lambda: the shard pollers share this process's
            # handler (and its warm container), so their invocations take turns.
            with self._invoke_lock:
                response = self.handler({"Records": list(batch)}, LambdaContext(self.function_name))
        except Exception:
            logger.exception("handler raised; the whole batch failed")
            with self._lock:
                self.stats.errors += 1
            return None
        failed = failed_sequence_numbers(response, batch)
        if failed is None:
            logger.error("malformed batchItemFailures response; the whole batch failed")
            with self._lock:
                self.stats.errors += 1
        elif failed:
            with self._lock:
                self.stats.partial_failures += 1
        return failed

    def deliver(self, shard_id: str, batch: list[dict[str, Any]]) -> int:
        """Deliver ``batch`` until every record is done or sent to the failure destination, and return how many
        records the shard moves past: len(batch), or 0 when stopping interrupted the retries (the records stay
        pending, as a real mapping would retry them from its checkpoint after a restart)."""
        if not self._deliver(shard_id, batch, attempt=0):
            return 0
        with self._lock:
            self.stats.records_done += len(batch)
            self.stats.per_shard_done[shard_id] = self.stats.per_shard_done.get(shard_id, 0) + len(batch)
            arrivals = [r["kinesis"]["approximateArrivalTimestamp"] for r in batch]
            self.stats.oldest_arrival_lag_s = max(0.0, self.clock() - min(arrivals))
        return len(batch)

    def _deliver(self, shard_id: str, batch: list[dict[str, Any]], attempt: int) -> bool:
        """False if stopping interrupted the retries before every record was done."""
        while batch:
            if self.stopping and attempt > 0:
                return False
            failed = self.invoke(batch)
            if failed == []:
                return True
            if failed:
                # Checkpoint before the lowest failed sequence number; redeliver it and everything after.
                seqs = [r["kinesis"]["sequenceNumber"] for r in batch]
                lowest = min(failed, key=int)
                batch = batch[seqs.index(lowest) :]
            attempt += 1
            too_old = self._oldest_age(batch) > self.config.max_record_age_s
            if attempt > self.config.max_retry_attempts or too_old:
                condition = "RecordAgeExceeded" if too_old else "RetryAttemptsExhausted"
                self._send_to_failure_destination(shard_id, batch, attempt, condition)
                return True
            if failed is None and self.config.bisect_on_error and len(batch) > 1:
                with self._lock:
                    self.stats.bisections += 1
                mid = len(batch) // 2
                return self._deliver(shard_id, batch[:mid], attempt) and self._deliver(shard_id, batch[mid:], attempt)
            time.sleep(min(0.05 * attempt, 0.5))
        return True

    def _oldest_age(self, batch: Sequence[dict[str, Any]]) -> float:
        oldest: float = min(r["kinesis"]["approximateArrivalTimestamp"] for r in batch)
        return self.clock() - oldest

    def _send_to_failure_destination(
        self, shard_id: str, batch: Sequence[dict[str, Any]], attempts: int, condition: str
    ) -> None:
        """Like Lambda's SQS on-failure destination: metadata only (shard, sequence range), not the data."""
        with self._lock:
            self.stats.sent_to_failure_destination += len(batch)
        info = {
            "requestContext": {
                "condition": condition,
                "approximateInvokeCount": attempts,
                "functionArn": LambdaContext(self.function_name).invoked_function_arn,
            },
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": batch[0]["kinesis"]["sequenceNumber"],
                "endSequenceNumber": batch[-1]["kinesis"]["sequenceNumber"],
                "batchSize": len(batch),
                "streamArn": self.stream_arn,
                "approximateArrivalOfFirstRecord": _arrival(batch[0]),
                "approximateArrivalOfLastRecord": _arrival(batch[-1]),
            },
            "timestamp": datetime.now(UTC).isoformat(),
        }
        logger.error("batch sent to the on-failure destination: %s", info["KinesisBatchInfo"])
        if self.sqs is not None and self.failure_queue_url:
            self.sqs.send_message(QueueUrl=self.failure_queue_url, MessageBody=json.dumps(info))

    # --- running -------------------------------------------------------------------------------------

    def drain(self, max_rounds: int = 1000) -> int:
        """Synchronously deliver everything currently in the stream (for tests). Returns records completed."""
        total = 0
        for _ in range(max_rounds):
            moved = sum(poller.step() for poller in self.shards)
            total += moved
            if moved == 0:
                break
        return total

    def start(self) -> None:
        """One background thread per shard, like one concurrent invocation per shard."""
        for poller in self.shards:
            thread = threading.Thread(target=self._loop, args=(poller,), name=f"esm-{poller.shard_id}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, poller: ShardPoller) -> None:
        while not self.stopping:
            try:
                if poller.step() == 0:
                    time.sleep(self.config.poll_interval_s)
            except Exception:  # the poller itself (GetRecords) failed: log, back off, keep going
                logger.exception("shard %s poll failed", poller.shard_id)
                time.sleep(1.0)

    def stop(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop polling; with ``drain``, first deliver what the stream still holds."""
        if drain:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._has_unread():
                time.sleep(self.config.poll_interval_s)
        self.stopping = True
        for thread in self._threads:
            thread.join(timeout=timeout)

    def _has_unread(self) -> bool:
        for poller in self.shards:
            if poller.pending or poller.iterator is None:
                return True
            resp = self.kinesis.get_records(ShardIterator=poller.iterator, Limit=1)
            if resp["Records"]:
                return True
        return False

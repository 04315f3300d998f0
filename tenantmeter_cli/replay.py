"""`meter replay-failures`: meter the batches the consumer's event-source mapping gave up on.

When the store is down longer than the mapping's retry budget, Lambda sends each abandoned batch's metadata
(shard, first and last sequence number, size; never the data) to the on-failure SQS queue and moves on, so
that usage is not metered until someone replays it. This reads each failure record, reads its range back from
the stream (GetShardIterator AT_SEQUENCE_NUMBER, then GetRecords up to the last sequence number), and invokes
the consumer with it, Lambda-shaped, in payloads under Lambda's 6 MB synchronous limit, in stream order. A
failure record is deleted only once every record of its range is back and the consumer reported none of them
failed; anything else leaves it on the queue for the next run.

Replaying is safe to repeat: the consumer meters each event exactly once (see README, "What exactly once
means"). Within the dedupe horizon (24 h by default) that holds whatever the mapping did since; past it, the
per-(shard, partition key) high-water marks decide, and events below a mark that later records moved count as
duplicates. So replay soon; a failure record older than the horizon is reported with that warning. Records past
the stream's retention are gone: the range is then reported incomplete, and the record stays for a person.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tenantmeter_cli.local.esm import LambdaContext, failed_sequence_numbers, lambda_record

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient

# Lambda's synchronous invocation payload limit is 6 MB; stay well under it (JSON framing, a record's size
# estimate).
MAX_PAYLOAD_BYTES = 5_000_000
# While a run works on a failure record, other runs do not see it; what it leaves on the queue (failed, dry run,
# not a failure record) is made visible again when it ends.
VISIBILITY_TIMEOUT_S = 900

Invoke = Callable[[dict[str, Any]], object]


class ReplayError(Exception):
    """The consumer could not take a replayed payload (a function error, an unreadable answer)."""


@dataclass(frozen=True, slots=True)
class FailedBatch:
    """One on-failure record: what Lambda wrote about a batch it gave up on."""

    message_id: str
    receipt_handle: str
    shard_id: str
    start_sequence: str
    end_sequence: str
    batch_size: int
    stream_arn: str
    condition: str  # e.g. RetryAttemptsExhausted, RecordAgeExceeded
    first_arrival: datetime | None

    @property
    def stream_name(self) -> str:
        return self.stream_arn.rsplit("/", 1)[-1]


@dataclass
class ReplayResult:
    message_id: str
    shard_id: str = ""
    start_sequence: str = ""
    end_sequence: str = ""
    expected: int = 0
    found: int = 0
    invocations: int = 0
    failed_records: int = 0
    status: str = ""  # replayed | dry run | incomplete | failed | not a failure record
    detail: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("replayed", "dry run")


def parse_failure(message: Mapping[str, Any]) -> FailedBatch:
    """An SQS message from the on-failure queue; ValueError names what is missing."""
    try:
        body = json.loads(message["Body"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("body is not JSON") from None
    info = body.get("KinesisBatchInfo") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        raise ValueError("no KinesisBatchInfo (not a Kinesis on-failure record)")
    values: dict[str, str] = {}
    for name in ("shardId", "startSequenceNumber", "endSequenceNumber", "streamArn"):
        value = info.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"KinesisBatchInfo.{name} is missing")
        values[name] = value
    for name in ("startSequenceNumber", "endSequenceNumber"):
        if not values[name].isdigit():
            raise ValueError(f"KinesisBatchInfo.{name} is not a sequence number")
    size = info.get("batchSize")
    if type(size) is not int or size < 1:
        raise ValueError("KinesisBatchInfo.batchSize is missing")
    first = info.get("approximateArrivalOfFirstRecord")
    try:
        first_arrival = datetime.fromisoformat(first).astimezone(UTC) if isinstance(first, str) else None
    except ValueError:
        first_arrival = None
    condition = body.get("requestContext", {}).get("condition", "") if isinstance(body, dict) else ""
    return FailedBatch(
        message_id=str(message.get("MessageId", "")),
        receipt_handle=str(message.get("ReceiptHandle", "")),
        shard_id=values["shardId"],
        start_sequence=values["startSequenceNumber"],
        end_sequence=values["endSequenceNumber"],
        batch_size=size,
        stream_arn=values["streamArn"],
        condition=str(condition),
        first_arrival=first_arrival,
    )


def read_range(kinesis: KinesisClient, batch: FailedBatch, region: str) -> list[dict[str, Any]]:
    """The batch's records from the stream, Lambda-shaped, in order (fewer than ``batch_size`` when some are past
    the stream's retention)."""
    iterator: str | None = kinesis.get_shard_iterator(
        StreamName=batch.stream_name,
        ShardId=batch.shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=batch.start_sequence,
    )["ShardIterator"]
    end = int(batch.end_sequence)
    records: list[dict[str, Any]] = []
    while iterator and len(records) < batch.batch_size:
        page = kinesis.get_records(ShardIterator=iterator, Limit=min(10_000, batch.batch_size - len(records)))
        wanted = [r for r in page["Records"] if int(r["SequenceNumber"]) <= end]
        records += [lambda_record(r, batch.shard_id, batch.stream_arn, region) for r in wanted]
        if len(wanted) < len(page["Records"]):
            break  # past the range's last record
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            break  # at the tip of the shard: nothing more will come
        iterator = page.get("NextShardIterator")
    return records


def payloads(records: Sequence[dict[str, Any]], max_bytes: int = MAX_PAYLOAD_BYTES) -> Iterator[dict[str, Any]]:
    """Lambda Kinesis events of consecutive records, each under ``max_bytes`` of JSON."""
    chunk: list[dict[str, Any]] = []
    size = 20
    for record in records:
        record_size = len(json.dumps(record)) + 2
        if chunk and size + record_size > max_bytes:
            yield {"Records": chunk}
            chunk, size = [], 20
        chunk.append(record)
        size += record_size
    if chunk:
        yield {"Records": chunk}


def lambda_invoker(client: LambdaClient, function_name: str) -> Invoke:
    """Invoke the deployed consumer synchronously (same code, role and network as the mapping's invocations)."""

    def invoke(event: dict[str, Any]) -> object:
        response = client.invoke(
            FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        text = response["Payload"].read()
        if response.get("FunctionError"):
            try:
                message = json.loads(text).get("errorMessage", "")
            except (ValueError, AttributeError):
                message = ""
            raise ReplayError(f"{function_name} failed: {response['FunctionError']} {message}".strip())
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise ReplayError(f"{function_name} answered something other than JSON") from None

    return invoke


def local_invoker() -> Invoke:
    """Run the consumer's handler in this process, configured from this environment (the local stack). Its EMF
    metrics (printed, as Lambda's log capture expects) go to stderr, so stdout stays this command's."""
    from consumers.metering.handler import lambda_handler

    def invoke(event: dict[str, Any]) -> object:
        with contextlib.redirect_stdout(sys.stderr):
            return lambda_handler(event, LambdaContext("tenantmeter-replay"))

    return invoke


def replay_failures(
    sqs: SQSClient,
    kinesis: KinesisClient,
    queue_url: str,
    invoke: Invoke | None,
    *,
    region: str,
    limit: int,
    dedupe_horizon: timedelta,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[ReplayResult]:
    """Replay up to ``limit`` failure records (``invoke`` None: a dry run that reads ranges and changes nothing)."""
    results: list[ReplayResult] = []
    seen: set[str] = set()
    release: list[str] = []  # receipt handles of records left on the queue: visible again when the run ends
    try:
        while len(results) < limit:
            messages = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, limit - len(results)),
                WaitTimeSeconds=1,
                VisibilityTimeout=VISIBILITY_TIMEOUT_S,
            ).get("Messages", [])
            fresh = [msg for msg in messages if msg.get("MessageId") not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(str(message.get("MessageId")))
                result = _replay_one(sqs, kinesis, queue_url, message, invoke, region, dedupe_horizon, now())
                results.append(result)
                if result.status != "replayed":
                    release.append(str(message.get("ReceiptHandle")))
    finally:
        for handle in release:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return results


def _replay_one(
    sqs: SQSClient,
    kinesis: KinesisClient,
    queue_url: str,
    message: Mapping[str, Any],
    invoke: Invoke | None,
    region: str,
    horizon: timedelta,
    now: datetime,
) -> ReplayResult:
    try:
        batch = parse_failure(message)
    except ValueError as exc:
        return ReplayResult(str(message.get("MessageId", "")), status="not a failure record", detail=str(exc))
    result = ReplayResult(
        batch.message_id, batch.shard_id, batch.start_sequence, batch.end_sequence, expected=batch.batch_size
    )
    if batch.first_arrival is not None and now - batch.first_arrival > horizon:
        result.warnings.append(
            f"older than the dedupe horizon ({horizon}): events below a high-water mark later records moved "
            "count as duplicates and stay unmetered"
        )
    records = read_range(kinesis, batch, region)
    result.found = len(records)
    if invoke is None:
        result.status = "dry run"
        if result.found < result.expected:
            result.warnings.append(f"only {result.found} of {result.expected} records are still in the stream")
        return result
    stored = 0  # records confirmed stored, from the range's start
    for event in payloads(records):
        result.invocations += 1
        try:
            failed = failed_sequence_numbers(invoke(event), event["Records"])
        except ReplayError as exc:
            failed, result.detail = None, str(exc)
        if failed is None or failed:
            # As the mapping would, count everything from the lowest failure on as not stored; the next run
            # replays the whole range again (what was stored counts once).
            sequences = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
            stored += sequences.index(min(failed, key=int)) if failed else 0
            result.failed_records = result.found - stored
            result.status = "failed"
            result.detail = result.detail or (
                "the consumer's answer was not a batch response"
                if failed is None
                else "the consumer reported records it could not store (is the store reachable?)"
            )
            return result
        stored += len(event["Records"])
    if result.found < result.expected:
        result.status = "incomplete"
        result.detail = (
            f"{result.expected - result.found} of {result.expected} records are past the stream's retention: "
            "metered what is left; the failure record stays for a person to remove"
        )
        return result
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=batch.receipt_handle)
    result.status = "replayed"
    return result

"""`meter quarantine list|replay`: what the consumer quarantined, and putting records back once their cause is fixed.

The consumer quarantines a record it cannot meter (see shared/adapters/quarantine.py) with its raw bytes, the
reason, shard, sequence number and partition key. Some causes are fixed after the fact: a producer sent for a
tenant the registry did not know yet (`unknown_tenant`) and the tenant has been added since. Until such records
are metered, that usage is missing from the tenant's totals, quotas and bill.

``replay`` puts the chosen reasons' records back on the stream as they were (the same bytes and partition key,
one plain Kinesis record each, PutRecords in calls of at most 500 records and 5 MiB), and removes a record from
the quarantine only once Kinesis has accepted it; anything else stays where it was. The consumer then meters
them like any other record, alerts and cut-offs included: a record still bad is quarantined again (nothing is
lost), and exactly once holds as for a producer's retry: a run that dies between the put and the removal puts
the record again next time, and the second copy is a duplicate by its event id (within the dedupe horizon,
24 h by default, of the first copy's metering); so does a record Kinesis took but the quarantine would not
let go of (reported as such). Records are never edited: a copy SQS truncated (over 180 KiB),
or one whose bytes no longer match their SHA-256, is reported and left alone.

``list`` reads without changing anything (an SQS queue's messages are hidden for ``PEEK_VISIBILITY_S`` while
they are read, then made visible again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from shared.adapters.quarantine import parse_quarantine_url

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

PUT_RECORDS: Final = 500  # Kinesis PutRecords: at most 500 records ...
PUT_BYTES: Final = 5 * 1024 * 1024  # ... and 5 MiB (data plus partition keys) per call
PUT_ATTEMPTS: Final = 5  # per record, for throttled or failed entries, with backoff
PEEK_VISIBILITY_S: Final = 30
REPLAY_VISIBILITY_S: Final = 300  # hides the messages one run works on from a concurrent run


@dataclass(frozen=True, slots=True)
class Held:
    """One quarantined record as stored, read back. ``data`` is None when it cannot be replayed (``problem`` says
    why)."""

    ref: str  # where it is: the S3 key or the SQS message id
    handle: str  # what removes it: the S3 key or the SQS receipt handle
    reason: str
    shard_id: str
    sequence_number: str
    partition_key: str
    arrived_at: str
    detail: str
    length: int
    data: bytes | None
    problem: str = ""


def read_document(body: str | bytes, *, ref: str, handle: str) -> Held:
    """A quarantine document (``shared.adapters.quarantine.record_document``); ValueError names what is wrong."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    for name in ("reason", "data_base64", "sha256"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise ValueError(f"{name} is missing")
    length = doc.get("length")
    if type(length) is not int or length < 0:
        raise ValueError("length is missing")
    try:
        data = base64.b64decode(doc["data_base64"], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("data_base64 is not base64") from None
    problem = ""
    if doc.get("truncated"):
        problem = f"a truncated copy ({len(data)} of {length} bytes): the record cannot be rebuilt"
    elif len(data) != length or hashlib.sha256(data).hexdigest() != doc["sha256"]:
        problem = "its bytes do not match their length and sha256"
    elif not isinstance(doc.get("partition_key"), str) or not doc["partition_key"]:
        problem = "it has no partition key"
    detail = doc.get("detail")
    return Held(
        ref=ref,
        handle=handle,
        reason=doc["reason"],
        shard_id=str(doc.get("shard_id") or ""),
        sequence_number=str(doc.get("sequence_number") or ""),
        partition_key=str(doc.get("partition_key") or ""),
        arrived_at=str(doc.get("arrived_at") or ""),
        detail=json.dumps(detail, sort_keys=True) if isinstance(detail, dict) else str(detail or ""),
        length=length,
        data=None if problem else data,
        problem=problem,
    )


class Source(Protocol):
    """Where the consumer quarantines: records read one at a time, removed one at a time."""

    def records(self, reasons: frozenset[str] | None, limit: int, *, hold_s: int) -> Iterator[Held | Unreadable]: ...

    def remove(self, held: Held) -> None: ...

    def close(self) -> None:
        """Make whatever was read and not removed visible again (SQS)."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Something in the quarantine that is not a quarantine document: reported, never removed."""

    ref: str
    problem: str


class S3Source:
    """``s3://bucket/prefix``: one object per record under ``prefix/reason=<reason>/``."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _prefixes(self, reasons: frozenset[str] | None) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        return [f"{base}reason={r}/" for r in sorted(reasons)] if reasons else [base]

    def records(self, reasons: frozenset[str] | None, limit: int, *, hold_s: int) -> Iterator[Held | Unreadable]:
        count = 0
        for prefix in self._prefixes(reasons):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if count >= limit:
                        return
                    count += 1
                    key = obj["Key"]
                    body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    try:
                        yield read_document(body, ref=key, handle=key)
                    except ValueError as exc:
                        yield Unreadable(key, str(exc))

    def remove(self, held: Held) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=held.handle)

    def close(self) -> None:
        pass


class SqsSource:
    """An SQS queue of quarantine documents (reason also a message attribute). Messages read are hidden for
    ``hold_s`` so one pass sees each once; those not removed are made visible again by ``close``."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url
        self._held: dict[str, str] = {}  # message id -> receipt handle, read and not removed

    def records(self, reasons: frozenset[str] | None, limit: int, *, hold_s: int) -> Iterator[Held | Unreadable]:
        seen: set[str] = set()
        count = 0
        while count < limit:
            messages = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=hold_s,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                return
            for message in fresh:
                message_id, handle = message["MessageId"], message["ReceiptHandle"]
                seen.add(message_id)
                self._held[message_id] = handle
                attribute = message.get("MessageAttributes", {}).get("reason")
                reason = attribute.get("StringValue") if attribute else None
                if reasons is not None and reason not in reasons:
                    continue
                if count >= limit:
                    continue  # (read in the same receive: released by close)
                count += 1
                try:
                    yield read_document(message["Body"], ref=message_id, handle=handle)
                except ValueError as exc:
                    yield Unreadable(message_id, str(exc))

    def remove(self, held: Held) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=held.handle)
        self._held.pop(held.ref, None)

    def close(self) -> None:
        for handle in self._held.values():
            self.client.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        self._held.clear()


def source_for(url: str, *, s3: Callable[[], S3Client], sqs: Callable[[], SQSClient]) -> Source:
    """The quarantine at ``url`` (TM_QUARANTINE_URL's forms); ValueError for anything else."""
    kind, where, prefix = parse_quarantine_url(url)
    return S3Source(s3(), where, prefix) if kind == "s3" else SqsSource(sqs(), where)


@dataclass
class Listing:
    by_reason: Counter[str] = field(default_factory=Counter)
    records: list[Held] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)


def list_records(source: Source, reasons: frozenset[str] | None, limit: int) -> Listing:
    listing = Listing()
    try:
        for item in source.records(reasons, limit, hold_s=PEEK_VISIBILITY_S):
            if isinstance(item, Unreadable):
                listing.unreadable.append(item)
            else:
                listing.by_reason[item.reason] += 1
                listing.records.append(item)
    finally:
        source.close()
    return listing


@dataclass
class ReplayReport:
    replayed: list[Held] = field(default_factory=list)  # accepted by Kinesis and removed from the quarantine
    left: list[tuple[str, str]] = field(default_factory=list)  # (ref, why) of records left where they were
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.left


def replay(
    source: Source,
    kinesis: KinesisClient | None,
    stream_name: str,
    reasons: frozenset[str],
    *,
    limit: int,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayReport:
    """Put up to ``limit`` quarantined records of ``reasons`` back on the stream and remove each one Kinesis
    accepted. ``kinesis`` None: a dry run that says what it would put and changes nothing."""
    report = ReplayReport(dry_run=kinesis is None)
    try:
        chunk: list[Held] = []
        size = 0
        for item in source.records(reasons, limit, hold_s=REPLAY_VISIBILITY_S):
            if isinstance(item, Unreadable):
                report.left.append((item.ref, f"not a quarantine document: {item.problem}"))
                continue
            if item.data is None:
                report.left.append((item.ref, item.problem))
                continue
            if kinesis is None:
                report.replayed.append(item)
                continue
            cost = len(item.data) + len(item.partition_key.encode())
            if chunk and (len(chunk) == PUT_RECORDS or size + cost > PUT_BYTES):
                _put(source, kinesis, stream_name, chunk, report, sleep)
                chunk, size = [], 0
            chunk.append(item)
            size += cost
        if chunk and kinesis is not None:
            _put(source, kinesis, stream_name, chunk, report, sleep)
    finally:
        source.close()
    return report


def _put(
    source: Source,
    kinesis: KinesisClient,
    stream_name: str,
    chunk: Sequence[Held],
    report: ReplayReport,
    sleep: Callable[[float], None],
) -> None:
    """PutRecords, resending the entries Kinesis refused (throttling) with backoff; each accepted record is
    removed from the quarantine, each still refused after PUT_ATTEMPTS is left there with the error."""
    pending = list(chunk)
    errors: dict[str, str] = {}
    for attempt in range(PUT_ATTEMPTS):
        if attempt:
            sleep(min(2.0, 0.1 * 2**attempt))
        try:
            answer = kinesis.put_records(
                StreamName=stream_name,
                Records=[{"Data": h.data or b"", "PartitionKey": h.partition_key} for h in pending],
            )
        except Exception as exc:  # the call itself failed: every pending record is refused this time
            errors = {h.ref: f"PutRecords failed: {exc}" for h in pending}
            continue
        refused = []
        for held, entry in zip(pending, answer["Records"], strict=True):
            if entry.get("ErrorCode"):
                refused.append(held)
                errors[held.ref] = f"{entry['ErrorCode']}: {entry.get('ErrorMessage', '')}".strip(": ")
            else:
                try:
                    source.remove(held)
                except Exception as exc:  # on the stream, still in the quarantine: a second replay is a duplicate
                    report.left.append((held.ref, f"put back on the stream but not removed from the quarantine: {exc}"))
                    continue
                report.replayed.append(held)
        pending = refused
        if not pending:
            return
    report.left += [(h.ref, f"not accepted by Kinesis after {PUT_ATTEMPTS} attempts: {errors[h.ref]}") for h in pending]

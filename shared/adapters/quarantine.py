"""Quarantine sinks: where records the consumer cannot meter go, with the raw bytes and the reason.

``TM_QUARANTINE_URL`` picks one: an SQS queue URL (``https://sqs...``) gives SqsQuarantine (SendMessageBatch,
10 per call, the raw bytes base64 in a JSON body, reason and position as message attributes; messages are
at most 256 KB, and a user record is at most 1 MiB, so a larger one goes in as a truncated copy flagged
``truncated`` with its length and SHA-256); ``s3://bucket/prefix`` gives S3Quarantine (one object per record
under ``prefix/reason=.../shard/sequence-sub.json``: a deterministic key, so a redelivered record overwrites
its own copy instead of adding one).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from shared.ports import QuarantinedRecord, QuarantineSink
from shared.schema import format_timestamp

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

SQS_MAX_DATA = 180 * 1024  # base64 grows 4/3: stay under SQS's 256 KiB message limit with the envelope


class QuarantineError(RuntimeError):
    """Some quarantined records could not be written; the consumer retries them."""


def record_document(record: QuarantinedRecord, *, max_data: int | None = None) -> dict[str, Any]:
    data = record.data
    doc: dict[str, Any] = {
        "reason": record.reason,
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "sub_sequence_number": record.sub_sequence_number,
        "partition_key": record.partition_key,
        "arrived_at": format_timestamp(record.arrived_at) if record.arrived_at else None,
        "detail": record.detail,
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if max_data is not None and len(data) > max_data:
        data = data[:max_data]
        doc["truncated"] = True
    doc["data_base64"] = base64.b64encode(data).decode()
    return doc


def record_name(record: QuarantinedRecord) -> str:
    sub = "" if record.sub_sequence_number is None else f"-{record.sub_sequence_number}"
    return f"{record.shard_id}/{record.sequence_number or 'noseq-' + hashlib.sha256(record.data).hexdigest()[:16]}{sub}"


class SqsQuarantine:
    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def quarantine(self, records: Sequence[QuarantinedRecord]) -> None:
        failed: list[str] = []
        for chunk in _sqs_batches(records):
            entries: list[Any] = [
                {
                    "Id": str(i),
                    "MessageBody": body,
                    "MessageAttributes": {
                        "reason": {"DataType": "String", "StringValue": r.reason},
                        "record": {"DataType": "String", "StringValue": record_name(r)},
                    },
                }
                for i, (r, body) in enumerate(chunk)
            ]
            answer = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            failed.extend(
                f"{chunk[int(f['Id'])][0].sequence_number}: {f.get('Code')}" for f in answer.get("Failed", [])
            )
        if failed:
            raise QuarantineError(f"{len(failed)} quarantined records not sent to SQS: {'; '.join(failed[:5])}")


# SendMessageBatch caps the SUM of a batch's messages at the single-message limit (256 KiB), as well as 10
# entries: batches are cut by both, with room left for the attributes.
SQS_BATCH_BYTES: Final = 256 * 1024 - 8 * 1024


def _sqs_batches(records: Sequence[QuarantinedRecord]) -> list[list[tuple[QuarantinedRecord, str]]]:
    batches: list[list[tuple[QuarantinedRecord, str]]] = []
    size = 0
    for record in records:
        body = json.dumps(record_document(record, max_data=SQS_MAX_DATA), separators=(",", ":"))
        cost = len(body.encode()) + 512  # the body plus its two attributes, generously
        if not batches or len(batches[-1]) == 10 or size + cost > SQS_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append((record, body))
        size += cost
    return batches


class S3Quarantine:
    def __init__(self, bucket: str, prefix: str, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def key_for(self, record: QuarantinedRecord) -> str:
        name = f"reason={record.reason}/{record_name(record)}.json"
        return f"{self.prefix}/{name}" if self.prefix else name

    def quarantine(self, records: Sequence[QuarantinedRecord]) -> None:
        for record in records:
            body = json.dumps(record_document(record), separators=(",", ":")).encode()
            self.client.put_object(
                Bucket=self.bucket, Key=self.key_for(record), Body=body, ContentType="application/json"
            )


def parse_quarantine_url(url: str) -> tuple[str, str, str]:
    """``("s3", bucket, prefix)`` for ``s3://bucket/prefix``, ``("sqs", url, "")`` for an SQS queue URL;
    ValueError for anything else."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise ValueError(f"quarantine URL {url!r} names no bucket")
        return "s3", bucket, prefix
    if url.startswith(("https://", "http://")):
        return "sqs", url, ""
    raise ValueError(f"quarantine URL must be an SQS queue URL or s3://bucket/prefix, got {url[:40]!r}")


def build_quarantine(
    url: str, *, sqs_client: SQSClient | None = None, s3_client: S3Client | None = None
) -> QuarantineSink:
    """An SQS queue URL or ``s3://bucket/prefix``."""
    kind, where, prefix = parse_quarantine_url(url)
    if kind == "s3":
        return S3Quarantine(where, prefix, s3_client)
    return SqsQuarantine(where, sqs_client)

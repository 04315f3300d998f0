"""From a Lambda Kinesis event to user records: deaggregation of KPL aggregates and plain records.

aws-kinesis-agg's ``deaggregate_records`` prints and swallows some errors, so a malformed record can vanish
(FACTS.md). We use its wire definitions (``messages_pb2.AggregatedRecord``, ``MAGIC``) but split aggregates
ourselves, so every outcome is explicit: each Kinesis record yields its user records, or is quarantined
with a reason. Nothing vanishes.

Like the KPL, a record that starts with the magic bytes but whose MD5 does not match is a *plain* record
(aws-kinesis-agg yields it unchanged); it will then fail JSON decoding and be quarantined as ``not_json``.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

# aws-kinesis-agg's generated messages_pb2 does `import config_pb2`, which resolves only once one of its own
# modules has put the package folder on sys.path: import the deaggregator first, as the library expects.
import aws_kinesis_agg.deaggregator  # noqa: F401  isort: skip
from aws_kinesis_agg import MAGIC, messages_pb2  # isort: skip
from google.protobuf.message import DecodeError
from pybase64 import b64decode  # SIMD base64: a third of binascii's time on a 600-byte record

from shared.ports import QuarantinedRecord, StreamPosition

_DIGEST_SIZE: Final = 16
MAX_SEQUENCE_DIGITS: Final = 64
SUB_ZERO: Final = "0" * 10  # a plain record's sub-sequence number, as StreamPosition.padded writes it
PAD: Final = tuple("0" * (MAX_SEQUENCE_DIGITS - n) for n in range(MAX_SEQUENCE_DIGITS + 1))  # left zeros by length


class Reason:
    """Quarantine reason codes: a small fixed set, so they can be a metric dimension."""

    BAD_LAMBDA_RECORD = "bad_lambda_record"
    KPL_MALFORMED = "kpl_malformed"
    KPL_BAD_INDEX = "kpl_bad_index"
    NOT_JSON = "not_json"
    OVERSIZED = "oversized"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    MISSING_TENANT = "missing_tenant"
    INVALID_TENANT = "invalid_tenant"
    UNKNOWN_TENANT = "unknown_tenant"
    NEGATIVE_TOKENS = "negative_tokens"
    INVALID_FIELD = "invalid_field"


REASONS: Final = frozenset(value for name, value in vars(Reason).items() if name.isupper())


class UserRecord(NamedTuple):
    """One user record (an aggregate's sub-record, or a plain Kinesis record). A tuple, not a dataclass: a
    batch makes ten thousand of them. ``record_key`` is the Kinesis record's partition key (an aggregate's),
    the unit of ordering with the shard; ``partition_key`` is the user record's own."""

    data: bytes
    shard_id: str
    record_key: str
    sequence_number: str  # what batchItemFailures reports (``item_id``)
    sub_sequence_number: int
    partition_key: str
    arrived_at: float
    stream_key: str  # StreamPosition.stream_key: ``shard|record key``, the high-water mark's key
    padded: str  # StreamPosition.padded: the position as a fixed-width string that sorts like the order

    @property
    def item_id(self) -> str:
        return self.sequence_number

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.shard_id, self.record_key, self.sequence_number, self.sub_sequence_number)


_make_user: Final = UserRecord._make


def plain_user(data: bytes, shard: str, pk: str, seq: str, arrived: float) -> UserRecord:
    """The user record of a plain (not aggregated) Kinesis record: the record itself, sub-sequence 0."""
    return _make_user((data, shard, pk, seq, 0, pk, arrived, f"{shard}|{pk}", f"{PAD[len(seq)]}{seq}{SUB_ZERO}"))


@dataclass(frozen=True, slots=True)
class Split:
    records: list[UserRecord]
    quarantined: list[QuarantinedRecord]
    item_ids: list[str]  # every Kinesis record's sequence number, in order
    oldest_arrival: float | None


def shard_of(record: Mapping[str, Any]) -> str:
    """``eventID`` is ``shardId-000000000006:<sequence number>``."""
    event_id = record.get("eventID", "")
    return event_id.split(":", 1)[0] if isinstance(event_id, str) and ":" in event_id else "unknown-shard"


def _arrival(value: object) -> float:
    if type(value) is float:
        return value
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def split_records(records: Iterable[Mapping[str, Any]]) -> Split:
    out: list[UserRecord] = []
    bad: list[QuarantinedRecord] = []
    item_ids: list[str] = []
    oldest: float | None = None
    for record in records:
        kinesis = None
        shard = "unknown-shard"
        # dict first: it short-circuits the ABC check, which alone costs more than a plain record's split
        if isinstance(record, (dict, Mapping)):  # a Lambda event is JSON: a record may be anything
            kinesis = record.get("kinesis")
            shard = shard_of(record)
        if not isinstance(kinesis, (dict, Mapping)):
            bad.append(_bad_lambda_record(record, shard, "", "record has no 'kinesis' object"))
            continue
        seq = kinesis.get("sequenceNumber")
        if not isinstance(seq, str) or not seq.isdigit() or not seq.isascii():
            bad.append(_bad_lambda_record(record, shard, "", "missing or non-numeric sequenceNumber"))
            continue
        if len(seq) > MAX_SEQUENCE_DIGITS:  # Kinesis issues 56; high-water marks hold 64 (fixed width)
            bad.append(
                _bad_lambda_record(record, shard, "", f"sequenceNumber longer than {MAX_SEQUENCE_DIGITS} digits")
            )
            continue
        item_ids.append(seq)
        pk = kinesis.get("partitionKey")
        arrived = kinesis.get("approximateArrivalTimestamp")
        if type(arrived) is not float:
            arrived = _arrival(arrived)
        if arrived and (oldest is None or arrived < oldest):
            oldest = arrived
        try:
            data = b64decode(kinesis["data"], None, True)  # (validate=True: positional, a third faster)
        except (KeyError, TypeError, binascii.Error, ValueError):
            try:  # pybase64 refuses a few odd paddings binascii's strict mode reads: binascii has the last word
                data = binascii.a2b_base64(kinesis["data"], strict_mode=True)
            except (KeyError, TypeError, binascii.Error, ValueError):
                bad.append(_bad_lambda_record(record, shard, seq, "missing or invalid base64 'data'"))
                continue
        if not isinstance(pk, str):
            bad.append(_bad_lambda_record(record, shard, seq, "missing partitionKey"))
            continue
        if data.startswith(MAGIC) and len(data) > 4 + _DIGEST_SIZE:
            body, digest = data[4:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
            if hashlib.md5(body).digest() == digest:  # noqa: S324 - the KPL wire format's checksum
                _split_aggregate(body, data, shard, pk, seq, arrived, out, bad)
                continue
        out.append(plain_user(data, shard, pk, seq, arrived))
    return Split(out, bad, item_ids, oldest)


def _split_aggregate(
    body: bytes,
    raw: bytes,
    shard: str,
    pk: str,
    seq: str,
    arrived: float,
    out: list[UserRecord],
    bad: list[QuarantinedRecord],
) -> None:
    agg = messages_pb2.AggregatedRecord()
    try:
        agg.ParseFromString(body)
    except DecodeError as exc:
        bad.append(_quarantine(raw, Reason.KPL_MALFORMED, shard, seq, None, pk, arrived, {"error": str(exc)[:200]}))
        return
    keys = list(agg.partition_key_table)
    stream_key = f"{shard}|{pk}"
    padded = f"{seq:0>64}"
    for sub, user in enumerate(agg.records):
        if not 0 <= user.partition_key_index < len(keys):
            bad.append(
                _quarantine(
                    user.data,
                    Reason.KPL_BAD_INDEX,
                    shard,
                    seq,
                    sub,
                    pk,
                    arrived,
                    {"error": f"partition_key_index {user.partition_key_index} of {len(keys)}"},
                )
            )
            continue
        out.append(
            UserRecord(
                user.data,
                shard,
                pk,
                seq,
                sub,
                keys[user.partition_key_index],
                arrived,
                stream_key,
                f"{padded}{sub:010d}",
            )
        )


def _quarantine(
    data: bytes,
    reason: str,
    shard: str,
    seq: str,
    sub: int | None,
    pk: str,
    arrived: float,
    detail: dict[str, str],
) -> QuarantinedRecord:
    return QuarantinedRecord(
        data=data,
        reason=reason,
        shard_id=shard,
        sequence_number=seq,
        sub_sequence_number=sub,
        partition_key=pk,
        arrived_at=datetime.fromtimestamp(arrived, UTC) if arrived else None,
        detail=detail,
    )


def _bad_lambda_record(record: object, shard: str, seq: str, why: str) -> QuarantinedRecord:
    try:
        raw = json.dumps(record, default=str, sort_keys=True).encode()
    except (TypeError, ValueError):
        raw = repr(record).encode()
    return _quarantine(raw, Reason.BAD_LAMBDA_RECORD, shard, seq, None, "", 0.0, {"error": why})

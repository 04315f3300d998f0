"""Deaggregation: KPL aggregates and plain records become user records; nothing vanishes."""

from __future__ import annotations

import base64
import binascii
import hashlib
from types import MappingProxyType
from typing import Any

from aws_kinesis_agg import MAGIC
from aws_kinesis_agg.deaggregator import deaggregate_records
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.metering.records import Reason, split_records
from shared.schema import decode_event
from tests.unit.consumer.kinesis import Shard, usage


def test_plain_records_pass_through_with_their_position() -> None:
    shard = Shard()
    events = [usage("acme"), usage("globex")]
    recs = [shard.plain(e) for e in events]
    split = split_records(recs)
    assert [decode_event(r.data) for r in split.records] == events
    assert [r.item_id for r in split.records] == [r["kinesis"]["sequenceNumber"] for r in recs]
    assert split.records[0].position.shard_id == "shardId-000000000000"
    assert split.records[1].position.partition_key == "globex"
    assert split.quarantined == []
    assert split.oldest_arrival == recs[0]["kinesis"]["approximateArrivalTimestamp"]


def test_aggregates_split_like_aws_kinesis_agg_and_keep_sub_sequence_order() -> None:
    # GIVEN one KPL aggregate of 50 events from three tenants, and a plain record
    shard = Shard()
    events = [usage(t) for t in ("acme", "globex", "initech") * 10 + ("acme",) * 20]
    agg = shard.aggregate(events)
    plain = shard.plain(usage("acme"))
    # WHEN split
    split = split_records([*agg, plain])
    # THEN the user records are the events, in order, like aws-kinesis-agg's own deaggregation
    assert len(agg) == 1
    assert [decode_event(r.data) for r in split.records[:-1]] == events
    theirs = deaggregate_records(agg)
    assert [base64.b64decode(r["kinesis"]["data"]) for r in theirs] == [r.data for r in split.records[:-1]]
    assert [r.partition_key for r in split.records[:-1]] == [e.tenant_id for e in events]
    subs = [r.position.sub_sequence_number for r in split.records[:-1]]
    assert subs == list(range(50))
    # The high-water unit is the Kinesis record's key (the aggregate's), not each sub-record's.
    assert {r.position.partition_key for r in split.records[:-1]} == {"acme"}
    assert {r.item_id for r in split.records[:-1]} == {agg[0]["kinesis"]["sequenceNumber"]}


def _raw_record(shard: Shard, data: bytes) -> dict:  # type: ignore[type-arg]
    return shard.record(data, "acme")


def test_a_truncated_aggregate_is_quarantined_not_dropped(capsys) -> None:  # type: ignore[no-untyped-def]
    # GIVEN an aggregate whose protobuf body is cut short but whose checksum matches the cut body
    shard = Shard()
    (good,) = shard.aggregate([usage(), usage()])
    data = base64.b64decode(good["kinesis"]["data"])
    body = data[4:-16][:-7]
    bad = MAGIC + body + hashlib.md5(body).digest()
    rec = _raw_record(shard, bad)
    # WHEN split
    split = split_records([rec])
    # THEN it is quarantined with a reason and its position
    assert split.records == []
    (q,) = split.quarantined
    assert q.reason == Reason.KPL_MALFORMED
    assert q.sequence_number == rec["kinesis"]["sequenceNumber"]
    assert q.data == bad


def test_aws_kinesis_agg_drops_a_record_we_quarantine(capsys) -> None:  # type: ignore[no-untyped-def]
    # The library prints and carries on when a field is missing (FACTS.md): we keep the record.
    shard = Shard()
    (agg,) = shard.aggregate([usage()])
    del agg["kinesis"]["kinesisSchemaVersion"]
    assert deaggregate_records([agg]) == []
    assert "ERROR" in capsys.readouterr().err
    split = split_records([agg])
    assert len(split.records) == 1


def test_an_aggregate_with_a_bad_checksum_is_treated_as_plain_like_the_kpl() -> None:
    shard = Shard()
    (agg,) = shard.aggregate([usage()])
    data = bytearray(base64.b64decode(agg["kinesis"]["data"]))
    data[-1] ^= 0xFF
    split = split_records([_raw_record(shard, bytes(data))])
    (rec,) = split.records
    assert rec.data == bytes(data)  # and validation will quarantine it as not_json


def test_malformed_lambda_records_are_quarantined() -> None:
    shard = Shard()
    no_data = shard.plain(usage())
    del no_data["kinesis"]["data"]
    bad_b64 = shard.plain(usage())
    bad_b64["kinesis"]["data"] = "!!!not base64!!!"
    no_seq = shard.plain(usage())
    del no_seq["kinesis"]["sequenceNumber"]
    split = split_records([no_data, bad_b64, no_seq, {"nokinesis": 1}])
    assert [q.reason for q in split.quarantined] == [Reason.BAD_LAMBDA_RECORD] * 4
    assert [q.sequence_number for q in split.quarantined] == [
        no_data["kinesis"]["sequenceNumber"],
        bad_b64["kinesis"]["sequenceNumber"],
        "",
        "",
    ]
    assert split.records == []
    assert split.item_ids == [no_data["kinesis"]["sequenceNumber"], bad_b64["kinesis"]["sequenceNumber"]]


def test_a_sequence_number_wider_than_the_high_water_marks_is_quarantined() -> None:
    shard = Shard()
    record = shard.plain(usage())
    record["kinesis"]["sequenceNumber"] = "9" * 65
    split = split_records([record])
    assert split.records == [] and [q.reason for q in split.quarantined] == [Reason.BAD_LAMBDA_RECORD]
    assert "64 digits" in split.quarantined[0].detail["error"]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ABCDab01+/=\n -_", max_size=24))
def test_base64_data_is_read_exactly_as_strict_binascii_reads_it(text: str) -> None:
    # The fast base64 decoder must neither accept nor refuse what binascii's strict mode would not.
    shard = Shard()
    record = shard.record(b"", "acme")
    record["kinesis"]["data"] = text
    split = split_records([record])
    try:
        want: bytes | None = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        want = None
    if want is None:
        assert split.records == [] and [q.reason for q in split.quarantined] == [Reason.BAD_LAMBDA_RECORD]
    else:
        assert [r.data for r in split.records] == [want] and split.quarantined == []


def _as_mapping(record: Any) -> Any:
    """The same record as a read-only Mapping that is not a dict: it takes the careful path."""
    if not isinstance(record, dict):
        return record
    inner = record.get("kinesis")
    return MappingProxyType({**record, "kinesis": MappingProxyType(inner) if isinstance(inner, dict) else inner})


_REMOVE = object()
FIELD_VALUES = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(["", "123", "9" * 65, "12a", "١٢٣", "shardId-000000000001:77", "nocolon", "acme#3"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "kinesis.sequenceNumber",
                "kinesis.partitionKey",
                "kinesis.approximateArrivalTimestamp",
                "kinesis.data",
                "eventID",
                "kinesis",
            ]
        ),
        FIELD_VALUES,
        max_size=3,
    ),
    st.sets(st.sampled_from(["kinesis.sequenceNumber", "kinesis.partitionKey", "kinesis.data", "eventID"]), max_size=2),
)
def test_the_fast_path_splits_exactly_as_the_careful_path(changes: dict[str, Any], removed: set[str]) -> None:
    # GIVEN a plain record with some fields changed or removed
    record = Shard().plain(usage("acme"))
    for path, value in [*changes.items(), *((p, _REMOVE) for p in removed)]:
        owner, _, name = path.rpartition(".")
        target = record.get("kinesis") if owner else record
        if isinstance(target, dict):
            if value is _REMOVE:
                target.pop(name, None)
            else:
                target[name] = value
    # WHEN split as a dict (the fast path, when it applies) and as another Mapping (the careful path)
    fast, careful = split_records([record]), split_records([_as_mapping(record)])
    # THEN both say the same
    assert fast.records == careful.records
    assert [(q.reason, q.sequence_number, q.detail) for q in fast.quarantined] == [
        (q.reason, q.sequence_number, q.detail) for q in careful.quarantined
    ]
    assert (fast.item_ids, fast.oldest_arrival) == (careful.item_ids, careful.oldest_arrival)

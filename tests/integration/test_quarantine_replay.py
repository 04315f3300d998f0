"""`meter quarantine list|replay` against moto's server (SQS, S3, Kinesis over HTTP) and real Redis: a record
quarantined for an unknown tenant is metered exactly once after the tenant is added and the record replayed."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.metering import bootstrap as boot
from consumers.metering.handler import lambda_handler
from consumers.metering.records import Reason
from shared.adapters.quarantine import S3Quarantine
from shared.adapters.redis_store import RedisStore
from shared.ports import QuarantinedRecord
from shared.schema import encode_event
from shared.settings import resource_names
from shared.windows import DAY
from tenantmeter_cli.local.esm import lambda_record
from tenantmeter_cli.main import main
from tenantmeter_cli.quarantine import S3Source, SqsSource, list_records, replay
from tests.integration.conftest import TENANTS_TOML, AwsFactory
from tests.unit.consumer.kinesis import Shard, lambda_event, usage

pytestmark = pytest.mark.integration

STREAM = resource_names()["stream"]


def stream_records(aws: AwsFactory) -> list[dict[str, Any]]:
    """Everything on the (one-shard) stream, Lambda-shaped."""
    kinesis = aws("kinesis")
    description = kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]
    shard = description["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    page = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=10_000)
    return [lambda_record(r, shard, description["StreamARN"], "us-east-1") for r in page["Records"]]


def queued(aws: AwsFactory, queue_url: str) -> list[dict[str, Any]]:
    messages = aws("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_an_unknown_tenants_usage_is_metered_once_after_the_tenant_is_added_and_replayed(
    environment: dict[str, str], aws: AwsFactory, redis_client: Any
) -> None:
    # GIVEN the consumer quarantined a new tenant's events (the registry did not know it yet) and a poison record
    now = datetime.now(UTC)
    shard = Shard(arrival=now)
    events = [usage("initech", at=now, tokens=(1200, 300, 0, 0)), usage("initech", at=now, tokens=(800, 100, 0, 0))]
    batch = [shard.plain(e) for e in events] + [shard.record(b"not json", "acme")]
    assert lambda_handler(lambda_event(batch), None) == {"batchItemFailures": []}
    queue = environment["TM_QUARANTINE_URL"]
    assert sorted(d["reason"] for d in queued(aws, queue)) == [
        Reason.NOT_JSON,
        Reason.UNKNOWN_TENANT,
        Reason.UNKNOWN_TENANT,
    ]
    # ... and then the tenant was added to the registry
    aws("s3").put_object(
        Bucket=resource_names()["config_bucket"],
        Key="tenants.toml",
        Body=(TENANTS_TOML + '\n[[tenants]]\nid = "initech"\ntier = "standard"\n').encode(),
    )
    boot.reset_container()
    aws("kinesis").create_stream(StreamName=STREAM, ShardCount=1)

    # WHEN the operator lists the quarantine, then replays the unknown-tenant records
    listing = list_records(SqsSource(aws("sqs"), queue), None, 100)
    assert dict(listing.by_reason) == {Reason.UNKNOWN_TENANT: 2, Reason.NOT_JSON: 1}
    report = replay(SqsSource(aws("sqs"), queue), aws("kinesis"), STREAM, frozenset({Reason.UNKNOWN_TENANT}), limit=100)

    # THEN both are back on the stream, byte for byte, and only the poison record is left in the quarantine
    assert report.ok and len(report.replayed) == 2
    replayed = stream_records(aws)
    assert sorted(r["kinesis"]["data"] for r in replayed) == sorted(r["kinesis"]["data"] for r in batch[:2])
    assert {r["kinesis"]["partitionKey"] for r in replayed} == {"initech"}
    assert [d["reason"] for d in queued(aws, queue)] == [Reason.NOT_JSON]
    # ... and a second run finds nothing more to replay
    again = replay(SqsSource(aws("sqs"), queue), aws("kinesis"), STREAM, frozenset({Reason.UNKNOWN_TENANT}), limit=100)
    assert again.replayed == [] and again.ok

    # WHEN the consumer meters the stream (twice: a redelivery)
    for _ in range(2):
        assert lambda_handler(lambda_event(replayed), None) == {"batchItemFailures": []}
    # THEN the tenant's totals are exactly its two events
    day = RedisStore(redis_client).window_totals("initech", [DAY], now)["day"]
    assert (day.requests, day.input_tokens, day.output_tokens) == (2, 2000, 400)


def test_s3_replay_moves_only_whole_records_of_the_reasons_asked(environment: dict[str, str], aws: AwsFactory) -> None:
    # GIVEN an S3 quarantine holding two unknown-tenant records, a not-JSON one, and two that cannot be rebuilt
    s3 = aws("s3")
    sink = S3Quarantine("quarantine-bucket", "bad", s3)

    def held(data: bytes, reason: str, seq: str) -> QuarantinedRecord:
        return QuarantinedRecord(data, reason, "shardId-000000000000", seq, None, "initech", None, {"field": "x"})

    good = [encode_event(usage("initech")), encode_event(usage("initech"))]
    sink.quarantine(
        [
            held(good[0], Reason.UNKNOWN_TENANT, "101"),
            held(good[1], Reason.UNKNOWN_TENANT, "102"),
            held(b"not json", Reason.NOT_JSON, "103"),
        ]
    )
    tampered = json.loads(
        s3.get_object(Bucket="quarantine-bucket", Key=sink.key_for(held(b"", Reason.UNKNOWN_TENANT, "101")))[
            "Body"
        ].read()
    )
    tampered["data_base64"] = "eHh4"  # "xxx": no longer the bytes its length and sha256 describe
    s3.put_object(
        Bucket="quarantine-bucket",
        Key="bad/reason=unknown_tenant/shardId-000000000000/104.json",
        Body=json.dumps(tampered).encode(),
    )
    s3.put_object(Bucket="quarantine-bucket", Key="bad/reason=unknown_tenant/stray.txt", Body=b"hello")
    aws("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    source = S3Source(s3, "quarantine-bucket", "bad")

    # WHEN a dry run, then a replay of unknown_tenant
    dry = replay(source, None, STREAM, frozenset({Reason.UNKNOWN_TENANT}), limit=100)
    assert len(dry.replayed) == 2 and stream_records(aws) == []
    report = replay(source, aws("kinesis"), STREAM, frozenset({Reason.UNKNOWN_TENANT}), limit=100)

    # THEN the two whole records are on the stream and gone from the quarantine; the rest stay, each with why
    assert sorted(base64.b64decode(r["kinesis"]["data"]) for r in stream_records(aws)) == sorted(good)
    left = dict(report.left)
    assert "do not match" in left["bad/reason=unknown_tenant/shardId-000000000000/104.json"]
    assert "not a quarantine document" in left["bad/reason=unknown_tenant/stray.txt"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="quarantine-bucket", Prefix="bad/")["Contents"])
    assert keys == [
        "bad/reason=not_json/shardId-000000000000/103.json",
        "bad/reason=unknown_tenant/shardId-000000000000/104.json",
        "bad/reason=unknown_tenant/stray.txt",
    ]
    assert not report.ok


def test_the_cli_lists_and_replays(
    environment: dict[str, str], aws: AwsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = Shard()
    assert lambda_handler(lambda_event([shard.plain(usage("initech")), shard.record(b"{", "acme")]), None) == {
        "batchItemFailures": []
    }
    aws("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    capsys.readouterr()  # (the handler's log lines)

    assert main(["quarantine", "list"]) == 0
    assert "unknown_tenant" in capsys.readouterr().out

    assert main(["quarantine", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["by_reason"] == {Reason.UNKNOWN_TENANT: 1, Reason.NOT_JSON: 1}
    assert all(r["problem"] == "" for r in listed["records"])

    assert main(["quarantine", "replay", "--reason", Reason.UNKNOWN_TENANT, "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["stream"] == STREAM and [r["partition_key"] for r in replayed["replayed"]] == ["initech"]
    assert len(stream_records(aws)) == 1

    assert main(["quarantine", "replay", "--reason", Reason.UNKNOWN_TENANT, "--url", "ftp://x"]) == 2
    assert "s3://bucket/prefix" in capsys.readouterr().err
    assert main(["quarantine", "replay", "--reason", "unknown-tenant"]) == 2
    assert "not a quarantine reason; known: bad_lambda_record" in capsys.readouterr().err

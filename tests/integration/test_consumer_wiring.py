"""The consumer as Lambda runs it: settings from the environment, bootstrap building every adapter (Redis by
URL, SNS, SQS or S3 quarantine, tenants from S3 through AWS_ENDPOINT_URL), one handler call per batch."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from consumers.metering.handler import lambda_handler
from consumers.metering.records import Reason
from shared.adapters.redis_store import RedisStore
from shared.windows import DAY
from tests.integration.conftest import AwsFactory
from tests.unit.consumer.kinesis import Shard, lambda_event, usage

pytestmark = pytest.mark.integration


def test_a_batch_through_the_env_built_consumer(environment: dict[str, str], aws: AwsFactory, redis_client) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a batch with good events for two tenants, a KPL aggregate, and two poison records
    now = datetime.now(UTC)
    shard = Shard(arrival=now)
    records = [
        shard.plain(usage("acme", at=now, tags={})),
        *shard.aggregate([usage("globex", at=now), usage("acme", at=now, tags={"applicationId": "batch"})]),
        shard.record(b'{"v": 9}', "acme"),
        shard.plain(usage("stranger", at=now)),
    ]
    # WHEN the handler runs (building everything from the environment)
    assert lambda_handler(lambda_event(records), None) == {"batchItemFailures": []}
    # THEN usage is in Redis with the tenant's default tags as dimensions...
    store = RedisStore(redis_client)
    assert store.window_totals("acme", [DAY], now)["day"].requests == 2
    dims = store.dimension_totals("acme", DAY, now)
    assert set(dims["application_id"]) == {"support-bot", "batch"} and set(dims["cost_center"]) == {"cc-42"}
    # ...and both poison records are in the SQS quarantine with their raw bytes, reason and position
    messages = aws("sqs").receive_message(
        QueueUrl=environment["TM_QUARANTINE_URL"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    docs = sorted((json.loads(m["Body"]) for m in messages), key=lambda d: d["reason"])
    assert [d["reason"] for d in docs] == [Reason.UNKNOWN_SCHEMA_VERSION, Reason.UNKNOWN_TENANT]
    assert base64.b64decode(docs[0]["data_base64"]) == b'{"v": 9}'
    assert docs[0]["sequence_number"] == records[-2]["kinesis"]["sequenceNumber"]
    assert docs[0]["shard_id"] == "shardId-000000000000"


def test_s3_quarantine_writes_one_object_per_record_idempotently(
    environment: dict[str, str], aws: AwsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TM_QUARANTINE_URL", "s3://quarantine-bucket/bad")
    shard = Shard()
    records = [shard.record(b"not json", "acme")]
    for _ in range(2):  # redelivered: the same key, overwritten
        assert lambda_handler(lambda_event(records), None) == {"batchItemFailures": []}
    objects = aws("s3").list_objects_v2(Bucket="quarantine-bucket", Prefix="bad/")["Contents"]
    (obj,) = objects
    assert obj["Key"].startswith("bad/reason=not_json/shardId-000000000000/")
    body = json.loads(aws("s3").get_object(Bucket="quarantine-bucket", Key=obj["Key"])["Body"].read())
    assert base64.b64decode(body["data_base64"]) == b"not json"


def test_the_store_down_reports_every_record(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TM_REDIS_URL", "unix:///nonexistent/redis.sock")
    shard = Shard()
    records = [shard.plain(usage("acme")), shard.plain(usage("globex"))]
    response = lambda_handler(lambda_event(records), None)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["kinesis"]["sequenceNumber"] for r in records
    ]

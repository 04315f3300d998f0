"""The local event-source-mapping runner against moto's Kinesis over HTTP: Lambda's batching and failure rules."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tenantmeter_cli.local.esm import EventSourceMappingRunner, MappingConfig, failed_sequence_numbers
from tenantmeter_cli.local.stack import AwsResources, LocalAws

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def aws() -> Iterator[tuple[LocalAws, AwsResources]]:
    local = LocalAws(prefix="esmtest", shards=2)
    resources = local.start()
    yield local, resources
    local.stop()


@pytest.fixture
def stream(aws: tuple[LocalAws, AwsResources]) -> tuple[Any, str]:
    local, _ = aws
    kinesis = local.client("kinesis")
    name = f"s{len(kinesis.list_streams()['StreamNames'])}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    return kinesis, name


def put(kinesis: Any, stream: str, n: int, key_prefix: str = "t") -> list[str]:
    values = [f"v{i}" for i in range(n)]
    for i, value in enumerate(values):
        kinesis.put_record(StreamName=stream, PartitionKey=f"{key_prefix}{i % 5}", Data=value.encode())
    return values


def values_of(event: dict[str, Any]) -> list[str]:
    return [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]


def test_every_record_delivered_once_in_lambda_shape_and_shard_order(stream: tuple[Any, str]) -> None:
    kinesis, name = stream
    sent = put(kinesis, name, 57)
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert context.function_name
        seen.extend(event["Records"])
        assert len(event["Records"]) <= 10
        return {"batchItemFailures": []}

    runner = EventSourceMappingRunner(
        handler, kinesis=kinesis, stream_name=name, config=MappingConfig(batch_size=10, batching_window_s=0)
    )
    assert runner.drain() == 57
    assert sorted(base64.b64decode(r["kinesis"]["data"]).decode() for r in seen) == sorted(sent)
    record = seen[0]
    assert record["kinesis"]["kinesisSchemaVersion"] == "1.0"
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventID"].startswith("shardId-")
    # per shard, sequence numbers only go up
    by_shard: dict[str, list[int]] = {}
    for r in seen:
        by_shard.setdefault(r["eventID"].split(":")[0], []).append(int(r["kinesis"]["sequenceNumber"]))
    assert all(seqs == sorted(seqs) for seqs in by_shard.values())


def test_partial_failure_redelivers_from_the_lowest_failed_record(stream: tuple[Any, str]) -> None:
    kinesis, name = stream
    put(kinesis, name, 20, key_prefix="same")  # all five keys may land anywhere; fine
    deliveries: list[list[str]] = []
    failed_once: set[str] = set()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        values = values_of(event)
        deliveries.append(values)
        failures = []
        for r, v in zip(event["Records"], values, strict=True):
            if v in ("v3", "v7") and v not in failed_once:
                failed_once.add(v)
                failures.append({"itemIdentifier": r["kinesis"]["sequenceNumber"]})
        return {"batchItemFailures": failures}

    runner = EventSourceMappingRunner(
        handler, kinesis=kinesis, stream_name=name, config=MappingConfig(batch_size=100, batching_window_s=0)
    )
    runner.drain()
    flat = [v for d in deliveries for v in d]
    # v3 and v7 were delivered twice; records before the lowest failure in their batch only once
    assert flat.count("v3") == 2 and flat.count("v7") == 2
    assert runner.stats.partial_failures >= 1
    assert set(flat) == {f"v{i}" for i in range(20)}


def test_errors_bisect_then_go_to_the_failure_destination(
    aws: tuple[LocalAws, AwsResources], stream: tuple[Any, str]
) -> None:
    local, resources = aws
    kinesis, name = stream
    put(kinesis, name, 16)
    sqs = local.client("sqs")
    ok: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        values = values_of(event)
        if "v5" in values:  # a poison record that crashes the handler
            raise RuntimeError("boom")
        ok.extend(values)

    runner = EventSourceMappingRunner(
        handler,
        kinesis=kinesis,
        stream_name=name,
        sqs=sqs,
        failure_queue_url=resources.failure_queue_url,
        config=MappingConfig(batch_size=100, batching_window_s=0, max_retry_attempts=6),
    )
    runner.drain()
    # bisection isolates the poison record; everything else gets through exactly once
    assert sorted(ok) == sorted(f"v{i}" for i in range(16) if i != 5)
    assert runner.stats.bisections > 0
    assert runner.stats.sent_to_failure_destination == 1
    msg = sqs.receive_message(QueueUrl=resources.failure_queue_url)["Messages"][0]
    info = json.loads(msg["Body"])["KinesisBatchInfo"]
    assert info["batchSize"] == 1


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, []),
        ({"batchItemFailures": []}, []),
        ({"batchItemFailures": [{"itemIdentifier": "1"}]}, ["1"]),
        ({"batchItemFailures": [{"itemIdentifier": "999"}]}, None),
        ("nonsense", None),
        ({"batchItemFailures": "x"}, None),
    ],
)
def test_response_parsing_matches_lambda(response: object, expected: list[str] | None) -> None:
    batch = [{"kinesis": {"sequenceNumber": "1"}}, {"kinesis": {"sequenceNumber": "2"}}]
    assert failed_sequence_numbers(response, batch) == expected


def test_bad_mapping_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        MappingConfig(batch_size=0)

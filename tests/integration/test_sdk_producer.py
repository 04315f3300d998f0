"""UsageProducer against a real Kinesis API (moto's server over HTTP on loopback): emit, read the stream back,
deaggregate with aws_kinesis_agg, and check that every event arrived exactly once, on its tenant's shard."""

from __future__ import annotations

import base64
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from botocore.stub import Stubber

from producers.sdk import ProducerConfig, UsageProducer, instrument
from producers.sdk.shards import ShardMap
from shared.schema import UsageEvent, decode_event
from tests.unit.sdk.bedrock_fakes import bedrock_client
from tests.unit.sdk.fakes import make_event

pytestmark = pytest.mark.integration

STREAM = "tenantmeter-usage-events"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def sdk_moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def kinesis(sdk_moto_endpoint: str) -> Any:
    reset = urllib.request.Request(f"{sdk_moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    client = boto3.session.Session().client(
        "kinesis",
        endpoint_url=sdk_moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_stream(StreamName=STREAM, ShardCount=4)
    client.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    return client


def _read_back(client: Any) -> list[tuple[str, str, str, UsageEvent]]:
    """(shard id, record key, user-record key, event) for every user record in the stream."""
    out: list[tuple[str, str, str, UsageEvent]] = []
    for shard in client.list_shards(StreamName=STREAM)["Shards"]:
        shard_id = shard["ShardId"]
        iterator = client.get_shard_iterator(StreamName=STREAM, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                break
            for record in page["Records"]:
                users = list(iter_deaggregate_records([record], data_format="Boto3"))
                # aws_kinesis_agg prints and skips a record it cannot parse (FACTS.md): never let one vanish.
                assert users, f"record {record['SequenceNumber']} deaggregated to nothing"
                for user in users:
                    kinesis = user["kinesis"]
                    assert kinesis.get("aggregated") is True
                    event = decode_event(base64.b64decode(kinesis["data"]))
                    out.append((shard_id, record["PartitionKey"], kinesis["partitionKey"], event))
            iterator = page.get("NextShardIterator")
    return out


def test_every_event_arrives_exactly_once_on_its_tenants_shard(kinesis: Any) -> None:
    # GIVEN a producer on a 4-shard stream (aggregating by shard, the default), one tenant spread over 3 keys
    producer = UsageProducer(
        STREAM, kinesis_client=kinesis, config=ProducerConfig(linger_s=0.05, key_spread={"hot": 3})
    )
    tenants = [f"tenant-{i:02d}" for i in range(20)] + ["hot"] * 10
    events = [make_event(tenants[i % len(tenants)]) for i in range(6000)]

    # WHEN they are emitted and the producer closed
    for event in events:
        producer.emit(event)
    assert producer.close(timeout=60)

    # THEN reading the stream back yields each event exactly once, unchanged
    users = _read_back(kinesis)
    assert Counter(e.event_id for *_, e in users) == Counter(e.event_id for e in events)
    assert {e.event_id: e for *_, e in users} == {e.event_id: e for e in events}
    # AND every user record sits on the shard its own key maps to (as moto's ListShards ranges say), even when
    # it shares a Kinesis record with other tenants
    shard_map = ShardMap.from_shards(kinesis.list_shards(StreamName=STREAM)["Shards"])
    assert all(shard_map.shard_for(user_key) == shard_id for shard_id, _, user_key, _ in users)
    assert all(user_key.split("#")[0] == event.tenant_id for _, _, user_key, event in users)
    assert any(record_key != user_key for _, record_key, user_key, _ in users), "tenants share aggregates"
    assert {k for _, _, k, _ in users if k.startswith("hot")} == {"hot#0", "hot#1", "hot#2"}
    # AND each tenant's events are in the order they were emitted (no failures, so no reordering)
    for tenant in ("tenant-07", "tenant-13"):
        assert [e.event_id for *_, e in users if e.tenant_id == tenant] == [
            e.event_id for e in events if e.tenant_id == tenant
        ]
    # AND aggregation packed many events per Kinesis record
    stats = producer.stats()
    assert stats.sent == 6000 and stats.dropped == 0
    assert stats.records_sent <= 40


def test_the_producer_builds_its_own_client_from_the_environment(
    kinesis: Any, sdk_moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN only the standard AWS environment (as the local stack sets it), no client passed in
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": sdk_moto_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    producer = UsageProducer(STREAM, region_name=REGION, config=ProducerConfig(linger_s=0.05))
    events = [make_event("acme") for _ in range(10)]

    # WHEN events are emitted and flushed
    for event in events:
        producer.emit(event)
    assert producer.flush(timeout=30)
    producer.close(timeout=10)

    # THEN they are in the stream
    assert sorted(e.event_id for *_, e in _read_back(kinesis)) == sorted(e.event_id for e in events)


def test_an_instrumented_bedrock_call_lands_on_the_stream(kinesis: Any) -> None:
    # GIVEN a bedrock-runtime client (Bedrock stubbed) instrumented with a producer writing to the stream
    producer = UsageProducer(STREAM, kinesis_client=kinesis, config=ProducerConfig(linger_s=0.05))
    client = instrument(bedrock_client(), tenant_id="acme", tags={"costCenter": "cc-42"}, producer=producer)
    usage = {"inputTokens": 25, "outputTokens": 7, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 300}
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "Paris"}]}},
                "stopReason": "end_turn",
                "usage": {**usage, "totalTokens": 1332},
                "metrics": {"latencyMs": 420},
                "ResponseMetadata": {"RequestId": "req-42", "HTTPStatusCode": 200, "HTTPHeaders": {}},
            },
        )
        # WHEN the application makes a call and shuts down
        client.converse(modelId="claude-3-5-haiku", messages=[{"role": "user", "content": [{"text": "Hi"}]}])
    assert producer.close(timeout=30)

    # THEN the stream holds one event with the call's four token counts, keyed by the tenant
    ((_, key, _, event),) = _read_back(kinesis)
    assert key == "acme"
    assert (event.tenant_id, event.model, event.request_id, event.tags) == (
        "acme",
        "claude-3-5-haiku",
        "req-42",
        {"costCenter": "cc-42"},
    )
    assert (event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens) == (
        25,
        7,
        1000,
        300,
    )

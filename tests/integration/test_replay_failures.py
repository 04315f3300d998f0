"""`meter replay-failures` against moto's Kinesis and SQS over HTTP and a real Redis: batches the event-source
mapping gave up on (while the store was down) are metered once when replayed, however often."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.metering import bootstrap as boot
from shared.adapters.redis_store import RedisStore
from shared.schema import encode_event
from shared.windows import DAY
from tenantmeter_cli.local.esm import EventSourceMappingRunner, MappingConfig
from tenantmeter_cli.main import main
from tests.integration.conftest import AwsFactory
from tests.unit.consumer.kinesis import usage

pytestmark = pytest.mark.integration

STREAM = "usage-replay"


def store_down(*_: Any) -> dict[str, Any]:
    raise ConnectionError("store unreachable")  # every delivery fails, as during an outage


@pytest.fixture
def failures(environment: dict[str, str], aws: AwsFactory) -> tuple[str, int]:
    """A stream holding 40 events of acme and globex, and the failure queue holding the record of the batches
    the mapping gave up on while the store was down. Returns (queue URL, events)."""
    kinesis, sqs = aws("kinesis"), aws("sqs")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    now = datetime.now(UTC)
    events = [usage("acme" if i % 3 else "globex", at=now - timedelta(seconds=i)) for i in range(40)]
    kinesis.put_records(
        StreamName=STREAM, Records=[{"PartitionKey": e.tenant_id, "Data": encode_event(e)} for e in events]
    )
    queue = sqs.create_queue(QueueName="metering-failures")["QueueUrl"]
    runner = EventSourceMappingRunner(
        store_down,
        kinesis=kinesis,
        stream_name=STREAM,
        config=MappingConfig(batch_size=25, batching_window_s=0, max_retry_attempts=0, bisect_on_error=False),
        sqs=sqs,
        failure_queue_url=queue,
    )
    assert runner.drain() == 40
    return queue, len(events)


def queued(aws: AwsFactory, queue: str) -> tuple[int, int]:
    attrs = aws("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def requests_metered(redis_client: Any) -> int:
    store = RedisStore(redis_client)
    now = datetime.now(UTC)
    return sum(store.window_totals(t, [DAY], now)["day"].requests for t in ("acme", "globex"))


def test_replay_meters_each_given_up_batch_once_and_clears_the_queue(
    failures: tuple[str, int], aws: AwsFactory, redis_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, sent = failures
    assert queued(aws, queue) == (2, 0)  # two batches of 25 and 15
    assert requests_metered(redis_client) == 0
    # A dry run reads the ranges back and changes nothing.
    assert main(["replay-failures", "--queue-url", queue, "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert sorted((r["status"], r["found"], r["expected"]) for r in dry) == [("dry run", 15, 15), ("dry run", 25, 25)]
    assert requests_metered(redis_client) == 0
    assert queued(aws, queue) == (2, 0)
    for record in dry:
        body = {
            "requestContext": {"condition": "RetryAttemptsExhausted"},
            "KinesisBatchInfo": {
                "shardId": record["shard_id"],
                "startSequenceNumber": record["start_sequence"],
                "endSequenceNumber": record["end_sequence"],
                "batchSize": record["expected"],
                "streamArn": f"arn:aws:kinesis:us-east-1:123456789012:stream/{STREAM}",
            },
        }
        # The same batch recorded twice (Lambda's destination is at least once too).
        aws("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(body))

    assert main(["replay-failures", "--queue-url", queue, "--local", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in results] == ["replayed"] * 4
    assert requests_metered(redis_client) == sent  # each event once, though every range was replayed twice
    assert queued(aws, queue) == (0, 0)


def test_a_failed_replay_keeps_the_record_and_says_why(
    failures: tuple[str, int],
    aws: AwsFactory,
    redis_client: Any,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    queue, sent = failures
    monkeypatch.setenv("TM_REDIS_URL", "unix:///nonexistent/redis.sock")  # the store is still down
    boot.reset_container()
    assert main(["replay-failures", "--queue-url", queue, "--local", "--json"]) == 1
    results = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in results} == {"failed"}
    assert all(r["failed_records"] == r["found"] and "store" in r["detail"] for r in results)
    assert queued(aws, queue) == (2, 0)  # still there, and visible again for the next run
    # Once the store is back, the same command meters them once.
    monkeypatch.setenv("TM_REDIS_URL", redis_url)
    boot.reset_container()
    assert main(["replay-failures", "--queue-url", queue, "--local"]) == 0
    assert requests_metered(redis_client) == sent


def test_a_message_that_is_not_a_failure_record_is_reported_and_left(
    environment: dict[str, str], aws: AwsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = aws("sqs").create_queue(QueueName="metering-failures")["QueueUrl"]
    aws("sqs").send_message(QueueUrl=queue, MessageBody='{"hello": "world"}')
    assert main(["replay-failures", "--queue-url", queue, "--local", "--json"]) == 1
    (result,) = json.loads(capsys.readouterr().out)
    assert result["status"] == "not a failure record"
    assert "KinesisBatchInfo" in result["detail"]
    assert queued(aws, queue) == (1, 0)


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TM_FAILURE_QUEUE_URL", raising=False)
    assert main(["replay-failures", "--local"]) == 2
    assert "needs --queue-url or TM_FAILURE_QUEUE_URL" in capsys.readouterr().err
    assert main(["replay-failures", "--queue-url", "https://q"]) == 2
    assert "--function NAME" in capsys.readouterr().err

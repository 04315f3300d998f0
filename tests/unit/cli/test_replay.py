"""`meter replay-failures` building blocks: reading Lambda's on-failure records, splitting payloads under the
invoke limit, and invoking the deployed consumer (botocore's Stubber against the real Lambda service model)."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from tenantmeter_cli.replay import ReplayError, lambda_invoker, parse_failure, payloads

# What Lambda writes to an SQS on-failure destination for a Kinesis batch (AWS docs' example).
LAMBDA_RECORD = {
    "requestContext": {
        "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 1,
    },
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
    "version": "1.0",
    "timestamp": "2019-11-14T00:38:06.021Z",
    "KinesisBatchInfo": {
        "shardId": "shardId-000000000001",
        "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
        "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
        "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
        "batchSize": 500,
        "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
    },
}


def message(body: object) -> dict[str, Any]:
    return {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": body if isinstance(body, str) else json.dumps(body)}


def test_a_lambda_on_failure_record_is_read_whole() -> None:
    batch = parse_failure(message(LAMBDA_RECORD))
    assert batch.shard_id == "shardId-000000000001"
    assert batch.start_sequence.startswith("496011896584223593788362985218")
    assert batch.batch_size == 500
    assert batch.stream_name == "mystream"
    assert batch.condition == "RetryAttemptsExhausted"
    assert batch.first_arrival is not None and batch.first_arrival.isoformat() == "2019-11-14T00:38:04.835000+00:00"
    assert (batch.message_id, batch.receipt_handle) == ("m-1", "r-1")


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("not json", "body is not JSON"),
        ({"hello": "world"}, "no KinesisBatchInfo"),
        ({"KinesisBatchInfo": {**LAMBDA_RECORD["KinesisBatchInfo"], "shardId": ""}}, "KinesisBatchInfo.shardId"),
        (
            {"KinesisBatchInfo": {**LAMBDA_RECORD["KinesisBatchInfo"], "endSequenceNumber": "12a"}},
            "KinesisBatchInfo.endSequenceNumber",
        ),
        ({"KinesisBatchInfo": {**LAMBDA_RECORD["KinesisBatchInfo"], "batchSize": "5"}}, "KinesisBatchInfo.batchSize"),
    ],
)
def test_anything_else_is_refused_naming_what_is_wrong(body: object, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        parse_failure(message(body))


def record(n: int, size: int) -> dict[str, Any]:
    return {"kinesis": {"sequenceNumber": str(n), "data": "x" * size}}


def test_payloads_stay_under_the_limit_and_keep_stream_order() -> None:
    records = [record(n, 900 + 37 * (n % 5)) for n in range(200)]
    chunks = list(payloads(records, max_bytes=20_000))
    assert len(chunks) > 1
    assert all(len(json.dumps(c)) <= 20_000 for c in chunks)
    assert [r for c in chunks for r in c["Records"]] == records


def test_one_record_larger_than_the_limit_still_goes_alone() -> None:
    (chunk,) = payloads([record(1, 5000)], max_bytes=1000)
    assert len(chunk["Records"]) == 1


def stubbed_lambda() -> tuple[Any, Stubber]:
    client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return client, Stubber(client)


def body(payload: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(payload), len(payload))


def test_the_deployed_consumer_is_invoked_synchronously_and_its_answer_read() -> None:
    client, stub = stubbed_lambda()
    event = {"Records": [record(1, 10)]}
    answer = {"batchItemFailures": [{"itemIdentifier": "1"}]}
    stub.add_response(
        "invoke",
        {"StatusCode": 200, "Payload": body(json.dumps(answer).encode())},
        {"FunctionName": "tm-metering", "InvocationType": "RequestResponse", "Payload": json.dumps(event).encode()},
    )
    with stub:
        assert lambda_invoker(client, "tm-metering")(event) == answer
    stub.assert_no_pending_responses()


def test_a_function_error_is_a_replay_error_with_its_message() -> None:
    client, stub = stubbed_lambda()
    error = {"errorMessage": "Task timed out after 60.00 seconds", "errorType": "Sandbox.Timedout"}
    stub.add_response(
        "invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": body(json.dumps(error).encode())}
    )
    with stub, pytest.raises(ReplayError, match="tm-metering failed: Unhandled Task timed out"):
        lambda_invoker(client, "tm-metering")({"Records": []})

"""The simulated Bedrock endpoint speaks Converse well enough for a real boto3 client to parse it."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from tenantmeter_cli.local.fake_bedrock import FakeBedrockServer, simulated_usage

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[FakeBedrockServer]:
    srv = FakeBedrockServer().start()
    yield srv
    srv.stop()


def client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "bedrock-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_real_boto3_client_parses_converse_usage(server: FakeBedrockServer) -> None:
    text = "Summarise the quarterly numbers for the board."
    resp = client(server.url).converse(
        modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0",
        messages=[{"role": "user", "content": [{"text": text}]}],
        inferenceConfig={"maxTokens": 200},
    )
    expected_in, expected_out = simulated_usage(text, 200)
    assert resp["usage"]["inputTokens"] == expected_in
    assert resp["usage"]["outputTokens"] == expected_out
    assert 1 <= expected_out <= 200
    assert resp["ResponseMetadata"]["RequestId"]
    assert server.calls == 1


def test_throttling_surfaces_as_botocore_throttling_exception() -> None:
    srv = FakeBedrockServer(throttle_rate=1.0).start()
    try:
        c = client(srv.url)
        with pytest.raises(ClientError) as info:
            c.converse(modelId="nova-micro", messages=[{"role": "user", "content": [{"text": "hi"}]}])
        assert info.value.response["Error"]["Code"] == "ThrottlingException"
    finally:
        srv.stop()

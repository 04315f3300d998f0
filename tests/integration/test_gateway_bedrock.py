"""The gateway with its real Bedrock backend: a real boto3 bedrock-runtime client talking Converse over HTTP to
the local simulated Bedrock endpoint (the local stack's), so botocore's own serializer and parser are used."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from producers.gateway.app import build_app
from producers.gateway.backends.bedrock import BedrockBackend
from producers.gateway.protocol import HttpRequest
from shared.adapters.memory_store import InMemoryStore
from shared.schema import Outcome
from tenantmeter_cli.local.fake_bedrock import FakeBedrockServer, simulated_usage
from tests.unit.gateway.support import GLOBEX_KEY, NOW, ListSink, registry

pytestmark = pytest.mark.integration


@pytest.fixture
def bedrock() -> Iterator[FakeBedrockServer]:
    server = FakeBedrockServer().start()
    yield server
    server.stop()


def app_for(url: str, sink: ListSink):  # type: ignore[no-untyped-def]
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),  # see the throttle at once
    )
    store = InMemoryStore()
    return build_app(
        tenants=registry(),
        quota_state=store,
        usage_reader=store,
        sink=sink,
        backend=BedrockBackend(client),
        clock=lambda: NOW,
    )


def test_a_converse_call_through_boto3_is_metered_with_bedrocks_usage(bedrock: FakeBedrockServer) -> None:
    sink = ListSink()
    app = app_for(bedrock.url, sink)
    text = "Summarise the quarterly numbers for the board."
    body = (
        b'{"model": "claude-3-5-haiku", "prompt": {"messages": [{"role": "user", "content": "'
        + text.encode()
        + b'"}], "parameters": {"max_tokens": 120}}}'
    )
    response = app.handle(HttpRequest("POST", "/v1/converse", {"authorization": f"Bearer {GLOBEX_KEY}"}, body))
    assert response.status == 200, response.body
    expected_in, expected_out = simulated_usage(text, 120)
    [event] = sink.events
    assert (event.input_tokens, event.output_tokens, event.outcome) == (expected_in, expected_out, Outcome.SUCCESS)
    assert event.model_id == "anthropic.claude-3-5-haiku-20241022-v1:0"
    assert bedrock.calls == 1


def test_bedrock_throttling_is_a_502_and_a_throttled_event() -> None:
    server = FakeBedrockServer(throttle_rate=1.0).start()
    try:
        sink = ListSink()
        app = app_for(server.url, sink)
        body = b'{"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}]}'
        response = app.handle(HttpRequest("POST", "/v1/converse", {"authorization": f"Bearer {GLOBEX_KEY}"}, body))
        assert response.status == 502
        assert b"model_throttled" in response.body
        assert [e.outcome for e in sink.events] == [Outcome.THROTTLED]
    finally:
        server.stop()

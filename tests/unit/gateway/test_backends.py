"""Model backends: Bedrock Converse through a real boto3 client with botocore's Stubber (which validates the
request against the service model), ConverseStream events, SageMaker reply shapes, the simulated model."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from producers.gateway.backends.bedrock import BedrockBackend, converse_request
from producers.gateway.backends.sagemaker import ESTIMATED_BY, SageMakerBackend, parse_reply
from producers.gateway.backends.simulated import SimulatedModel, simulated_input_tokens
from producers.gateway.models import FailureKind, Message, ModelBackendError, ModelCall, StreamEnd, TextDelta
from producers.gateway.quota import max_input_tokens
from shared.pricing import TokenUsage

CALL = ModelCall(
    model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0",
    messages=(Message("user", "Hello"), Message("assistant", "Hi"), Message("user", "Summarise S3")),
    system=("Be brief.",),
    max_tokens=300,
    temperature=0.5,
    top_p=0.9,
    top_k=40,
    stop=("END",),
)


def bedrock_client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_converse_sends_a_valid_request_and_reads_all_four_token_counts() -> None:
    client = bedrock_client()
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "S3 is "}, {"text": "storage."}]}},
                "stopReason": "end_turn",
                "usage": {
                    "inputTokens": 20,
                    "outputTokens": 5,
                    "totalTokens": 55,
                    "cacheReadInputTokens": 10,
                    "cacheWriteInputTokens": 20,
                },
                "metrics": {"latencyMs": 120},
            },
            expected_params=converse_request(CALL),
        )
        reply = BedrockBackend(client).converse(CALL)
    assert reply.text == "S3 is storage."
    assert reply.usage == TokenUsage(20, 5, 10, 20)
    assert reply.estimated_by == ""
    request = converse_request(CALL)
    assert request["system"] == [{"text": "Be brief."}]
    assert request["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]}
    assert request["additionalModelRequestFields"] == {"top_k": 40}


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("ThrottlingException", FailureKind.THROTTLED),
        ("ServiceUnavailableException", FailureKind.THROTTLED),
        ("ValidationException", FailureKind.REJECTED),
        ("AccessDeniedException", FailureKind.FAILED),
        ("ModelErrorException", FailureKind.FAILED),
    ],
)
def test_converse_errors_map_to_failure_kinds(code: str, kind: FailureKind) -> None:
    client = bedrock_client()
    with Stubber(client) as stub:
        stub.add_client_error("converse", service_error_code=code, service_message="max_tokens exceeds 8192")
        with pytest.raises(ModelBackendError) as info:
            BedrockBackend(client).converse(CALL)
    assert info.value.kind is kind
    assert info.value.code == code
    assert ("max_tokens exceeds 8192" in info.value.message) is (kind is FailureKind.REJECTED)


class StreamClient:
    """ConverseStream's response: botocore yields one dict per event of the event stream."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.closed = False
        self.requests: list[dict[str, Any]] = []

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        client = self

        class Stream:
            def __iter__(self) -> Iterator[dict[str, Any]]:
                return iter(client.events)

            def close(self) -> None:
                client.closed = True

        return {"stream": Stream()}


def test_converse_stream_yields_deltas_then_the_usage_from_the_metadata_event() -> None:
    client = StreamClient(
        [
            {"messageStart": {"role": "assistant"}},
            {"contentBlockDelta": {"delta": {"text": "S3 "}, "contentBlockIndex": 0}},
            {"contentBlockDelta": {"delta": {"text": "stores objects."}, "contentBlockIndex": 0}},
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "max_tokens"}},
            {"metadata": {"usage": {"inputTokens": 12, "outputTokens": 4, "totalTokens": 16}, "metrics": {}}},
        ]
    )
    parts = list(BedrockBackend(client).converse_stream(CALL))  # type: ignore[arg-type]
    assert parts == [TextDelta("S3 "), TextDelta("stores objects."), StreamEnd("max_tokens", TokenUsage(12, 4))]
    assert client.closed
    assert client.requests == [converse_request(CALL)]


def test_an_in_stream_exception_event_raises_a_backend_error() -> None:
    client = StreamClient(
        [
            {"contentBlockDelta": {"delta": {"text": "S3 "}, "contentBlockIndex": 0}},
            {"throttlingException": {"message": "slow down"}},
        ]
    )
    parts = BedrockBackend(client).converse_stream(CALL)  # type: ignore[arg-type]
    assert next(parts) == TextDelta("S3 ")
    with pytest.raises(ModelBackendError) as info:
        next(parts)
    assert info.value.kind is FailureKind.THROTTLED
    assert client.closed


class EndpointClient:
    def __init__(self, reply: Any = None, error: str = "") -> None:
        self.reply = reply
        self.error = error
        self.requests: list[dict[str, Any]] = []

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "InvokeEndpoint")
        return {"Body": io.BytesIO(json.dumps(self.reply).encode())}


def test_sagemaker_sends_openai_style_chat_to_the_named_endpoint_and_reads_usage() -> None:
    client = EndpointClient(
        {
            "choices": [{"message": {"role": "assistant", "content": "S3 stores objects."}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 31, "completion_tokens": 6, "total_tokens": 37},
        }
    )
    call = ModelCall("acme-llama-endpoint", CALL.messages, CALL.system, max_tokens=100)
    reply = SageMakerBackend(client).converse(call)
    assert (reply.text, reply.stop_reason, reply.usage, reply.estimated_by) == (
        "S3 stores objects.",
        "max_tokens",
        TokenUsage(31, 6),
        "",
    )
    [request] = client.requests
    assert request["EndpointName"] == "acme-llama-endpoint"
    payload = json.loads(request["Body"])
    assert payload["messages"][0] == {"role": "system", "content": "Be brief."}
    assert payload["max_tokens"] == 100


@pytest.mark.parametrize(
    "raw",
    [
        [{"generated_text": "twelve bytes"}],
        {"generated_text": "twelve bytes"},
        {
            "choices": [{"message": {"content": "twelve bytes"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": -1, "completion_tokens": 3},
        },
    ],
)
def test_sagemaker_without_usage_counts_tokens_and_says_how(raw: Any) -> None:
    call = ModelCall("ep", (Message("user", "sixteen bytes!!!"),))
    reply = parse_reply(call, raw)
    assert reply.usage == TokenUsage(input_tokens=4, output_tokens=3)
    assert reply.estimated_by == ESTIMATED_BY


def test_sagemaker_errors_and_unknown_shapes_are_backend_errors() -> None:
    call = ModelCall("ep", (Message("user", "x"),))
    with pytest.raises(ModelBackendError) as info:
        SageMakerBackend(EndpointClient(error="ModelError")).converse(call)
    assert info.value.kind is FailureKind.FAILED
    with pytest.raises(ModelBackendError) as info:
        SageMakerBackend(EndpointClient(error="ThrottlingException")).converse(call)
    assert info.value.kind is FailureKind.THROTTLED
    with pytest.raises(ModelBackendError):
        parse_reply(call, {"outputs": ["?"]})


def test_simulated_model_is_deterministic_and_within_the_reservation_bound() -> None:
    model = SimulatedModel(output_tokens=64, error_rate=0.5, seed=3)
    outcomes = []
    for _ in range(20):
        try:
            outcomes.append(model.converse(CALL).usage)
        except ModelBackendError:
            outcomes.append(None)
    again = SimulatedModel(output_tokens=64, error_rate=0.5, seed=3)
    replay = []
    for _ in range(20):
        try:
            replay.append(again.converse(CALL).usage)
        except ModelBackendError:
            replay.append(None)
    assert outcomes == replay
    assert None in outcomes and any(outcomes)
    texts = [*CALL.system, *(m.text for m in CALL.messages)]
    assert simulated_input_tokens(CALL) <= max_input_tokens(texts, len(CALL.messages) + len(CALL.system))
    streamed = list(SimulatedModel(output_tokens=20).converse_stream(CALL))
    assert isinstance(streamed[-1], StreamEnd)
    assert streamed[-1].usage.output_tokens == 20
    assert len("".join(p.text for p in streamed if isinstance(p, TextDelta)).split()) == 20

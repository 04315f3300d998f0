"""instrument() on a real boto3 bedrock-runtime client: Stubber for Converse and InvokeModel, botocore's own
event-stream parser for the streaming calls (see bedrock_fakes). One UsageEvent per call, always."""

from __future__ import annotations

import contextvars
import gc
import io
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError, ParamValidationError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from producers.sdk import QuotaChecker, instrument, request_metadata
from shared.decisions import BlockRecord
from shared.errors import SchemaError, TenantBlockedError
from shared.ports import QuotaStatus
from shared.schema import Outcome, Source, UsageEvent
from tests.unit.sdk.bedrock_fakes import (
    StreamServer,
    bedrock_client,
    converse_stream_events,
    invoke_chunk,
)
from tests.unit.sdk.fakes import T0, FakeClock, FakeQuotaStore, ListSink

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "What is the capital of France? Answer in one word."}]}]
TAGS = {"costCenter": "cc-42", "applicationId": "chatbot"}


def _instrumented(**kwargs: Any) -> tuple[Any, ListSink]:
    sink = ListSink()
    client = bedrock_client()
    options: dict[str, Any] = {"tenant_id": "acme", "tags": TAGS, "producer": sink, "clock": lambda: T0}
    options.update(kwargs)
    return instrument(client, **options), sink


def _converse_response(usage: dict[str, int], request_id: str = "req-1") -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": "Paris"}]}},
        "stopReason": "end_turn",
        "usage": {**usage, "totalTokens": sum(usage.values())},
        "metrics": {"latencyMs": 420},
        "ResponseMetadata": {"RequestId": request_id, "HTTPStatusCode": 200, "HTTPHeaders": {}},
    }


def _only(sink: ListSink) -> UsageEvent:
    assert len(sink.events) == 1, sink.events
    return sink.events[0]


# --- Converse --------------------------------------------------------------------------------------------------


def test_converse_meters_all_four_token_counts_and_tags_the_request() -> None:
    # GIVEN a client instrumented for tenant acme, and a Bedrock answer with cache reads and writes
    client, sink = _instrumented()
    usage = {"inputTokens": 25, "outputTokens": 7, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 300}
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            _converse_response(usage),
            # THEN (checked by Stubber) the request carries the tenant and tags as requestMetadata
            {"modelId": MODEL, "messages": MESSAGES, "requestMetadata": {"tenant_id": "acme", **TAGS}},
        )
        # WHEN the application calls converse
        response = client.converse(modelId=MODEL, messages=MESSAGES)
        stub.assert_no_pending_responses()

    # THEN it gets Bedrock's response, and one event records the call
    assert response["output"]["message"]["content"][0]["text"] == "Paris"
    event = _only(sink)
    assert (event.tenant_id, event.source, event.model, event.model_id, event.region) == (
        "acme",
        Source.SDK,
        MODEL,
        MODEL,
        "us-east-1",
    )
    assert (event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens) == (
        25,
        7,
        1000,
        300,
    )
    assert (event.outcome, event.request_id, event.occurred_at, event.estimated_by) == (
        Outcome.SUCCESS,
        "req-1",
        T0,
        "",
    )
    assert dict(event.tags) == TAGS
    assert event.latency_ms >= 0 and event.event_id


def test_converse_keeps_the_callers_metadata_but_not_a_claimed_tenant() -> None:
    client, sink = _instrumented()
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            _converse_response({"inputTokens": 1, "outputTokens": 1}),
            {
                "modelId": PROFILE_ARN,
                "messages": MESSAGES,
                "requestMetadata": {"tenant_id": "acme", "trace": "t-1", **TAGS},
            },
        )
        client.converse(modelId=PROFILE_ARN, messages=MESSAGES, requestMetadata={"tenant_id": "evil", "trace": "t-1"})
    event = _only(sink)
    assert event.tenant_id == "acme"
    assert event.model == event.model_id == PROFILE_ARN


def test_a_throttled_call_is_metered_and_its_exception_reraised_untouched() -> None:
    client, sink = _instrumented()
    with Stubber(client) as stub:
        stub.add_client_error(
            "converse",
            service_error_code="ThrottlingException",
            service_message="Too many requests",
            http_status_code=429,
            response_meta={"RequestId": "req-throttled"},
        )
        with pytest.raises(ClientError) as info:
            client.converse(modelId=MODEL, messages=MESSAGES)
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    event = _only(sink)
    assert (event.outcome, event.request_id, event.input_tokens, event.output_tokens) == (
        Outcome.THROTTLED,
        "req-throttled",
        0,
        0,
    )


def test_any_other_failure_is_a_model_error() -> None:
    client, sink = _instrumented()
    with Stubber(client) as stub:
        stub.add_client_error("converse", service_error_code="ModelErrorException", http_status_code=424)
        with pytest.raises(ClientError, match="ModelErrorException"):
            client.converse(modelId=MODEL, messages=MESSAGES)
    assert _only(sink).outcome is Outcome.MODEL_ERROR


def test_a_request_botocore_rejects_reaches_no_model_and_is_not_metered() -> None:
    # (No Stubber: it answers before botocore validates; the real client validates before any network.)
    client, sink = _instrumented()
    with pytest.raises(ParamValidationError):
        client.converse(modelId=MODEL, messages="not a list")
    assert sink.events == []


def test_a_failing_sink_never_breaks_the_callers_call(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenSink:
        def emit(self, event: UsageEvent) -> None:
            raise RuntimeError("sink down")

    client, _ = _instrumented(producer=BrokenSink())
    with Stubber(client) as stub, caplog.at_level(logging.ERROR):
        stub.add_response("converse", _converse_response({"inputTokens": 3, "outputTokens": 4}))
        response = client.converse(modelId=MODEL, messages=MESSAGES)
    assert response["usage"]["outputTokens"] == 4
    assert "not recorded" in caplog.text and "sink down" in caplog.text
    assert "capital of France" not in caplog.text


def test_the_tenant_may_come_from_a_context_variable() -> None:
    # GIVEN one shared client whose tenant is read per call from a contextvar
    current: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
    client, sink = _instrumented(tenant_id=current.get)
    with Stubber(client) as stub:
        for tenant in ("acme", "globex"):
            stub.add_response(
                "converse",
                _converse_response({"inputTokens": 1, "outputTokens": 1}),
                {"modelId": MODEL, "messages": MESSAGES, "requestMetadata": {"tenant_id": tenant, **TAGS}},
            )
            # WHEN calls are made in two tenants' contexts
            contextvars.copy_context().run(
                lambda t=tenant: (current.set(t), client.converse(modelId=MODEL, messages=MESSAGES))
            )
    # THEN each is metered for its tenant
    assert [e.tenant_id for e in sink.events] == ["acme", "globex"]


def test_an_invalid_tenant_from_the_callable_stops_the_call_before_bedrock() -> None:
    client, sink = _instrumented(tenant_id=lambda: "not a tenant")
    # (Stubber with nothing queued: reaching Bedrock would raise UnStubbedResponseError, not SchemaError.)
    with Stubber(client), pytest.raises(SchemaError) as info:
        client.converse(modelId=MODEL, messages=MESSAGES)
    assert info.value.field == "tenant_id"
    assert sink.events == []


# --- ConverseStream --------------------------------------------------------------------------------------------


def test_a_stream_read_to_the_end_is_metered_from_its_metadata_event() -> None:
    client, sink = _instrumented()
    usage = {"inputTokens": 25, "outputTokens": 9, "cacheReadInputTokens": 500, "cacheWriteInputTokens": 0}
    server = StreamServer(client, "ConverseStream", converse_stream_events(["Pa", "ris"], usage))

    response = client.converse_stream(modelId=MODEL, messages=MESSAGES)
    assert sink.events == []  # nothing until the stream ends
    texts = [e["contentBlockDelta"]["delta"]["text"] for e in response["stream"] if "contentBlockDelta" in e]

    assert texts == ["Pa", "ris"]
    event = _only(sink)
    assert (event.input_tokens, event.output_tokens, event.cache_read_tokens, event.estimated_by) == (25, 9, 500, "")
    assert (event.outcome, event.request_id) == (Outcome.SUCCESS, "req-stream-1")
    assert server.request_body()["requestMetadata"] == {"tenant_id": "acme", **TAGS}


def test_a_stream_the_caller_stops_reading_is_metered_at_once_and_closed() -> None:
    # GIVEN a long streamed answer
    client, sink = _instrumented()
    server = StreamServer(
        client, "ConverseStream", converse_stream_events(["x" * 40] * 50, {"inputTokens": 13, "outputTokens": 500})
    )
    response = client.converse_stream(modelId=MODEL, messages=MESSAGES)

    # WHEN the caller breaks out after two text deltas
    seen = 0
    for event in response["stream"]:
        if "contentBlockDelta" in event:
            seen += 1
            if seen == 2:
                break

    # THEN the call is metered right away, with estimated tokens (labelled), and the connection closed
    event = _only(sink)
    assert event.outcome is Outcome.SUCCESS
    assert event.estimated_by == "sdk:chars/4"
    assert event.output_tokens == 20  # 80 characters streamed
    assert event.input_tokens == 13  # "What is the capital ... one word." is 50 characters
    assert server.raw is not None and server.raw.closed
    del response
    gc.collect()
    assert len(sink.events) == 1  # and never metered twice


def test_a_stream_that_fails_midway_is_metered_and_the_error_reraised() -> None:
    client, sink = _instrumented()
    StreamServer(
        client,
        "ConverseStream",
        converse_stream_events(["a" * 16], None)[:2],
        error=("throttlingException", "Too many tokens"),
    )
    response = client.converse_stream(modelId=MODEL, messages=MESSAGES)
    with pytest.raises(EventStreamError, match="Too many tokens"):
        for _ in response["stream"]:
            pass
    event = _only(sink)
    assert (event.outcome, event.output_tokens, event.estimated_by) == (Outcome.THROTTLED, 4, "sdk:chars/4")
    assert event.request_id == "req-stream-1"


def test_a_broken_connection_midway_is_a_model_error() -> None:
    client, sink = _instrumented()
    StreamServer(
        client,
        "ConverseStream",
        converse_stream_events(["abcd"], None)[:2],
        fail_with=ConnectionResetError("peer reset"),
    )
    response = client.converse_stream(modelId=MODEL, messages=MESSAGES)
    with pytest.raises(ConnectionResetError):
        list(response["stream"])
    event = _only(sink)
    assert (event.outcome, event.output_tokens) == (Outcome.MODEL_ERROR, 1)


def test_a_stream_that_is_never_read_is_metered_when_dropped() -> None:
    client, sink = _instrumented()
    StreamServer(client, "ConverseStream", converse_stream_events(["a"], {"inputTokens": 1, "outputTokens": 1}))
    response = client.converse_stream(modelId=MODEL, messages=MESSAGES)
    assert sink.events == []
    del response
    gc.collect()
    assert _only(sink).estimated_by == "sdk:chars/4"


def test_a_stream_closed_explicitly_is_metered_once() -> None:
    client, sink = _instrumented()
    server = StreamServer(
        client, "ConverseStream", converse_stream_events(["a"], {"inputTokens": 1, "outputTokens": 1})
    )
    response = client.converse_stream(modelId=MODEL, messages=MESSAGES)
    response["stream"].close()
    response["stream"].close()
    assert len(sink.events) == 1 and server.raw is not None and server.raw.closed


def test_a_stream_that_cannot_start_is_metered() -> None:
    client, sink = _instrumented()
    with Stubber(client) as stub:
        stub.add_client_error("converse_stream", service_error_code="ThrottlingException", http_status_code=429)
        with pytest.raises(ClientError):
            client.converse_stream(modelId=MODEL, messages=MESSAGES)
    assert _only(sink).outcome is Outcome.THROTTLED


# --- InvokeModel -----------------------------------------------------------------------------------------------


def _invoke(client: Any, model: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    request = json.dumps({"inputText": "hello"}).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_model",
            {
                "body": StreamingBody(io.BytesIO(raw), len(raw)),
                "contentType": "application/json",
                "ResponseMetadata": {"RequestId": "req-invoke", "HTTPStatusCode": 200, "HTTPHeaders": headers or {}},
            },
            {"modelId": model, "body": request},
        )
        response: dict[str, Any] = client.invoke_model(modelId=model, body=request)
    # The caller still reads the whole, identical body.
    assert json.loads(response["body"].read()) == body
    return response


@pytest.mark.parametrize(
    ("model", "body", "headers", "expected"),
    [
        (
            MODEL,
            {
                "type": "message",
                "content": [{"type": "text", "text": "Paris"}],
                "usage": {
                    "input_tokens": 20,
                    "output_tokens": 5,
                    "cache_read_input_tokens": 700,
                    "cache_creation_input_tokens": 90,
                },
            },
            {},
            (20, 5, 700, 90),
        ),
        (
            "amazon.nova-lite-v1:0",
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "Paris"}]}},
                "stopReason": "end_turn",
                "usage": {
                    "inputTokens": 30,
                    "outputTokens": 6,
                    "totalTokens": 436,
                    "cacheReadInputTokenCount": 400,
                    "cacheWriteInputTokenCount": 0,
                },
            },
            {},
            (30, 6, 400, 0),
        ),
        (
            "amazon.titan-text-express-v1",
            {
                "inputTextTokenCount": 4,
                "results": [{"tokenCount": 11, "outputText": "Paris", "completionReason": "FINISH"}],
            },
            {},
            (4, 11, 0, 0),
        ),
        (
            "amazon.titan-embed-text-v2:0",
            {"embedding": [0.1, 0.2], "inputTextTokenCount": 6},
            {},
            (6, 0, 0, 0),
        ),
        (
            "meta.llama3-8b-instruct-v1:0",
            {"generation": "Paris", "stop_reason": "stop"},
            {"x-amzn-bedrock-input-token-count": "17", "x-amzn-bedrock-output-token-count": "2"},
            (17, 2, 0, 0),
        ),
    ],
    ids=["anthropic", "nova", "titan-text", "titan-embeddings", "headers-only"],
)
def test_invoke_model_reads_usage_from_each_body_family(
    model: str, body: dict[str, Any], headers: dict[str, str], expected: tuple[int, int, int, int]
) -> None:
    client, sink = _instrumented()
    _invoke(client, model, body, headers)
    event = _only(sink)
    assert (event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens) == expected
    assert (event.model, event.outcome, event.request_id, event.estimated_by) == (
        model,
        Outcome.SUCCESS,
        "req-invoke",
        "",
    )


def test_invoke_model_without_any_usage_is_metered_as_unreported(caplog: pytest.LogCaptureFixture) -> None:
    client, sink = _instrumented()
    with caplog.at_level(logging.WARNING):
        _invoke(client, "stability.sd3-large-v1:0", {"images": ["aGVsbG8="]})
    event = _only(sink)
    assert (event.input_tokens, event.output_tokens, event.estimated_by) == (0, 0, "sdk:unreported")
    assert "reported no token usage" in caplog.text


def test_invoke_model_failure_is_metered() -> None:
    client, sink = _instrumented()
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code="ValidationException", http_status_code=400)
        with pytest.raises(ClientError):
            client.invoke_model(modelId=MODEL, body=b"{}")
    assert _only(sink).outcome is Outcome.MODEL_ERROR


# --- InvokeModelWithResponseStream -----------------------------------------------------------------------------


def test_invoke_stream_is_metered_from_its_invocation_metrics() -> None:
    client, sink = _instrumented()
    metrics = {"inputTokenCount": 21, "outputTokenCount": 8, "invocationLatency": 300, "firstByteLatency": 100}
    StreamServer(
        client,
        "InvokeModelWithResponseStream",
        [
            invoke_chunk({"outputText": "Paris", "index": 0}),
            invoke_chunk({"amazon-bedrock-invocationMetrics": metrics}),
        ],
    )
    response = client.invoke_model_with_response_stream(
        modelId="amazon.titan-text-express-v1", body=b'{"inputText":"hi"}'
    )
    chunks = list(response["body"])
    assert len(chunks) == 2
    event = _only(sink)
    assert (event.input_tokens, event.output_tokens, event.estimated_by) == (21, 8, "")


def test_invoke_stream_stopped_early_uses_anthropic_running_counts() -> None:
    client, sink = _instrumented()
    StreamServer(
        client,
        "InvokeModelWithResponseStream",
        [
            invoke_chunk({"type": "message_start", "message": {"usage": {"input_tokens": 40, "output_tokens": 1}}}),
            invoke_chunk({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Par"}}),
            invoke_chunk({"type": "message_delta", "usage": {"output_tokens": 3}}),
            invoke_chunk({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "is"}}),
        ],
    )
    response = client.invoke_model_with_response_stream(modelId=MODEL, body=b"{}")
    for i, _ in enumerate(response["body"]):
        if i == 2:
            break
    event = _only(sink)
    assert (event.input_tokens, event.output_tokens, event.estimated_by) == (40, 3, "sdk:anthropic-partial")


# --- quota -----------------------------------------------------------------------------------------------------


def test_a_blocked_tenant_is_refused_before_bedrock_with_a_denied_event() -> None:
    # GIVEN a store that says acme is blocked for 90 more seconds
    store = FakeQuotaStore()
    store.status["acme"] = QuotaStatus(
        blocks=(BlockRecord("acme", "month", "monthly cost quota exhausted", until=T0 + timedelta(seconds=90)),)
    )
    clock = FakeClock()
    client, sink = _instrumented(quota=QuotaChecker(store, clock=clock, monotonic=clock.monotonic), clock=clock)

    # WHEN the application calls converse (no response is stubbed: reaching Bedrock would fail the test)
    with Stubber(client) as stub, pytest.raises(TenantBlockedError) as info:
        client.converse(modelId=MODEL, messages=MESSAGES)
    stub.assert_no_pending_responses()

    # THEN it is told why and for how long, and the refusal is metered as denied
    assert info.value.tenant_id == "acme"
    assert info.value.retry_after_s == 90
    assert "monthly cost quota exhausted" in info.value.reason
    event = _only(sink)
    assert (event.outcome, event.input_tokens, event.output_tokens) == (Outcome.DENIED, 0, 0)


def test_an_allowed_tenant_goes_through_the_quota_check() -> None:
    store = FakeQuotaStore()
    client, sink = _instrumented(quota=QuotaChecker(store))
    with Stubber(client) as stub:
        stub.add_response("converse", _converse_response({"inputTokens": 2, "outputTokens": 2}))
        client.converse(modelId=MODEL, messages=MESSAGES)
    assert _only(sink).outcome is Outcome.SUCCESS
    assert [tenant for tenant, _ in store.calls] == ["acme"]


# --- setup and metadata ----------------------------------------------------------------------------------------


def test_instrument_refuses_bad_setup() -> None:
    sink = ListSink()
    with pytest.raises(SchemaError) as info:
        instrument(bedrock_client(), tenant_id="no spaces allowed", producer=sink)
    assert info.value.field == "tenant_id"
    with pytest.raises(SchemaError) as tag_info:
        instrument(bedrock_client(), tenant_id="acme", producer=sink, tags={"1bad": "x"})
    assert tag_info.value.field.startswith("tags.")
    client = instrument(bedrock_client(), tenant_id="acme", producer=sink)
    with pytest.raises(ValueError, match="already instrumented"):
        instrument(client, tenant_id="acme", producer=sink)


def test_request_metadata_drops_what_bedrock_would_reject_and_caps_at_sixteen() -> None:
    tags = {f"t{i:02d}": f"v{i}" for i in range(16)} | {"bad": "semi;colon"}
    metadata = request_metadata({"tenant_id": "mallory", "trace": "abc", "x": "é"}, "acme", tags)
    assert len(metadata) == 16
    assert metadata["tenant_id"] == "acme"
    assert metadata["trace"] == "abc"
    assert "x" not in metadata and "bad" not in metadata

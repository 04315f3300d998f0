"""OpenAI-compatible chat completions (whole and streamed), SageMaker endpoint routing, and GET /v1/usage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from producers.gateway.backends.simulated import SimulatedModel
from producers.gateway.models import (
    FailureKind,
    ModelBackendError,
    ModelCall,
    ModelReply,
    StreamEnd,
    StreamPart,
    TextDelta,
)
from producers.gateway.protocol import HttpResponse
from shared.decisions import BlockRecord
from shared.pricing import TokenUsage
from shared.schema import Outcome
from tests.unit.gateway.support import GLOBEX_KEY, FakeConsumer, Gateway, MakeGateway, body_of, converse_body


def chat(stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-3-5-haiku",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Explain S3 in 100 words."},
        ],
        "max_tokens": 200,
        "stream": stream,
    }
    body.update(extra)
    return body


def sse_events(response: HttpResponse, limit: int | None = None) -> list[Any]:
    assert response.stream is not None
    events: list[Any] = []
    for chunk in response.stream:
        for line in chunk.decode().split("\n\n"):
            if line.startswith("data: "):
                payload = line[len("data: ") :]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        if limit is not None and len(events) >= limit:
            break
    return events


def test_chat_completions_answers_in_openai_shape(gw: Gateway) -> None:
    response = gw.post("/v1/chat/completions", chat())
    assert response.status == 200
    body = body_of(response)
    assert body["object"] == "chat.completion"
    assert body["model"] == "claude-3-5-haiku"
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    # 9 bytes of system + 24 of user text -> ceil(33 / 4) + 4 = 13 input tokens (simulated model's rule)
    assert body["usage"]["prompt_tokens"] == 13
    assert body["usage"]["completion_tokens"] == 50
    assert body["usage"]["total_tokens"] == 63
    [event] = gw.sink.events
    assert (event.input_tokens, event.output_tokens, event.outcome) == (13, 50, Outcome.SUCCESS)
    truncated = body_of(gw.post("/v1/chat/completions", chat(max_tokens=20)))
    assert truncated["choices"][0]["finish_reason"] == "length"


def test_streamed_chat_sends_sse_and_meters_the_whole_call_once(gw: Gateway) -> None:
    response = gw.post("/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True}))
    assert response.status == 200
    assert response.header("Content-Type") == "text/event-stream"
    assert gw.sink.events == []  # nothing metered before the stream is sent
    events = sse_events(response)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[1:-3])
    assert len(text.split()) == 50
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["completion_tokens"] == 50
    assert events[-1] == "[DONE]"
    [event] = gw.sink.events
    assert (event.output_tokens, event.outcome) == (50, Outcome.SUCCESS)


def test_a_client_that_leaves_early_is_metered_with_the_backend_usage(gw: Gateway) -> None:
    # GIVEN one client gone before the first byte and one after two chunks
    never_read = gw.post("/v1/chat/completions", chat(stream=True))
    assert never_read.stream is not None
    never_read.stream.close()  # type: ignore[attr-defined]
    partly_read = gw.post("/v1/chat/completions", chat(stream=True))
    sse_events(partly_read, limit=2)
    partly_read.stream.close()  # type: ignore[union-attr]
    partly_read.stream.close()  # type: ignore[union-attr]  # closing twice meters once
    # THEN each call is metered once, with the usage the backend reported at the end of its stream
    assert [(e.output_tokens, e.outcome, e.estimated_by) for e in gw.sink.events] == [(50, Outcome.SUCCESS, "")] * 2


class BreaksMidStream:
    def converse(self, call: ModelCall) -> ModelReply:
        raise NotImplementedError

    def converse_stream(self, call: ModelCall) -> Iterator[StreamPart]:
        yield TextDelta("partial answer text")
        raise ModelBackendError(FailureKind.FAILED, "the model call failed (ModelStreamErrorException)")


def test_a_stream_that_breaks_reports_the_error_and_meters_an_estimate(make_gateway: MakeGateway) -> None:
    gw = make_gateway(model=BreaksMidStream())
    events = sse_events(gw.post("/v1/chat/completions", chat(stream=True)))
    assert events[-2]["error"]["code"] == "model_error"
    assert events[-1] == "[DONE]"
    [event] = gw.sink.events
    assert event.outcome is Outcome.MODEL_ERROR
    assert event.estimated_by == "gateway:stream_cut_utf8_bytes_div_4"
    assert event.output_tokens == 5  # ceil(19 bytes / 4)


def test_a_stream_that_fails_at_once_is_a_json_502(make_gateway: MakeGateway) -> None:
    gw = make_gateway(model=SimulatedModel(error_rate=1.0))
    response = gw.post("/v1/chat/completions", chat(stream=True))
    assert response.status == 502
    assert response.stream is None
    assert [e.outcome for e in gw.sink.events] == [Outcome.MODEL_ERROR]


class EndpointWithoutUsage:
    """A SageMaker-like backend that reports no usage: the backend estimates and says so."""

    def converse(self, call: ModelCall) -> ModelReply:
        return ModelReply("ok", "end_turn", TokenUsage(7, 1), estimated_by="gateway:utf8_bytes_div_4")

    def converse_stream(self, call: ModelCall) -> Iterator[StreamPart]:
        yield StreamEnd("end_turn", TokenUsage(7, 1), "gateway:utf8_bytes_div_4")


def test_a_model_id_naming_a_sagemaker_endpoint_is_routed_there_and_marked_estimated(make_gateway: MakeGateway) -> None:
    gw = make_gateway(endpoints={"acme-llama-endpoint": EndpointWithoutUsage()})
    response = gw.post("/v1/converse", converse_body(model="acme-llama-endpoint"))
    assert response.status == 200
    assert response.header("X-Usage-Estimated-By") == "gateway:utf8_bytes_div_4"
    assert body_of(response)["usage"]["estimated_by"] == "gateway:utf8_bytes_div_4"
    [event] = gw.sink.events
    assert (event.model, event.model_id, event.estimated_by) == (
        "acme-llama-endpoint",
        "acme-llama-endpoint",
        "gateway:utf8_bytes_div_4",
    )
    assert gw.model.calls == 0
    models = {m["id"] for m in body_of(gw.request("GET", "/v1/models"))["data"]}
    assert {"acme-llama-endpoint", "claude-3-5-haiku"} <= models


def test_usage_returns_only_the_calling_tenants_windows_and_quota_state(gw: Gateway) -> None:
    # GIVEN usage metered for acme and for globex, and a block on acme
    gw.post("/v1/converse", converse_body())
    gw.post("/v1/converse", converse_body(), key=GLOBEX_KEY)
    gw.post("/v1/converse", converse_body(), key=GLOBEX_KEY)
    FakeConsumer(gw.store).meter(gw.sink.events, gw.clock[0])
    gw.store.set_block(BlockRecord("acme", "1m", "tokens quota exhausted", until=gw.clock[0] + timedelta(seconds=30)))
    # WHEN acme asks, even naming globex in a header
    response = gw.request("GET", "/v1/usage", headers={"X-Tenant-Id": "globex"})
    # THEN it sees its own one request and block, and nothing of globex
    assert response.status == 200
    body = body_of(response)
    assert body["tenant_id"] == "acme"
    assert body["admission"] == "blocked"
    assert body["windows"]["month"]["requests"] == 1
    assert body["windows"]["month"]["cost_usd"] == "0.000208"
    assert body["windows"]["month"]["resets_at"] == "2026-12-01T00:00:00.000Z"
    month_cost = next(q for q in body["quotas"] if q["window"] == "month" and q["metric"] == "cost_usd")
    assert month_cost == {
        "window": "month",
        "metric": "cost_usd",
        "hard": True,
        "limit": "5000",
        "used": "0.000208",
        "remaining": "4999.999792",
        "level": "ok",
        "reason": "at 0% of quota",
    }
    assert body["blocks"] == [{"window": "1m", "reason": "tokens quota exhausted", "until": "2026-11-23T15:30:30.000Z"}]
    assert b"globex" not in response.body
    globex = body_of(gw.request("GET", "/v1/usage", key=GLOBEX_KEY))
    assert globex["windows"]["month"]["requests"] == 2
    assert globex["blocks"] == []
    assert gw.request("GET", "/v1/usage", key=None).status == 401

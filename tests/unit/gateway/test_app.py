"""The gateway core end to end (GatewayApp.handle) over the in-memory store, a list sink and the simulated model:
identity from the credential, errors, the quota gate and reservations, metering of every outcome."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from producers.gateway.app import GatewayConfig
from producers.gateway.backends.simulated import SimulatedModel
from producers.gateway.models import FailureKind, ModelBackendError, ModelCall, ModelReply, StreamPart
from shared.decisions import BlockRecord
from shared.schema import Outcome, Source
from tests.unit.gateway.support import (
    GLOBEX_KEY,
    NOW,
    PROFILE_ARN,
    Gateway,
    MakeGateway,
    body_of,
    converse_body,
)

HAIKU_ID = "anthropic.claude-3-5-haiku-20241022-v1:0"
# converse_body(): 24-byte prompt, max_tokens 200; the simulated model answers 10 input / 50 output tokens.
# Claude 3.5 Haiku: $0.80 / $4.00 per 1M input / output tokens -> 10 * 0.80 + 50 * 4.00 = 208 micro-dollars.
COST_NANOS = 208_000
# Max cost: input bound 24 bytes + 8 per message + 64 = 96 tokens, priced at the dearer cache-write rate
# ($1.00) -> 96 * 1.00 + 200 * 4.00 = 896 micro-dollars.
MAX_COST_NANOS = 896_000
ONE_USD = 1_000_000_000


def test_converse_success_meters_one_event_whose_tenant_comes_from_the_key(gw: Gateway) -> None:
    # GIVEN acme's key, and a header claiming to be another tenant
    response = gw.post("/v1/converse", converse_body(), headers={"X-Tenant-Id": "globex"})
    # THEN the answer and exactly one event are acme's
    assert response.status == 200, response.body
    body = body_of(response)
    assert body["output"]["message"]["role"] == "assistant"
    assert body["usage"]["input_tokens"] == 10
    assert body["usage"]["output_tokens"] == 50
    assert body["usage"]["cost_usd"] == "0.000208"
    assert body["model_id"] == PROFILE_ARN
    [event] = gw.sink.events
    assert event.tenant_id == "acme"
    assert event.source is Source.GATEWAY
    assert event.outcome is Outcome.SUCCESS
    assert (event.model, event.model_id) == ("claude-3-5-haiku", PROFILE_ARN)
    assert (event.input_tokens, event.output_tokens) == (10, 50)
    assert event.occurred_at == NOW
    assert event.request_id == response.header("X-Request-Id")
    # tenant default tags, with the client's allowed tag overriding its default
    assert dict(event.tags) == {"costCenter": "cc-42", "applicationId": "docs-helper", "environment": "prod"}
    assert event.reservation_id == ""
    assert response.header("X-Usage-Input-Tokens") == "10"
    assert response.header("X-Usage-Output-Tokens") == "50"
    assert response.header("X-Usage-Cost-USD") == "0.000208"
    assert response.header("X-Quota-Window") == "month"
    assert response.header("X-Quota-Remaining-USD") == "4999.999792"
    assert gw.metrics.totals() == {
        "Requests": 1,
        "Admitted": 1,
        "Denied": 0,
        "ModelFailures": 0,
        "InputTokens": 10,
        "OutputTokens": 50,
        "CostNanos": COST_NANOS,
    }


def test_alias_resolves_to_the_catalog_id_and_full_ids_pass_through(gw: Gateway) -> None:
    gw.post("/v1/converse", converse_body(), key=GLOBEX_KEY)
    gw.post("/v1/converse", converse_body(model="us.anthropic.claude-3-5-haiku-20241022-v1:0"), key=GLOBEX_KEY)
    assert [e.model_id for e in gw.sink.events] == [HAIKU_ID, "us.anthropic.claude-3-5-haiku-20241022-v1:0"]
    assert [e.tenant_id for e in gw.sink.events] == ["globex", "globex"]


def test_authentication_errors_are_401_json_and_meter_nothing(gw: Gateway) -> None:
    missing = gw.post("/v1/converse", converse_body(), key=None)
    wrong = gw.post("/v1/converse", converse_body(), key="tm_guess")
    assert (missing.status, body_of(missing)["error"]["code"]) == (401, "missing_api_key")
    assert (wrong.status, body_of(wrong)["error"]["code"]) == (401, "invalid_api_key")
    assert wrong.header("WWW-Authenticate")
    via_header = gw.post("/v1/converse", converse_body(), key=None, headers={"x-api-key": GLOBEX_KEY})
    assert via_header.status == 200
    assert [e.tenant_id for e in gw.sink.events] == ["globex"]


def test_client_errors_are_json_name_the_field_and_never_leak_a_trace(make_gateway: MakeGateway) -> None:
    gw = make_gateway(config=GatewayConfig(quota_cache_ms=0, max_body_bytes=2048))
    cases = {
        "malformed": (gw.post("/v1/converse", b'{"model": '), 400, "body"),
        "unknown model": (gw.post("/v1/converse", converse_body(model="gpt-17")), 400, "model"),
        "bad field": (gw.post("/v1/converse", converse_body(tags={"owner": "x"})), 400, "tags.owner"),
        "too large": (gw.post("/v1/converse", converse_body("x" * 4096)), 413, None),
        "no route": (gw.request("GET", "/v2/nothing"), 404, None),
        "wrong method": (gw.request("GET", "/v1/converse"), 405, None),
        "not json": (gw.post("/v1/converse", b"a=b", headers={"content-type": "text/plain"}), 415, None),
    }
    for name, (response, status, field) in cases.items():
        assert response.status == status, name
        assert response.header("Content-Type") == "application/json", name
        error = body_of(response)["error"]
        assert error["param"] == field, name
        assert error["message"], name
        assert b"Traceback" not in response.body, name
    assert cases["wrong method"][0].header("Allow") == "POST"
    assert gw.sink.events == []


def test_a_blocked_tenant_gets_429_with_reason_and_retry_after_and_a_denied_event(gw: Gateway) -> None:
    # GIVEN the consumer cut acme off until the top of the next hour
    gw.store.set_block(BlockRecord("acme", "1m", "tokens quota exhausted", until=NOW + timedelta(seconds=90)))
    # WHEN acme calls
    response = gw.post("/v1/converse", converse_body())
    # THEN 429, the reason, Retry-After, no model call, and one denied event with zero tokens
    assert response.status == 429
    error = body_of(response)["error"]
    assert error["code"] == "quota_exceeded"
    assert "tokens quota exhausted" in error["reason"]
    assert error["retry_after_seconds"] == 90
    assert response.header("Retry-After") == "90"
    assert gw.model.calls == 0
    [event] = gw.sink.events
    assert (event.outcome, event.total_tokens, event.tenant_id) == (Outcome.DENIED, 0, "acme")
    assert gw.metrics.totals()["Denied"] == 1
    assert gw.metrics.totals()["Admitted"] == 0


def test_a_model_failure_is_502_json_with_a_model_error_event(make_gateway: MakeGateway) -> None:
    gw = make_gateway(model=SimulatedModel(error_rate=1.0))
    response = gw.post("/v1/converse", converse_body())
    assert response.status == 502
    assert body_of(response)["error"]["code"] == "model_error"
    [event] = gw.sink.events
    assert event.outcome is Outcome.MODEL_ERROR
    assert gw.metrics.totals()["ModelFailures"] == 1


class RaisingBackend:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def converse(self, call: ModelCall) -> ModelReply:
        raise self.exc

    def converse_stream(self, call: ModelCall) -> Iterator[StreamPart]:
        raise self.exc


def test_throttling_rejection_and_backend_bugs_each_map_to_an_outcome(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    cases = [
        (ModelBackendError(FailureKind.THROTTLED, "busy"), 502, "model_throttled", Outcome.THROTTLED),
        (ModelBackendError(FailureKind.REJECTED, "too long"), 400, "model_rejected_request", Outcome.MODEL_ERROR),
        (RuntimeError("secret prompt text in a bug"), 502, "model_error", Outcome.MODEL_ERROR),
    ]
    for exc, status, code, outcome in cases:
        gw = make_gateway(model=RaisingBackend(exc))
        response = gw.post("/v1/converse", converse_body())
        assert (response.status, body_of(response)["error"]["code"]) == (status, code)
        assert b"secret prompt" not in response.body
        assert [e.outcome for e in gw.sink.events] == [outcome]
    assert "RuntimeError" in caplog.text  # the bug is logged by type and stack ...
    assert "secret prompt" not in caplog.text  # ... never by a message that might quote the prompt


def test_an_unexpected_error_is_a_json_500_logged_without_its_message(
    gw: Gateway, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(model: str, tenant: object) -> None:
        raise KeyError(body["prompt"]["messages"][0]["content"])  # an error message quoting the prompt

    body = converse_body()

    monkeypatch.setattr(gw.app.router, "resolve", broken)
    response = gw.post("/v1/converse", body)
    assert response.status == 500
    assert body_of(response)["error"] == {
        "code": "internal_error",
        "type": "api_error",
        "message": "internal error",
        "param": None,
    }
    assert "KeyError" in caplog.text
    assert "Explain S3" not in caplog.text


def test_prompts_and_completions_are_never_logged(make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN every logger at DEBUG, and calls that succeed, fail, stream and are denied
    caplog.set_level(logging.DEBUG)
    gw = make_gateway(model=SimulatedModel(output_tokens=20, error_rate=0.5, seed=1))
    prompt = "TOP-SECRET-PROMPT merger plans for Q3"
    for _ in range(6):
        gw.post("/v1/converse", converse_body(prompt))
    stream = gw.post(
        "/v1/chat/completions",
        {"model": "nova-micro", "messages": [{"role": "user", "content": prompt}], "stream": True},
    )
    if stream.stream is not None:
        list(stream.stream)
    gw.store.set_block(BlockRecord("acme", "month", "cut off", until=NOW + timedelta(hours=1)))
    gw.post("/v1/converse", converse_body(prompt))
    # THEN neither the prompt nor any word of the simulated completions reached a log record
    assert {e.outcome for e in gw.sink.events} >= {Outcome.SUCCESS, Outcome.MODEL_ERROR, Outcome.DENIED}
    assert "TOP-SECRET" not in caplog.text
    assert "alpha" not in caplog.text and "bravo" not in caplog.text

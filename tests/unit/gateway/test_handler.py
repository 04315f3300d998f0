"""The Lambda handler over API Gateway REST proxy events, with the app built by ``bootstrap`` from settings and
in-memory dependencies (no AWS)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest

from producers.gateway import handler
from producers.gateway.backends.simulated import SimulatedModel
from producers.gateway.bootstrap import bootstrap
from producers.gateway.metrics import InMemoryMetrics
from producers.gateway.settings import Settings
from shared.adapters.memory_store import InMemoryStore
from shared.schema import UsageEvent
from tests.unit.gateway.support import ACME_KEY, NOW, converse_body, registry


class FlushingSink:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.flushes = 0

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)

    def flush(self, timeout: float | None = None) -> bool:
        self.flushes += 1
        return True


@dataclass
class Context:
    function_name: str = "tenantmeter-gateway"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tenantmeter-gateway"
    aws_request_id: str = "lambda-req-1"


def proxy_event(method: str, path: str, body: Any = None, *, b64: bool = False, key: str = ACME_KEY) -> dict[str, Any]:
    raw = "" if body is None else json.dumps(body)
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "requestContext": {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "stage": "prod"},
        "body": base64.b64encode(raw.encode()).decode() if b64 else (raw or None),
        "isBase64Encoded": b64,
    }


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> FlushingSink:
    sink = FlushingSink()
    store = InMemoryStore()
    settings = Settings.from_env({"TM_TENANT_CONFIG": "unused.toml", "TM_REDIS_URL": "redis://unused"})
    app = bootstrap(
        settings,
        tenants=registry(),
        quota_state=store,
        usage_reader=store,
        sink=sink,
        backend=SimulatedModel(output_tokens=50),
        metrics=InMemoryMetrics(),
        clock=lambda: NOW,
    )
    monkeypatch.setattr(handler, "_app", app)
    return sink


def test_a_proxy_event_is_answered_metered_and_flushed(sink: FlushingSink) -> None:
    result = handler.lambda_handler(proxy_event("POST", "/v1/converse", converse_body()), Context())  # type: ignore[arg-type]
    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is False
    assert result["headers"]["X-Usage-Output-Tokens"] == "50"
    assert json.loads(result["body"])["usage"]["output_tokens"] == 50
    [event] = sink.events
    assert event.request_id == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"  # API Gateway's request id
    assert sink.flushes == 1


def test_base64_bodies_and_errors(sink: FlushingSink) -> None:
    ok = handler.lambda_handler(proxy_event("POST", "/v1/converse", converse_body(), b64=True), Context())  # type: ignore[arg-type]
    assert ok["statusCode"] == 200
    broken = proxy_event("POST", "/v1/converse", converse_body())
    broken.update(isBase64Encoded=True, body="not base64!")
    bad = handler.lambda_handler(broken, Context())  # type: ignore[arg-type]
    assert bad["statusCode"] == 400
    assert json.loads(bad["body"])["error"]["param"] == "body"
    denied = handler.lambda_handler(proxy_event("POST", "/v1/converse", converse_body(), key="nope"), Context())  # type: ignore[arg-type]
    assert denied["statusCode"] == 401
    assert len(sink.events) == 1


def test_a_streamed_chat_is_sent_whole_as_server_sent_events(sink: FlushingSink) -> None:
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    result = handler.lambda_handler(proxy_event("POST", "/v1/chat/completions", body), Context())  # type: ignore[arg-type]
    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"] == "text/event-stream"
    assert result["body"].endswith("data: [DONE]\n\n")
    assert [e.output_tokens for e in sink.events] == [50]


def test_nothing_is_built_at_import() -> None:
    import importlib

    fresh = importlib.reload(handler)
    assert fresh._app is None


def test_importing_the_gateway_connects_to_nothing_and_starts_no_thread() -> None:
    import subprocess
    import sys

    code = (
        "import sys, threading\n"
        "import producers.gateway.handler, producers.gateway.server, producers.gateway.bootstrap\n"
        "print(threading.active_count(), ','.join(m for m in ('boto3', 'redis') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1"]  # one thread, and neither boto3 nor redis loaded


def test_a_misconfigured_gateway_answers_json_503_and_logs_the_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a cold container whose environment lacks the stream name
    monkeypatch.setattr(handler, "_app", None)
    monkeypatch.delenv("TM_STREAM_NAME", raising=False)
    monkeypatch.setenv("TM_TENANT_CONFIG", "/nonexistent/tenants.toml")
    # WHEN a request arrives
    result = handler.lambda_handler(proxy_event("POST", "/v1/converse", converse_body()), Context())  # type: ignore[arg-type]
    # THEN the client gets our JSON error (not API Gateway's bare 502) and the log names what is wrong
    assert result["statusCode"] == 503
    assert json.loads(result["body"])["error"]["code"] == "misconfigured"
    assert any("'TM_" in str(getattr(record, "error", "")) for record in caplog.records)


def test_a_body_with_lone_surrogates_is_a_400(sink: FlushingSink) -> None:
    event = proxy_event("POST", "/v1/converse", converse_body())
    event["body"] = '{"model": "x\ud800"}'
    result = handler.lambda_handler(event, Context())  # type: ignore[arg-type]
    assert result["statusCode"] == 400

"""EMF metrics (dimensions, tenant as metadata, exact cost, bounded cardinality) and the gateway's settings."""

from __future__ import annotations

import io
import json

import pytest

from producers.gateway.metrics import DIMENSIONS, OVERFLOW, EmfStdoutSink, RequestMetrics
from producers.gateway.settings import Settings
from shared.errors import ConfigError
from shared.settings import ENV_VARS
from tests.unit.gateway.support import NOW


def metrics(**overrides: object) -> RequestMetrics:
    base: dict[str, object] = {
        "at": NOW,
        "tenant_id": "acme",
        "request_id": "r1",
        "model": "claude-3-5-haiku",
        "tags": {"costCenter": "cc-42", "applicationId": "support-bot"},
        "admitted": True,
        "input_tokens": 10,
        "output_tokens": 50,
        "cost_nanos": 208_000,
    }
    base.update(overrides)
    return RequestMetrics(**base)  # type: ignore[arg-type]


def test_emf_document_has_the_four_dimensions_and_tenant_only_as_metadata() -> None:
    out = io.StringIO()
    sink = EmfStdoutSink(out)
    sink.record(metrics())
    assert out.getvalue() == ""  # buffered until flushed (the Lambda handler flushes after each invocation)
    sink.flush()
    doc = json.loads(out.getvalue())
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [list(DIMENSIONS)]
    assert "tenant_id" not in directive["Dimensions"][0]
    assert {m["Name"] for m in directive["Metrics"]} == {
        "Requests",
        "Admitted",
        "Denied",
        "ModelFailures",
        "InputTokens",
        "OutputTokens",
        "CostUSD",
    }
    assert doc["_aws"]["Timestamp"] == int(NOW.timestamp() * 1000)
    assert (doc["model"], doc["costCenter"], doc["applicationId"], doc["environment"]) == (
        "claude-3-5-haiku",
        "cc-42",
        "support-bot",
        "none",
    )
    assert (doc["Requests"], doc["Admitted"], doc["Denied"], doc["InputTokens"]) == (1, 1, 0, 10)
    assert doc["tenant_id"] == "acme"
    assert doc["request_id"] == "r1"
    assert '"CostUSD":0.000208}' in out.getvalue()  # an exact decimal literal, not a float's repr


def test_client_tag_values_cannot_blow_up_metric_cardinality() -> None:
    out = io.StringIO()
    sink = EmfStdoutSink(out, max_values=3)
    for i in range(6):
        sink.record(metrics(tags={"applicationId": f"app-{i}"}))
    sink.flush()
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["applicationId"], d["Requests"]) for d in docs] == [
        ("app-0", 1),
        ("app-1", 1),
        ("app-2", 1),
        (OVERFLOW, 3),
    ]


class Ticker:
    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


def test_a_long_running_process_sums_per_group_and_flushes_each_interval() -> None:
    # GIVEN a sink in a long-running process (1 s interval) and three requests of one tenant and dimension set
    out = io.StringIO()
    ticker = Ticker()
    sink = EmfStdoutSink(out, flush_interval_s=1.0, monotonic=ticker)
    for cost in (1, 2, 3):
        sink.record(metrics(cost_nanos=cost * 100_000_000))
    sink.record(metrics(tenant_id="globex"))
    assert out.getvalue() == ""
    # WHEN a record arrives a second later
    ticker.value = 1.0
    sink.record(metrics(denied=True, admitted=False, input_tokens=0, output_tokens=0, cost_nanos=0))
    # THEN one document per tenant group, with exact sums and no single request id
    acme, globex = (json.loads(line) for line in out.getvalue().splitlines())
    assert (acme["tenant_id"], acme["Requests"], acme["Admitted"], acme["Denied"]) == ("acme", 4, 3, 1)
    assert acme["InputTokens"] == 30
    assert '"CostUSD":0.6}' in out.getvalue()
    assert "request_id" not in acme
    assert (globex["tenant_id"], globex["Requests"], globex["request_id"]) == ("globex", 1, "r1")


def test_settings_defaults_and_declared_variables() -> None:
    settings = Settings.from_env({"TM_TENANT_CONFIG": "s3://cfg/tenants.toml", "TM_REDIS_URL": "redis://r:6379"})
    assert settings.store_backend == "redis"
    assert settings.model_backend == "bedrock"
    assert (settings.quota_cache_ms, settings.max_body_bytes, settings.reservation_ttl_seconds) == (1000, 1 << 20, 300)
    assert settings.stream_name == "tenantmeter-usage-events"
    full = Settings.from_env(
        {
            "TM_TENANT_CONFIG": "/etc/tenants.toml",
            "TM_STORE_BACKEND": "dynamodb",
            "TM_DYNAMODB_TABLE": "usage",
            "TM_MODEL_BACKEND": "simulated",
            "TM_SAGEMAKER_ENDPOINTS": "llama-ep, mistral-ep",
            "TM_QUOTA_CACHE_MS": "250",
            "AWS_REGION": "eu-west-1",
        }
    )
    assert full.sagemaker_endpoints == ("llama-ep", "mistral-ep")
    assert (full.store_backend, full.dynamodb_table, full.quota_cache_ms, full.region) == (
        "dynamodb",
        "usage",
        250,
        "eu-west-1",
    )
    for name in (
        "TM_STREAM_NAME",
        "TM_STORE_BACKEND",
        "TM_REDIS_URL",
        "TM_REDIS_AUTH_SECRET_ARN",
        "TM_DYNAMODB_TABLE",
        "TM_TENANT_CONFIG",
        "TM_PRICING_CATALOG",
        "TM_MODEL_BACKEND",
        "TM_SAGEMAKER_ENDPOINTS",
        "TM_QUOTA_CACHE_MS",
        "TM_MAX_BODY_BYTES",
        "TM_RESERVATION_TTL_SECONDS",
    ):
        assert "gateway" in ENV_VARS[name][0], name


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"TM_REDIS_URL": "redis://r"}, "TM_TENANT_CONFIG"),
        ({"TM_TENANT_CONFIG": "t.toml"}, "TM_REDIS_URL"),
        ({"TM_TENANT_CONFIG": "t.toml", "TM_REDIS_URL": "http://r"}, "TM_REDIS_URL"),
        ({"TM_TENANT_CONFIG": "t.toml", "TM_REDIS_URL": "redis://r", "TM_QUOTA_CACHE_MS": "5000"}, "TM_QUOTA_CACHE_MS"),
        ({"TM_TENANT_CONFIG": "t.toml", "TM_REDIS_URL": "redis://r", "TM_MODEL_BACKEND": "openai"}, "TM_MODEL_BACKEND"),
        (
            {"TM_TENANT_CONFIG": "t.toml", "TM_REDIS_URL": "redis://r", "TM_SAGEMAKER_ENDPOINTS": "a b"},
            "TM_SAGEMAKER_ENDPOINTS",
        ),
        ({"TM_TENANT_CONFIG": "t.toml", "TM_REDIS_URL": "redis://r", "TM_MAX_BODY_BYTES": "10"}, "TM_MAX_BODY_BYTES"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.field == field
